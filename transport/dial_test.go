package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/dps-conform/dps-conform/internal/testnet"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// roundTrip writes msg and reads len(msg) bytes back.
func roundTrip(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("Read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// TestDialLayers dials every scheme against an echo server and checks what
// WrapRaw and WrapPlain see.
func TestDialLayers(t *testing.T) {
	pki := newTestPKI(t, ECDSAP256)
	mqttsAddr, _ := serveTCP(t, pki.serverConfig(), echo)
	mqttAddr, _ := serveTCP(t, nil, echo)
	wssAddr := serveWS(t, pki.serverConfig(), WSOptions{}, echo)
	wsAddr := serveWS(t, nil, WSOptions{}, echo)

	tests := []struct {
		target   string
		rawFirst byte // first byte the client puts on the wire
	}{
		{"mqtts://" + mqttsAddr, 0x16},                    // TLS handshake record
		{"wss://" + wssAddr + "/$iothub/websocket", 0x16}, // TLS handshake record
		{"mqtt://" + mqttAddr, 0x10},                      // the CONNECT itself
		{"ws://" + wsAddr + "/mqtt", 'G'},                 // GET of the upgrade
	}
	msg := []byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00}
	for _, tt := range tests {
		t.Run(strings.SplitN(tt.target, ":", 2)[0], func(t *testing.T) {
			wrapRaw, raw := recorder()
			wrapPlain, plain := recorder()
			c, err := Dial(testCtx(t), mustTarget(t, tt.target), DialOptions{
				TLSConfig: pki.clientConfig(), WrapRaw: wrapRaw, WrapPlain: wrapPlain})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c != plain() {
				t.Fatal("Dial did not return the WrapPlain connection")
			}
			roundTrip(t, c, msg)
			_, rawWrote := raw().snapshot()
			plainRead, plainWrote := plain().snapshot()
			if len(rawWrote) == 0 || rawWrote[0] != tt.rawFirst {
				t.Errorf("WrapRaw first byte written = %x, want %#x", rawWrote[:min(1, len(rawWrote))], tt.rawFirst)
			}
			if !bytes.Equal(plainWrote, msg) || !bytes.Equal(plainRead, msg) {
				t.Errorf("WrapPlain saw wrote %x read %x, want %x both ways", plainWrote, plainRead, msg)
			}
			if tt.rawFirst != 0x10 && bytes.Contains(rawWrote, []byte("MQTT")) {
				t.Errorf("raw bytes contain the plaintext packet: %x", rawWrote)
			}
		})
	}
}

func TestDialNegotiatesTLS12(t *testing.T) {
	for _, kt := range []KeyType{ECDSAP256, RSA2048} {
		t.Run(kt.String(), func(t *testing.T) {
			pki := newTestPKI(t, kt)
			addr, _ := serveTCP(t, pki.serverConfig(), echo)
			c, err := Dial(testCtx(t), mustTarget(t, "mqtts://"+addr), DialOptions{TLSConfig: pki.clientConfig()})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			st := c.(*tls.Conn).ConnectionState()
			if st.Version != tls.VersionTLS12 {
				t.Errorf("version = %x, want TLS 1.2", st.Version)
			}
			name := tls.CipherSuiteName(st.CipherSuite)
			if !slices.Contains(DPSCipherSuites(), st.CipherSuite) || !strings.Contains(name, map[KeyType]string{ECDSAP256: "_ECDSA_", RSA2048: "_RSA_"}[kt]) {
				t.Errorf("suite = %s, want a DPS suite for %v", name, kt)
			}
		})
	}
}

// TestTLS12OnlySuites offers each DPS suite alone and expects it to be
// negotiated with the matching certificate type.
func TestTLS12OnlySuites(t *testing.T) {
	pkis := map[KeyType]*testPKI{ECDSAP256: newTestPKI(t, ECDSAP256), RSA2048: newTestPKI(t, RSA2048)}
	for _, id := range DPSCipherSuites() {
		name := tls.CipherSuiteName(id)
		t.Run(name, func(t *testing.T) {
			kt := RSA2048
			if strings.Contains(name, "_ECDSA_") {
				kt = ECDSAP256
			}
			addr, _ := serveTCP(t, pkis[kt].serverConfig(), echo)
			cfg := pkis[kt].clientConfig()
			cfg.CipherSuites, cfg.MaxVersion = []uint16{id}, tls.VersionTLS12
			c, err := Dial(testCtx(t), mustTarget(t, "mqtts://"+addr), DialOptions{TLSConfig: cfg})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.(*tls.Conn).ConnectionState().CipherSuite; got != id {
				t.Errorf("negotiated %s", tls.CipherSuiteName(got))
			}
		})
	}
	cfg := TLS12Only(&tls.Config{ServerName: "keep"})
	if cfg.MinVersion != tls.VersionTLS12 || cfg.MaxVersion != tls.VersionTLS12 || cfg.ServerName != "keep" || len(cfg.CipherSuites) != 6 {
		t.Errorf("TLS12Only = %+v", cfg)
	}
	if TLS12Only(nil).MaxVersion != tls.VersionTLS12 {
		t.Error("TLS12Only(nil) not restricted")
	}
}

func TestDialTLSRefused(t *testing.T) {
	pki := newTestPKI(t, RSA2048)
	tests := []struct {
		name      string
		client    func(*tls.Config)
		clientErr string // alert or local error seen by the client
		serverErr string // handshake error seen by the server
	}{
		{"tls13-only", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS13, tls.VersionTLS13 },
			"protocol version not supported", "unsupported versions"},
		{"tls10-only", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS10 },
			"protocol version not supported", "unsupported versions"},
		{"tls11-only", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS11, tls.VersionTLS11 },
			"protocol version not supported", "unsupported versions"},
		{"cbc-sha1-only", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}
		}, "handshake failure", "no cipher suite supported by both"},
		{"unknown-ca", func(c *tls.Config) { c.RootCAs = x509.NewCertPool() }, "unknown authority", "bad certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, serverErrs := serveTCP(t, pki.serverConfig(), echo)
			cfg := pki.clientConfig()
			tt.client(cfg)
			c, err := Dial(testCtx(t), mustTarget(t, "mqtts://"+addr), DialOptions{TLSConfig: cfg})
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded, want TLS refusal")
			}
			var de *DialError
			if !errors.As(err, &de) || de.Stage != StageTLS {
				t.Fatalf("error %v: want *DialError at stage tls", err)
			}
			if !strings.Contains(err.Error(), tt.clientErr) {
				t.Errorf("client error %q does not mention %q", err, tt.clientErr)
			}
			select {
			case serr := <-serverErrs:
				if !strings.Contains(serr.Error(), tt.serverErr) {
					t.Errorf("server error %q does not mention %q", serr, tt.serverErr)
				}
			case <-time.After(5 * time.Second):
				t.Error("server reported no handshake error")
			}
		})
	}
}

func TestDialErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := l.Addr().String()
	l.Close()
	pki := newTestPKI(t, ECDSAP256)
	wsAddr := serveWS(t, nil, WSOptions{}, echo)
	// A server that accepts TCP and never speaks: the handshake must be
	// bounded by ctx.
	silent, _ := serveTCP(t, nil, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	// A WebSocket server that ignores the offered subprotocol.
	noSub := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err == nil {
			ws.Close()
		}
	}))

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()

	tests := []struct {
		name   string
		ctx    context.Context
		target Target
		opt    DialOptions
		stage  string
		check  func(t *testing.T, err error)
	}{
		{"refused", context.Background(), mustTarget(t, "mqtts://"+closedAddr), DialOptions{}, StageTCP,
			func(t *testing.T, err error) {
				var op *net.OpError
				if !errors.As(err, &op) {
					t.Errorf("want *net.OpError inside, got %v", err)
				}
			}},
		{"cancelled", cancelled, mustTarget(t, "mqtts://"+closedAddr), DialOptions{}, StageTCP,
			func(t *testing.T, err error) {
				if !errors.Is(err, context.Canceled) {
					t.Errorf("want context.Canceled inside, got %v", err)
				}
			}},
		{"tls-silent-peer", short, mustTarget(t, "mqtts://"+silent), DialOptions{TLSConfig: pki.clientConfig()}, StageTLS,
			func(t *testing.T, err error) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("want context.DeadlineExceeded inside, got %v", err)
				}
			}},
		{"bad-scheme", context.Background(), Target{Scheme: "http", Host: "h", Port: 1}, DialOptions{}, StageTCP,
			func(t *testing.T, err error) {
				if !errors.Is(err, ErrInvalidTarget) {
					t.Errorf("want ErrInvalidTarget inside, got %v", err)
				}
			}},
		{"ws-404", context.Background(), mustTarget(t, "ws://"+wsAddr+"/nope"), DialOptions{}, StageWebSocket,
			func(t *testing.T, err error) {
				var he *WSHandshakeError
				if !errors.As(err, &he) || he.StatusCode != http.StatusNotFound || !strings.Contains(he.Body, "/$iothub/websocket") {
					t.Errorf("want WSHandshakeError 404 naming the paths, got %v", err)
				}
			}},
		{"ws-bad-subprotocol", context.Background(), mustTarget(t, "ws://"+wsAddr), DialOptions{Subprotocol: "mqttv5"}, StageWebSocket,
			func(t *testing.T, err error) {
				var he *WSHandshakeError
				if !errors.As(err, &he) || he.StatusCode != http.StatusBadRequest || !strings.Contains(he.Body, "offered: mqttv5") {
					t.Errorf("want WSHandshakeError 400 naming the offer, got %v", err)
				}
			}},
		{"ws-no-subprotocol-selected", context.Background(), mustTarget(t, "ws://"+noSub), DialOptions{}, StageWebSocket,
			func(t *testing.T, err error) {
				if !strings.Contains(err.Error(), `selected subprotocol "", want "mqtt" [MQTT-6.0.0-4]`) {
					t.Errorf("got %v", err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Dial(tt.ctx, tt.target, tt.opt)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			var de *DialError
			if !errors.As(err, &de) || de.Stage != tt.stage || de.Target != tt.target {
				t.Fatalf("error %v: want *DialError{Stage: %q, Target: %v}", err, tt.stage, tt.target)
			}
			tt.check(t, err)
		})
	}
}

