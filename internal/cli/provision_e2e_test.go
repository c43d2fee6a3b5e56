package cli

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/internal/testproc"
	"github.com/dps-conform/dps-conform/transport"
)

// TestProvisionEmulator runs "dps-conform provision" against the in-process
// reference emulator: every credential kind, both transports, and the exit
// statuses of the verdicts.
func TestProvisionEmulator(t *testing.T) {
	if testproc.Offload(t) {
		return
	}
	e := emulatortest.Start(t, emulatortest.Options{RetryAfter: time.Second})
	dir := t.TempDir()
	cert := e.ClientCert(t, emulatortest.X509DeviceID)
	certFile, keyFile := filepath.Join(dir, "dev.pem"), filepath.Join(dir, "dev.key")
	keyPEM, err := transport.EncodeKeyPEM(cert.PrivateKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, transport.EncodeCertPEM(cert.Certificate...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	mqtts := "mqtts://" + e.MQTTAddr
	common := []string{"--ca", e.CAFile, "--id-scope", e.IDScope, "--timeout", "30s"}
	for _, tc := range []struct {
		name       string
		args       []string
		wantCode   int
		wantStatus dps.Status // in the stdout JSON; "" means no stdout
		wantID     string
		wantStderr []string
		notStderr  []string
	}{
		{name: "symmetric key mqtts", args: []string{"--target", mqtts, "--registration-id", emulatortest.SymDeviceID, "--symmetric-key", emulatortest.SymDeviceKey},
			wantStatus: dps.StatusAssigned, wantID: emulatortest.SymDeviceID},
		{name: "group key wss verbose", args: []string{"--target", e.WSURL, "--registration-id", "cli-group-dev", "--group-key", emulatortest.SymGroupKey, "--verbose", "--payload", `{"modelId":"dtmi:x;1"}`},
			wantStatus: dps.StatusAssigned, wantID: "cli-group-dev",
			wantStderr: []string{"sent CONNECT", "sig=[redacted]", "waited 1s", `"payload":{"modelId":"dtmi:x;1"}`, "sent DISCONNECT"},
			notStderr:  []string{emulatortest.SymGroupKey}},
		{name: "x509 cert files", args: []string{"--target", mqtts, "--cert", certFile, "--key", keyFile},
			wantStatus: dps.StatusAssigned, wantID: emulatortest.X509DeviceID},
		{name: "disabled is a verdict", args: []string{"--target", mqtts, "--registration-id", emulatortest.DisabledDeviceID, "--symmetric-key", emulatortest.DisabledDeviceKey},
			wantCode: ExitNonConformant, wantStatus: dps.StatusDisabled, wantStderr: []string{`registration ended with status "disabled"`}},
		{name: "wrong key is a verdict", args: []string{"--target", mqtts, "--registration-id", emulatortest.SymDeviceID, "--symmetric-key", emulatortest.DisabledDeviceKey},
			wantCode: ExitNonConformant, wantStderr: []string{"status 401", "401000"}, notStderr: []string{emulatortest.DisabledDeviceKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append(append([]string{"provision"}, common...), tc.args...)
			code := Main(context.Background(), args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr.String())
			}
			for _, s := range tc.wantStderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr.String())
				}
			}
			for _, s := range tc.notStderr {
				if strings.Contains(stderr.String(), s) {
					t.Errorf("stderr contains %q", s)
				}
			}
			if tc.wantStatus == "" {
				if stdout.Len() != 0 {
					t.Errorf("stdout = %q", stdout.String())
				}
				return
			}
			var op dps.RegistrationOperationStatus
			if err := json.Unmarshal(stdout.Bytes(), &op); err != nil {
				t.Fatalf("stdout is not JSON: %v\n%s", err, stdout.String())
			}
			if !strings.HasPrefix(stdout.String(), "{\n  \"operationId\"") {
				t.Errorf("stdout not indented: %q", stdout.String())
			}
			if op.Status != tc.wantStatus || op.RegistrationState == nil {
				t.Fatalf("status %q, state %+v", op.Status, op.RegistrationState)
			}
			if tc.wantStatus == dps.StatusAssigned && (op.RegistrationState.AssignedHub != emulatortest.HubName || !dps.EqualRegistrationID(op.RegistrationState.RegistrationID, tc.wantID)) {
				t.Errorf("registrationState %+v", op.RegistrationState)
			}
		})
	}
	t.Run("untrusted server certificate gives no verdict", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), []string{"provision", "--target", mqtts, "--id-scope", e.IDScope,
			"--registration-id", emulatortest.SymDeviceID, "--symmetric-key", emulatortest.SymDeviceKey, "--timeout", "30s"}, &stdout, &stderr)
		if code != ExitTargetUnreachable || stdout.Len() != 0 || !strings.Contains(stderr.String(), "tls") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
		}
	})
}

// TestProvisionReconnects: against the connack-withheld scenario (the
// first two CONNECTs unanswered until the emulator's CONNECT timeout
// closes them), one attempt is no verdict, and --connect-attempts 3
// reconnects after 1 s and 2 s (+ jitter) and is assigned.
func TestProvisionReconnects(t *testing.T) {
	if testproc.Offload(t) {
		return
	}
	for _, tc := range []struct {
		attempts   string
		wantCode   int
		wantStderr []string
	}{
		{"1", ExitTargetUnreachable, []string{"connection closed"}},
		{"3", 0, []string{"waited 1", "waited 2", "sent DISCONNECT"}},
	} {
		t.Run("attempts="+tc.attempts, func(t *testing.T) {
			sc, err := emulator.LookupScenario("connack-withheld")
			if err != nil {
				t.Fatal(err)
			}
			e := emulatortest.Start(t, emulatortest.Options{Scenario: &sc, Limits: &emulator.Limits{ConnectTimeout: 300 * time.Millisecond}})
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), []string{"provision", "--target", "mqtts://" + e.MQTTAddr, "--ca", e.CAFile, "--id-scope", e.IDScope,
				"--registration-id", emulatortest.SymDeviceID, "--symmetric-key", emulatortest.SymDeviceKey, "--timeout", "30s",
				"--connect-attempts", tc.attempts, "--verbose"}, &stdout, &stderr)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr.String())
			}
			for _, s := range tc.wantStderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr.String())
				}
			}
			if n := strings.Count(stderr.String(), "sent CONNECT"); n != map[string]int{"1": 1, "3": 3}[tc.attempts] {
				t.Errorf("%d CONNECTs sent, want %s:\n%s", n, tc.attempts, stderr.String())
			}
		})
	}
}
