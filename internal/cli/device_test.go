package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
)

// TestNoVerdictReason: a run is judged only when, in a scenario that
// serves DPS, the device connected, sent CONNECT, registered and polled on
// to an answer that ends the operation; the reason names what was missing.
func TestNoVerdictReason(t *testing.T) {
	// finals are 200 answers (assigned) except in unauthorized-401,
	// enrollment-disabled and enrollment-failed (a 200 with status
	// disabled or failed: no assignment).
	run := func(name string, conns, connects, registers, finals int) *scenarioRun {
		r := &scenarioRun{accepted: conns, conversations: conns, connects: connects, registers: registers, finals: finals}
		if name != "unauthorized-401" && name != "enrollment-disabled" && name != "enrollment-failed" {
			r.assigned = finals
		}
		r.Name = name
		return r
	}
	// refused is a run whose registration ended with an error status.
	refused := func(name string, status int) *scenarioRun {
		r := run(name, 1, 1, 1, 1)
		r.assigned, r.refusedStatus = 0, status
		return r
	}
	for _, tc := range []struct {
		name string
		runs []*scenarioRun
		want string // substring of the reason; "" for a verdict
	}{
		{"never connected", []*scenarioRun{run("normal", 0, 0, 0, 0)}, "never connected in any scenario"},
		{"TCP only", []*scenarioRun{{accepted: 2}}, "opened 2 TCP connection(s) but sent no TLS ClientHello"},
		{"TLS scenarios only", []*scenarioRun{run("normal", 0, 0, 0, 0), run("tls-expired", 1, 0, 0, 0)}, "only in the TLS scenarios"},
		{"no CONNECT", []*scenarioRun{run("normal", 2, 0, 0, 0)}, "connected 2 time(s) but sent no CONNECT"},
		{"no register", []*scenarioRun{run("normal", 1, 1, 0, 0)}, "sent CONNECT but no register request"},
		{"registered, no final status", []*scenarioRun{run("normal", 1, 1, 1, 0)}, "registered but never polled to a final status"},
		{"provisioned", []*scenarioRun{run("normal", 1, 1, 1, 1)}, ""},
		{"401 ends the operation", []*scenarioRun{run("unauthorized-401", 1, 1, 1, 1)}, ""},
		{"disabled ends the operation", []*scenarioRun{run("enrollment-disabled", 1, 1, 1, 1)}, ""},
		// The 200 with status disabled is no assignment: it does not see
		// normal's flow through.
		{"202 then gone, disabled elsewhere", []*scenarioRun{run("normal", 1, 1, 1, 0), run("enrollment-disabled", 1, 1, 1, 1)}, "registered but never polled to a final status"},
		{"failed ends the operation", []*scenarioRun{run("enrollment-failed", 1, 1, 1, 1)}, ""},
		{"202 then gone, failed elsewhere", []*scenarioRun{run("normal", 1, 1, 1, 0), run("enrollment-failed", 1, 1, 1, 1)}, "registered but never polled to a final status"},
		// One scenario seen through is enough: a device may rightly stop
		// early in another.
		{"one scenario through", []*scenarioRun{run("connack-withheld", 1, 1, 0, 0), run("normal", 1, 1, 1, 1)}, ""},
		{"a TLS scenario does not count", []*scenarioRun{run("normal", 1, 1, 0, 0), run("tls-untrusted-ca", 1, 1, 1, 1)}, "no register request"},
		{"TLS scenarios only, judged on them", []*scenarioRun{run("tls-expired", 1, 0, 0, 0)}, ""},
		// The steps must come together in one scenario, and where a
		// scenario assigns, the final answer must be its 200: a device
		// that registers, gets 202 and goes away in normal is not seen
		// through by the 401 of unauthorized-401.
		{"202 then gone, 401 elsewhere", []*scenarioRun{run("normal", 1, 1, 1, 0), run("unauthorized-401", 1, 1, 1, 1)}, "registered but never polled to a final status"},
		// connack-withheld assigns a device that reconnects: its 200
		// sees the flow through.
		{"assigned after a withheld CONNACK", []*scenarioRun{run("normal", 1, 1, 1, 0), run("connack-withheld", 2, 1, 1, 1)}, ""},
		// A device the service refused where it should have been
		// assigned (a wrong key or certificate: 401 in normal) did reach
		// a final status; the reason says it was refused, not that it
		// never polled to one.
		{"refused where it should be assigned", []*scenarioRun{refused("normal", 401)}, "the service ended its registration with status 401 in normal"},
		{"refused, and 202 then gone elsewhere", []*scenarioRun{run("register-429", 1, 1, 1, 0), refused("normal", 401)}, "status 401 in normal"},
		{"steps split across scenarios", []*scenarioRun{run("normal", 1, 1, 0, 0), run("register-429", 1, 1, 1, 0), run("poll-429", 1, 0, 0, 1)}, "registered but never polled to a final status"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := noVerdictReason(tc.runs, true, "")
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("noVerdictReason = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestNoVerdictReasonNamesDeviceLog: a device run with --exec that never
// connected is pointed at what the device printed (a missing module, a bad
// flag), kept next to the capture, not only at --exec.
func TestNoVerdictReasonNamesDeviceLog(t *testing.T) {
	r := &scenarioRun{}
	r.Name, r.Pcap = "normal", "out/pcaps/01-normal.pcapng"
	got := noVerdictReason([]*scenarioRun{r}, true, "")
	if !strings.Contains(got, "out/pcaps/01-normal.log") {
		t.Errorf("noVerdictReason = %q, want it to name the device's log out/pcaps/01-normal.log", got)
	}
}

// TestNoVerdictReasonNamesTheRunsCredentials: a device refused where it
// should have been assigned is pointed at the credentials of its own run's
// attestation: with --device-cert there is no DPS_KEY_FILE (the device has
// its key), and the certificate it presents must be the one enrolled.
func TestNoVerdictReasonNamesTheRunsCredentials(t *testing.T) {
	r := &scenarioRun{accepted: 1, conversations: 1, connects: 1, registers: 1, finals: 1, refusedStatus: 401}
	r.Name = "normal"
	for _, tc := range []struct {
		name      string
		f         deviceFlags
		want, not []string
	}{
		{"symmetric key", deviceFlags{attestation: attestSymmetricKey}, []string{"DPS_REGISTRATION_ID", "DPS_SYMMETRIC_KEY"}, []string{"DPS_CERT_FILE", "DPS_KEY_FILE"}},
		{"x509", deviceFlags{attestation: attestX509}, []string{"DPS_CERT_FILE", "DPS_KEY_FILE"}, []string{"DPS_SYMMETRIC_KEY"}},
		{"device cert", deviceFlags{attestation: attestX509, deviceCert: "/d/thermostat-7.pem", deviceCertPEM: []byte("x")}, []string{"--device-cert /d/thermostat-7.pem"}, []string{"DPS_KEY_FILE", "DPS_SYMMETRIC_KEY"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := noVerdictReason([]*scenarioRun{r}, true, tc.f.credentialsHint())
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("noVerdictReason = %q, want it to name %s", got, w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(got, n) {
					t.Errorf("noVerdictReason = %q, names %s, which this run did not give", got, n)
				}
			}
		})
	}
}

// TestFinalAnswer: 200 and the errors a device does not retry end an
// operation; 202 and the transient answers (429, 5xx) do not.
func TestAssignment(t *testing.T) {
	for body, want := range map[string]bool{
		`{"operationId":"4.a.b","status":"assigned"}`:                                        true,
		`{"operationId":"","status":"disabled","registrationState":{"status":"disabled"}}`:   false,
		`{"operationId":"4.a.b","status":"failed","registrationState":{"errorCode":400207}}`: false,
		`not json`: true,
	} {
		if got := assignment([]byte(body)); got != want {
			t.Errorf("assignment(%s) = %v, want %v", body, got, want)
		}
	}
}

func TestFinalAnswer(t *testing.T) {
	for _, tc := range []struct {
		topic string
		want  bool
	}{
		{dps.ResponseTopic(200, "1", -1), true},
		{dps.ResponseTopic(401, "1", -1), true},
		{dps.ResponseTopic(400, "1", -1), true},
		{dps.ResponseTopic(202, "1", 3), false},
		{dps.ResponseTopic(429, "1", 3), false},
		{dps.ResponseTopic(500, "1", -1), false},
		{"$dps/registrations/res/200", false}, // no query: not an answer
	} {
		if got, _ := finalAnswer(tc.topic); got != tc.want {
			t.Errorf("finalAnswer(%q) = %v, want %v", tc.topic, got, tc.want)
		}
	}
}

// TestRunDeviceStopsGroup: what --exec CMD started in the background does
// not outlive the scenario, whether CMD exits on its own or is stopped at
// the scenario timeout (or an interrupt: the same cancelled ctx).
func TestRunDeviceStopsGroup(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	for _, tc := range []struct {
		name, cmd string
		timeout   time.Duration
		want      string
	}{
		{"CMD exits, a child left running", "sleep 287 & echo $! > pid; exit 0", 20 * time.Second, "exited: 0"},
		{"scenario timeout", "sleep 287 & echo $! > pid; sleep 100", time.Second, "killed at the scenario timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			got := runDevice(ctx, "cd "+dir+"; "+tc.cmd, nil, filepath.Join(dir, "log"))
			if got != tc.want {
				t.Errorf("runDevice = %q, want %q", got, tc.want)
			}
			b, err := os.ReadFile(filepath.Join(dir, "pid"))
			if err != nil {
				t.Fatal(err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			// Gone, or a zombie waiting for init to reap it; not running.
			deadline := time.Now().Add(5 * time.Second)
			for alive(pid) {
				if time.Now().After(deadline) {
					syscall.Kill(pid, syscall.SIGKILL)
					t.Fatalf("the background child %d of CMD still runs after the scenario", pid)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestRunDeviceLogCapped: a device that prints without end keeps the
// first maxDeviceLog bytes in its log, and a last line saying how much
// more it printed; it runs on undisturbed (its writes never fail). The log
// of 'yes' grew by 1.4 GB in a 3 s scenario, and the results could not
// be sealed. What a device prints in a scenario's last moment is kept
// too, and a setsid child holding the output open does not hold up the
// scenario.
func TestRunDeviceLogCapped(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	got := runDevice(context.Background(), fmt.Sprintf("head -c %d /dev/zero | tr '\\0' y; echo; echo last line", maxDeviceLog+100000), nil, log)
	if got != "exited: 0" {
		t.Errorf("runDevice = %q, want exited: 0 (the writes must not fail)", got)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	note := fmt.Sprintf("\n[dps-conform: the device printed %d bytes more; this log keeps the first %d]\n", 100000+len("\nlast line\n"), maxDeviceLog)
	if len(b) != maxDeviceLog+len(note) || !strings.HasSuffix(string(b), note) {
		t.Errorf("log of %d bytes ending %q; want %d bytes and the note %q", len(b), b[max(0, len(b)-120):], maxDeviceLog+len(note), note)
	}

	// Were the setsid child (which outlives ctx) to hold the scenario up,
	// ctx would end it: "killed at the scenario timeout", not "exited: 0".
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got = runDevice(ctx, "setsid sleep 12 & sleep 0.2; echo bye", nil, log)
	if got != "exited: 0" {
		t.Errorf("runDevice = %q, want exited: 0 before the scenario's end", got)
	}
	if b, _ := os.ReadFile(log); string(b) != "bye\n" {
		t.Errorf("log %q, want %q", b, "bye\n")
	}
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestCheckLoopbackHost: --host NAME is refused unless every address it
// resolves to is loopback; an IP address is not looked up.
func TestCheckLoopbackHost(t *testing.T) {
	addrs := func(ss ...string) []net.IPAddr {
		var out []net.IPAddr
		for _, s := range ss {
			out = append(out, net.IPAddr{IP: net.ParseIP(s)})
		}
		return out
	}
	for _, tc := range []struct {
		name, host string
		addrs      []net.IPAddr
		err        error
		want       string // substring of the error; "" for none
	}{
		{"IPv4 loopback", "localhost", addrs("127.0.0.1"), nil, ""},
		{"both loopbacks", "localhost", addrs("127.0.0.1", "::1"), nil, ""},
		// The emulator listens on 127.0.0.1 for a name: a device told a
		// name that resolves elsewhere could not reach it.
		{"another loopback address", "dut.test", addrs("127.0.0.2"), nil, `--host "dut.test": resolves to 127.0.0.2 but not to 127.0.0.1`},
		{"IPv6 loopback only", "ip6-localhost", addrs("::1"), nil, `but not to 127.0.0.1`},
		{"one address not loopback", "dut.test", addrs("127.0.0.1", "192.0.2.7"), nil, `--host "dut.test": resolves to 192.0.2.7, not a loopback address`},
		{"not loopback", "example.com", addrs("93.184.216.34"), nil, `--host "example.com": resolves to 93.184.216.34, not a loopback address`},
		{"does not resolve", "nonexistent.invalid", nil, &net.DNSError{Err: "no such host", Name: "nonexistent.invalid", IsNotFound: true}, `--host "nonexistent.invalid": does not resolve: `},
		{"no address", "empty.test", nil, nil, `--host "empty.test": does not resolve: no address`},
		{"an IP address is not looked up", "127.0.0.1", nil, errors.New("looked up"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(context.Context, string) ([]net.IPAddr, error) { return tc.addrs, tc.err }
			err := checkLoopbackHost(context.Background(), tc.host, lookup)
			var ue *UsageError
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("checkLoopbackHost(%q) = %v, want nil", tc.host, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("checkLoopbackHost(%q) = %v, want %q", tc.host, err, tc.want)
			case tc.want != "" && !errors.As(err, &ue):
				t.Errorf("checkLoopbackHost(%q) = %T, want a *UsageError (exit 2)", tc.host, err)
			}
		})
	}
}

// TestRunDeviceCredentialsNotInherited: the device gets the credentials of
// its scenario only. A DPS_SYMMETRIC_KEY, DPS_GROUP_KEY, DPS_CERT_FILE or
// DPS_KEY_FILE left in the caller's environment (exported by hand from the
// printed settings, or for interop/node/provision.js) would reach the
// device beside the ones given: with --attestation x509 the Node sample
// then attests with the stale key, connects without its certificate, and
// the run fails DPS-DEV-006, a false NON-CONFORMANT.
func TestRunDeviceCredentialsNotInherited(t *testing.T) {
	for _, k := range []string{"DPS_SYMMETRIC_KEY", "DPS_GROUP_KEY", "DPS_CERT_FILE", "DPS_KEY_FILE"} {
		t.Setenv(k, "stale")
	}
	t.Setenv("DPS_TIMEOUT_MS", "1234") // not the device role's: kept
	for _, tc := range []struct {
		name string
		vars []string
		want map[string]string // "" for unset
	}{
		{"x509", []string{"DPS_ATTESTATION=x509", "DPS_CERT_FILE=c.pem", "DPS_KEY_FILE=k.pem"},
			map[string]string{"DPS_SYMMETRIC_KEY": "", "DPS_GROUP_KEY": "", "DPS_CERT_FILE": "c.pem", "DPS_KEY_FILE": "k.pem", "DPS_TIMEOUT_MS": "1234"}},
		{"symmetric-key", []string{"DPS_ATTESTATION=symmetric-key", "DPS_SYMMETRIC_KEY=fresh"},
			map[string]string{"DPS_SYMMETRIC_KEY": "fresh", "DPS_GROUP_KEY": "", "DPS_CERT_FILE": "", "DPS_KEY_FILE": "", "DPS_TIMEOUT_MS": "1234"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var cmd strings.Builder
			cmd.WriteString("cd " + dir)
			for k := range tc.want {
				fmt.Fprintf(&cmd, "; printf '%%s\\n' \"${%s-}\" > %s", k, k)
			}
			if got := runDevice(context.Background(), cmd.String(), tc.vars, filepath.Join(dir, "log")); got != "exited: 0" {
				t.Fatalf("runDevice = %q", got)
			}
			for k, want := range tc.want {
				b, err := os.ReadFile(filepath.Join(dir, k))
				if err != nil {
					t.Fatal(err)
				}
				if got := strings.TrimSuffix(string(b), "\n"); got != want {
					t.Errorf("the device saw %s=%q, want %q", k, got, want)
				}
			}
		})
	}
}
