package emulator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator/registry"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/transport"
)

// testPKI is one CA and server certificate shared by the TLS tests.
var testPKI = sync.OnceValues(func() (*transport.CA, tls.Certificate) {
	now := time.Now()
	ca, err := transport.NewCA("emulator test CA", transport.ECDSAP256, now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		panic(err)
	}
	cert, err := ca.IssueServer([]string{"127.0.0.1", "localhost"}, transport.ECDSAP256, now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		panic(err)
	}
	return ca, cert
})

// startTLS starts a server with the MQTT/TLS and WSS listeners and the fake
// backend.
func startTLS(t testing.TB, cfg Config) (*Server, *x509.CertPool) {
	t.Helper()
	ca, cert := testPKI()
	if cfg.backend == nil {
		cfg.backend = newFakeBackend("dev-1", "dev-2")
	}
	cfg.MQTTAddr, cfg.WSAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return s, pool
}

// handshake dials addr with TLS versions [minV, maxV] (and suites, when
// given) and reports the negotiated version, or the error.
func handshake(t testing.TB, addr string, pool *x509.CertPool, minV, maxV uint16, suites []uint16) (uint16, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		RootCAs: pool, ServerName: "127.0.0.1", MinVersion: minV, MaxVersion: maxV, CipherSuites: suites,
	})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.ConnectionState().Version, nil
}

func TestTLSPolicy(t *testing.T) {
	cbc := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	tests := []struct {
		name       string
		profile    Profile
		faults     []Fault
		minV, maxV uint16
		suites     []uint16
		ok         bool
	}{
		{"TLS 1.2 (dps-2019)", "", nil, tls.VersionTLS12, tls.VersionTLS12, nil, true},
		{"TLS 1.2 (dps-2023)", ProfileDPS2023, nil, tls.VersionTLS12, tls.VersionTLS12, nil, true},
		{"TLS 1.3 only refused", "", nil, tls.VersionTLS13, tls.VersionTLS13, nil, false},
		{"TLS 1.3 only refused (dps-2023)", ProfileDPS2023, nil, tls.VersionTLS13, tls.VersionTLS13, nil, false},
		{"TLS 1.1 refused", "", nil, tls.VersionTLS11, tls.VersionTLS11, cbc, false},
		{"TLS 1.0 refused", "", nil, tls.VersionTLS10, tls.VersionTLS10, cbc, false},
		{"TLS 1.2 with a suite DPS does not list refused", "", nil, tls.VersionTLS12, tls.VersionTLS12, cbc, false},
		{"fault accept-tls13", "", []Fault{FaultAcceptTLS13}, tls.VersionTLS13, tls.VersionTLS13, nil, true},
		{"fault accept-tls10: 1.0", "", []Fault{FaultAcceptTLS10}, tls.VersionTLS10, tls.VersionTLS10, cbc, true},
		{"fault accept-tls10: 1.1", "", []Fault{FaultAcceptTLS10}, tls.VersionTLS11, tls.VersionTLS11, cbc, true},
		{"fault accept-tls10 keeps 1.3 out", "", []Fault{FaultAcceptTLS10}, tls.VersionTLS13, tls.VersionTLS13, nil, false},
		{"fault refuse-tls12: 1.2 refused", "", []Fault{FaultRefuseTLS12}, tls.VersionTLS12, tls.VersionTLS12, nil, false},
		{"fault refuse-tls12: 1.3 accepted", "", []Fault{FaultRefuseTLS12}, tls.VersionTLS13, tls.VersionTLS13, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, pool := startTLS(t, Config{Profile: tt.profile, Faults: tt.faults})
			for _, addr := range []string{s.Ready().MQTT, s.Ready().WSS} {
				v, err := handshake(t, addr, pool, tt.minV, tt.maxV, tt.suites)
				if tt.ok && (err != nil || v != tt.maxV) {
					t.Errorf("%s: version %x, %v; want %x negotiated", addr, v, err, tt.maxV)
				}
				if !tt.ok && err == nil {
					t.Errorf("%s: handshake succeeded with version %x, want it refused", addr, v)
				}
			}
		})
	}
}

