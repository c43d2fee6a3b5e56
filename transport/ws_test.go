package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// connectPacket is an MQTT CONNECT, split below the way the Node SDK's
// mqtt.js writes it: one WebSocket message per field.
var connectPacket = []byte{
	0x10, 0x1a, // fixed header, remaining length 26
	0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name
	0x04,       // level
	0xc2,       // flags: username, password, clean session
	0x00, 0x3c, // keep alive
	0x00, 0x04, 'd', 'e', 'v', '1', // client id
	0x00, 0x03, 's', '/', 'r', // username
	0x00, 0x03, 'p', 'w', 'd', // password
}

func TestWSHandshakeRules(t *testing.T) {
	addr := serveWS(t, nil, WSOptions{}, echo)
	custom := serveWS(t, nil, WSOptions{Paths: []string{"/custom"}, Subprotocols: []string{"mqttv3.1"},
		CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") == "" }}, echo)
	tests := []struct {
		name, addr, path string
		header           http.Header
		status           int
		subprotocol      string // selected, on 101
		body             string // substring of the refusal body
	}{
		{"iothub-mqtt", addr, "/$iothub/websocket", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}}, 101, "mqtt", ""},
		{"root-MQTT", addr, "/", http.Header{"Sec-WebSocket-Protocol": {"MQTT"}}, 101, "MQTT", ""},
		{"slash-mqtt", addr, "/mqtt", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}}, 101, "mqtt", ""},
		{"first-acceptable-wins", addr, "/", http.Header{"Sec-WebSocket-Protocol": {"wamp, MQTT, mqtt"}}, 101, "MQTT", ""},
		{"other-path", addr, "/other", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}}, 404, "", `no MQTT WebSocket endpoint at "/other"`},
		{"path-case", addr, "/$IOTHUB/websocket", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}}, 404, "", "use one of"},
		{"no-subprotocol", addr, "/", nil, 400, "", "offered: none"},
		{"wrong-subprotocol", addr, "/", http.Header{"Sec-WebSocket-Protocol": {"mqttv3.1"}}, 400, "", "offer one of mqtt, MQTT"},
		{"custom-path", custom, "/custom", http.Header{"Sec-WebSocket-Protocol": {"mqttv3.1"}}, 101, "mqttv3.1", ""},
		{"custom-refuses-default-path", custom, "/mqtt", http.Header{"Sec-WebSocket-Protocol": {"mqttv3.1"}}, 404, "", "/custom"},
		{"origin-refused", custom, "/custom", http.Header{"Sec-WebSocket-Protocol": {"mqttv3.1"}, "Origin": {"http://evil"}}, 403, "", "origin"},
		{"bad-version", addr, "/", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}, "Sec-WebSocket-Version": {"8"}}, 400, "", "version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, resp := dialRawWS(t, tt.addr, tt.path, tt.header)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 101 {
				if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != tt.subprotocol {
					t.Errorf("subprotocol = %q, want %q", got, tt.subprotocol)
				}
				if err := ws.writeFrame(true, opBin, []byte{0xc0, 0x00}); err != nil {
					t.Fatal(err)
				}
				if op, data, err := ws.readMessage(); err != nil || op != opBin || !bytes.Equal(data, []byte{0xc0, 0x00}) {
					t.Errorf("echo = %x %x %v", op, data, err)
				}
				return
			}
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), tt.body) {
				t.Errorf("body %q does not contain %q", body, tt.body)
			}
		})
	}
	// A plain GET on a WebSocket path is refused with a reason.
	resp, err := http.Get("http://" + addr + "/mqtt")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "expected a WebSocket upgrade") {
		t.Errorf("plain GET: %d %q", resp.StatusCode, body)
	}
}

// serverReads starts a ws server whose accept reads want bytes with
// io.ReadFull and reports them (or the error) on the returned channel.
func serverReads(t *testing.T, o WSOptions, want int) (string, <-chan []byte, <-chan error) {
	got := make(chan []byte, 1)
	errc := make(chan error, 1)
	addr := serveWS(t, nil, o, func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, want)
		if _, err := io.ReadFull(c, b); err != nil {
			errc <- err
			return
		}
		got <- b
		// Wait for the client to close.
		_, err := c.Read(make([]byte, 1))
		errc <- err
	})
	return addr, got, errc
}

