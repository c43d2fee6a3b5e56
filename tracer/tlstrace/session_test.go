package tlstrace

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// chunk is one Write on a recorded connection.
type chunk struct {
	dir  Dir
	data []byte
}

// recorder collects the Writes of both ends of a connection in order.
type recorder struct {
	mu     sync.Mutex
	chunks []chunk
}

// recConn records every Write with the recorder's mutex held, so the
// order of the log is the order in which bytes entered the wire.
type recConn struct {
	net.Conn
	rec *recorder
	dir Dir
}

func (c *recConn) Write(b []byte) (int, error) {
	c.rec.mu.Lock()
	c.rec.chunks = append(c.rec.chunks, chunk{c.dir, append([]byte(nil), b...)})
	n, err := c.Conn.Write(b)
	c.rec.mu.Unlock()
	return n, err
}

// session is a recorded TLS connection plus what each side wrote.
type session struct {
	chunks            []chunk
	keyLog            []byte
	c2s, s2c          []byte // application data written
	clientCertificate bool
	serverDER         []byte
}

type sessionOpts struct {
	version    uint16 // max version
	minVersion uint16 // server min version
	suite      uint16 // TLS 1.2 suite (0: default)
	clientCert bool
	size       int // bytes of application data in each direction
	// curves, when set, are the only groups the server accepts: P-384
	// makes a Go client's first key share unusable, so the server sends a
	// HelloRetryRequest (TLS 1.3).
	curves []tls.CurveID
}

var (
	certOnce sync.Once
	srvCert  tls.Certificate
	cliCert  tls.Certificate
	certErr  error
)

func makeCert(cn string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(4e9, 0),
		DNSNames: []string{cn}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func certs(t testing.TB) {
	certOnce.Do(func() {
		srvCert, certErr = makeCert("server.test")
		if certErr == nil {
			cliCert, certErr = makeCert("client.test")
		}
	})
	if certErr != nil {
		t.Fatal(certErr)
	}
}

// record runs a crypto/tls client and server over loopback TCP and
// records both directions. The client writes o.size bytes, the server
// reads them and writes o.size bytes back.
func record(t testing.TB, o sessionOpts) *session {
	t.Helper()
	certs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rec := &recorder{}
	var kl bytes.Buffer
	s := &session{c2s: make([]byte, o.size), s2c: make([]byte, o.size)}
	for i := range s.c2s {
		s.c2s[i] = byte(i * 7)
		s.s2c[i] = byte(i*13 + 1)
	}
	srvCfg := &tls.Config{Certificates: []tls.Certificate{srvCert}, MinVersion: o.minVersion, MaxVersion: o.version, NextProtos: []string{"mqtt"}, CurvePreferences: o.curves}
	if o.clientCert {
		srvCfg.ClientAuth = tls.RequireAnyClientCert
	} else {
		srvCfg.ClientAuth = tls.RequestClientCert
	}
	cliCfg := &tls.Config{InsecureSkipVerify: true, ServerName: "server.test", MaxVersion: o.version, MinVersion: tls.VersionTLS10,
		KeyLogWriter: &kl, NextProtos: []string{"mqtt", "x"}}
	if o.suite != 0 {
		cliCfg.CipherSuites = []uint16{o.suite}
	}
	if o.clientCert {
		cliCfg.Certificates = []tls.Certificate{cliCert}
	}
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		tc := tls.Server(&recConn{c, rec, ServerToClient}, srvCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			srvErr <- err
			return
		}
		got := make([]byte, o.size)
		if _, err := io.ReadFull(tc, got); err != nil {
			srvErr <- err
			return
		}
		if !bytes.Equal(got, s.c2s) {
			srvErr <- errors.New("server read wrong data")
			return
		}
		if _, err := tc.Write(s.s2c); err != nil {
			srvErr <- err
			return
		}
		srvErr <- tc.Close()
	}()
	d := net.Dialer{}
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	tc := tls.Client(&recConn{c, rec, ClientToServer}, cliCfg)
	herr := tc.HandshakeContext(ctx)
	if herr == nil {
		if _, err := tc.Write(s.c2s); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(tc)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, s.s2c) {
			t.Fatal("client read wrong data")
		}
		s.serverDER = tc.ConnectionState().PeerCertificates[0].Raw
	}
	_ = tc.Close()
	serr := <-srvErr
	if herr == nil && serr != nil {
		t.Fatalf("server: %v", serr)
	}
	rec.mu.Lock()
	s.chunks = rec.chunks
	rec.mu.Unlock()
	s.keyLog = kl.Bytes()
	s.clientCertificate = o.clientCert
	return s
}

