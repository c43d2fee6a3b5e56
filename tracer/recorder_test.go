package tracer_test

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
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dps-conform/dps-conform/tracer"
)

// fakeClock ticks one millisecond per call, for reproducible captures.
func fakeClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Millisecond)
		return t
	}
}

// pattern is n recognisable bytes.
func pattern(seed, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seed*31 + i*7 + i>>8)
	}
	return b
}

// flowByServerPort finds the one flow whose server port is port.
func flowByServerPort(t *testing.T, fl map[flowKey]*flowStreams, port uint16) (flowKey, *flowStreams) {
	t.Helper()
	var k flowKey
	var found *flowStreams
	for key, fs := range fl {
		if key.server.Port() == port {
			if found != nil {
				t.Fatalf("two flows on server port %d: %v and %v", port, k, key)
			}
			k, found = key, fs
		}
	}
	if found == nil {
		t.Fatalf("no flow on server port %d among %d flows", port, len(fl))
	}
	return k, found
}

// TestRecorderPipe wraps the client end of a net.Pipe and checks that the
// capture holds the handshake, the bytes of each direction exactly, both
// FINs, the comments and valid checksums.
func TestRecorderPipe(t *testing.T) {
	defer goleak.VerifyNone(t)
	var buf bytes.Buffer
	rec, err := tracer.NewRecorder(&buf, tracer.RecorderOptions{Now: fakeClock(), Comment: "dps-conform test"})
	if err != nil {
		t.Fatal(err)
	}
	cl, sv := net.Pipe()
	c := rec.Wrap(cl, tracer.ConnOptions{Side: tracer.Client, Comment: "conn one"})
	var wg sync.WaitGroup
	wg.Add(1)
	var serverGot []byte
	go func() { // echo server that answers each read with a doubled copy
		defer wg.Done()
		b := make([]byte, 4096)
		for {
			n, err := sv.Read(b)
			if err != nil {
				sv.Close()
				return
			}
			serverGot = append(serverGot, b[:n]...)
			sv.Write(append(b[:n:n], b[:n]...))
		}
	}()
	var sent, got []byte
	for i, n := range []int{1, 2, 100, 3000, 7} {
		p := pattern(i, n)
		sent = append(sent, p...)
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
		want := 2 * n
		for want > 0 {
			b := make([]byte, want)
			m, err := c.Read(b)
			if err != nil {
				t.Fatal(err)
			}
			got, want = append(got, b[:m]...), want-m
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	capt := readCapture(t, buf.Bytes())
	if capt.sectionComment != "dps-conform test" {
		t.Errorf("section comment %q", capt.sectionComment)
	}
	if capt.frames[0].comment != "conn one" || !capt.frames[0].tcp.SYN {
		t.Errorf("first frame: SYN=%v comment %q, want the SYN with the connection comment", capt.frames[0].tcp.SYN, capt.frames[0].comment)
	}
	fl := flows(t, capt)
	k, fs := flowByServerPort(t, fl, 1883)
	if len(fl) != 1 {
		t.Fatalf("%d flows, want 1", len(fl))
	}
	if k.client.Addr() != netip.MustParseAddr("192.0.2.1") || k.server.Addr() != netip.MustParseAddr("192.0.2.2") {
		t.Errorf("pipe endpoints %v → %v, want 192.0.2.1 → 192.0.2.2", k.client, k.server)
	}
	if !bytes.Equal(fs.dir[0].data, sent) || !bytes.Equal(serverGot, sent) {
		t.Errorf("client→server: captured %d bytes, sent %d", len(fs.dir[0].data), len(sent))
	}
	if !bytes.Equal(fs.dir[1].data, got) {
		t.Errorf("server→client: captured %d bytes, read %d", len(fs.dir[1].data), len(got))
	}
	// We closed first and read no more, so only our FIN can be recorded.
	if !fs.dir[0].syn || !fs.dir[1].syn || !fs.dir[0].fin || fs.dir[1].fin {
		t.Errorf("SYN %v/%v FIN %v/%v, want SYN both ways and only the client's FIN",
			fs.dir[0].syn, fs.dir[1].syn, fs.dir[0].fin, fs.dir[1].fin)
	}
	for i := 1; i < len(capt.frames); i++ {
		if !capt.frames[i].ts.After(capt.frames[i-1].ts) {
			t.Fatalf("frame %d: timestamp %v not after %v (Now not used?)", i+1, capt.frames[i].ts, capt.frames[i-1].ts)
		}
	}
}

// TestRecorderCloseEitherSide checks the FIN order when the server closes
// first (seen as io.EOF by the wrapped client) and when we close first.
func TestRecorderCloseEitherSide(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, tc := range []struct {
		name        string
		serverFirst bool
	}{{"client-closes", false}, {"server-closes", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			rec, err := tracer.NewRecorder(&buf, tracer.RecorderOptions{Now: fakeClock()})
			if err != nil {
				t.Fatal(err)
			}
			cl, sv := net.Pipe()
			c := rec.Wrap(cl, tracer.ConnOptions{Side: tracer.Client})
			if tc.serverFirst {
				sv.Close()
				if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
					t.Fatalf("read after server close: %v, want EOF", err)
				}
				c.Close()
			} else {
				c.Close()
				sv.Close()
			}
			if err := rec.Close(); err != nil {
				t.Fatal(err)
			}
			capt := readCapture(t, buf.Bytes())
			flows(t, capt)
			var finFrom []bool // true: from the server
			for _, f := range capt.frames {
				if f.tcp.FIN {
					finFrom = append(finFrom, f.src.Port() == 1883)
				}
			}
			if len(finFrom) < 1 || finFrom[0] != tc.serverFirst {
				t.Fatalf("FINs from server: %v, want the first from server = %v", finFrom, tc.serverFirst)
			}
			if tc.serverFirst && len(finFrom) != 2 {
				t.Fatalf("%d FINs, want 2 (server's EOF, then our Close)", len(finFrom))
			}
		})
	}
}