// TestWSFragmentation sends byte streams split into messages and frames in
// ways gorilla never produces itself, and checks WSConn.Read sees the
// stream unchanged: [MQTT-6.0.0-2] "The receiver MUST NOT assume that MQTT
// Control Packets are aligned on WebSocket frame boundaries".
func TestWSFragmentation(t *testing.T) {
	type fr struct {
		fin bool
		op  byte
		p   []byte
	}
	var perField []fr // Node SDK style: one message per field
	for _, cut := range [][2]int{{0, 2}, {2, 8}, {8, 9}, {9, 10}, {10, 12}, {12, 18}, {18, 23}, {23, 28}} {
		perField = append(perField, fr{true, opBin, connectPacket[cut[0]:cut[1]]})
	}
	var perByte []fr // one message fragmented into one frame per byte, with pings between
	for i, b := range connectPacket {
		op := byte(opCont)
		if i == 0 {
			op = opBin
		}
		perByte = append(perByte, fr{i == len(connectPacket)-1, op, []byte{b}})
		if i%7 == 3 {
			perByte = append(perByte, fr{true, opPing, []byte("p")})
		}
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 8192) // 128 KiB
	var bigFrames []fr                                    // one message in 16-bit and 64-bit length frames
	for off := 0; off < len(big); off += 70000 {
		op := byte(opCont)
		if off == 0 {
			op = opBin
		}
		end := min(off+70000, len(big))
		bigFrames = append(bigFrames, fr{end == len(big), op, big[off:end]})
	}
	tests := []struct {
		name   string
		frames []fr
		want   []byte
		pongs  int
	}{
		{"one-field-per-message", perField, connectPacket, 0},
		{"one-byte-per-frame-with-pings", perByte, connectPacket, 4},
		{"empty-messages-between", []fr{{true, opBin, nil}, {true, opBin, connectPacket[:5]}, {true, opBin, nil}, {false, opBin, nil}, {true, opCont, connectPacket[5:]}}, connectPacket, 0},
		{"two-packets-one-message", []fr{{true, opBin, append(bytes.Clone(connectPacket), 0xc0, 0x00)}}, append(bytes.Clone(connectPacket), 0xc0, 0x00), 0},
		{"large-fragmented", bigFrames, big, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, got, errc := serverReads(t, WSOptions{}, len(tt.want))
			ws, resp := dialRawWS(t, addr, "/", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}})
			if ws == nil {
				t.Fatalf("upgrade refused: %s", resp.Status)
			}
			for _, f := range tt.frames {
				if err := ws.writeFrame(f.fin, f.op, f.p); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case b := <-got:
				if !bytes.Equal(b, tt.want) {
					t.Fatalf("server read %d bytes %x..., want %x...", len(b), b[:min(32, len(b))], tt.want[:min(32, len(tt.want))])
				}
			case err := <-errc:
				t.Fatalf("server read error: %v", err)
			}
			for i := 0; i < tt.pongs; i++ {
				op, data, err := ws.readMessage()
				if err != nil || op != opPong || string(data) != "p" {
					t.Fatalf("pong %d: op %x data %q err %v", i, op, data, err)
				}
			}
			// Client-initiated close: the server's Read ends with io.EOF and
			// the server answers the close frame.
			if err := ws.writeFrame(true, opClose, websocket.FormatCloseMessage(1000, "bye")); err != nil {
				t.Fatal(err)
			}
			op, data, err := ws.readMessage()
			if err != nil || op != opClose || len(data) < 2 || data[0] != 0x03 || data[1] != 0xe8 {
				t.Errorf("close reply: op %x data %x err %v; want close 1000", op, data, err)
			}
			if err := <-errc; err != io.EOF {
				t.Errorf("server Read after close = %v, want io.EOF", err)
			}
		})
	}
}

func TestWSTextFrameRefused(t *testing.T) {
	errc := make(chan error, 1)
	addr := serveWS(t, nil, WSOptions{}, func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 10))
		_, err2 := c.Read(make([]byte, 10))
		if err != err2 {
			err = errors.Join(err, errors.New("second read differs"))
		}
		errc <- err
	})
	ws, _ := dialRawWS(t, addr, "/", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}})
	if err := ws.writeFrame(true, opText, []byte{0x10, 0x00}); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrTextFrame) {
		t.Fatalf("server Read = %v, want ErrTextFrame", err)
	}
	// The handler closes the connection after accept returns: a close
	// frame with 1003, unsupported data (RFC 6455 §7.4.1), not 1000.
	op, data, err := ws.readMessage()
	if err != nil || op != opClose || len(data) < 2 || data[0] != 0x03 || data[1] != 0xeb {
		t.Errorf("after text frame: op %x data %x err %v, want close 1003", op, data, err)
	}
}