// replay feeds the recorded chunks split by split into a new Stream and
// returns the plaintext of each direction.
func replay(t testing.TB, s *session, kl *KeyLog, split func([]byte) [][]byte) (*Stream, [2][]byte, []error) {
	st := NewStream(kl)
	var pt [2][]byte
	var errs []error
	for _, c := range s.chunks {
		for _, p := range split(c.data) {
			out, err := st.Feed(c.dir, p)
			pt[c.dir] = append(pt[c.dir], out...)
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return st, pt, errs
}

func whole(b []byte) [][]byte { return [][]byte{b} }

func byteAtATime(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

func mustKeyLog(t testing.TB, b []byte) *KeyLog {
	t.Helper()
	kl, err := ParseKeyLog(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return kl
}

func TestDecryptRealSessions(t *testing.T) {
	type tc struct {
		name  string
		o     sessionOpts
		suite uint16
	}
	var cases []tc
	for _, suite := range []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	} {
		for _, cc := range []bool{false, true} {
			cases = append(cases, tc{SuiteName(suite) + map[bool]string{false: "", true: "/clientcert"}[cc],
				sessionOpts{version: tls.VersionTLS12, suite: suite, clientCert: cc, size: 40000}, suite})
		}
	}
	for _, cc := range []bool{false, true} {
		cases = append(cases, tc{"TLS13" + map[bool]string{false: "", true: "/clientcert"}[cc],
			sessionOpts{version: tls.VersionTLS13, clientCert: cc, size: 40000}, 0})
	}
	// A HelloRetryRequest, then the middlebox-compatibility
	// ChangeCipherSpecs and the second ClientHello (RFC 8446 §4.1.4, D.4).
	cases = append(cases, tc{"TLS13/HelloRetryRequest", sessionOpts{version: tls.VersionTLS13, size: 40000, curves: []tls.CurveID{tls.CurveP384}}, 0})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := record(t, c.o)
			kl := mustKeyLog(t, s.keyLog)
			for name, split := range map[string]func([]byte) [][]byte{"whole": whole, "byte": byteAtATime} {
				st, pt, errs := replay(t, s, kl, split)
				if len(errs) > 0 {
					t.Fatalf("%s: errors: %v", name, errs)
				}
				if !bytes.Equal(pt[ClientToServer], s.c2s) {
					t.Fatalf("%s: c2s plaintext %d bytes, want %d", name, len(pt[0]), len(s.c2s))
				}
				if !bytes.Equal(pt[ServerToClient], s.s2c) {
					t.Fatalf("%s: s2c plaintext %d bytes, want %d", name, len(pt[1]), len(s.s2c))
				}
				f := st.Facts()
				if !f.ClientHello || !f.ServerHello || !f.KeyLogFound || !f.Decrypted {
					t.Fatalf("%s: facts %+v", name, f)
				}
				if f.SNI != "server.test" || len(f.ALPN) != 2 || f.ALPN[0] != "mqtt" || f.ALPNSelected != "mqtt" {
					t.Errorf("SNI %q ALPN %q selected %q", f.SNI, f.ALPN, f.ALPNSelected)
				}
				if f.Version != c.o.version {
					t.Errorf("Version %s, want %s", VersionName(f.Version), VersionName(c.o.version))
				}
				if c.suite != 0 && f.Suite != c.suite {
					t.Errorf("Suite %s, want %s", SuiteName(f.Suite), SuiteName(c.suite))
				}
				if !f.ClientCertificateKnown || f.ClientCertificate != c.o.clientCert {
					t.Errorf("ClientCertificate %v known %v, want %v", f.ClientCertificate, f.ClientCertificateKnown, c.o.clientCert)
				}
				if len(f.ServerCertificates) != 1 || !bytes.Equal(f.ServerCertificates[0], s.serverDER) {
					t.Errorf("ServerCertificates: %d certs", len(f.ServerCertificates))
				}
				// close_notify from both sides, encrypted.
				if len(f.Alerts) == 0 || !f.Alerts[0].Encrypted || f.Alerts[0].String() != "warning close_notify" {
					t.Errorf("Alerts %v", f.Alerts)
				}
			}
		})
	}
}