// TestRecorderMSS checks that a big write is cut at the MSS, over IPv4 and
// IPv6 and with a configured MSS.
func TestRecorderMSS(t *testing.T) {
	for _, tc := range []struct {
		name           string
		client, server string
		mss, wantMax   int
	}{
		{"ipv4-default", "10.1.1.1:40000", "10.1.1.2:1883", 0, 1460},
		{"ipv6-default", "[2001:db8::1]:40000", "[2001:db8::2]:1883", 0, 1440},
		{"ipv6-configured", "[::1]:40000", "[::1]:1883", 536, 536},
		{"ipv4-mapped", "[::ffff:127.0.0.1]:40000", "127.0.0.1:1883", 1000, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			rec, err := tracer.NewRecorder(&buf, tracer.RecorderOptions{Now: fakeClock(), MSS: tc.mss})
			if err != nil {
				t.Fatal(err)
			}
			f, err := rec.Flow(netip.MustParseAddrPort(tc.client), netip.MustParseAddrPort(tc.server), tracer.FlowOptions{})
			if err != nil {
				t.Fatal(err)
			}
			data := pattern(3, 10000)
			if err := f.Send(tracer.Client, data, tracer.SegOpts{}); err != nil {
				t.Fatal(err)
			}
			if err := errors.Join(f.Close(), rec.Close()); err != nil {
				t.Fatal(err)
			}
			capt := readCapture(t, buf.Bytes())
			fl := flows(t, capt)
			_, fs := flowByServerPort(t, fl, 1883)
			if !bytes.Equal(fs.dir[0].data, data) {
				t.Fatalf("captured %d bytes, sent %d", len(fs.dir[0].data), len(data))
			}
			wantSegs := (len(data) + tc.wantMax - 1) / tc.wantMax
			if fs.dir[0].segments != wantSegs {
				t.Errorf("%d segments, want %d", fs.dir[0].segments, wantSegs)
			}
			v6 := strings.Contains(tc.client, "db8") || strings.HasPrefix(tc.client, "[::1]")
			for _, fr := range capt.frames {
				if len(fr.payload) > tc.wantMax {
					t.Fatalf("segment of %d bytes > MSS %d", len(fr.payload), tc.wantMax)
				}
				if fr.ipv6 != v6 {
					t.Fatalf("frame IPv6=%v, want %v", fr.ipv6, v6)
				}
			}
		})
	}
}

