package tracer

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer/tlstrace"
)

// wireLog records what each end of a net.Pipe writes, in order.
type wireLog struct {
	mu     sync.Mutex
	chunks []wireChunk
}

type wireChunk struct {
	dir  Direction
	data []byte
}

type loggedConn struct {
	net.Conn
	dir Direction
	log *wireLog
}

func (c *loggedConn) Write(b []byte) (int, error) {
	c.log.mu.Lock()
	c.log.chunks = append(c.log.chunks, wireChunk{c.dir, bytes.Clone(b)})
	c.log.mu.Unlock()
	return c.Conn.Write(b)
}

func selfSigned(t *testing.T) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dps.test"}, DNSNames: []string{"dps.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// wsFrame encodes one WebSocket binary frame, masked when mask is set.
func wsFrame(payload []byte, mask bool) []byte {
	b := []byte{0x82}
	mbit := byte(0)
	if mask {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, mbit|byte(n))
	case n < 65536:
		b = append(b, mbit|126, byte(n>>8), byte(n))
	default:
		b = append(b, mbit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !mask {
		return append(b, payload...)
	}
	key := []byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, key...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

const wsRequest = "GET /$iothub/websocket HTTP/1.1\r\nHost: dps.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
const wsResponse = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"

// session runs an MQTT exchange over net.Pipe, optionally inside TLS
// (version 0: none) and WebSocket, and returns the wire bytes and the key
// log.
func session(t *testing.T, tlsVersion uint16, ws bool) ([]wireChunk, []byte) {
	t.Helper()
	log := &wireLog{}
	cp, sp := net.Pipe()
	var cc, sc net.Conn = &loggedConn{cp, ClientToServer, log}, &loggedConn{sp, ServerToClient, log}
	var keys bytes.Buffer
	if tlsVersion != 0 {
		cc = tls.Client(cc, &tls.Config{ServerName: "dps.test", InsecureSkipVerify: true, KeyLogWriter: &keys, MinVersion: tlsVersion, MaxVersion: tlsVersion,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
		sc = tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	}
	c2s, s2c := dpsExchange(t)
	wrap := func(b []byte, mask bool) []byte {
		if ws {
			return wsFrame(b, mask)
		}
		return b
	}
	errc := make(chan error, 1)
	go func() {
		if ws {
			buf := make([]byte, len(wsRequest))
			if _, err := io.ReadFull(sc, buf); err != nil {
				errc <- err
				return
			}
			if _, err := sc.Write([]byte(wsResponse)); err != nil {
				errc <- err
				return
			}
		}
		for i := range c2s {
			n := len(wrap(enc(t, c2s[i]), true))
			if _, err := io.ReadFull(sc, make([]byte, n)); err != nil {
				errc <- err
				return
			}
			if _, err := sc.Write(wrap(enc(t, s2c[i]), false)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	if ws {
		if _, err := cc.Write([]byte(wsRequest)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(cc, make([]byte, len(wsResponse))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range c2s {
		if _, err := cc.Write(wrap(enc(t, c2s[i]), true)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(cc, make([]byte, len(wrap(enc(t, s2c[i]), false)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// Close the pipe itself: a TLS close_notify would block on the pipe.
	cp.Close()
	sp.Close()
	log.mu.Lock()
	defer log.mu.Unlock()
	return log.chunks, keys.Bytes()
}

func TestDecodeLayers(t *testing.T) {
	c2s, s2c := dpsExchange(t)
	for _, tc := range []struct {
		name      string
		tls       uint16
		ws        bool
		port      string
		keys      bool
		transport string
		packets   int
	}{
		{"mqtts-tls13", tls.VersionTLS13, false, "8883", true, "mqtts", 6},
		{"mqtts-tls12", tls.VersionTLS12, false, "8883", true, "mqtts", 6},
		{"mqtts-no-keys", tls.VersionTLS13, false, "8883", false, "mqtts", 0},
		{"mqtts-other-port", tls.VersionTLS13, false, "9999", true, "mqtts", 6},
		{"wss", tls.VersionTLS13, true, "443", true, "wss", 6},
		{"ws", 0, true, "80", false, "ws", 6},
		{"ws-other-port", 0, true, "9001", false, "ws", 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chunks, keys := session(t, tc.tls, tc.ws)
			g := newGen(t, linkEthernet)
			f := g.flow("10.0.0.1:50000", "10.0.0.2:"+tc.port)
			f.handshake()
			for _, ch := range chunks {
				var cuts []int
				for c := 1000; c < len(ch.data); c += 1000 {
					cuts = append(cuts, c)
				}
				f.send(ch.dir, ch.data, cuts...)
			}
			o := Options{}
			if tc.keys {
				kl, err := tlstrace.ParseKeyLog(bytes.NewReader(keys))
				if err != nil {
					t.Fatal(err)
				}
				o.KeyLog = kl
			}
			c := decodeGen(t, g, o)
			if c.Transport != tc.transport {
				t.Errorf("transport %q, want %q", c.Transport, tc.transport)
			}
			if (c.TLS != nil) != (tc.tls != 0) || (c.WS != nil) != tc.ws {
				t.Errorf("TLS facts %v, WS facts %v", c.TLS != nil, c.WS != nil)
			}
			if c.TLS != nil && (c.TLS.Version != tc.tls || c.TLS.Decrypted != tc.keys || c.TLS.SNI != "dps.test") {
				t.Errorf("TLS facts: version %x decrypted %v sni %q", c.TLS.Version, c.TLS.Decrypted, c.TLS.SNI)
			}
			if c.WS != nil && (c.WS.Path != "/$iothub/websocket" || c.WS.Subprotocol != "mqtt") {
				t.Errorf("WS facts: %+v", c.WS)
			}
			if len(c.Packets) != tc.packets {
				t.Fatalf("%d packets, want %d:\n%s", len(c.Packets), tc.packets, summary(c))
			}
			for i, p := range c.Packets {
				want := c2s[i/2]
				if i%2 == 1 {
					want = s2c[i/2]
				}
				if p.Dir != Direction(i%2) || !bytes.Equal(p.Raw, enc(t, want)) {
					t.Errorf("packet %d: %s raw %x", i, p.Dir, p.Raw)
				}
			}
			if tc.keys && len(c.Problems)+len(c.Gaps) != 0 {
				t.Errorf("problems:\n%s", summary(c))
			}
		})
	}
}

// TestDecodeEmbeddedKeys decrypts with the key log a Recorder embeds in
// its pcapng (Decryption Secrets Block), without Options.KeyLog.
func TestDecodeEmbeddedKeys(t *testing.T) {
	chunks, keys := session(t, tls.VersionTLS13, false)
	var buf bytes.Buffer
	r, err := NewRecorder(&buf, RecorderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.KeyLogWriter().Write(keys); err != nil {
		t.Fatal(err)
	}
	fl, err := r.Flow(netip.MustParseAddrPort("10.0.0.1:50000"), netip.MustParseAddrPort("10.0.0.2:8883"), FlowOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chunks {
		if err := fl.Send(Side(ch.dir), ch.data, SegOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	capt, err := Decode(bytes.NewReader(buf.Bytes()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(capt.Conversations) != 1 {
		t.Fatalf("%d conversations", len(capt.Conversations))
	}
	c := capt.Conversations[0]
	if c.TLS == nil || !c.TLS.Decrypted || len(c.Packets) != 6 {
		t.Fatalf("decrypted %v, %d packets:\n%s", c.TLS != nil && c.TLS.Decrypted, len(c.Packets), summary(c))
	}
}

// TestDecodeHTTPSIgnored: a decrypted TLS stream whose client opens with
// an HTTP request (any method but GET, which may be a WebSocket upgrade;
// HTTP/2's preface) is no conversation of ours; one that opens with an MQTT packet other than CONNECT (a device
// breaking MQTT-3.1.0-1) is decoded as MQTT, so that the rules see it.
func TestDecodeHTTPSIgnored(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first []byte
		want  int // conversations
	}{
		{"POST", []byte("POST /registrations HTTP/1.1\r\nHost: dps.test\r\nContent-Length: 0\r\n\r\n"), 0},
		{"PUT", []byte("PUT /x HTTP/1.1\r\nHost: dps.test\r\nContent-Length: 0\r\n\r\n"), 0},
		{"HEAD", []byte("HEAD / HTTP/1.1\r\nHost: dps.test\r\n\r\n"), 0},
		{"DELETE", []byte("DELETE /x HTTP/1.1\r\nHost: dps.test\r\n\r\n"), 0},
		{"OPTIONS", []byte("OPTIONS * HTTP/1.1\r\nHost: dps.test\r\n\r\n"), 0},
		{"PATCH", []byte("PATCH /x HTTP/1.1\r\nHost: dps.test\r\nContent-Length: 0\r\n\r\n"), 0},
		{"HTTP/2 preface", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0},
		{"PINGREQ first", []byte{0xc0, 0x00}, 1},
		{"SUBSCRIBE first", []byte{0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'a', '/', 'b', 0x01}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &wireLog{}
			cp, sp := net.Pipe()
			var keys bytes.Buffer
			cc := tls.Client(&loggedConn{cp, ClientToServer, log}, &tls.Config{ServerName: "dps.test", InsecureSkipVerify: true, KeyLogWriter: &keys})
			sc := tls.Server(&loggedConn{sp, ServerToClient, log}, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
			errc := make(chan error, 1)
			go func() {
				_, err := io.ReadFull(sc, make([]byte, len(tc.first)))
				errc <- err
			}()
			if _, err := cc.Write(tc.first); err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			cp.Close()
			sp.Close()
			g := newGen(t, linkEthernet)
			f := g.flow("10.0.0.1:50000", "10.0.0.2:443")
			f.handshake()
			for _, ch := range log.chunks {
				f.send(ch.dir, ch.data)
			}
			kl, err := tlstrace.ParseKeyLog(&keys)
			if err != nil {
				t.Fatal(err)
			}
			capt, err := Decode(bytes.NewReader(g.pcap()), Options{KeyLog: kl})
			if err != nil {
				t.Fatal(err)
			}
			if len(capt.Conversations) != tc.want {
				t.Fatalf("%d conversations, want %d", len(capt.Conversations), tc.want)
			}
			if tc.want == 1 {
				c := capt.Conversations[0]
				if len(c.Packets) != 1 || c.Packets[0].Packet.Type() == packets.TypeConnect || !c.TLS.Decrypted {
					t.Errorf("conversation %s", summary(c))
				}
			}
		})
	}
}

// TestDecodeBadTLSRecordOnTLSPort: on port 8883 a stream that opens with
// a handshake record header whose length is out of bounds is decoded as
// TLS gone wrong (a problem at offset 0), not dropped as "no MQTT"; on
// another port it stays unclassified.
func TestDecodeBadTLSRecordOnTLSPort(t *testing.T) {
	bad := append([]byte{0x16, 0x03, 0x01, 0xff, 0xff}, bytes.Repeat([]byte{1}, 200)...)
	for _, tc := range []struct {
		server string
		convs  int
	}{{"10.0.0.2:8883", 1}, {"10.0.0.2:9999", 0}} {
		g := newGen(t, linkEthernet)
		f := g.flow("10.0.0.1:50000", tc.server)
		f.handshake()
		f.send(ClientToServer, bad)
		capt, err := Decode(bytes.NewReader(g.pcap()), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(capt.Conversations) != tc.convs {
			t.Fatalf("%s: %d conversations, want %d", tc.server, len(capt.Conversations), tc.convs)
		}
		if tc.convs == 0 {
			continue
		}
		c := capt.Conversations[0]
		if c.Transport != "mqtts" || len(c.Problems) == 0 || !strings.Contains(c.Problems[0].Msg, "malformed record header 16 03 01 ff ff") || c.Problems[0].Offset != 0 {
			t.Errorf("%s: transport %s, problems %+v", tc.server, c.Transport, c.Problems)
		}
	}
}

// TestDecodePlainToTLSPort: a plaintext CONNECT to port 8883 or 443 is a
// plaintext connection to a TLS port, unless --port makes the port a
// plaintext one; on 1883 it is not.
func TestDecodePlainToTLSPort(t *testing.T) {
	connect, err := (&packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, ClientID: []byte("x")}).Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		server string
		ports  []int
		want   bool
	}{{"10.0.0.2:8883", nil, true}, {"10.0.0.2:443", nil, true}, {"10.0.0.2:1883", nil, false}, {"10.0.0.2:8883", []int{8883}, false}} {
		g := newGen(t, linkEthernet)
		f := g.flow("10.0.0.1:50000", tc.server)
		f.handshake()
		f.send(ClientToServer, connect)
		capt, err := Decode(bytes.NewReader(g.pcap()), Options{Ports: tc.ports})
		if err != nil {
			t.Fatal(err)
		}
		if len(capt.Conversations) != 1 || capt.Conversations[0].Transport != "mqtt" || capt.Conversations[0].PlainToTLSPort != tc.want {
			t.Errorf("%s, --port %v: %d conversations, want one mqtt with PlainToTLSPort %v", tc.server, tc.ports, len(capt.Conversations), tc.want)
		}
	}
}
