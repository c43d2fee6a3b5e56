package tlsprobe_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/tlsprobe"
	"github.com/dps-conform/dps-conform/transport"
)

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func ids(vs []tlsprobe.Violation) []string {
	var out []string
	for _, v := range vs {
		if !slices.Contains(out, v.ID) {
			out = append(out, v.ID)
		}
	}
	slices.Sort(out)
	return out
}

// TestProbeEmulator probes the reference emulator as it is and with the
// faults that break the DPS TLS profile: each breaks exactly its policy
// requirement.
func TestProbeEmulator(t *testing.T) {
	tests := []struct {
		name    string
		faults  []emulator.Fault
		plain   bool
		want    []string // violated requirement IDs
		version string   // a version that must be accepted
	}{
		{"conformant", nil, false, nil, "TLS 1.2"},
		{"accept-tls13", []emulator.Fault{emulator.FaultAcceptTLS13}, false, []string{"TLS-004"}, "TLS 1.3"},
		{"accept-tls10", []emulator.Fault{emulator.FaultAcceptTLS10}, false, []string{"TLS-001", "TLS-002", "TLS-003"}, "TLS 1.0"},
		{"refuse-tls12", []emulator.Fault{emulator.FaultRefuseTLS12}, false, []string{"TLS-001", "TLS-004"}, "TLS 1.3"},
		{"accept-plaintext", []emulator.Fault{emulator.FaultAcceptPlaintext}, false, []string{"TLS-005"}, "TLS 1.2"},
		{"plaintext listener", nil, true, []string{"TLS-005"}, "TLS 1.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := emulatortest.Start(t, emulatortest.Options{Faults: tt.faults, Plain: tt.plain})
			ports := []int{port(t, e.MQTTAddr)}
			if tt.plain {
				ports = append(ports, port(t, e.PlainAddr))
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r, err := tlsprobe.Probe(ctx, e.MQTTAddr, tlsprobe.Options{RootCAs: e.CAPool, ServerName: "localhost", PlaintextPorts: ports})
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(tlsprobe.PolicyDPS(r, "dps-2019")); !slices.Equal(got, tt.want) {
				t.Errorf("violations %v, want %v: %+v", got, tt.want, tlsprobe.PolicyDPS(r, "dps-2019"))
			}
			ok := false
			for _, v := range r.Versions {
				if v.Version == tt.version {
					ok = v.Accepted
				}
			}
			if !ok {
				t.Errorf("%s not accepted: %+v", tt.version, r.Versions)
			}
			if r.ChainError != "" || len(r.Chain) == 0 || !strings.HasPrefix(r.Chain[0].Key, "ECDSA") || !slices.Contains(r.Chain[0].DNSNames, "localhost") {
				t.Errorf("chain %+v, error %q", r.Chain, r.ChainError)
			}
			// The emulator refuses the probe's CONNECT (no DPS username):
			// 0x04, which proves MQTT over the TLS it accepted.
			if r.MQTT != 4 {
				t.Errorf("CONNACK code %d (%s), want 4", r.MQTT, r.MQTTError)
			}
		})
	}
}

