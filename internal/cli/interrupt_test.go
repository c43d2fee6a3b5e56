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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/transport"
)

// TestInterrupt sends SIGINT to commands that wait on a peer that never
// answers, each in a child process as from a terminal, once the command is
// seen waiting: each must stop soon (not wait out its 60 s timeouts, nor
// Ginkgo's 30 s grace period), exit 3, say it was interrupted, and keep
// what it had (run's and device's reports, trace's transcript so far). The
// bound is a hang check, generous against a slow machine, not a speed
// figure.
func TestInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	e := emulatortest.Start(t, emulatortest.Options{})
	cert, err := e.CA.IssueServer([]string{"localhost", "127.0.0.1"}, transport.ECDSAP256, time.Now().Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}}
	dir := t.TempDir()
	fifo := filepath.Join(dir, "capture.pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	capture, err := os.ReadFile("../../testdata/pcaps/register-tls.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	runMute, runSpoke := muteTLS(t, tlsConf)
	probeMute, probeSpoke := muteTLS(t, tlsConf)
	wsMute, wsSpoke := muteTLS(t, tlsConf)
	started := filepath.Join(dir, "device-started")
	var pipe *os.File // trace's input: the whole capture, the writer still open
	t.Cleanup(func() {
		if pipe != nil {
			pipe.Close()
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		// waiting reports that the command is waiting on its peer.
		waiting func() bool
		// stdout must hold this after the interrupt.
		stdout string
	}{
		{"run, a spec waiting for CONNACK", []string{"run", "--target", "mqtts://" + runMute, "--ca", e.CAFile, "--server-name", "localhost",
			"--id-scope", e.IDScope, "--group-key", emulatortest.SymGroupKey, "--read-timeout", "60s", "--spec-timeout", "2m",
			"--focus", "documented CONNECT", "--out", filepath.Join(dir, "run")}, runSpoke, "\nINTERRUPTED: the run was stopped"},
		{"tlsprobe, waiting for CONNACK", []string{"tlsprobe", "--ca", e.CAFile, "--server-name", "localhost", "--timeout", "60s", probeMute}, probeSpoke, ""},
		{"trace, a pipe whose writer stays", []string{"trace", fifo}, func() bool {
			if pipe == nil {
				f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
				if err != nil {
					return false // trace has not opened it yet
				}
				if _, err := f.Write(capture); err != nil {
					t.Error(err)
				}
				pipe = f
			}
			// Waiting once it has read the whole capture.
			n, err := unreadBytes(pipe)
			if err != nil || n != 0 {
				return false
			}
			// Read is not yet decoded: give it a moment (the decode of
			// this small capture takes well under a millisecond).
			time.Sleep(100 * time.Millisecond)
			return true
		}, "conversation 1 192.0.2.10:50001"},
		{"device, waiting for a device that sleeps", []string{"device", "--exec", "touch " + started + "; sleep 100", "--scenario", "normal",
			"--scenario", "register-429", "--scenario-timeout", "60s", "--out", filepath.Join(dir, "device")}, func() bool {
			_, err := os.Stat(started)
			return err == nil
		}, "\nINTERRUPTED: stopped before every scenario ran"},
		{"provision over wss, waiting for the upgrade", []string{"provision", "--target", "wss://" + wsMute + "/$iothub/websocket", "--ca", e.CAFile,
			"--server-name", "localhost", "--id-scope", e.IDScope, "--registration-id", "dev-1", "--symmetric-key", emulatortest.SymGroupKey,
			"--timeout", "60s"}, wsSpoke, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
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
			waiting := false
			for i := 0; i < 1500 && !waiting; i++ { // 30 s at most
				select {
				case err := <-done:
					t.Fatalf("ended before the interrupt: %v\n%s\n%s", err, stdout.String(), stderr.String())
				case <-time.After(20 * time.Millisecond):
				}
				waiting = tc.waiting()
			}
			if !waiting {
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("never seen waiting on its peer; stderr:\n%s", stderr.String())
			}
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(stderr.String(), "interrupted") {
					t.Errorf("after SIGINT: %v (want exit 3), stderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
				}
				if !strings.Contains(stdout.String(), tc.stdout) {
					t.Errorf("stdout after SIGINT lacks %q:\n%s", tc.stdout, stdout.String())
				}
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("still running 15 s after SIGINT; stderr:\n%s", stderr.String())
			}
			if tc.args[0] == "run" {
				checkInterruptedJUnit(t, filepath.Join(dir, "run", "junit.xml"))
			}
			if tc.args[0] == "device" {
				// The reports are written, headed INTERRUPTED.
				raw, err := os.ReadFile(filepath.Join(dir, "device", "results.json"))
				if err != nil || !bytes.Contains(raw, []byte(`"verdict": "INTERRUPTED"`)) {
					t.Errorf("device results.json after SIGINT (%v):\n%.400s", err, raw)
				}
			}
		})
	}
}

// muteTLS is a loopback TLS port that completes the handshake and then
// never answers; spoke reports that a client sent it something after the
// handshake (a CONNECT, an upgrade request): the client is then waiting
// for an answer that will not come.
func muteTLS(t *testing.T, conf *tls.Config) (addr string, spoke func() bool) {
	var got atomic.Bool
	l := testListener(t, func(c net.Conn) bool {
		tc := tls.Server(c, conf)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if tc.Handshake() != nil {
			return true
		}
		_ = tc.SetDeadline(time.Time{})
		go func() { // ends when the test closes the connection
			if n, _ := tc.Read(make([]byte, 1)); n > 0 {
				got.Store(true)
			}
		}()
		return false // held open, unanswered, until the test ends
	})
	return l.Addr().String(), got.Load
}

// checkInterruptedJUnit: the junit.xml of a run SIGINT stopped has the
// interrupted spec as an <error type="interrupted"> whose message says it
// was a signal and that nothing was judged, and none of Ginkgo's noise
// (the other goroutines of the process, its advice to interrupt again)
// anywhere; its counts add up.
func checkInterruptedJUnit(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := readJUnitFile(t, b)
	n := 0
	for _, s := range d.Suites {
		for _, c := range s.Cases {
			if c.Status != "interrupted" {
				continue
			}
			n++
			if c.Error == nil || c.Error.Type != "interrupted" || !strings.Contains(c.Error.Message, "signal") ||
				!strings.Contains(c.Error.Message, "not judged") || strings.Contains(c.Error.Message, "\n") {
				t.Errorf("interrupted spec %q: %+v", c.Name, c.Error)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d interrupted test cases, want 1:\n%s", n, b)
	}
	// Ginkgo's suite property SpecialSuiteFailureReason keeps its
	// words; the test cases do not.
	cases := b[bytes.Index(b, []byte("<testcase")):]
	for _, noise := range []string{"Other Goroutines", "testing.tRunner", "Interrupt again", "Interrupted by User"} {
		if bytes.Contains(cases, []byte(noise)) {
			t.Errorf("junit.xml carries %q:\n%s", noise, b)
		}
	}
}
