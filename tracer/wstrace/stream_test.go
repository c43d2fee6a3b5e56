package wstrace

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

type chunk struct {
	dir  Dir
	data []byte
}

type recorder struct {
	mu     sync.Mutex
	chunks []chunk
}

// recConn records each Write (with the recorder's mutex held) so the log
// is in wire order.
type recConn struct {
	net.Conn
	rec *recorder
	dir Dir
}

func (c *recConn) Write(b []byte) (int, error) {
	c.rec.mu.Lock()
	defer c.rec.mu.Unlock()
	c.rec.chunks = append(c.rec.chunks, chunk{c.dir, append([]byte(nil), b...)})
	return c.Conn.Write(b)
}

type recListener struct {
	net.Listener
	rec *recorder
}

func (l recListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recConn{c, l.rec, ServerToClient}, nil
}

type wsSession struct {
	chunks   []chunk
	c2s, s2c []byte // concatenated message payloads
}

type wsOpts struct {
	compress  bool
	fragments int // messages sent in at least this many frames (compressed: at least 2)
	messages  int
	size      int
}

// recordWS runs a gorilla/websocket client and server over loopback and
// records both directions. The client sends messages, the server echoes
// each one reversed, then the client pings and closes.
func recordWS(t testing.TB, o wsOpts) *wsSession {
	t.Helper()
	rec := &recorder{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := websocket.Upgrader{EnableCompression: o.compress, Subprotocols: []string{"mqtt"}}
	done := make(chan error, 1)
	var s2c []byte
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		c.SetPingHandler(func(data string) error {
			return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
		})
		for {
			typ, m, err := c.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					done <- nil
				} else {
					done <- err
				}
				return
			}
			back := bytes.Clone(m)
			for i, j := 0, len(back)-1; i < j; i, j = i+1, j-1 {
				back[i], back[j] = back[j], back[i]
			}
			s2c = append(s2c, back...)
			if err := c.WriteMessage(typ, back); err != nil {
				done <- err
				return
			}
		}
	})}
	go func() { _ = srv.Serve(recListener{ln, rec}) }()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// gorilla sends a frame each time its write buffer fills: a buffer of
	// size/fragments splits a message into that many frames; a compressed
	// message (a few hundred bytes here) needs a smaller one.
	bufSize := 0
	if o.fragments > 1 {
		bufSize = (o.size + o.fragments - 1) / o.fragments
		if o.compress {
			bufSize = 32
		}
	}
	dialer := websocket.Dialer{
		WriteBufferSize:   bufSize,
		EnableCompression: o.compress,
		Subprotocols:      []string{"mqtt", "other"},
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &recConn{c, rec, ClientToServer}, nil
		},
	}
	c, _, err := dialer.DialContext(ctx, "ws://"+ln.Addr().String()+"/mqtt?x=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	ws := &wsSession{}
	for m := 0; m < o.messages; m++ {
		msg := make([]byte, o.size)
		for i := range msg {
			msg[i] = byte("abcdefgh"[(i*m+i/7)%8]) ^ byte(m)
		}
		ws.c2s = append(ws.c2s, msg...)
		w, err := c.NextWriter(websocket.BinaryMessage)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(msg); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	ws.chunks = rec.chunks
	rec.mu.Unlock()
	ws.s2c = s2c
	return ws
}

func replay(ws *wsSession, split func([]byte) [][]byte) (*Stream, [2][]byte, []error) {
	st := NewStream()
	var out [2][]byte
	var errs []error
	for _, c := range ws.chunks {
		for _, p := range split(c.data) {
			pl, err := st.Feed(c.dir, p)
			out[c.dir] = append(out[c.dir], pl...)
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return st, out, errs
}

func whole(b []byte) [][]byte { return [][]byte{b} }

func byteAtATime(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

func TestRealSessions(t *testing.T) {
	for _, o := range []wsOpts{
		{messages: 3, size: 100},
		{messages: 3, size: 70000},
		{compress: true, messages: 4, size: 5000},
		{compress: true, messages: 2, size: 200000},
		{messages: 2, size: 30000, fragments: 7},
		{compress: true, messages: 2, size: 30000, fragments: 7},
	} {
		t.Run("", func(t *testing.T) {
			ws := recordWS(t, o)
			for name, split := range map[string]func([]byte) [][]byte{"whole": whole, "byte": byteAtATime} {
				st, out, errs := replay(ws, split)
				if len(errs) > 0 {
					t.Fatalf("%s: %v", name, errs)
				}
				if !bytes.Equal(out[0], ws.c2s) || !bytes.Equal(out[1], ws.s2c) {
					t.Fatalf("%s: payload %d/%d bytes, want %d/%d", name, len(out[0]), len(out[1]), len(ws.c2s), len(ws.s2c))
				}
				f := st.Facts()
				if f.Path != "/mqtt?x=1" || f.Status != 101 || f.Subprotocol != "mqtt" || strings.Join(f.OfferedSubprotocols, ",") != "mqtt,other" {
					t.Errorf("%s: facts %+v", name, f)
				}
				if f.Deflate != o.compress || (o.compress && !strings.Contains(f.OfferedExtensions, "permessage-deflate")) {
					t.Errorf("%s: Deflate %v, extensions %q / %q", name, f.Deflate, f.OfferedExtensions, f.Extensions)
				}
				if f.Pings != 1 || f.Pongs != 1 {
					t.Errorf("%s: pings %d pongs %d", name, f.Pings, f.Pongs)
				}
				if f.Close == nil || f.Close.Dir != ClientToServer || f.Close.Code != 1000 || f.Close.Reason != "bye" {
					t.Errorf("%s: close %+v", name, f.Close)
				}
				// Each message in exactly fragments frames (compressed: at
				// least 2), then the ping and the close. (gorilla's default
				// buffer would split 30000 bytes into 8.)
				switch want := o.messages*o.fragments + 2; {
				case o.fragments <= 1:
				case o.compress:
					if want = o.messages*2 + 2; f.Frames[0] < want {
						t.Errorf("%s: %d c2s frames, want at least %d (compressed messages fragmented)", name, f.Frames[0], want)
					}
				case f.Frames[0] != want:
					t.Errorf("%s: %d c2s frames, want %d (%d messages in %d frames each, a ping, a close)", name, f.Frames[0], want, o.messages, o.fragments)
				}
			}
		})
	}
}

// frame builds a frame; mask nil means unmasked.
func frame(b0 byte, payload []byte, mask []byte) []byte {
	out := []byte{b0}
	mbit := byte(0)
	if mask != nil {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, mbit|byte(n))
	case n <= 0xffff:
		out = append(out, mbit|126, byte(n>>8), byte(n))
	default:
		out = append(out, mbit|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	if mask != nil {
		out = append(out, mask...)
		for i, c := range payload {
			out = append(out, c^mask[i%4])
		}
		return out
	}
	return append(out, payload...)
}

const (
	upgradeReq  = "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	upgradeResp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)

func TestProblems(t *testing.T) {
	m := []byte{1, 2, 3, 4}
	reqLen := int64(len(upgradeReq))
	respLen := int64(len(upgradeResp))
	for _, c := range []struct {
		name    string
		dir     Dir
		frames  []byte
		payload string
		off     int64
		msg     string
	}{
		{"rsv", ClientToServer, frame(0x82|0x20, []byte("ab"), m), "ab", reqLen, "reserved bits set (RSV 0x2) on binary frame"},
		{"rsv1 no deflate", ServerToClient, frame(0x81|0x40, []byte("ab"), nil), "ab", respLen, "reserved bits set (RSV 0x4) on text frame"},
		{"unmasked client", ClientToServer, append(frame(0x82, []byte("x"), m), frame(0x82, []byte("ab"), nil)...), "xab", reqLen + 7, "client frame unmasked (RFC 6455 §5.1)"},
		{"masked server", ServerToClient, frame(0x82, []byte("ab"), m), "ab", respLen, "server frame masked (RFC 6455 §5.1)"},
		{"control fragmented", ClientToServer, frame(0x09, []byte("p"), m), "", reqLen, "control frame fragmented (RFC 6455 §5.5)"},
		{"control too long", ServerToClient, frame(0x89, make([]byte, 126), nil), "", respLen, "control frame payload of 126 bytes exceeds 125 (RFC 6455 §5.5)"},
		{"bad opcode", ServerToClient, append(frame(0x83, []byte("zz"), nil), frame(0x82, []byte("ok"), nil)...), "ok", respLen, "reserved opcode 0x3 (RFC 6455 §5.2)"},
		{"bad control opcode", ServerToClient, frame(0x8b, []byte("zz"), nil), "", respLen, "reserved opcode 0xb (RFC 6455 §5.2)"},
		{"orphan continuation", ServerToClient, frame(0x80, []byte("zz"), nil), "", respLen, "continuation frame without a started message (RFC 6455 §5.4)"},
		{"interleaved data", ServerToClient, append(frame(0x02, []byte("a"), nil), frame(0x82, []byte("b"), nil)...), "ab", respLen + 3, "binary frame before the fragmented message ended (RFC 6455 §5.4)"},
		{"non-minimal length", ServerToClient, []byte{0x82, 126, 0, 2, 'h', 'i'}, "hi", respLen, "payload length 2 not minimally encoded (RFC 6455 §5.2)"},
		{"msb length", ServerToClient, []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 'x'}, "", respLen, "64-bit payload length has the most significant bit set (RFC 6455 §5.2): giving up s2c"},
		{"close 1 byte", ClientToServer, frame(0x88, []byte{3}, m), "", reqLen, "close frame payload of 1 byte (RFC 6455 §5.5.1)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, bat := range []bool{false, true} {
				st := NewStream()
				if _, err := st.Feed(ClientToServer, []byte(upgradeReq)); err != nil {
					t.Fatal(err)
				}
				if _, err := st.Feed(ServerToClient, []byte(upgradeResp)); err != nil {
					t.Fatal(err)
				}
				var got []byte
				var errs []error
				split := whole
				if bat {
					split = byteAtATime
				}
				for _, p := range split(c.frames) {
					pl, err := st.Feed(c.dir, p)
					got = append(got, pl...)
					if err != nil {
						errs = append(errs, err)
					}
				}
				if string(got) != c.payload {
					t.Errorf("payload %q, want %q", got, c.payload)
				}
				var e *Error
				if len(errs) != 1 || !errors.As(errs[0], &e) {
					t.Fatalf("errors %v, want one", errs)
				}
				want := Problem{Dir: c.dir, Offset: c.off, Msg: c.msg}
				if e.Problem != want {
					t.Fatalf("problem %v, want %v", e.Problem, want)
				}
				if ps := st.Facts().Problems; len(ps) != 1 || ps[0] != want {
					t.Fatalf("Facts().Problems %v", ps)
				}
			}
		})
	}
}

func TestHugeFrameBounded(t *testing.T) {
	st := NewStream()
	_, _ = st.Feed(ClientToServer, []byte(upgradeReq))
	_, _ = st.Feed(ServerToClient, []byte(upgradeResp))
	h := []byte{0x82, 127, 0x40, 0, 0, 0, 0, 0, 0, 0}
	pl, err := st.Feed(ServerToClient, h)
	if err != nil || pl != nil {
		t.Fatalf("%q %v", pl, err)
	}
	chunk := make([]byte, 1<<16)
	allocs := testing.AllocsPerRun(10, func() {
		pl, _ = st.Feed(ServerToClient, chunk)
	})
	if len(pl) != len(chunk) {
		t.Fatalf("streamed %d bytes", len(pl))
	}
	if allocs > 0 {
		t.Errorf("%v allocations per Feed of a huge frame", allocs)
	}
}

func TestRefused(t *testing.T) {
	st := NewStream()
	_, _ = st.Feed(ClientToServer, []byte(upgradeReq))
	_, err := st.Feed(ServerToClient, []byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n\x82\x01x"))
	if err == nil || st.Facts().Status != 403 || !strings.Contains(err.Error(), "upgrade refused with status 403") {
		t.Fatalf("%v %+v", err, st.Facts())
	}
}

func TestGap(t *testing.T) {
	st := NewStream()
	_, _ = st.Feed(ClientToServer, []byte(upgradeReq))
	_, _ = st.Feed(ServerToClient, []byte(upgradeResp))
	f := frame(0x82, []byte("0123456789"), nil)
	pl0, _ := st.Feed(ServerToClient, f[:5])
	pl := string(pl0) // the result aliases a buffer reused by Feed
	st.Gap(ServerToClient, 3)
	pl2, _ := st.Feed(ServerToClient, append(f[8:], frame(0x82, []byte("z"), nil)...))
	if pl+string(pl2) != "0126789z" {
		t.Fatalf("%q %q", pl, pl2)
	}
	st.Gap(ServerToClient, 3) // between frames: gives up
	pl3, err := st.Feed(ServerToClient, frame(0x82, []byte("z"), nil))
	if pl3 != nil || err != nil {
		t.Fatalf("%q %v", pl3, err)
	}
	ps := st.Facts().Problems
	if len(ps) != 2 || ps[0].Msg != "gap of 3 bytes inside a frame payload: 3 payload bytes lost" || ps[1].Offset != respLen()+int64(len(f))+3 {
		t.Fatalf("%v", ps)
	}
}

// TestGapAtFrameEnd: a gap that takes exactly the rest of a frame's
// payload keeps framing; the next frame is decoded.
func TestGapAtFrameEnd(t *testing.T) {
	st := NewStream()
	_, _ = st.Feed(ClientToServer, []byte(upgradeReq))
	_, _ = st.Feed(ServerToClient, []byte(upgradeResp))
	f := frame(0x82, []byte("abcdef"), nil)
	pl, _ := st.Feed(ServerToClient, f[:4]) // header and "ab"
	got := string(pl)
	st.Gap(ServerToClient, 4) // "cdef"
	pl, err := st.Feed(ServerToClient, frame(0x82, []byte("next"), nil))
	if got+string(pl) != "abnext" || err != nil {
		t.Fatalf("decoded %q then %q, %v; want \"ab\" then \"next\"", got, pl, err)
	}
	if ps := st.Facts().Problems; len(ps) != 1 || ps[0].Msg != "gap of 4 bytes inside a frame payload: 4 payload bytes lost" {
		t.Fatalf("problems %v", ps)
	}
}

func respLen() int64 { return int64(len(upgradeResp)) }

func TestLooksLikeUpgrade(t *testing.T) {
	for _, c := range []struct {
		s    string
		want bool
	}{
		{upgradeReq, true},
		{"GET http://h/x HTTP/1.1\r\n", true},
		{"GET /a b HTTP/1.1", false},
		{"POST / HTTP/1.1", false},
		{"GET x HTTP/1.1", false},
		{"GET /", false},
		{"\x16\x03\x01", false},
	} {
		if got := LooksLikeUpgrade([]byte(c.s)); got != c.want {
			t.Errorf("LooksLikeUpgrade(%q) = %v", c.s, got)
		}
	}
}

// TestCloseRules: close codes that may not be sent and a reason that is
// not UTF-8 are problems (RFC 6455 §7.4, §5.5.1), as is a data frame after
// the same side's Close; a normal close is none.
func TestCloseRules(t *testing.T) {
	closeFrame := func(code uint16, reason string) []byte {
		return frame(0x88, append([]byte{byte(code >> 8), byte(code)}, reason...), nil)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string // "" for no problem
	}{
		{"normal", closeFrame(1000, "bye"), ""},
		{"going away", closeFrame(1001, ""), ""},
		{"try again later", closeFrame(1013, ""), ""},
		{"application code", closeFrame(4000, ""), ""},
		{"1005 sent", closeFrame(1005, ""), "close code 1005 may not be sent (RFC 6455 §7.4)"},
		{"1006 sent", closeFrame(1006, ""), "close code 1006 may not be sent"},
		{"1015 sent", closeFrame(1015, ""), "close code 1015 may not be sent"},
		{"below 1000", closeFrame(999, ""), "close code 999 may not be sent"},
		{"reserved 2000", closeFrame(2000, ""), "close code 2000 may not be sent"},
		{"reason not UTF-8", closeFrame(1000, "\xff"), "close reason is not UTF-8 (RFC 6455 §5.5.1)"},
		{"data after close", append(closeFrame(1000, ""), frame(0x82, []byte("late"), nil)...), "binary frame after this side's Close"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := NewStream()
			_, _ = st.Feed(ClientToServer, []byte(upgradeReq))
			_, _ = st.Feed(ServerToClient, []byte(upgradeResp))
			_, _ = st.Feed(ServerToClient, tc.in)
			ps := st.Facts().Problems
			switch {
			case tc.want == "" && len(ps) != 0:
				t.Errorf("problems %v, want none", ps)
			case tc.want != "" && (len(ps) != 1 || !strings.Contains(ps[0].Msg, tc.want)):
				t.Errorf("problems %v, want one saying %q", ps, tc.want)
			}
		})
	}
}