// TestFlowSegOpts checks controlled segmentation, loss, retransmission and
// reordering: the stream still rebuilds, ACK numbers stay exact (checked by
// flows) and the expected number of duplicate ACKs appears.
func TestFlowSegOpts(t *testing.T) {
	data := pattern(9, 5000) // 4 segments at MSS 1460: 1460 1460 1460 620
	for _, tc := range []struct {
		name       string
		o          tracer.SegOpts
		dataFrames int
		acks       int // ACKs from the receiver during the Send
	}{
		{"plain", tracer.SegOpts{}, 4, 1},
		{"split", tracer.SegOpts{Split: []int{1, 2}}, 6, 1},
		{"drop-1", tracer.SegOpts{Drop: []int{1}}, 4, 3},             // ack after seg 2 (dup), seg 3 (dup), seg 1 (fills)
		{"retransmit-0", tracer.SegOpts{Retransmit: []int{0}}, 5, 2}, // dup ack for the copy, final ack
		{"reorder-2", tracer.SegOpts{Reorder: []int{2}}, 4, 2},       // dup ack for seg 3, ack when seg 2 fills the gap
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			rec, err := tracer.NewRecorder(&buf, tracer.RecorderOptions{Now: fakeClock()})
			if err != nil {
				t.Fatal(err)
			}
			f, err := rec.Flow(netip.MustParseAddrPort("10.0.0.1:50000"), netip.MustParseAddrPort("10.0.0.2:1883"), tracer.FlowOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Send(tracer.Client, data, tc.o); err != nil {
				t.Fatal(err)
			}
			if err := rec.Close(); err != nil {
				t.Fatal(err)
			}
			capt := readCapture(t, buf.Bytes())
			fs := flows(t, capt)[flowKey{netip.MustParseAddrPort("10.0.0.1:50000"), netip.MustParseAddrPort("10.0.0.2:1883")}]
			if !bytes.Equal(fs.dir[0].data, data) {
				t.Fatalf("rebuilt %d bytes, sent %d", len(fs.dir[0].data), len(data))
			}
			var dataFrames, acks int
			for _, fr := range capt.frames[3:] { // after the handshake
				if len(fr.payload) > 0 {
					dataFrames++
				} else if fr.src.Port() == 1883 {
					acks++
				}
			}
			if dataFrames != tc.dataFrames || acks != tc.acks {
				t.Errorf("%d data frames and %d ACKs, want %d and %d", dataFrames, acks, tc.dataFrames, tc.acks)
			}
		})
	}
}

