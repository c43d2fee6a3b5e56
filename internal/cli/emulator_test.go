package cli_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/internal/cli"
	"github.com/dps-conform/dps-conform/packets"
)

const (
	emuScope = "0ne00C0DE01"
	emuID    = "cli-device-1"
	emuKey   = "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg="
)

// writeEmulatorConfig writes an enrollments file with one symmetric key
// device.
func writeEmulatorConfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "enrollments.yaml")
	cfg := fmt.Sprintf(`idScope: %s
linkedHubs:
  - name: hub-cli.azure-devices.net
enrollments:
  - registrationId: %s
    attestation:
      type: symmetricKey
      symmetricKey:
        primaryKey: %s
`, emuScope, emuID, emuKey)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// readReady reads the ready line from r within 30 s.
func readReady(t *testing.T, r io.Reader) emulator.Ready {
	t.Helper()
	lines := make(chan string, 1)
	errs := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		if err != nil {
			errs <- err
			return
		}
		lines <- line
	}()
	select {
	case line := <-lines:
		var ready emulator.Ready
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ready); err != nil {
			t.Fatalf("ready line %q: %v", line, err)
		}
		if ready.Event != "ready" {
			t.Fatalf("ready line %q: event %q", line, ready.Event)
		}
		return ready
	case err := <-errs:
		t.Fatalf("no ready line: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no ready line within 30 s")
	}
	return emulator.Ready{}
}

// provisionAt provisions emuID over MQTT/TLS at the ready line's address.
func provisionAt(t *testing.T, ready emulator.Ready) dps.RegistrationOperationStatus {
	t.Helper()
	pem, err := os.ReadFile(ready.CAFile)
	if err != nil {
		t.Fatalf("caFile of the ready line: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("caFile %s holds no certificate", ready.CAFile)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ready.MQTT, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("TLS to %s: %v", ready.MQTT, err)
	}
	tok, err := dps.BuildSASToken(dps.SASOptions{IDScope: ready.IDScope, RegistrationID: emuID, Key: emuKey, Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	code, st := emulatortest.Provision(t, conn, ready.IDScope, emuID, tok)
	if code != 200 || st.Status != dps.StatusAssigned || st.RegistrationState == nil || st.RegistrationState.AssignedHub != "hub-cli.azure-devices.net" {
		t.Fatalf("provisioning answered %d %+v", code, st)
	}
	return st
}

// adminRegistration GETs /registrations/{emuID} from the admin API.
func adminRegistration(t *testing.T, admin string) (int, dps.DeviceRegistrationResult) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(admin + "/registrations/" + emuID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r dps.DeviceRegistrationResult
	if resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, r
}

// TestEmulatorCommand runs "dps-conform emulator" in-process, provisions a
// device through it and stops it by cancelling the context.
func TestEmulatorCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outR, outW := io.Pipe()
	var stdout strings.Builder
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		code := cli.Main(ctx, []string{"emulator", "--mqtt-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0",
			"--config", writeEmulatorConfig(t), "--retry-after", "0", "--log-level", "debug"},
			io.MultiWriter(outW, &stdout), &stderr)
		outW.Close()
		done <- code
	}()
	ready := readReady(t, outR)
	go io.Copy(io.Discard, outR)
	if ready.IDScope != emuScope || ready.MQTT == "" || ready.WSS == "" || !strings.HasPrefix(ready.Admin, "http://127.0.0.1:") || ready.Plain != "" {
		t.Fatalf("ready line %+v", ready)
	}
	st := provisionAt(t, ready)
	code, reg := adminRegistration(t, ready.Admin)
	if code != 200 || reg.CreatedDateTimeUTC != st.RegistrationState.CreatedDateTimeUTC {
		t.Fatalf("admin GET /registrations/%s: %d %+v", emuID, code, reg)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d after cancel, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("emulator did not stop within 30 s of cancel")
	}
	if n := strings.Count(stdout.String(), "\n"); n != 1 {
		t.Errorf("stdout has %d lines, want exactly the ready line:\n%s", n, stdout.String())
	}
	if _, err := os.Stat(ready.CAFile); !os.IsNotExist(err) {
		t.Errorf("temporary PKI %s still there after exit (%v)", ready.CAFile, err)
	}
	logs := stderr.String()
	if strings.Contains(logs, "sig=") || strings.Contains(logs, emuKey) {
		t.Errorf("logs leak a secret:\n%s", logs)
	}
}

// syncBuffer is a strings.Builder safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEmulatorCommandFlags checks that profile, faults and the plaintext
// listener reach the server: under dps-2023 with grant-qos2 a CleanSession=0
// CONNECT is accepted and a QoS 2 subscription is granted 2.
func TestEmulatorCommandFlags(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outR, outW := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := cli.Main(ctx, []string{"emulator", "--mqtt-addr", "", "--ws-addr", "", "--admin-addr", "",
			"--insecure-plaintext-addr", "127.0.0.1:0", "--profile", "dps-2023", "--fault", "grant-qos2",
			"--config", writeEmulatorConfig(t)}, outW, io.Discard)
		outW.Close()
		done <- code
	}()
	ready := readReady(t, outR)
	go io.Copy(io.Discard, outR)
	if ready.Plain == "" || ready.MQTT != "" || ready.WSS != "" || ready.Admin != "" {
		t.Fatalf("ready line %+v, want only the plaintext listener", ready)
	}
	conn, err := net.DialTimeout("tcp", ready.Plain, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	cp := &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, KeepAlive: 60, ClientID: []byte(emuID),
		Username: []byte(dps.Username{IDScope: emuScope, RegistrationID: emuID}.String())}
	sub := &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 2}}}
	for _, p := range []packets.Packet{cp, sub} {
		if err := packets.WritePacket(conn, p); err != nil {
			t.Fatal(err)
		}
	}
	r := packets.NewReader(conn, packets.DecodeOptions{})
	if p, err := r.ReadPacket(); err != nil || p.(*packets.Connack).ReturnCode != 0 {
		t.Fatalf("CONNACK %v %v, want CleanSession=0 accepted under dps-2023", p, err)
	}
	if p, err := r.ReadPacket(); err != nil || p.(*packets.Suback).ReturnCodes[0] != packets.SubackMaxQoS2 {
		t.Fatalf("SUBACK %v %v, want QoS 2 granted under --fault grant-qos2", p, err)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// helperEnv makes this test binary act as "dps-conform" with the arguments
// in the variable (JSON), for tests that need a real process to kill.
const helperEnv = "DPSCONFORM_TEST_EMULATOR_ARGS"

// TestEmulatorHelperProcess is not a test: it is the child process of
// TestEmulatorSurvivesKill9.
func TestEmulatorHelperProcess(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		t.Skip("helper process for TestEmulatorSurvivesKill9")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cli.Main(ctx, args, os.Stdout, os.Stderr))
}