// TestTLSClientCertificateRequested checks the server asks for a client
// certificate and hands it to attestation without judging it (Part A §3).
func TestTLSClientCertificateRequested(t *testing.T) {
	var got []*x509.Certificate
	b := &certBackend{fakeBackend: newFakeBackend("dev-1"), seen: func(c []*x509.Certificate) { got = c }}
	s, pool := startTLS(t, Config{backend: b})
	// A self-signed client certificate from an unrelated CA is accepted at TLS.
	other, err := transport.NewCA("unrelated", transport.ECDSAP256, time.Now().Add(-time.Hour), time.Hour*2)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := other.IssueClient("dev-1", transport.ECDSAP256, time.Now().Add(-time.Hour), 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.Ready().MQTT,
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatalf("TLS with an untrusted client certificate: %v (want it accepted at TLS)", err)
	}
	c := newTestClient(t, conn)
	defer conn.Close()
	c.ready("dev-1")
	c.call(dps.RegisterTopic("1"), "")
	if len(got) != 1 || got[0].Subject.CommonName != "dev-1" {
		t.Fatalf("attestation saw %d certificates, want the client's leaf", len(got))
	}
}

// certBackend records the peer certificates Attest sees.
type certBackend struct {
	*fakeBackend
	mu   sync.Mutex
	seen func([]*x509.Certificate)
}

func (b *certBackend) Attest(ctx context.Context, c registry.Credentials, o registry.AttestOptions) (*registry.Attestation, error) {
	b.mu.Lock()
	b.seen(c.PeerCertificates)
	b.mu.Unlock()
	return b.fakeBackend.Attest(ctx, c, o)
}

