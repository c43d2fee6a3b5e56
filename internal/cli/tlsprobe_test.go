package cli_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/internal/cli"
	"github.com/dps-conform/dps-conform/internal/testnet"
	"github.com/dps-conform/dps-conform/transport"
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
	silent := testnet.Silent(t)
	var stdout, stderr bytes.Buffer
	code := cli.Main(context.Background(), []string{"tlsprobe", "--timeout", "300ms", silent}, &stdout, &stderr)
	want := silent + " accepts TCP but completed no TLS handshake (is it a TLS port?)"
	if code != cli.ExitTargetUnreachable || stdout.Len() != 0 || !strings.Contains(stderr.String(), want) {
		t.Fatalf("exit %d (want %d), stderr lacks %q:\n%s\n%s", code, cli.ExitTargetUnreachable, want, stdout.String(), stderr.String())
	}
}

// TestTLSProbeCertificateDates: the text output marks a certificate not
// valid at probe time, whichever side of its validity the probe is on.
func TestTLSProbeCertificateDates(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name      string
		notBefore time.Time
		want      string
	}{
		{"expired", now.Add(-48 * time.Hour), " EXPIRED\n"},
		{"not yet valid", now.Add(24 * time.Hour), " NOT YET VALID\n"},
	} {
		ca, err := transport.NewCA("dates CA", transport.ECDSAP256, now.Add(-72*time.Hour), 96*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.IssueServer([]string{"localhost"}, transport.ECDSAP256, tc.notBefore, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					_ = c.(*tls.Conn).Handshake()
				}()
			}
		}()
		var stdout, stderr bytes.Buffer
		// The plaintext probe goes to the listener's own port, not to a
		// fixed one that something else on the machine may hold.
		addr := l.Addr().String()
		cli.Main(context.Background(), []string{"tlsprobe", "--timeout", "2s", "--plaintext-port", addr[strings.LastIndex(addr, ":")+1:], addr}, &stdout, &stderr)
		l.Close()
		if !strings.Contains(stdout.String(), tc.want) {
			t.Errorf("%s certificate: stdout lacks %q:\n%s%s", tc.name, tc.want, stdout.String(), stderr.String())
		}
	}
}

// TestTLSProbeMalformed: a server that answers TLS 1.2 with a ServerHello
// and then a Certificate message holding no certificate (a null chain) is
// shown as "malformed" with the field and byte at fault, not as refusing
// TLS 1.2.
func TestTLSProbeMalformed(t *testing.T) {
	hello := append([]byte{2, 0, 0, 38, 3, 3}, make([]byte, 32)...) // ServerHello, TLS 1.2, zero random
	hello = append(hello, 0, 0xc0, 0x2b, 0)                         // no session id, ECDHE-ECDSA-AES128-GCM-SHA256, no compression
	cert := []byte{11, 0, 0, 3, 0, 0, 0}                            // Certificate, certificate_list of length 0
	msgs := append(hello, cert...)
	reply := append([]byte{22, 3, 3, 0, byte(len(msgs))}, msgs...)
	l := answeringListener(t, reply)
	var stdout, stderr bytes.Buffer
	cli.Main(context.Background(), []string{"tlsprobe", "--timeout", "2s", l.Addr().String()}, &stdout, &stderr)
	var row, state string
	for _, line := range strings.Split(stdout.String(), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "TLS" && f[1] == "1.2" && f[2] != "suites" {
			row, state = line, f[2]
		}
	}
	if state != "malformed" || !strings.Contains(row, "certificate_list is empty") {
		t.Fatalf("TLS 1.2 row %q, want it malformed naming the empty certificate_list:\n%s\n%s", row, stdout.String(), stderr.String())
	}
}

// TestTLSProbeServerGoesSilent: a server that answered handshakes and then
// answers none (it accepts connections, and says nothing) stops the probe
// at the first handshake it leaves unanswered, and the check after it:
// the output says so and what was not probed. With nothing probed that
// breaks the policy that is no verdict, exit 3; a violation in what was
// probed (TLS 1.0 accepted) is still one, exit 1.
func TestTLSProbeServerGoesSilent(t *testing.T) {
	ca, err := transport.NewCA("silent CA", transport.ECDSAP256, time.Now().Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueServer([]string{"localhost"}, transport.ECDSAP256, time.Now().Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		min      uint16
		answered int // connections answered: the TCP check, the first handshake, then one per version
		code     int
		want     []string
	}{
		{"after the first handshake", tls.VersionTLS12, 2, cli.ExitTargetUnreachable, []string{
			"  TLS 1.0  no answer   no answer within 300ms (the server went silent)\n", "  TLS 1.1  not probed  \n", "  TLS 1.3  not probed  \n",
			"TLS 1.2 suites accepted: not probed (the probe stopped)\n", "MQTT over TLS: not probed: the probe stopped\n",
			"INCOMPLETE: the server answered before, then answered neither the TLS 1.0 handshake nor one offering every version and suite within 300ms: it went silent, and the probe stopped\n",
			"not probed: TLS 1.1, TLS 1.2, TLS 1.3, TLS 1.2 suites, MQTT over TLS\n",
			"policy dps: no verdict: no violation in what was probed, but the probe was incomplete\n"}},
		{"after TLS 1.0 accepted", tls.VersionTLS10, 3, cli.ExitNonConformant, []string{
			"  TLS 1.0  accepted", "  TLS 1.1  no answer", "! TLS-002 TLS 1.0 is accepted\n",
			"TLS 1.2 suites accepted: not probed (the probe stopped)\n",
			"not probed: TLS 1.2, TLS 1.3, TLS 1.2 suites, MQTT over TLS\n",
			// and TLS-001: the chain, of a CA not given, does not verify
			"policy dps: 2 violation(s) in what was probed (the probe was incomplete)\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tc.min, MaxVersion: tls.VersionTLS12,
				CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}
			var n atomic.Int32
			l := testListener(t, func(c net.Conn) bool {
				if int(n.Add(1)) > tc.answered {
					return false // held open, unanswered
				}
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_ = tls.Server(c, cfg).Handshake()
				return true
			})
			// Plaintext MQTT is probed on a closed port: refused at once,
			// and no connection to the silent server.
			closed, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			closedPort := strconv.Itoa(closed.Addr().(*net.TCPAddr).Port)
			closed.Close()
			var stdout, stderr bytes.Buffer
			code := cli.Main(context.Background(), []string{"tlsprobe", "--policy", "dps", "--timeout", "300ms", "--server-name", "localhost",
				"--plaintext-port", closedPort, l.Addr().String()}, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.code, stdout.String(), stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			if tc.code == cli.ExitTargetUnreachable && !strings.Contains(stderr.String(), "dps-conform tlsprobe: incomplete probe: the server answered before") {
				t.Errorf("stderr: %s", stderr.String())
			}
			// The handshake left unanswered, and the check after it.
			if got := int(n.Load()) - tc.answered; got != 2 {
				t.Errorf("%d connections after the server went silent, want 2", got)
			}
		})
	}
}