// TestTLS13Suites decrypts a real TLS 1.3 session of each suite crypto/tls
// can be made to negotiate: AES-128-GCM by default, ChaCha20-Poly1305 when
// AES hardware support is switched off with GODEBUG=cpu.aes=off (run in a
// child test process).
func TestTLS13Suites(t *testing.T) {
	want := uint16(tls.TLS_AES_128_GCM_SHA256)
	if os.Getenv("TLSTRACE_CHILD") == "noaes" {
		want = tls.TLS_CHACHA20_POLY1305_SHA256
	} else {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTLS13Suites$", "-test.count=1")
		cmd.Env = append(os.Environ(), "TLSTRACE_CHILD=noaes", "GODEBUG=cpu.aes=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child with GODEBUG=cpu.aes=off: %v\n%s", err, out)
		}
	}
	s := record(t, sessionOpts{version: tls.VersionTLS13, size: 20000, clientCert: true})
	st, pt, errs := replay(t, s, mustKeyLog(t, s.keyLog), whole)
	if got := st.Facts().Suite; got != want && (want != tls.TLS_AES_128_GCM_SHA256 || got != tls.TLS_CHACHA20_POLY1305_SHA256) {
		// Without AES hardware the parent negotiates ChaCha20 too.
		t.Fatalf("negotiated %s, want %s", SuiteName(got), SuiteName(want))
	}
	if len(errs) > 0 || !bytes.Equal(pt[0], s.c2s) || !bytes.Equal(pt[1], s.s2c) || !st.Facts().ClientCertificate {
		t.Fatalf("suite %s: errs %v", SuiteName(want), errs)
	}
}

func TestRandomChunking(t *testing.T) {
	s := record(t, sessionOpts{version: tls.VersionTLS13, size: 70000})
	kl := mustKeyLog(t, s.keyLog)
	for seed := 1; seed <= 5; seed++ {
		x := uint32(seed)
		split := func(b []byte) [][]byte {
			var out [][]byte
			for len(b) > 0 {
				x = x*1664525 + 1013904223
				n := min(len(b), int(x>>20)%3000+1)
				out = append(out, b[:n])
				b = b[n:]
			}
			return out
		}
		_, pt, errs := replay(t, s, kl, split)
		if len(errs) > 0 || !bytes.Equal(pt[0], s.c2s) || !bytes.Equal(pt[1], s.s2c) {
			t.Fatalf("seed %d: errs %v, lens %d %d", seed, errs, len(pt[0]), len(pt[1]))
		}
	}
}

