package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/internal/cli"
)

// TestTLSProbeCommand: tlsprobe --policy dps passes the emulator (exit 0)
// and fails it under accept-tls13 (exit 1, naming TLS-004), in text and JSON.
func TestTLSProbeCommand(t *testing.T) {
	for _, tc := range []struct {
		faults []emulator.Fault
		format string
		code   int
		want   []string
	}{
		{nil, "text", cli.ExitConformant, []string{"  TLS 1.2  accepted", "chain verifies", "MQTT over TLS: CONNACK return code 0x04", "policy dps: conformant"}},
		{[]emulator.Fault{emulator.FaultAcceptTLS13}, "text", cli.ExitNonConformant, []string{"  TLS 1.3  accepted", "! TLS-004 TLS 1.3 is accepted"}},
		{[]emulator.Fault{emulator.FaultAcceptTLS13}, "json", cli.ExitNonConformant, []string{`"id": "TLS-004"`, `"mqttConnackCode": 4`}},
	} {
		e := emulatortest.Start(t, emulatortest.Options{Faults: tc.faults})
		port := e.MQTTAddr[strings.LastIndex(e.MQTTAddr, ":")+1:]
		var stdout, stderr bytes.Buffer
		code := cli.Main(context.Background(), []string{"tlsprobe", "--policy", "dps", "--ca", e.CAFile, "--server-name", "localhost",
			"--plaintext-port", port, "--format", tc.format, e.MQTTAddr}, &stdout, &stderr)
		if code != tc.code {
			t.Errorf("faults %v: exit %d, want %d\n%s%s", tc.faults, code, tc.code, stdout.String(), stderr.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("faults %v: stdout lacks %q:\n%s", tc.faults, w, stdout.String())
			}
		}
		if tc.format == "json" && !json.Valid(stdout.Bytes()) {
			t.Errorf("not JSON: %s", stdout.String())
		}
	}
}

// TestTLSProbeSilent: a port that accepts TCP and never answers is exit 3
// after one handshake's timeout, with one line saying so; not 27 timeouts
// in a row, each reported as a refusal, and exit 0.
func TestTLSProbeSilent(t *testing.T) {
	silent := silentListener(t)
	var stdout, stderr bytes.Buffer
	code := cli.Main(context.Background(), []string{"tlsprobe", "--timeout", "300ms", silent.Addr().String()}, &stdout, &stderr)
	want := silent.Addr().String() + " accepts TCP but completed no TLS handshake (is it a TLS port?)"
	if code != cli.ExitTargetUnreachable || stdout.Len() != 0 || !strings.Contains(stderr.String(), want) {
		t.Fatalf("exit %d (want %d), stderr lacks %q:\n%s\n%s", code, cli.ExitTargetUnreachable, want, stdout.String(), stderr.String())
	}
}