func TestProbeChainAndErrors(t *testing.T) {
	e := emulatortest.Start(t, emulatortest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Without the emulator's CA the chain does not verify: a finding.
	r, err := tlsprobe.Probe(ctx, e.MQTTAddr, tlsprobe.Options{PlaintextPorts: []int{}})
	if err != nil {
		t.Fatal(err)
	}
	if r.ChainError == "" || !slices.Contains(ids(tlsprobe.PolicyDPS(r, "dps-2019")), "TLS-001") {
		t.Errorf("untrusted chain: error %q, violations %v", r.ChainError, tlsprobe.PolicyDPS(r, "dps-2019"))
	}
	// Unreachable and malformed addresses are errors, not findings.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	if _, err := tlsprobe.Probe(ctx, dead, tlsprobe.Options{}); !errors.Is(err, tlsprobe.ErrUnreachable) {
		t.Errorf("probe of a closed port: %v, want ErrUnreachable", err)
	}
	for _, bad := range []string{"nohostport", "127.0.0.1:0", "127.0.0.1:99999"} {
		if _, err := tlsprobe.Probe(ctx, bad, tlsprobe.Options{}); err == nil {
			t.Errorf("probe of %q: no error", bad)
		}
	}
	// A port that accepts TCP and never answers: ErrNoTLS after one
	// handshake's timeout, not one timeout per version and suite (27
	// handshakes) reported as "refused".
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	if _, err := tlsprobe.Probe(ctx, silent.Addr().String(), tlsprobe.Options{Timeout: 200 * time.Millisecond}); !errors.Is(err, tlsprobe.ErrNoTLS) {
		t.Errorf("probe of a silent port: %v, want ErrNoTLS", err)
	}
	// Ports that answer, but not in TLS: an HTTP server, and one that
	// closes at the ClientHello (a plaintext MQTT port).
	for _, tc := range []struct {
		name, want string
		answer     []byte
	}{
		{"HTTP", "bytes that are no TLS record", []byte("HTTP/1.1 400 Bad Request\r\n\r\n")},
		{"closes", "closed the connection at every ClientHello", nil},
	} {
		addr := serveRaw(t, tc.answer)
		_, err := tlsprobe.Probe(ctx, addr, tlsprobe.Options{Timeout: 2 * time.Second})
		if !errors.Is(err, tlsprobe.ErrNoTLS) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("probe of a %s port: %v, want ErrNoTLS saying %q", tc.name, err, tc.want)
		}
	}
}

// serveRaw accepts connections on loopback, reads what comes, writes
// answer and closes.
func serveRaw(t *testing.T, answer []byte) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, l, func(c net.Conn) {
		buf := make([]byte, 512)
		if _, err := c.Read(buf); err == nil && answer != nil {
			c.Write(answer)
		}
	})
	return l.Addr().String()
}