// TestWSPacketPerMessage checks the PacketPerMessage fault mode: a message
// that is one whole MQTT packet is read as usual (also when fragmented into
// frames, which gorilla reassembles), while a message holding part of a
// packet, or more than one, ends the stream with ErrNotOnePacket and the
// handler closes with 1002; without the mode all of them are one stream
// (TestWSFragmentation).
func TestWSPacketPerMessage(t *testing.T) {
	pingreq := []byte{0xc0, 0x00}
	long := append([]byte{0x30, 0x80, 0x01}, make([]byte, 128)...) // remaining length in two bytes
	tests := []struct {
		name     string
		messages [][]byte
		frames   int    // >1: the single message goes out in that many frames
		want     string // "" when the server reads every byte
	}{
		{"one-packet", [][]byte{connectPacket}, 1, ""},
		{"one-packet-in-frames", [][]byte{connectPacket}, 5, ""},
		{"two-byte-remaining-length", [][]byte{long}, 1, ""},
		{"packet-per-message", [][]byte{connectPacket, pingreq}, 1, ""},
		{"one-field-per-message", [][]byte{connectPacket[:2], connectPacket[2:8], connectPacket[8:]}, 1, "part of a packet"},
		{"type-byte-alone", [][]byte{connectPacket[:1], connectPacket[1:]}, 1, "no whole fixed header"},
		{"remaining-length-cut", [][]byte{long[:2], long[2:]}, 1, "ends inside the remaining length"},
		{"two-packets-one-message", [][]byte{append(bytes.Clone(connectPacket), pingreq...)}, 1, "more than one packet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var all []byte
			for _, m := range tt.messages {
				all = append(all, m...)
			}
			addr, got, errc := serverReads(t, WSOptions{PacketPerMessage: true}, len(all))
			ws, resp := dialRawWS(t, addr, "/", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}})
			if ws == nil {
				t.Fatalf("upgrade refused: %s", resp.Status)
			}
			for _, m := range tt.messages {
				if tt.frames > 1 {
					step := (len(m) + tt.frames - 1) / tt.frames
					for off := 0; off < len(m); off += step {
						op := byte(opCont)
						if off == 0 {
							op = opBin
						}
						if err := ws.writeFrame(off+step >= len(m), op, m[off:min(off+step, len(m))]); err != nil {
							t.Fatal(err)
						}
					}
					continue
				}
				if err := ws.writeFrame(true, opBin, m); err != nil {
					if tt.want == "" {
						t.Fatal(err)
					}
					break // the server has closed already, as it should
				}
			}
			if tt.want == "" {
				select {
				case b := <-got:
					if !bytes.Equal(b, all) {
						t.Fatalf("server read %x, want %x", b, all)
					}
				case err := <-errc:
					t.Fatalf("server read error: %v", err)
				}
				_ = ws.writeFrame(true, opClose, websocket.FormatCloseMessage(1000, ""))
				<-errc
				return
			}
			select {
			case b := <-got:
				t.Fatalf("server read %x, want ErrNotOnePacket", b)
			case err := <-errc:
				if !errors.Is(err, ErrNotOnePacket) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("server Read = %v, want ErrNotOnePacket saying %q", err, tt.want)
				}
			}
			// The handler closes after accept returns: 1002, protocol error.
			op, data, err := ws.readMessage()
			if err != nil || op != opClose || len(data) < 2 || int(data[0])<<8|int(data[1]) != websocket.CloseProtocolError {
				t.Errorf("after the message: op %x data %x err %v, want close 1002", op, data, err)
			}
		})
	}
}

