package cli_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/transport"
)

// TestInterrupt sends SIGINT to commands that wait on a peer that never
// answers, each in a child process as from a terminal: each must stop
// soon (not wait out its 60 s timeouts, nor Ginkgo's 30 s grace period),
// exit 3 and say it was interrupted. The bound is a hang check, generous
// against a slow machine, not a speed figure.
func TestInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	e := emulatortest.Start(t, emulatortest.Options{})
	// A TLS port, with a certificate the emulator's CA issued, that
	// completes the handshake and then never says anything.
	cert, err := e.CA.IssueServer([]string{"localhost", "127.0.0.1"}, transport.ECDSAP256, time.Now().Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}}
	mute := testListener(t, func(c net.Conn) bool {
		tc := tls.Server(c, tlsConf)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if tc.Handshake() != nil {
			return true
		}
		_ = tc.SetDeadline(time.Time{})
		return false // held open, unread, until the test ends
	}).Addr().String()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "capture.pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		after time.Duration // before the SIGINT
	}{
		{"run, a spec waiting for CONNACK", []string{"run", "--target", "mqtts://" + mute, "--ca", e.CAFile, "--server-name", "localhost",
			"--id-scope", e.IDScope, "--group-key", emulatortest.SymGroupKey, "--read-timeout", "60s", "--spec-timeout", "2m",
			"--focus", "documented CONNECT", "--out", filepath.Join(dir, "run")}, 2 * time.Second},
		{"tlsprobe, waiting for CONNACK", []string{"tlsprobe", "--ca", e.CAFile, "--server-name", "localhost", "--timeout", "60s", mute}, 2 * time.Second},
		{"trace, a pipe nobody writes to", []string{"trace", fifo}, 500 * time.Millisecond},
		{"device, waiting for a device that sleeps", []string{"device", "--exec", "sleep 100", "--scenario", "normal", "--scenario", "register-429",
			"--scenario-timeout", "60s", "--out", filepath.Join(dir, "device")}, time.Second},
		{"provision over wss, waiting for the upgrade", []string{"provision", "--target", "wss://" + mute + "/$iothub/websocket", "--ca", e.CAFile,
			"--server-name", "localhost", "--id-scope", e.IDScope, "--registration-id", "dev-1", "--symmetric-key", emulatortest.SymGroupKey,
			"--timeout", "60s"}, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw, _ := json.Marshal(tc.args)
			cmd := exec.Command(os.Args[0], "-test.run=^TestEmulatorHelperProcess$")
			cmd.Env = append(os.Environ(), helperEnv+"="+string(raw))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				t.Fatalf("ended before the interrupt: %v\n%s\n%s", err, stdout.String(), stderr.String())
			case <-time.After(tc.after):
			}
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(stderr.String(), "interrupt") {
					t.Errorf("after SIGINT: %v (want exit 3), stderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
				}
				if tc.args[0] == "device" {
					// The reports are written, headed INTERRUPTED.
					raw, err := os.ReadFile(filepath.Join(dir, "device", "results.json"))
					if err != nil || !bytes.Contains(raw, []byte(`"verdict": "INTERRUPTED"`)) {
						t.Errorf("device results.json after SIGINT (%v):\n%.400s", err, raw)
					}
				}
				// An interrupted spec judged nothing: no verdict against
				// the target.
				if strings.Contains(stdout.String(), "CONFORMANT") && !strings.Contains(stdout.String(), "INTERRUPTED") {
					t.Errorf("an interrupted run gave a verdict:\n%s", stdout.String())
				}
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("still running 15 s after SIGINT; stderr:\n%s", stderr.String())
			}
		})
	}
}