// TestProbeLargeHelloIntolerant: a TLS server (or a middlebox before it)
// that drops a large ClientHello without an alert is still a TLS server:
// the probe goes on, and finds TLS 1.2 accepted.
func TestProbeLargeHelloIntolerant(t *testing.T) {
	cert := localhostCert(t)
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, l, func(c net.Conn) {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(c, hdr); err != nil || int(hdr[3])<<8|int(hdr[4]) > 700 {
			return // closed without an alert
		}
		tls.Server(&prefixConn{Conn: c, r: io.MultiReader(bytes.NewReader(hdr), c)}, conf).Handshake()
	})
	r, err := tlsprobe.Probe(context.Background(), l.Addr().String(), tlsprobe.Options{ServerName: "localhost", PlaintextPorts: []int{}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(r.Versions, func(v tlsprobe.VersionResult) bool { return v.Version == "TLS 1.2" }); i < 0 || !r.Versions[i].Accepted {
		t.Errorf("versions %+v: want TLS 1.2 accepted", r.Versions)
	}
}

// prefixConn reads from r (bytes already read, then the connection).
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// localhostCert is a server certificate for localhost from a fresh CA.
func localhostCert(t *testing.T) tls.Certificate {
	t.Helper()
	ca, err := transport.NewCA("probe test CA", transport.ECDSAP256, time.Now().Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueServer([]string{"localhost"}, transport.ECDSAP256, time.Now().Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// serve handles each connection of l (closed at the test's end) with
// handle, within 5 s, then closes it.
func serve(t *testing.T, l net.Listener, handle func(net.Conn)) {
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				handle(c)
			}()
		}
	}()
}

// TestProbeTLS12SuitesBeyondGoDefaults: a server that accepts TLS 1.2
// only with a suite DPS recommends but Go's client does not offer by
// default (ECDHE-ECDSA-AES128-CBC-SHA256) is seen accepting TLS 1.2, and
// the MQTT CONNECT over that TLS gets through (it offers the same suites).
func TestProbeTLS12SuitesBeyondGoDefaults(t *testing.T) {
	cert := localhostCert(t)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, l, func(c net.Conn) {
		// Answer a CONNECT as DPS answers one without credentials: 0x04.
		if _, err := c.Read(make([]byte, 512)); err == nil {
			c.Write([]byte{0x20, 0x02, 0x00, 0x04})
		}
	})
	r, err := tlsprobe.Probe(context.Background(), l.Addr().String(), tlsprobe.Options{ServerName: "localhost", PlaintextPorts: []int{}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range r.Versions {
		if v.Accepted != (v.Version == "TLS 1.2") {
			t.Errorf("%s accepted %v (%s)", v.Version, v.Accepted, v.Error)
		}
	}
	if !slices.Equal(r.Suites, []string{"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"}) || !r.SuitesProbed || len(r.Chain) != 1 {
		t.Errorf("suites %v, chain of %d", r.Suites, len(r.Chain))
	}
	if r.MQTT != 4 {
		t.Errorf("CONNACK code %d (%s), want 4", r.MQTT, r.MQTTError)
	}
}

// TestPolicyDPSTLS12Missing: TLS-001 says whether TLS 1.2 was refused or
// got no answer.
func TestPolicyDPSTLS12Missing(t *testing.T) {
	for _, tc := range []struct {
		v    tlsprobe.VersionResult
		want string
	}{
		{tlsprobe.VersionResult{Version: "TLS 1.2", Error: "remote error: tls: handshake failure"}, "TLS 1.2 is refused (remote error: tls: handshake failure), offered with every TLS 1.2 suite Go implements; not probed: the two ECDHE CBC-SHA384 suites DPS also lists, which Go does not implement"},
		{tlsprobe.VersionResult{Version: "TLS 1.2", TimedOut: true}, "TLS 1.2 got no answer within the timeout"},
	} {
		vs := tlsprobe.PolicyDPS(&tlsprobe.Result{Versions: []tlsprobe.VersionResult{tc.v}, MQTT: -1}, "dps-2019")
		if len(vs) == 0 || vs[0].ID != "TLS-001" || vs[0].Msg != tc.want {
			t.Errorf("%+v: violations %+v, want first TLS-001 %q", tc.v, vs, tc.want)
		}
	}
}

// TestProbeSuitesOnlyWhenTLS12Accepted: a server refusing TLS 1.2 (or
// not answering it) is not offered each TLS 1.2 suite alone: 23 more
// handshakes refused, or 23 more timeouts, say nothing new.
func TestProbeSuitesOnlyWhenTLS12Accepted(t *testing.T) {
	cert := localhostCert(t)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	conns := 0
	serve(t, l, func(c net.Conn) {
		mu.Lock()
		conns++
		mu.Unlock()
		c.(*tls.Conn).Handshake()
	})
	r, err := tlsprobe.Probe(context.Background(), l.Addr().String(), tlsprobe.Options{ServerName: "localhost", PlaintextPorts: []int{}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Suites) != 0 || r.SuitesProbed {
		t.Errorf("suites %v (probed %v), want none, not probed", r.Suites, r.SuitesProbed)
	}
	mu.Lock()
	defer mu.Unlock()
	// TCP, the ClientHello offering everything, four versions, MQTT.
	if conns > 7 {
		t.Errorf("%d connections, want at most 7 (no suite offered alone)", conns)
	}
}

// goesSilent is a TLS 1.2 server (crypto/tls, an ECDSA certificate) on a
// loopback port that completes the handshakes of its first answered
// connections and then accepts connections but never answers them; also
// silent to a hello for which silent says so. It reports how many
// connections it held unanswered.
func goesSilent(t *testing.T, answered int, silent func(*tls.ClientHelloInfo) bool) (addr string, unanswered func() int) {
	t.Helper()
	cert := localhostCert(t)
	done := make(chan struct{})
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
		GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			if silent != nil && silent(hi) {
				<-done
			}
			return nil, nil
		}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n, held := 0, 0
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		close(done)
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			n++
			if n > answered {
				held++
				conns = append(conns, c) // unread until the test ends
				mu.Unlock()
				continue
			}
			mu.Unlock()
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_ = tls.Server(c, cfg).Handshake()
			}()
		}
	}()
	return l.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return held }
}