// TestWSWriteIsOneMessage checks the client side of the contract a test
// relies on to choose the framing: each Write of a dialled WSConn reaches
// the server as one binary message, so a packet written in pieces trips
// the PacketPerMessage server and the same packet in one Write does not.
func TestWSWriteIsOneMessage(t *testing.T) {
	for _, split := range []bool{false, true} {
		t.Run(fmt.Sprint("split=", split), func(t *testing.T) {
			addr, got, errc := serverReads(t, WSOptions{PacketPerMessage: true}, len(connectPacket))
			c, err := Dial(testCtx(t), mustTarget(t, "ws://"+addr), DialOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			pieces := [][]byte{connectPacket}
			if split {
				pieces = [][]byte{connectPacket[:1], connectPacket[1:2], connectPacket[2:]}
			}
			for _, p := range pieces {
				if _, err := c.Write(p); err != nil {
					if !split {
						t.Fatal(err)
					}
					break // the server has closed already, as it should
				}
			}
			select {
			case <-got:
				if split {
					t.Fatal("the server read a packet written in three Writes as one message")
				}
			case err := <-errc:
				if !split || !errors.Is(err, ErrNotOnePacket) {
					t.Fatalf("server Read = %v", err)
				}
			}
		})
	}
}

// TestWSServerClose checks Close on the server side runs the closing
// handshake: the close frame comes first, then Close waits for the reply.
func TestWSServerClose(t *testing.T) {
	closed := make(chan error, 1)
	addr := serveWS(t, nil, WSOptions{}, func(c net.Conn) {
		c.(*WSConn).CloseTimeout = 5 * time.Second
		closed <- c.Close()
	})
	ws, _ := dialRawWS(t, addr, "/", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}})
	op, data, err := ws.readMessage()
	if err != nil || op != opClose || !bytes.Equal(data[:2], []byte{0x03, 0xe8}) {
		t.Fatalf("got op %x data %x err %v, want close 1000", op, data, err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) before the peer answered", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := ws.writeFrame(true, opClose, data[:2]); err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close = %v", err)
	}
	// The server then closes TCP.
	if _, err := ws.readFrame(); err != io.EOF {
		t.Errorf("after close handshake: %v, want EOF", err)
	}
}

// TestWSClientClose checks Dial's WSConn: a Close concurrent with a blocked
// Read completes the handshake, and the server sees io.EOF.
func TestWSClientClose(t *testing.T) {
	serverErr := make(chan error, 1)
	addr := serveWS(t, nil, WSOptions{}, func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, c)
		serverErr <- err
	})
	c, err := Dial(testCtx(t), mustTarget(t, "ws://"+addr), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		readErr <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the Read block (the test passes either way)
	if err := c.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := <-serverErr; err != nil { // io.Copy maps io.EOF to nil
		t.Errorf("server saw %v, want a clean close", err)
	}
	if err := <-readErr; err == nil {
		t.Error("Read after Close returned no error")
	}
	if _, err := c.Write([]byte{1}); err == nil {
		t.Error("Write after Close succeeded")
	}
}

func TestWSReadLimit(t *testing.T) {
	serverErr := make(chan error, 1)
	addr := serveWS(t, nil, WSOptions{ReadLimit: 1000}, func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, c)
		serverErr <- err
	})
	c, err := Dial(testCtx(t), mustTarget(t, "ws://"+addr), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(make([]byte, 1001)); err != nil {
		t.Fatal(err)
	}
	if err := <-serverErr; !errors.Is(err, websocket.ErrReadLimit) {
		t.Errorf("server: %v, want ErrReadLimit", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Errorf("client Read = %v, want close 1009", err)
	}
}

// TestWSOmitSubprotocol checks the OmitSubprotocol fault mode: an
// acceptable offer gets a 101 without Sec-WebSocket-Protocol, while the
// path and subprotocol checks and the read limit still apply.
func TestWSOmitSubprotocol(t *testing.T) {
	serverErr := make(chan error, 1)
	addr := serveWS(t, nil, WSOptions{OmitSubprotocol: true, ReadLimit: 1000}, func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(c, c)
		serverErr <- err
	})
	tests := []struct {
		name, path string
		header     http.Header
		status     int
		body       string // substring of the refusal body
	}{
		{"mqtt", "/$iothub/websocket", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}}, 101, ""},
		{"MQTT", "/", http.Header{"Sec-WebSocket-Protocol": {"MQTT"}}, 101, ""},
		{"other-path", "/other", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}}, 404, `no MQTT WebSocket endpoint at "/other"`},
		{"no-subprotocol", "/", nil, 400, "offered: none"},
		{"wrong-subprotocol", "/", http.Header{"Sec-WebSocket-Protocol": {"mqttv3.1"}}, 400, "offer one of mqtt, MQTT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, resp := dialRawWS(t, addr, tt.path, tt.header)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status != 101 {
				body, _ := io.ReadAll(resp.Body)
				if !strings.Contains(string(body), tt.body) {
					t.Errorf("body %q does not contain %q", body, tt.body)
				}
				return
			}
			if got, ok := resp.Header["Sec-Websocket-Protocol"]; ok {
				t.Errorf("Sec-WebSocket-Protocol = %q, want none", got)
			}
			if err := ws.writeFrame(true, opBin, []byte{0xc0, 0x00}); err != nil {
				t.Fatal(err)
			}
			if op, data, err := ws.readMessage(); err != nil || op != opBin || !bytes.Equal(data, []byte{0xc0, 0x00}) {
				t.Fatalf("echo = %x %x %v", op, data, err)
			}
			// The read limit still applies: 1001 bytes close with 1009.
			if err := ws.writeFrame(true, opBin, make([]byte, 1001)); err != nil {
				t.Fatal(err)
			}
			if err := <-serverErr; !errors.Is(err, websocket.ErrReadLimit) {
				t.Errorf("server: %v, want ErrReadLimit", err)
			}
			op, data, err := ws.readMessage()
			if err != nil || op != opClose || len(data) < 2 || int(data[0])<<8|int(data[1]) != websocket.CloseMessageTooBig {
				t.Errorf("after 1001 bytes: %x %x %v, want close 1009", op, data, err)
			}
		})
	}
}