// startEmulatorProcess starts the emulator as a child process and returns it
// with its ready line.
func startEmulatorProcess(t *testing.T, args ...string) (*exec.Cmd, emulator.Ready) {
	t.Helper()
	raw, _ := json.Marshal(append([]string{"emulator"}, args...))
	cmd := exec.Command(os.Args[0], "-test.run=^TestEmulatorHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(raw))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("emulator stderr:\n%s", stderr.String())
		}
	})
	ready := readReady(t, stdout)
	go io.Copy(io.Discard, stdout)
	return cmd, ready
}

// TestEmulatorSurvivesKill9 proves ARCHITECTURE.md §4: a registration
// answered "assigned" survives kill -9 of the emulator and a restart on the
// same state directory.
func TestEmulatorSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two emulator processes")
	}
	state := t.TempDir()
	cfg := writeEmulatorConfig(t)
	args := []string{"--mqtt-addr", "127.0.0.1:0", "--ws-addr", "", "--config", cfg, "--state-dir", state, "--retry-after", "0"}

	cmd, ready := startEmulatorProcess(t, args...)
	st := provisionAt(t, ready)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	_, again := startEmulatorProcess(t, args...)
	if again.IDScope != ready.IDScope || again.CAFile != ready.CAFile {
		t.Fatalf("after restart: ready %+v, before %+v (same state dir: same scope and CA file)", again, ready)
	}
	code, reg := adminRegistration(t, again.Admin)
	if code != 200 {
		t.Fatalf("after kill -9 and restart GET /registrations/%s = %d, want 200", emuID, code)
	}
	want := st.RegistrationState
	if reg.Status != dps.StatusAssigned || reg.CreatedDateTimeUTC != want.CreatedDateTimeUTC || reg.AssignedHub != want.AssignedHub || reg.DeviceID != want.DeviceID {
		t.Fatalf("registration after restart %+v, want the one answered before the kill %+v", reg, want)
	}
	// The restarted emulator serves the device with the same CA.
	if again2 := provisionAt(t, again); again2.RegistrationState.CreatedDateTimeUTC != want.CreatedDateTimeUTC {
		t.Errorf("re-provisioning after restart changed createdDateTimeUtc: %s, was %s", again2.RegistrationState.CreatedDateTimeUTC, want.CreatedDateTimeUTC)
	}
}

// TestEmulatorBusyPort: a listener that cannot be bound is an environment
// failure (exit 3) naming the address, and nothing is printed on stdout.
func TestEmulatorBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var stdout, stderr strings.Builder
	code := cli.Main(context.Background(), []string{"emulator", "--mqtt-addr", l.Addr().String(), "--ws-addr", "", "--admin-addr", ""}, &stdout, &stderr)
	if code != cli.ExitTargetUnreachable || stdout.Len() != 0 || !strings.Contains(stderr.String(), l.Addr().String()) {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 3, nothing, the address", code, stdout.String(), stderr.String())
	}
}

// TestEmulatorStoppedBeforeReady: a Ctrl-C that comes while the emulator
// reads and stores its --config (seconds for a big one) is the normal
// stop: exit 0, and no ready line, since no server is left to connect
// to. (It went on storing 200,000 enrollments for 25 s, then printed its
// ready line and stopped.)
func TestEmulatorStoppedBeforeReady(t *testing.T) {
	var b strings.Builder
	b.WriteString("idScope: " + emuScope + "\nenrollments:\n")
	for i := range 1500 {
		fmt.Fprintf(&b, "  - registrationId: dev-%d\n    attestation: {type: symmetricKey, symmetricKey: {primaryKey: %s}}\n", i, emuKey)
	}
	cfg := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr strings.Builder
	code := cli.Main(ctx, []string{"emulator", "--mqtt-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0", "--config", cfg,
		"--state-dir", t.TempDir()}, &stdout, &stderr)
	if code != cli.ExitConformant || stdout.Len() != 0 {
		t.Errorf("exit %d, stdout %q; want 0 and no ready line\n%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "shutting down before ready") || strings.Contains(stderr.String(), "emulator listening") {
		t.Errorf("stderr does not say it stopped before it was ready:\n%s", stderr.String())
	}
}