// TestProbeServerGoesSilent: a server that answered the first handshake
// and then answers none costs two handshakes' timeouts (the one that got
// no answer and the check after it, offering everything), not one per
// version and suite left: the probe stops, says why and what it did not
// probe, and the policy judges only what was probed.
func TestProbeServerGoesSilent(t *testing.T) {
	for _, tc := range []struct {
		name         string
		answered     int
		notProbed    []string
		versions     string // each version's state: a accepted, r refused, t no answer, - not probed
		suitesProbed bool
		suitesLeft   bool
		chain        bool
		silentAt     string
	}{
		// Connections: 1 the TCP check (closed at once), 2 the first
		// handshake, 3-6 TLS 1.0 to 1.3, 7 on the suites one by one.
		{"after the first", 2, []string{"TLS 1.1", "TLS 1.2", "TLS 1.3", "TLS 1.2 suites", "MQTT over TLS"}, "t---", false, false, false, "the TLS 1.0 handshake"},
		// Silent at TLS 1.2 itself: its timeout is the server's
		// silence, not TLS 1.2's refusal (no TLS-001), and the suites
		// are unknown, not "TLS 1.2 not accepted".
		{"at TLS 1.2", 4, []string{"TLS 1.3", "TLS 1.2 suites", "MQTT over TLS"}, "rrt-", false, false, false, "the TLS 1.2 handshake"},
		{"after TLS 1.2", 5, []string{"TLS 1.2 suites", "MQTT over TLS"}, "rrat", false, false, true, "the TLS 1.3 handshake"},
		{"among the suites", 8, []string{"TLS 1.2 suites", "MQTT over TLS"}, "rrar", true, true, true, "handshake nor one offering every version and suite within 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, unanswered := goesSilent(t, tc.answered, nil)
			r, err := tlsprobe.Probe(context.Background(), addr, tlsprobe.Options{Timeout: 300 * time.Millisecond, ServerName: "localhost", PlaintextPorts: []int{}})
			if err != nil {
				t.Fatal(err)
			}
			var states string
			for _, v := range r.Versions {
				switch {
				case v.Accepted:
					states += "a"
				case v.NotProbed:
					states += "-"
				case v.TimedOut:
					states += "t"
				default:
					states += "r"
				}
			}
			if states != tc.versions || !slices.Equal(r.NotProbed, tc.notProbed) || r.SuitesProbed != tc.suitesProbed ||
				(len(r.SuitesNotProbed) > 0) != tc.suitesLeft || (len(r.Chain) > 0) != tc.chain ||
				!strings.Contains(r.Incomplete, tc.silentAt) || !strings.Contains(r.Incomplete, "it went silent") || r.MQTT != -1 {
				t.Errorf("versions %q (want %q), not probed %q (want %q), suites probed %v, not probed %q, chain %d, incomplete %q",
					states, tc.versions, r.NotProbed, tc.notProbed, r.SuitesProbed, r.SuitesNotProbed, len(r.Chain), r.Incomplete)
			}
			if tc.suitesLeft && len(r.SuitesNotProbed) != len(tlsprobe.Suites(tls.VersionTLS12))-3 {
				t.Errorf("%d suites not probed, want all but the 3 tried", len(r.SuitesNotProbed))
			}
			// The handshake that got no answer, and the check: no more.
			if n := unanswered(); n != 2 {
				t.Errorf("%d handshakes went unanswered, want 2", n)
			}
			// Only what was probed is judged: no "TLS 1.2 refused" for a
			// version never offered, no "no MQTT" for MQTT never tried.
			for _, v := range tlsprobe.PolicyDPS(r, "dps-2019") {
				if strings.Contains(v.Msg, "refused") || strings.Contains(v.Msg, "MQTT") || strings.Contains(v.Msg, "no answer") {
					t.Errorf("violation of what was not probed: %+v", v)
				}
			}
		})
	}
	// A server that leaves only TLS 1.0 hellos unanswered still answers
	// the check: that is its answer to TLS 1.0, and the probe goes on.
	t.Run("TLS 1.0 unanswered only", func(t *testing.T) {
		addr, _ := goesSilent(t, 1000, func(hi *tls.ClientHelloInfo) bool {
			return slices.Equal(hi.SupportedVersions, []uint16{tls.VersionTLS10})
		})
		r, err := tlsprobe.Probe(context.Background(), addr, tlsprobe.Options{Timeout: 300 * time.Millisecond, ServerName: "localhost", PlaintextPorts: []int{}})
		if err != nil {
			t.Fatal(err)
		}
		if r.Incomplete != "" || len(r.NotProbed) > 0 || !r.SuitesProbed || len(r.Suites) == 0 || !r.Versions[0].TimedOut || !r.Versions[2].Accepted {
			t.Errorf("incomplete %q, not probed %q, suites %v %q, versions %+v", r.Incomplete, r.NotProbed, r.SuitesProbed, r.Suites, r.Versions)
		}
	})
}