func TestWSLargeMessages(t *testing.T) {
	addr := serveWS(t, nil, WSOptions{ReadLimit: 4 << 20}, echo)
	c, err := Dial(testCtx(t), mustTarget(t, "ws://"+addr), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, n := range []int{1, 125, 126, 65535, 65536, 3 << 20} {
		msg := bytes.Repeat([]byte{byte(n)}, n)
		msg[0] = 0x30
		var wg sync.WaitGroup
		wg.Add(1)
		var werr error
		go func() { // write concurrently: the echo needs us to read
			defer wg.Done()
			_, werr = c.Write(msg)
		}()
		got := make([]byte, n)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, rerr := io.ReadFull(c, got)
		wg.Wait()
		if werr != nil || rerr != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes: write %v read %v equal %v", n, werr, rerr, bytes.Equal(got, msg))
		}
	}
}

// TestWSCompression checks permessage-deflate is negotiated when both sides
// enable it (and then shrinks a compressible stream on the wire), and is
// declined cleanly otherwise.
func TestWSCompression(t *testing.T) {
	msg := bytes.Repeat([]byte("$dps/registrations/res/202/?$rid=1&retry-after=3 "), 1000)
	tests := []struct {
		name           string
		server, client bool
		negotiated     bool
	}{
		{"both", true, true, true},
		{"server-declines", false, true, false},
		{"client-does-not-offer", true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serveWS(t, nil, WSOptions{EnableCompression: tt.server}, echo)
			// The raw handshake shows the response header.
			hdr := http.Header{"Sec-WebSocket-Protocol": {"mqtt"}}
			if tt.client {
				hdr.Set("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
			}
			ws, resp := dialRawWS(t, addr, "/", hdr)
			if ws == nil {
				t.Fatalf("upgrade refused: %s", resp.Status)
			}
			ext := resp.Header.Get("Sec-WebSocket-Extensions")
			if got := strings.Contains(ext, "permessage-deflate"); got != tt.negotiated {
				t.Errorf("Sec-WebSocket-Extensions = %q, negotiated = %v, want %v", ext, got, tt.negotiated)
			}
			// Through Dial: count the bytes on the wire.
			wrapRaw, raw := recorder()
			c, err := Dial(testCtx(t), mustTarget(t, "ws://"+addr), DialOptions{EnableCompression: tt.client, WrapRaw: wrapRaw})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			go func() { _, _ = c.Write(msg) }()
			got := make([]byte, len(msg))
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("echo: %v", err)
			}
			read, _ := raw().snapshot()
			if compressed := len(read) < len(msg)/2; compressed != tt.negotiated {
				t.Errorf("%d bytes on the wire for a %d-byte message; compressed = %v, want %v", len(read), len(msg), compressed, tt.negotiated)
			}
		})
	}
}

