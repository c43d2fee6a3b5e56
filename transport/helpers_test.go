package transport

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testPKI is a root CA and a server certificate for loopback.
type testPKI struct {
	root   *CA
	server tls.Certificate
	pool   *x509.CertPool
}

func newTestPKI(t testing.TB, kt KeyType) *testPKI {
	t.Helper()
	now := time.Now().Add(-time.Hour)
	root, err := NewCA("test root", kt, now, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := root.IssueServer([]string{"localhost", "127.0.0.1", "::1"}, kt, now, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	return &testPKI{root: root, server: srv, pool: pool}
}

func (p *testPKI) clientConfig() *tls.Config { return &tls.Config{RootCAs: p.pool} }

func (p *testPKI) serverConfig() *tls.Config {
	return TLS12Only(&tls.Config{Certificates: []tls.Certificate{p.server}})
}

// serveTCP listens on 127.0.0.1:0 and calls handle for every connection
// (wrapped in TLS when cfg is not nil, handshake done first). handle must
// return once the peer goes away. Cleanup closes the listener and waits for
// every handler. Handshake errors are sent to the returned channel
// (buffered, never blocking).
func serveTCP(t testing.TB, cfg *tls.Config, handle func(net.Conn)) (string, <-chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if cfg != nil {
					tc := tls.Server(c, cfg)
					if err := tc.Handshake(); err != nil {
						select {
						case errs <- err:
						default:
						}
						return
					}
					c = tc
				}
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return l.Addr().String(), errs
}

// echo copies everything back until the peer closes.
func echo(c net.Conn) { _, _ = io.Copy(c, c) }

// serveWS starts an HTTP(S) server with NewWSHandler(o, accept) and returns
// its address. TLS is used when cfg is not nil.
func serveWS(t testing.TB, cfg *tls.Config, o WSOptions, accept func(net.Conn)) string {
	t.Helper()
	s := httptest.NewUnstartedServer(NewWSHandler(o, accept))
	s.Config.ErrorLog = nil
	if cfg != nil {
		s.TLS = cfg
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

func mustTarget(t testing.TB, s string) Target {
	t.Helper()
	tg, err := ParseTarget(s)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// recConn records what is written to and read from a net.Conn.
type recConn struct {
	net.Conn
	mu          sync.Mutex
	read, wrote bytes.Buffer
}

func (r *recConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.read.Write(p[:n])
	r.mu.Unlock()
	return n, err
}

func (r *recConn) Write(p []byte) (int, error) {
	n, err := r.Conn.Write(p)
	r.mu.Lock()
	r.wrote.Write(p[:n])
	r.mu.Unlock()
	return n, err
}

func (r *recConn) snapshot() (read, wrote []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.read.Bytes()), bytes.Clone(r.wrote.Bytes())
}

// recorder returns a wrap function and a way to get the recorded conn.
func recorder() (func(net.Conn) net.Conn, func() *recConn) {
	var mu sync.Mutex
	var rc *recConn
	return func(c net.Conn) net.Conn {
			mu.Lock()
			defer mu.Unlock()
			rc = &recConn{Conn: c}
			return rc
		}, func() *recConn {
			mu.Lock()
			defer mu.Unlock()
			return rc
		}
}

// rawWS is a hand-driven WebSocket client (RFC 6455) over plain TCP, to send
// frames gorilla would never produce: fragments, interleaved pings, text.
type rawWS struct {
	c  net.Conn
	br *bufio.Reader
}

// dialRawWS performs the opening handshake by hand. It returns the response
// even for a refused upgrade (then rawWS is nil).
func dialRawWS(t testing.TB, addr, path string, header http.Header) (*rawWS, *http.Response) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\n", path, addr, key)
	if !slices.ContainsFunc(slices.Collect(maps.Keys(header)), func(k string) bool { return strings.EqualFold(k, "Sec-WebSocket-Version") }) {
		b.WriteString("Sec-WebSocket-Version: 13\r\n")
	}
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body = io.NopCloser(bytes.NewReader(body))
		c.Close()
		return nil, resp
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), acceptKey(key); got != want {
		c.Close()
		t.Fatalf("Sec-WebSocket-Accept = %q, want %q", got, want)
	}
	rw := &rawWS{c: c, br: br}
	t.Cleanup(func() { c.Close() })
	return rw, resp
}

// Opcodes (RFC 6455 §5.2).
const (
	opCont  = 0x0
	opText  = 0x1
	opBin   = 0x2
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xa
)

// writeFrame sends one masked client frame.
func (w *rawWS) writeFrame(fin bool, op byte, payload []byte) error {
	var hdr []byte
	b0 := op
	if fin {
		b0 |= 0x80
	}
	hdr = append(hdr, b0)
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n <= 0xffff:
		hdr = append(hdr, 0x80|126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	hdr = append(hdr, mask[:]...)
	masked := make([]byte, len(payload))
	for i, c := range payload {
		masked[i] = c ^ mask[i%4]
	}
	_, err := w.c.Write(append(hdr, masked...))
	return err
}

// frame is one frame received from the server.
type frame struct {
	fin     bool
	rsv1    bool
	op      byte
	payload []byte
}

// readFrame reads one (unmasked) server frame.
func (w *rawWS) readFrame() (frame, error) {
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		return frame{}, err
	}
	f := frame{fin: h[0]&0x80 != 0, rsv1: h[0]&0x40 != 0, op: h[0] & 0x0f}
	if h[1]&0x80 != 0 {
		return frame{}, errors.New("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return frame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return frame{}, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<24 {
		return frame{}, fmt.Errorf("frame of %d bytes", n)
	}
	f.payload = make([]byte, n)
	_, err := io.ReadFull(w.br, f.payload)
	return f, err
}

// readMessage reads data frames (answering nothing) until a complete
// message; control frames are returned as they come.
func (w *rawWS) readMessage() (op byte, data []byte, err error) {
	for i := 0; i < 1<<16; i++ {
		f, err := w.readFrame()
		if err != nil {
			return 0, nil, err
		}
		if f.op >= 0x8 {
			return f.op, f.payload, nil
		}
		if f.op != opCont {
			op = f.op
		}
		data = append(data, f.payload...)
		if f.fin {
			return op, data, nil
		}
	}
	return 0, nil, errors.New("too many frames")
}

// serveHTTP serves h over plain HTTP on loopback.
func serveHTTP(t testing.TB, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// startHTTP serves h on 127.0.0.1:0 for tests that cannot use t.Cleanup
// (nettest's MakePipe); shutdown closes the server and waits for handlers.
func startHTTP(h http.Handler) (*net.TCPAddr, func()) {
	s := httptest.NewServer(h)
	return s.Listener.Addr().(*net.TCPAddr), s.Close
}

// acceptKey is the Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2).
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}