func TestWebSocketPathsAndSubprotocols(t *testing.T) {
	servers := map[Fault]*Server{}
	var pool *x509.CertPool
	for _, f := range []Fault{"", FaultWSStrictPath, FaultWSStrictSubprotocol} {
		var faults []Fault
		if f != "" {
			faults = []Fault{f}
		}
		servers[f], pool = startTLS(t, Config{Faults: faults})
	}
	tests := []struct {
		fault     Fault
		path, sub string
		ok        bool
	}{
		{"", "/$iothub/websocket", "mqtt", true},
		{"", "/", "mqtt", true},
		{"", "/mqtt", "mqtt", true},
		{"", "/$iothub/websocket", "MQTT", true},
		{"", "/other", "mqtt", false},
		{"", "/$iothub/websocket", "mqttv5", false},
		{FaultWSStrictPath, "/$iothub/websocket", "mqtt", true},
		{FaultWSStrictPath, "/", "mqtt", false},
		{FaultWSStrictPath, "/mqtt", "mqtt", false},
		{FaultWSStrictPath, "/$iothub/websocket", "MQTT", true},
		{FaultWSStrictSubprotocol, "/$iothub/websocket", "mqtt", true},
		{FaultWSStrictSubprotocol, "/", "mqtt", true},
		{FaultWSStrictSubprotocol, "/$iothub/websocket", "MQTT", false},
	}
	for _, tt := range tests {
		t.Run(string(tt.fault)+" "+tt.path+" "+tt.sub, func(t *testing.T) {
			s := servers[tt.fault]
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			target := transport.Target{Scheme: transport.SchemeWSS, Host: "127.0.0.1", Port: portOf(t, s.Ready().WSS), Path: tt.path}
			conn, err := transport.Dial(ctx, target, transport.DialOptions{TLSConfig: &tls.Config{RootCAs: pool}, Subprotocol: tt.sub})
			if !tt.ok {
				var he *transport.WSHandshakeError
				if err == nil || !errors.As(err, &he) || (he.StatusCode != http.StatusNotFound && he.StatusCode != http.StatusBadRequest) {
					t.Fatalf("dial: %v, want a refused upgrade (404 or 400)", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c := newTestClient(t, conn)
			c.ready("dev-1")
			if a := c.call(dps.RegisterTopic("ws"), ""); a.resp.Status != 202 {
				t.Fatalf("register over WebSocket: %s", a.topic)
			}
		})
	}
}

// TestWebSocketByteAtATime sends CONNECT and SUBSCRIBE one byte per
// WebSocket message, as the Node SDK splits fields (Part A §10).
func TestWebSocketByteAtATime(t *testing.T) {
	s, pool := startTLS(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := transport.Dial(ctx, transport.Target{Scheme: transport.SchemeWSS, Host: "127.0.0.1", Port: portOf(t, s.Ready().WSS), Path: transport.DefaultWSPath},
		transport.DialOptions{TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := newTestClient(t, conn)
	b, _ := connectPacket(t, "dev-1").Append(nil)
	for i := range b {
		if err := c.sendRaw(b[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if ack, ok := c.next().(*packets.Connack); !ok || ack.ReturnCode != 0 {
		t.Fatalf("CONNACK %+v", ack)
	}
}

func portOf(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// firstByte records the first byte read through a connection.
type firstByte struct {
	net.Conn
	mu   *sync.Mutex
	seen *[]byte
	done bool
}

func (f *firstByte) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	if n > 0 && !f.done {
		f.done = true
		f.mu.Lock()
		*f.seen = append(*f.seen, p[0])
		f.mu.Unlock()
	}
	return n, err
}

// TestWrapHooks: WrapRaw sees TLS records (0x16 handshake), WrapConn sees
// the MQTT stream (0x10 CONNECT), on both TLS listeners.
func TestWrapHooks(t *testing.T) {
	var mu sync.Mutex
	var raw, plain []byte
	s, pool := startTLS(t, Config{
		WrapRaw:  func(c net.Conn) net.Conn { return &firstByte{Conn: c, mu: &mu, seen: &raw} },
		WrapConn: func(c net.Conn) net.Conn { return &firstByte{Conn: c, mu: &mu, seen: &plain} },
	})
	for _, scheme := range []string{transport.SchemeMQTTS, transport.SchemeWSS} {
		addr := s.Ready().MQTT
		if scheme == transport.SchemeWSS {
			addr = s.Ready().WSS
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := transport.Dial(ctx, transport.Target{Scheme: scheme, Host: "127.0.0.1", Port: portOf(t, addr), Path: transport.DefaultWSPath},
			transport.DialOptions{TLSConfig: &tls.Config{RootCAs: pool}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		c := newTestClient(t, conn)
		c.connack(connectPacket(t, "dev-1"))
		conn.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if string(raw) != "\x16\x16" || string(plain) != "\x10\x10" {
		t.Fatalf("WrapRaw saw first bytes %x, WrapConn %x; want 1616 and 1010", raw, plain)
	}
}

// TestConnectTimeoutOff: a negative ConnectTimeout switches the limit off
// (Limits); the TLS listener set a deadline already past, so every
// handshake was reset (emulator --connect-timeout -1s).
func TestConnectTimeoutOff(t *testing.T) {
	s, pool := startTLS(t, Config{Limits: Limits{ConnectTimeout: -time.Second}})
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.Ready().MQTT, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS with the connect timeout off: %v", err)
	}
	defer conn.Close()
	c := newTestClient(t, conn)
	c.ready("dev-1")
}

// TestConnectTimeoutFromAccept: Limits.ConnectTimeout bounds the TLS
// handshake and the arrival of CONNECT together, from the TCP accept (as
// docs/emulator.md says); the session once started a fresh timeout after
// the handshake, so a client could take nearly twice as long.
func TestConnectTimeoutFromAccept(t *testing.T) {
	s, pool := startTLS(t, Config{Limits: Limits{ConnectTimeout: time.Second}})
	raw, err := net.DialTimeout("tcp", s.Ready().MQTT, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	time.Sleep(600 * time.Millisecond)
	tc := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	// 600 ms more: 1.2 s after the accept, past the timeout.
	time.Sleep(600 * time.Millisecond)
	b, err := connectPacket(t, "dev-1").Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	tc.Write(b) // the server may have closed already
	_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [4]byte
	if n, err := tc.Read(buf[:]); err == nil {
		t.Fatalf("CONNECT 1.2 s after the accept was answered (% x); want the connection closed at 1 s", buf[:n])
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the connection stayed open")
	}
}