// TestWSDeadlines checks deadlines behave as for TCP: timeouts are
// net.Errors matching os.ErrDeadlineExceeded, and the connection works again
// once the deadline moves.
func TestWSDeadlines(t *testing.T) {
	addr := serveWS(t, nil, WSOptions{}, echo)
	dial := func(t *testing.T) net.Conn {
		c, err := Dial(testCtx(t), mustTarget(t, "ws://"+addr), DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	isTimeout := func(err error) bool {
		ne, ok := err.(net.Error)
		return ok && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
	}
	t.Run("read-future", func(t *testing.T) {
		c := dial(t)
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
			t.Fatalf("Read = %v, want timeout", err)
		}
		// Far more than gorilla's 1000 failed reads, after which gorilla
		// panics: WSConn must not touch gorilla for a timed-out Read.
		for i := 0; i < 1500; i++ {
			if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
				t.Fatalf("Read %d = %v, want timeout", i, err)
			}
		}
		_ = c.SetReadDeadline(time.Time{})
		roundTrip(t, c, []byte("still alive"))
	})
	t.Run("read-past-then-data", func(t *testing.T) {
		c := dial(t)
		if _, err := c.Write([]byte("queued")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(-time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || !isTimeout(err) {
			t.Fatalf("Read = %d, %v, want 0, timeout", n, err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, 6)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "queued" {
			t.Fatalf("after timeout read %q, %v", got, err)
		}
	})
	t.Run("read-past-with-pending", func(t *testing.T) {
		// Part of a message is already in the adapter: a passed deadline
		// still wins, as on TCP, and no byte is lost.
		c := dial(t)
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, 2)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "he" {
			t.Fatalf("first read %q, %v", got, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(-time.Second))
		if n, err := c.Read(make([]byte, 8)); n != 0 || !isTimeout(err) {
			t.Fatalf("Read = %d, %v, want 0, timeout", n, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got = make([]byte, 3)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "llo" {
			t.Fatalf("after timeout read %q, %v", got, err)
		}
	})
	t.Run("present", func(t *testing.T) {
		c := dial(t)
		_ = c.SetReadDeadline(time.Time{})
		errc := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 1))
			errc <- err
		}()
		time.Sleep(20 * time.Millisecond) // let Read block; the test holds either way
		_ = c.SetReadDeadline(time.Now())
		if err := <-errc; !isTimeout(err) {
			t.Fatalf("blocked Read = %v, want timeout", err)
		}
	})
	t.Run("write-past", func(t *testing.T) {
		c := dial(t)
		_ = c.SetWriteDeadline(time.Now().Add(-time.Second))
		if n, err := c.Write([]byte{1}); n != 0 || !isTimeout(err) {
			t.Fatalf("Write = %d, %v, want 0, timeout", n, err)
		}
		_ = c.SetWriteDeadline(time.Time{})
		roundTrip(t, c, []byte("ok"))
	})
	t.Run("addrs", func(t *testing.T) {
		c := dial(t)
		if c.RemoteAddr().String() != addr || c.LocalAddr() == nil {
			t.Errorf("addrs %v %v, want remote %s", c.LocalAddr(), c.RemoteAddr(), addr)
		}
	})
}

func TestWrapListener(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if WrapListener(l, nil) != l {
		t.Error("WrapListener(l, nil) != l")
	}
	wrap, rec := recorder()
	wl := WrapListener(l, wrap)
	defer wl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", wl.Addr().String())
		if err == nil {
			_, _ = c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := wl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	if read, _ := rec().snapshot(); c != rec() || string(read) != "hi" || string(b) != "hi" {
		t.Errorf("wrapped conn read %q via recorder %q", b, read)
	}
	wl.Close()
	if _, err := wl.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v", err)
	}
}

// TestWSCloseUnansweredIsBounded checks Close gives up on a peer that never
// answers the close frame after CloseTimeout.
func TestWSCloseUnansweredIsBounded(t *testing.T) {
	closed := make(chan error, 1)
	addr := serveWS(t, nil, WSOptions{}, func(c net.Conn) {
		c.(*WSConn).CloseTimeout = 100 * time.Millisecond
		closed <- c.Close()
	})
	ws, _ := dialRawWS(t, addr, "/", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}})
	select {
	case <-closed: // the raw client never answers
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after CloseTimeout")
	}
	if op, _, err := ws.readMessage(); err != nil || op != opClose {
		t.Errorf("got op %x err %v, want the close frame", op, err)
	}
}