func TestMissingKeyLog(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		s := record(t, sessionOpts{version: v, size: 1000, clientCert: true})
		// Empty key log: problem; nil key log: silent metadata only.
		st, pt, errs := replay(t, s, &KeyLog{}, whole)
		f := st.Facts()
		if f.Decrypted || f.KeyLogFound || len(pt[0]) != 0 || len(pt[1]) != 0 {
			t.Fatalf("%s: decrypted without keys: %+v", VersionName(v), f)
		}
		if !f.Protected {
			t.Errorf("%s: protected records not reported", VersionName(v))
		}
		if len(errs) != 1 || len(f.Problems) != 1 || !bytes.Contains([]byte(f.Problems[0].Msg), []byte("no key log entry for client random ")) {
			t.Fatalf("%s: problems %v errs %v", VersionName(v), f.Problems, errs)
		}
		// Not an error of the peers; filed under the direction whose
		// protected record needed the keys first: the client's Finished
		// in TLS 1.2, the server's EncryptedExtensions in TLS 1.3.
		want := map[uint16]Dir{tls.VersionTLS12: ClientToServer, tls.VersionTLS13: ServerToClient}[v]
		if p := f.Problems[0]; !p.Undecrypted || p.Dir != want {
			t.Errorf("%s: problem %+v, want Undecrypted in %s", VersionName(v), p, want)
		}
		if v == tls.VersionTLS12 && (!f.ClientCertificateKnown || !f.ClientCertificate || len(f.ServerCertificates) != 1) {
			t.Errorf("TLS 1.2 clear certificates not seen: %+v", f)
		}
		if v == tls.VersionTLS13 && (f.ClientCertificateKnown || len(f.ServerCertificates) != 0) {
			t.Errorf("TLS 1.3 certificates visible without keys: %+v", f)
		}
		st, _, errs = replay(t, s, nil, whole)
		if len(errs) != 0 || len(st.Facts().Problems) != 0 || st.Facts().Version != v || !st.Facts().Protected {
			t.Errorf("nil key log: %v %+v", errs, st.Facts())
		}
	}
}

func TestWrongKey(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		s := record(t, sessionOpts{version: v, size: 1000})
		bad := bytes.Clone(s.keyLog)
		// Flip the last hex digit of every secret.
		lines := bytes.Split(bad, []byte("\n"))
		for _, l := range lines {
			if len(l) > 0 {
				if l[len(l)-1] == '0' {
					l[len(l)-1] = '1'
				} else {
					l[len(l)-1] = '0'
				}
			}
		}
		st, pt, _ := replay(t, s, mustKeyLog(t, bad), whole)
		f := st.Facts()
		if len(pt[0])+len(pt[1]) != 0 || f.Decrypted {
			t.Fatalf("%s: decrypted with wrong key", VersionName(v))
		}
		n := 0
		for _, p := range f.Problems {
			if bytes.Contains([]byte(p.Msg), []byte("authentication tag mismatch")) {
				n++
			}
		}
		if n != 2 || f.Stopped != [2]bool{true, true} {
			t.Fatalf("%s: want an auth failure per direction, got %v (stopped %v)", VersionName(v), f.Problems, f.Stopped)
		}
	}
}

func TestGap(t *testing.T) {
	s := record(t, sessionOpts{version: tls.VersionTLS13, size: 60000})
	kl := mustKeyLog(t, s.keyLog)
	st := NewStream(kl)
	var pt [2][]byte
	gapped := false
	var want int
	for _, c := range merged(s.chunks) {
		data := c.data
		if c.dir == ServerToClient && !gapped && len(data) > 20000 {
			// Lose 1000 bytes in the middle of the s2c application data.
			out, _ := st.Feed(c.dir, data[:10000])
			pt[1] = append(pt[1], out...)
			want = len(pt[1])
			st.Gap(c.dir, 1000)
			data = data[11000:]
			gapped = true
		}
		out, _ := st.Feed(c.dir, data)
		pt[c.dir] = append(pt[c.dir], out...)
	}
	if !gapped {
		t.Skip("no large s2c write recorded")
	}
	if !bytes.Equal(pt[0], s.c2s) {
		t.Errorf("c2s damaged by s2c gap")
	}
	if len(pt[1]) != want || !bytes.Equal(pt[1], s.s2c[:want]) {
		t.Errorf("s2c after gap: %d bytes, want prefix of %d", len(pt[1]), want)
	}
	found := false
	for _, p := range st.Facts().Problems {
		if p.Dir == ServerToClient && bytes.Contains([]byte(p.Msg), []byte("gap of 1000 bytes")) && bytes.Contains([]byte(p.Msg), []byte("decryption stopped")) {
			found = true
		}
	}
	if !found || st.Facts().Stopped != [2]bool{false, true} {
		t.Errorf("problems %v, stopped %v", st.Facts().Problems, st.Facts().Stopped)
	}
	// Alerts (close_notify) after the gap are still framed: the trailing
	// records were found again (resync), though not decrypted.
}