// TestFlowErrors checks that bad flow parameters are refused with precise errors.
func TestFlowErrors(t *testing.T) {
	rec, err := tracer.NewRecorder(io.Discard, tracer.RecorderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	v4, v6 := netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("[2001:db8::1]:2")
	if _, err := rec.Flow(v4, v6, tracer.FlowOptions{}); err == nil || !strings.Contains(err.Error(), "mixed IPv4 and IPv6") {
		t.Errorf("mixed families: %v", err)
	}
	if _, err := rec.Flow(netip.AddrPort{}, v4, tracer.FlowOptions{}); err == nil || !strings.Contains(err.Error(), "invalid address") {
		t.Errorf("zero address: %v", err)
	}
	f, err := rec.Flow(v4, netip.MustParseAddrPort("10.0.0.2:1883"), tracer.FlowOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		o    tracer.SegOpts
		want string
	}{
		{tracer.SegOpts{Split: []int{0}}, "Split[0] = 0"},
		{tracer.SegOpts{Split: []int{2000}}, "Split[0] = 2000: want 1..1460"},
		{tracer.SegOpts{Split: []int{10, 1}}, "Split[1]: no data left"},
		{tracer.SegOpts{Drop: []int{5}}, "SegOpts.Drop: segment 5 of 1"},
		{tracer.SegOpts{Reorder: []int{0}}, "Reorder: segment 0 is the last"},
	} {
		if err := f.Send(tracer.Client, make([]byte, 10), tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Send(%+v): %v, want %q", tc.o, err, tc.want)
		}
	}
	if err := f.Fin(tracer.Client); err != nil {
		t.Fatal(err)
	}
	if err := f.Send(tracer.Client, []byte{1}, tracer.SegOpts{}); err == nil || !strings.Contains(err.Error(), "after its FIN") {
		t.Errorf("Send after FIN: %v", err)
	}
	if _, err := tracer.NewRecorder(io.Discard, tracer.RecorderOptions{MSS: 70000}); err == nil {
		t.Error("MSS 70000 accepted")
	}
}

// TestRecorderConcurrent records many connections at once: each flow is
// distinct and carries exactly its own bytes.
func TestRecorderConcurrent(t *testing.T) {
	defer goleak.VerifyNone(t)
	var buf bytes.Buffer
	rec, err := tracer.NewRecorder(&buf, tracer.RecorderOptions{Now: fakeClock(), MSS: 100})
	if err != nil {
		t.Fatal(err)
	}
	const conns = 8
	var wg sync.WaitGroup
	want := map[string][]byte{}
	var mu sync.Mutex
	for i := range conns {
		cl, sv := net.Pipe()
		comment := fmt.Sprintf("conn %d", i)
		side := tracer.Side(i % 2) // wrap the client end or the server end
		mine, other := cl, sv
		if side == tracer.Server {
			mine, other = sv, cl
		}
		c := rec.Wrap(mine, tracer.ConnOptions{Side: side, Comment: comment})
		wg.Add(2)
		go func() {
			defer wg.Done()
			io.Copy(io.Discard, other)
			other.Close()
		}()
		go func() {
			defer wg.Done()
			var sent []byte
			for j := range 20 {
				p := pattern(i*100+j, 1+(i*37+j*11)%700)
				sent = append(sent, p...)
				c.Write(p)
			}
			c.Close()
			mu.Lock()
			want[comment] = sent
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	capt := readCapture(t, buf.Bytes())
	fl := flows(t, capt)
	if len(fl) != conns {
		t.Fatalf("%d flows, want %d", len(fl), conns)
	}
	for _, fs := range fl {
		first := capt.frames[fs.frames[0]]
		var i int
		if _, err := fmt.Sscanf(first.comment, "conn %d", &i); err != nil {
			t.Fatalf("first frame comment %q", first.comment)
		}
		dir := fs.dir[i%2] // our side's writes
		if !bytes.Equal(dir.data, want[first.comment]) {
			t.Errorf("%s: captured %d bytes, wrote %d", first.comment, len(dir.data), len(want[first.comment]))
		}
		if len(fs.dir[1-i%2].data) != 0 {
			t.Errorf("%s: peer sent %d bytes, want 0", first.comment, len(fs.dir[1-i%2].data))
		}
	}
}

// testCert is a throwaway self-signed certificate for 127.0.0.1.
func testCert(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "recorder test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// recordTLS runs one TLS exchange over loopback TCP with the client side
// recorded at both layers and returns the capture file, the key log file
// and the plaintext each way.
func recordTLS(t *testing.T, dir string) (pcap, keylog string, c2s, s2c []byte) {
	t.Helper()
	pcap, keylog = filepath.Join(dir, "tls.pcapng"), filepath.Join(dir, "tls.keylog")
	rec, err := tracer.CreateRecorder(pcap, tracer.RecorderOptions{KeyLogPath: keylog, Comment: "tls test"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Path() != pcap {
		t.Errorf("Path() = %q, want %q", rec.Path(), pcap)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cert := testCert(t)
	c2s, s2c = pattern(1, 3000), pattern(2, 5000)
	errc := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{cert}})
		got := make([]byte, len(c2s))
		if _, err := io.ReadFull(s, got); err != nil {
			errc <- err
			return
		}
		if !bytes.Equal(got, c2s) {
			errc <- errors.New("server read wrong bytes")
			return
		}
		_, err = s.Write(s2c)
		if err == nil {
			err = s.Close()
		}
		errc <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	wrapped := rec.Wrap(raw, tracer.ConnOptions{Side: tracer.Client, Layer: tracer.TLS, Comment: "tls bytes"})
	pool := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	pool.AddCert(leaf)
	tc := tls.Client(wrapped, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", KeyLogWriter: rec.KeyLogWriter()})
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	plain := rec.Wrap(tc, tracer.ConnOptions{Side: tracer.Client, Layer: tracer.Plain, Comment: "plaintext view"})
	if _, err := plain.Write(c2s); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(plain)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, s2c) {
		t.Fatalf("client read %d bytes, want %d", len(got), len(s2c))
	}
	if err := plain.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	return pcap, keylog, c2s, s2c
}

// TestRecorderTLS records a real TLS connection at both layers: the
// plaintext flow carries exactly the application bytes, the TLS flow
// carries records, and the key log is in a DSB before the first TLS
// application data and in the key log file, identically.
func TestRecorderTLS(t *testing.T) {
	defer goleak.VerifyNone(t)
	pcap, keylog, c2s, s2c := recordTLS(t, t.TempDir())
	b, err := os.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	capt := readCapture(t, b)
	fl := flows(t, capt)
	if len(fl) != 2 {
		t.Fatalf("%d flows, want 2 (TLS and plaintext)", len(fl))
	}
	pk, plain := flowByServerPort(t, fl, 1883)
	tk, tlsFlow := flowByServerPort(t, fl, 8883)
	if pk.client != tk.client || pk.client.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("plaintext client %v, TLS client %v: want the same loopback endpoint", pk.client, tk.client)
	}
	if !bytes.Equal(plain.dir[0].data, c2s) || !bytes.Equal(plain.dir[1].data, s2c) {
		t.Errorf("plaintext flow: %d/%d bytes, want %d/%d", len(plain.dir[0].data), len(plain.dir[1].data), len(c2s), len(s2c))
	}
	if d := tlsFlow.dir[0].data; len(d) < 5 || d[0] != 0x16 || d[1] != 3 {
		t.Errorf("TLS flow does not start with a handshake record: % x", d[:min(5, len(d))])
	}
	if len(tlsFlow.dir[1].data) <= len(s2c) {
		t.Errorf("TLS server→client %d bytes, want more than the %d plaintext bytes", len(tlsFlow.dir[1].data), len(s2c))
	}
	var secrets []byte
	firstDSB := -1
	for _, bl := range capt.blocks {
		if bl.typ == 0x0A {
			typ, s := bl.dsbSecrets()
			if typ != tracer.SecretsTypeTLSKeyLog {
				t.Errorf("DSB secrets type %#x", typ)
			}
			if firstDSB < 0 {
				firstDSB = bl.epbIndex
			}
			secrets = append(secrets, s...)
		}
	}
	kl, err := os.ReadFile(keylog)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(secrets, kl) || !bytes.Contains(kl, []byte("CLIENT_TRAFFIC_SECRET_0 ")) {
		t.Errorf("DSB secrets (%d bytes) and key log file (%d bytes) differ or lack CLIENT_TRAFFIC_SECRET_0", len(secrets), len(kl))
	}
	// The first protected record (type 0x17) the client sent must come
	// after the first DSB: the client logs its secrets before it uses
	// them. The server's first protected records may come before it (in
	// TLS 1.3 its encrypted extensions follow the ServerHello in the same
	// flight, recorded when the client reads them, and the client derives
	// and logs the handshake secrets only after that read); readers take a
	// DSB that comes after the records it decrypts.
	for _, i := range tlsFlow.frames {
		if f := capt.frames[i]; f.src == tk.client && len(f.payload) > 0 && f.payload[0] == 0x17 {
			if firstDSB < 0 || firstDSB > i {
				t.Errorf("first DSB after %d frames, the client's first protected record in frame %d", firstDSB, i+1)
			}
			break
		}
	}
}

// TestRecorderClosed checks that recording stops, without errors, after Close.
func TestRecorderClosed(t *testing.T) {
	var buf bytes.Buffer
	rec, err := tracer.NewRecorder(&buf, tracer.RecorderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cl, sv := net.Pipe()
	defer sv.Close()
	c := rec.Wrap(cl, tracer.ConnOptions{})
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	n := buf.Len()
	go io.Copy(io.Discard, sv)
	if _, err := c.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if buf.Len() != n {
		t.Errorf("capture grew from %d to %d bytes after Close", n, buf.Len())
	}
	if err := rec.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := rec.Flow(netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), tracer.FlowOptions{}); !errors.Is(err, tracer.ErrRecorderClosed) {
		t.Errorf("Flow after Close: %v, want ErrRecorderClosed", err)
	}
}

// errWriter fails every write.
type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestRecorderWriteError checks that a failing writer surfaces in Close
// and does not disturb the connection.
func TestRecorderWriteError(t *testing.T) {
	rec, err := tracer.NewRecorder(errWriter{}, tracer.RecorderOptions{})
	if err != nil {
		t.Fatal(err) // buffered: the header is not written yet
	}
	f, err := rec.Flow(netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), tracer.FlowOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.Send(tracer.Client, make([]byte, 100000), tracer.SegOpts{})
	if err := rec.Close(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Close: %v, want the write error", err)
	}
}

// TestRecorderSnapLen checks that frames longer than SnapLen are truncated
// with their original length kept.
func TestRecorderSnapLen(t *testing.T) {
	var buf bytes.Buffer
	rec, err := tracer.NewRecorder(&buf, tracer.RecorderOptions{SnapLen: 100})
	if err != nil {
		t.Fatal(err)
	}
	f, err := rec.Flow(netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:1883"), tracer.FlowOptions{MidStream: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(f.Send(tracer.Client, make([]byte, 1000), tracer.SegOpts{}), rec.Close()); err != nil {
		t.Fatal(err)
	}
	blocks, err := walkBlocks(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var lens [][2]uint32
	for _, bl := range blocks {
		switch bl.typ {
		case 1:
			if got := le32(bl.body[4:]); got != 100 {
				t.Errorf("IDB snaplen %d, want 100", got)
			}
		case 6:
			lens = append(lens, [2]uint32{le32(bl.body[12:]), le32(bl.body[16:])})
		}
	}
	// The data frame (14+20+20+1000 bytes) and the ACK (60 bytes, padded).
	want := [][2]uint32{{100, 1054}, {60, 60}}
	if fmt.Sprint(lens) != fmt.Sprint(want) {
		t.Errorf("captured/original lengths %v, want %v", lens, want)
	}
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