// TestDialHeaderAndSubprotocol checks the upgrade request carries Header and
// the chosen subprotocol, and that "MQTT" (the C SDK's) is accepted.
func TestDialHeaderAndSubprotocol(t *testing.T) {
	gotHeader := make(chan string, 1)
	h := NewWSHandler(WSOptions{}, echo)
	addr := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHeader <- r.Header.Get("Authorization")
		h.ServeHTTP(w, r)
	}))
	hdr := http.Header{"Authorization": {"SharedAccessSignature sr=x"}}
	c, err := Dial(testCtx(t), mustTarget(t, "ws://"+addr), DialOptions{Subprotocol: "MQTT", Header: hdr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := <-gotHeader; got != "SharedAccessSignature sr=x" {
		t.Errorf("server saw Authorization %q", got)
	}
	if got := c.(*WSConn).Subprotocol(); got != "MQTT" {
		t.Errorf("subprotocol = %q, want MQTT", got)
	}
	roundTrip(t, c, []byte{0xc0, 0x00})
}

// TestDialWSCancel: a cancelled context ends a WebSocket upgrade whose
// answer never comes (the dialer itself watches only the deadline), with
// an error that says so.
func TestDialWSCancel(t *testing.T) {
	// Reads the upgrade request, says so, and never answers.
	asked := make(chan struct{}, 1)
	stalled, _ := serveTCP(t, nil, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		asked <- struct{}{}
		_, _ = io.Copy(io.Discard, r)
	})
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() {
		c, err := Dial(ctx, mustTarget(t, "ws://"+stalled+"/$iothub/websocket"), DialOptions{})
		if c != nil {
			c.Close()
		}
		done <- err
	}()
	select {
	case <-asked: // the dialer waits for the answer
	case <-time.After(5 * time.Second):
		t.Fatal("the upgrade request never came")
	}
	cancel()
	select {
	case err := <-done:
		var de *DialError
		if !errors.Is(err, context.Canceled) || !errors.As(err, &de) || de.Stage != StageWebSocket {
			t.Fatalf("Dial after cancel: %v, want a websocket-stage DialError wrapping context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Dial did not return within 5 s of the cancel")
	}
}

// TestDialWSBad101: a 101 answer that does not complete the upgrade is
// not called a refusal; the error names what it lacks.
func TestDialWSBad101(t *testing.T) {
	for _, tc := range []struct{ name, answer, want string }{
		{"no Upgrade", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", "no Upgrade: websocket header"},
		{"no Connection", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", "no Connection: Upgrade header"},
		{"no accept", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "no Sec-WebSocket-Accept header"},
		{"wrong accept", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: bm90IGl0\r\n\r\n", "Sec-WebSocket-Accept does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := serveTCP(t, nil, func(c net.Conn) {
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				_, _ = io.WriteString(c, tc.answer)
			})
			c, err := Dial(testCtx(t), mustTarget(t, "ws://"+addr+"/$iothub/websocket"), DialOptions{})
			if c != nil {
				c.Close()
			}
			var he *WSHandshakeError
			if !errors.As(err, &he) || !strings.Contains(err.Error(), "upgrade failed: HTTP 101 Switching Protocols, but ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Dial: %v, want a WSHandshakeError naming %q", err, tc.want)
			}
		})
	}
}

// TestDialErrorText: the stage is named once, also when the error says it
// already (crypto/tls's "tls: ...", "websocket upgrade refused").
func TestDialErrorText(t *testing.T) {
	tg := Target{Scheme: SchemeMQTTS, Host: "h", Port: 8883}
	for _, tt := range []struct {
		stage string
		err   error
		want  string
	}{
		{StageTLS, errors.New("tls: first record does not look like a TLS handshake"), "transport: dial mqtts://h:8883: tls: first record does not look like a TLS handshake"},
		{StageTCP, errors.New("connection refused"), "transport: dial mqtts://h:8883: tcp: connection refused"},
		{StageTLS, nil, "transport: dial mqtts://h:8883: tls: <nil>"},
		{StageWebSocket, &WSHandshakeError{StatusCode: 404, Status: "404 Not Found"}, "transport: dial mqtts://h:8883: websocket upgrade refused: HTTP 404 Not Found"},
	} {
		if got := (&DialError{Target: tg, Stage: tt.stage, Err: tt.err}).Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// TestDialWSUnofferedExtension: a 101 that selects an extension the client
// did not offer fails the dial (RFC 6455 §4.1); gorilla alone would accept
// permessage-deflate unasked and then send compressed frames.
func TestDialWSUnofferedExtension(t *testing.T) {
	for _, tc := range []struct {
		name     string
		compress bool   // DialOptions.EnableCompression
		ext      string // the answer's Sec-WebSocket-Extensions
		ok       bool
	}{
		{"deflate-not-offered", false, "permessage-deflate; server_no_context_takeover; client_no_context_takeover", false},
		{"unknown-not-offered", false, "x-webkit-deflate-frame", false},
		{"unknown-besides-deflate", true, "permessage-deflate; server_no_context_takeover; client_no_context_takeover, x-foo", false},
		{"deflate-offered", true, "permessage-deflate; server_no_context_takeover; client_no_context_takeover", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := serveTCP(t, nil, func(c net.Conn) {
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
					"Sec-WebSocket-Accept: "+acceptKey(req.Header.Get("Sec-WebSocket-Key"))+"\r\n"+
					"Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Extensions: "+tc.ext+"\r\n\r\n")
				_, _ = io.Copy(io.Discard, c)
			})
			c, err := Dial(testCtx(t), mustTarget(t, "ws://"+addr), DialOptions{EnableCompression: tc.compress})
			if c != nil {
				c.(*WSConn).CloseTimeout = time.Millisecond // the peer never answers
				c.Close()
			}
			if tc.ok {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				return
			}
			var de *DialError
			if !errors.As(err, &de) || de.Stage != StageWebSocket || !strings.Contains(err.Error(), "extension") {
				t.Fatalf("Dial: %v, want a websocket-stage error naming the extension", err)
			}
		})
	}
}

// TestDialHandshakeTimeout: DialOptions.HandshakeTimeout bounds each
// handshake on its own, well before ctx ends, and says what went
// unanswered; without it, or when ctx ends first, ctx's error stays.
func TestDialHandshakeTimeout(t *testing.T) {
	pki := newTestPKI(t, ECDSAP256)
	bh := testnet.Silent(t) // accepts TCP and reads nothing
	// Answers the ClientHello with a few bytes of a record, then nothing.
	half, _ := serveTCP(t, nil, func(c net.Conn) {
		_, _ = c.Write([]byte{0x16, 0x03, 0x03, 0x00, 0x40, 0x02})
		_, _ = io.Copy(io.Discard, c)
	})
	// TLS, then silence at the upgrade request.
	tlsSilent, _ := serveTCP(t, pki.serverConfig(), func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })

	const bound = 200 * time.Millisecond
	tests := []struct {
		name    string
		target  string
		ctxFor  time.Duration
		timeout time.Duration
		want    string // in the error; "" for no *HandshakeTimeoutError
		stage   string
	}{
		{"mqtts silent", "mqtts://" + bh, 10 * time.Second, bound,
			"transport: dial mqtts://" + bh + ": tls: no answer to a ClientHello within 200ms (is it a TLS port?)", StageTLS},
		{"wss silent", "wss://" + bh + "/$iothub/websocket", 10 * time.Second, bound,
			"transport: dial wss://" + bh + "/$iothub/websocket: tls: no answer to a ClientHello within 200ms", StageTLS},
		{"mqtts answered then silent", "mqtts://" + half, 10 * time.Second, bound,
			"tls: TLS handshake not finished within 200ms: the server answered the ClientHello, then went silent", StageTLS},
		{"wss upgrade silent", "wss://" + tlsSilent + "/$iothub/websocket", 10 * time.Second, bound,
			"websocket: no answer to the websocket upgrade request within 200ms", StageWebSocket},
		{"ctx ends first", "mqtts://" + bh, 100 * time.Millisecond, 5 * time.Second, "", StageTLS},
		{"no bound: ctx alone", "mqtts://" + bh, 150 * time.Millisecond, 0, "", StageTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tt.ctxFor)
			defer cancel()
			c, err := Dial(ctx, mustTarget(t, tt.target), DialOptions{TLSConfig: pki.clientConfig(), HandshakeTimeout: tt.timeout})
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			var de *DialError
			if !errors.As(err, &de) || de.Stage != tt.stage {
				t.Fatalf("err = %v, want a *DialError at stage %s", err, tt.stage)
			}
			if !IsTimeout(err) {
				t.Errorf("IsTimeout(%v) = false", err)
			}
			var he *HandshakeTimeoutError
			if tt.want == "" {
				if errors.As(err, &he) {
					t.Errorf("err = %v, want ctx's error, no *HandshakeTimeoutError", err)
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("err = %v, want context.DeadlineExceeded in the chain", err)
				}
				return
			}
			if !errors.As(err, &he) {
				t.Fatalf("err = %v (%T), want a *HandshakeTimeoutError", err, de.Err)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v is context.DeadlineExceeded; ctx did not end", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestDialWSHandshakeTimeoutAlways: a WebSocket upgrade left unanswered is
// a *HandshakeTimeoutError every time. The dialer puts the handshake
// bound's deadline on the connection, and its read could time out just
// before the bound's context ended: then the error was the bare 'i/o
// timeout' (a few dials in 300).
func TestDialWSHandshakeTimeoutAlways(t *testing.T) {
	// ws://: no TLS handshake to share the bound with the upgrade.
	silent, _ := serveTCP(t, nil, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	target := mustTarget(t, "ws://"+silent+"/$iothub/websocket")
	const dials = 300
	errs := make(chan error, dials)
	for range dials {
		go func() {
			c, err := Dial(context.Background(), target, DialOptions{HandshakeTimeout: 50 * time.Millisecond})
			if err == nil {
				c.Close()
			}
			errs <- err
		}()
	}
	bad := 0
	for range dials {
		var he *HandshakeTimeoutError
		if err := <-errs; !errors.As(err, &he) || he.Stage != StageWebSocket {
			if bad++; bad <= 3 {
				t.Errorf("err = %v, want a *HandshakeTimeoutError at the upgrade", err)
			}
		}
	}
	if bad > 3 {
		t.Errorf("%d of %d dials in all", bad, dials)
	}
}