func TestProtocolVersionAlert(t *testing.T) {
	s := record(t, sessionOpts{version: tls.VersionTLS10, minVersion: tls.VersionTLS12, size: 10})
	st, _, _ := replay(t, s, nil, whole)
	f := st.Facts()
	if !f.ClientHello || f.ServerHello {
		t.Fatalf("facts %+v", f)
	}
	if len(f.OfferedVersions) != 1 || f.OfferedVersions[0] != tls.VersionTLS10 {
		t.Errorf("OfferedVersions %v", f.OfferedVersions)
	}
	if len(f.Alerts) != 1 || f.Alerts[0].Dir != ServerToClient || f.Alerts[0].String() != "fatal protocol_version" || f.Alerts[0].Encrypted {
		t.Fatalf("alerts %v", f.Alerts)
	}
}

func TestGarbage(t *testing.T) {
	st := NewStream(nil)
	_, err := st.Feed(ClientToServer, []byte("GET / HTTP/1.1\r\n\r\n"))
	var e *Error
	if !errors.As(err, &e) || e.Offset != 0 || e.Dir != ClientToServer {
		t.Fatalf("err %v", err)
	}
	// Garbage followed by a real session: the ClientHello is found again.
	s := record(t, sessionOpts{version: tls.VersionTLS12, size: 10})
	_, _ = st.Feed(ClientToServer, s.chunks[0].data)
	if !st.Facts().ClientHello || st.Facts().SNI != "server.test" {
		t.Fatalf("no resync to ClientHello: %+v", st.Facts())
	}
	if len(st.Facts().Problems) != 1 {
		t.Errorf("problems %v", st.Facts().Problems)
	}
}

func TestLooksLikeTLS(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		want bool
	}{
		{[]byte{0x16, 3, 1, 0, 200}, true},
		{[]byte{0x16, 3, 3, 0x40, 0}, true},
		{[]byte{0x16, 3, 5, 0, 200}, false},
		{[]byte{0x17, 3, 1, 0, 200}, false},
		{[]byte{0x16, 3, 1, 0, 0}, false},
		{[]byte{0x16, 3, 1, 0xff, 0xff}, false},
		{[]byte{0x16, 3, 1}, false},
		{[]byte("GET /"), false},
	} {
		if got := LooksLikeTLS(c.b); got != c.want {
			t.Errorf("LooksLikeTLS(% x) = %v", c.b, got)
		}
	}
}

// merged joins consecutive chunks of the same direction.
func merged(in []chunk) []chunk {
	var out []chunk
	for _, c := range in {
		if n := len(out); n > 0 && out[n-1].dir == c.dir {
			out[n-1].data = append(out[n-1].data, c.data...)
			continue
		}
		out = append(out, chunk{c.dir, bytes.Clone(c.data)})
	}
	return out
}

func TestResyncOffsets(t *testing.T) {
	alert := []byte{typeAlert, 3, 3, 0, 2, 2, 40}
	in := append(append(bytes.Clone(alert), "XYZ\x16\x03"...), alert...)
	for name, split := range map[string]func([]byte) [][]byte{"whole": whole, "byte": byteAtATime} {
		st := NewStream(nil)
		var errs []error
		for _, p := range split(in) {
			if _, err := st.Feed(ServerToClient, p); err != nil {
				errs = append(errs, err)
			}
		}
		f := st.Facts()
		if len(f.Alerts) != 2 || f.Alerts[1].String() != "fatal handshake_failure" {
			t.Errorf("%s: alerts %v", name, f.Alerts)
		}
		var e *Error
		if len(errs) != 1 || !errors.As(errs[0], &e) || e.Offset != 7 || e.Dir != ServerToClient ||
			e.Msg != "malformed record header 58 59 5a 16 03 (type 88, version 0x595a, length 5635): resyncing" {
			t.Errorf("%s: errors %v", name, errs)
		}
	}
}