// TestWSClientAnswersPing checks a Dial'ed WSConn answers a server ping
// while the application reads.
func TestWSClientAnswersPing(t *testing.T) {
	pong := make(chan string, 1)
	addr := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{Subprotocols: []string{"mqtt"}}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		ws.SetPongHandler(func(s string) error {
			pong <- s
			return ws.WriteMessage(websocket.BinaryMessage, []byte{0xd0, 0x00}) // PINGRESP
		})
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := ws.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second)); err != nil {
			return
		}
		for i := 0; i < 10; i++ {
			if _, _, err := ws.NextReader(); err != nil {
				return
			}
		}
	}))
	c, err := Dial(testCtx(t), mustTarget(t, "ws://"+addr), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil || !bytes.Equal(b, []byte{0xd0, 0x00}) {
		t.Fatalf("Read %x %v", b, err)
	}
	if got := <-pong; got != "are you there" {
		t.Errorf("pong payload %q", got)
	}
}

// TestWSServerWrapPlain checks WSOptions.WrapPlain wraps what accept gets
// and sees the MQTT bytes, not frames.
func TestWSServerWrapPlain(t *testing.T) {
	wrap, rec := recorder()
	gotWrapped, echoed := make(chan bool, 1), make(chan struct{})
	addr := serveWS(t, nil, WSOptions{WrapPlain: wrap}, func(c net.Conn) {
		gotWrapped <- c == net.Conn(rec())
		echo(c)
		close(echoed)
	})
	c, err := Dial(testCtx(t), mustTarget(t, "ws://"+addr), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, connectPacket)
	c.Close()
	if !<-gotWrapped {
		t.Error("accept did not get the WrapPlain connection")
	}
	// The recorder notes a write after it returns, so the client can read
	// the echo first: snapshot once the server's side has ended.
	select {
	case <-echoed:
	case <-time.After(10 * time.Second):
		t.Fatal("the server's echo did not end after the client closed")
	}
	read, wrote := rec().snapshot()
	if !bytes.Equal(read, connectPacket) || !bytes.Equal(wrote, connectPacket) {
		t.Errorf("WrapPlain saw read %x wrote %x", read, wrote)
	}
}

// TestWSConnDeadlineAfterClose: setting a deadline on a closed WSConn
// returns at once (it used to wait for ever for a timer Close had stopped).
func TestWSConnDeadlineAfterClose(t *testing.T) {
	for _, name := range []string{"read", "write", "both"} {
		t.Run(name, func(t *testing.T) {
			addr := serveWS(t, nil, WSOptions{}, echo)
			client, err := Dial(testCtx(t), mustTarget(t, "ws://"+addr), DialOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := client.SetDeadline(time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			client.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				switch name {
				case "read":
					client.SetReadDeadline(time.Now().Add(time.Second))
				case "write":
					client.SetWriteDeadline(time.Now().Add(time.Second))
				default:
					client.SetDeadline(time.Time{})
				}
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("setting a deadline after Close did not return")
			}
		})
	}
}

// TestWSBadVersionNamesSupported: a refused Sec-WebSocket-Version is
// answered with the version the server speaks, as RFC 6455 §4.2.2 and §4.4
// require (the custom Upgrader.Error used to drop gorilla's header).
func TestWSBadVersionNamesSupported(t *testing.T) {
	addr := serveWS(t, nil, WSOptions{}, echo)
	_, resp := dialRawWS(t, addr, "/", http.Header{"Sec-WebSocket-Protocol": {"mqtt"}, "Sec-WebSocket-Version": {"8"}})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status = %d, want 400", resp.StatusCode)
	}
	if got := resp.Header.Values("Sec-WebSocket-Version"); len(got) != 1 || got[0] != "13" {
		t.Errorf("Sec-WebSocket-Version = %q, want [13]", got)
	}
}

// TestWSUpgradeWrongMethod: an upgrade request with another method than
// GET gets 405 with the Allow header RFC 9110 §15.5.6 requires.
func TestWSUpgradeWrongMethod(t *testing.T) {
	addr := serveWS(t, nil, WSOptions{}, echo)
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true // leave no idle client connection behind
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "MDEyMzQ1Njc4OWFiY2RlZg==")
	req.Header.Set("Sec-WebSocket-Protocol", "mqtt")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodGet || !strings.Contains(string(body), "not GET") {
		t.Errorf("POST upgrade: %d, Allow %q, body %q; want 405, Allow GET and the reason", resp.StatusCode, resp.Header.Get("Allow"), body)
	}
}
