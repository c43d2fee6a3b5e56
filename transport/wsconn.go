package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// DefaultCloseTimeout bounds how long WSConn.Close waits for the peer's
// close frame before it closes the TCP connection anyway.
const DefaultCloseTimeout = time.Second

// wsReadChunk is the size of each of the two buffers a WSConn reads
// messages into.
const wsReadChunk = 8 << 10

// ErrTextFrame is returned by WSConn.Read when the peer sends a text message.
// [MQTT-6.0.0-1] "MQTT Control Packets MUST be sent in WebSocket binary data
// frames. If any other type of data frame is received the recipient MUST close
// the Network Connection".
var ErrTextFrame = errors.New("transport: websocket text frame received; MQTT needs binary frames [MQTT-6.0.0-1]")

// ErrNotOnePacket ends the stream of a server connection in the fault mode
// WSOptions.PacketPerMessage when a binary message holds part of an MQTT
// Control Packet or more than one, against [MQTT-6.0.0-2] "A single WebSocket
// data frame can contain multiple or partial MQTT Control Packets. The
// receiver MUST NOT assume that MQTT Control Packets are aligned on WebSocket
// frame boundaries".
var ErrNotOnePacket = errors.New("transport: websocket message is not exactly one MQTT control packet (fault mode PacketPerMessage, against MQTT-6.0.0-2)")

// WSConn is a net.Conn carrying a byte stream over WebSocket binary messages.
//
// Read returns the payload of consecutive binary messages as one stream:
// message and fragment boundaries are invisible ([MQTT-6.0.0-2]). Each Write
// sends exactly one binary message, in one frame when it fits gorilla's write
// buffer (4 KiB by default): a client decides where the stream is cut into
// messages by how it cuts its writes. A text message ends the stream with
// ErrTextFrame. A close frame from the peer is answered and ends the stream
// with io.EOF (codes 1000 and 1005) or a wrapped *websocket.CloseError.
//
// Two goroutines per connection do the WebSocket I/O, so that deadlines
// behave as for TCP: a Read or Write that times out returns an error with
// Timeout() == true that matches os.ErrDeadlineExceeded, and the connection
// stays usable once the deadline is moved. The reader answers pings as they
// arrive, as long as the application drains data (it buffers at most two
// 8 KiB chunks). A Write that times out while its message is being sent
// reports n = 0, but the message is not torn: it still goes out whole, and
// the next Write waits for it first — as with TCP, bytes of a timed-out write
// may reach the peer.
//
// Close runs the closing handshake: it sends a close frame (1000, or 1003
// after a text message ended the stream), waits up to CloseTimeout for the
// peer's, then closes the TCP connection; pending and later Reads and
// Writes return net.ErrClosed. Close releases the two goroutines, so every
// WSConn must be closed. One Read and one Write may run concurrently with
// each other, with Close and with the deadline setters.
type WSConn struct {
	ws *websocket.Conn

	// CloseTimeout bounds the wait for the peer's close frame in Close; 0
	// means DefaultCloseTimeout. Set it before the first Close.
	CloseTimeout time.Duration

	// packetPerMessage is the fault mode WSOptions.PacketPerMessage, set
	// before the read pump starts.
	packetPerMessage bool

	closing chan struct{} // closed first thing in Close

	// Read side: readPump → Read.
	readMu     sync.Mutex
	rdata      chan []byte   // unbuffered hand-off of a filled chunk
	rfree      chan []byte   // empty chunks (capacity 2)
	rdone      chan struct{} // closed when readPump ends; rerr is set before
	rerr       error
	pending    []byte // unread part of the chunk Read holds
	pendingBuf []byte // that chunk, returned to rfree when consumed
	rdl        deadline

	// Write side: Write → writePump.
	writeMu  sync.Mutex
	wq       chan []byte // unbuffered: a message to send
	wres     chan error  // capacity 1: result of the last message
	wdone    chan struct{}
	wbuf     []byte
	inflight bool  // a message is being sent and its result not yet read
	werr     error // sticky write failure
	wdl      deadline

	closeOnce sync.Once
	closeErr  error
}

var _ net.Conn = (*WSConn)(nil)

// NewWSConn adapts a WebSocket connection to a net.Conn byte stream (see
// WSConn) and starts its two I/O goroutines. The caller must not use ws for
// I/O afterwards and must Close the returned conn.
func NewWSConn(ws *websocket.Conn) net.Conn { return newWSConn(ws, false) }

func newWSConn(ws *websocket.Conn, packetPerMessage bool) *WSConn {
	c := &WSConn{
		ws:               ws,
		packetPerMessage: packetPerMessage,
		closing:          make(chan struct{}),
		rdata:            make(chan []byte),
		rfree:            make(chan []byte, 2),
		rdone:            make(chan struct{}),
		rdl:              makeDeadline(),
		wq:               make(chan []byte),
		wres:             make(chan error, 1),
		wdone:            make(chan struct{}),
		wdl:              makeDeadline(),
	}
	c.rfree <- make([]byte, wsReadChunk)
	c.rfree <- make([]byte, wsReadChunk)
	ws.SetCloseHandler(func(code int, text string) error {
		// Echo the status code as RFC 6455 §5.5.1 asks; gorilla returns
		// ErrCloseSent if our own close went first, which is fine.
		if code == websocket.CloseNoStatusReceived {
			code = websocket.CloseNormalClosure
		}
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
		return nil
	})
	go c.readPump()
	go c.writePump()
	return c
}

// WebSocket returns the underlying gorilla connection, for inspection only
// (negotiated subprotocol, addresses): reading or writing it breaks the
// stream.
func (c *WSConn) WebSocket() *websocket.Conn { return c.ws }

// Subprotocol returns the negotiated WebSocket subprotocol.
func (c *WSConn) Subprotocol() string { return c.ws.Subprotocol() }

// readPump reads messages into chunks and hands them to Read until an error
// (including the peer's close frame) ends the stream. Once Close has begun
// it discards data, so that the peer's close frame is still seen.
func (c *WSConn) readPump() {
	defer close(c.rdone)
	for {
		typ, r, err := c.ws.NextReader()
		if err != nil {
			c.rerr = mapReadErr(err)
			return
		}
		if typ != websocket.BinaryMessage {
			c.rerr = ErrTextFrame
			return
		}
		if c.packetPerMessage {
			// The fault mode: the whole message (bounded by the read
			// limit) must be one MQTT control packet.
			msg, err := io.ReadAll(r)
			if err != nil {
				c.rerr = mapReadErr(err)
				return
			}
			if err := onePacket(msg); err != nil {
				c.rerr = err
				return
			}
			r = bytes.NewReader(msg)
		}
		// Bounded: every iteration reads from the network (under gorilla's
		// read limit) or ends the message.
		for {
			buf := <-c.rfree // at most one chunk is held by Read
			n, err := r.Read(buf[:cap(buf)])
			if n > 0 {
				select {
				case c.rdata <- buf[:n]:
				case <-c.closing:
					c.rfree <- buf
				}
			} else {
				c.rfree <- buf
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				c.rerr = mapReadErr(err)
				return
			}
		}
	}
}

// writePump sends the messages Write queues.
func (c *WSConn) writePump() {
	defer close(c.wdone)
	for {
		select {
		case b := <-c.wq:
			c.wres <- c.ws.WriteMessage(websocket.BinaryMessage, b)
		case <-c.closing:
			return
		}
	}
}

// Read reads from the stream of binary messages.
func (c *WSConn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if len(c.pending) == 0 && c.pendingBuf != nil {
		c.rfree <- c.pendingBuf[:cap(c.pendingBuf)]
		c.pendingBuf = nil
	}
	if isClosed(c.closing) {
		return 0, net.ErrClosed
	}
	// A passed deadline wins over buffered bytes, as on TCP.
	if isClosed(c.rdl.wait()) {
		return 0, &timeoutError{op: "read"}
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if len(p) == 0 {
		return 0, nil
	}
	select {
	case b := <-c.rdata:
		n := copy(p, b)
		c.pending, c.pendingBuf = b[n:], b
		return n, nil
	case <-c.rdone:
		return 0, c.rerr
	case <-c.rdl.wait():
		return 0, &timeoutError{op: "read"}
	case <-c.closing:
		return 0, net.ErrClosed
	}
}

// Write sends p as one binary message and returns len(p) on success.
func (c *WSConn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if isClosed(c.closing) {
		return 0, net.ErrClosed
	}
	if c.werr != nil {
		return 0, c.werr
	}
	if isClosed(c.wdl.wait()) {
		return 0, &timeoutError{op: "write"}
	}
	if len(p) == 0 {
		return 0, nil
	}
	if c.inflight {
		// The message of an earlier, timed-out Write is still going out.
		if err := c.waitWrite(); err != nil {
			return 0, err
		}
	}
	c.wbuf = append(c.wbuf[:0], p...)
	select {
	case c.wq <- c.wbuf:
	case <-c.wdl.wait():
		return 0, &timeoutError{op: "write"}
	case <-c.closing:
		return 0, net.ErrClosed
	}
	c.inflight = true
	if err := c.waitWrite(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// waitWrite waits for the in-flight message; the caller holds writeMu.
func (c *WSConn) waitWrite() error {
	select {
	case err := <-c.wres:
		c.inflight = false
		if err != nil {
			if errors.Is(err, websocket.ErrCloseSent) {
				err = fmt.Errorf("transport: websocket write after close: %w", net.ErrClosed)
			} else {
				err = fmt.Errorf("transport: websocket write: %w", err)
			}
			c.werr = err
		}
		return err
	case <-c.wdl.wait():
		return &timeoutError{op: "write"}
	case <-c.closing:
		return net.ErrClosed
	}
}

// onePacket reports whether msg is exactly one MQTT control packet: a fixed
// header (type byte, 1 to 4 bytes of remaining length) and as many bytes as
// the remaining length says, no fewer and no more.
func onePacket(msg []byte) error {
	if len(msg) < 2 {
		return fmt.Errorf("%w: a message of %d byte(s) holds no whole fixed header", ErrNotOnePacket, len(msg))
	}
	rl, mul := 0, 1
	for i := 1; ; i++ {
		if i == len(msg) {
			return fmt.Errorf("%w: a message of %d bytes ends inside the remaining length", ErrNotOnePacket, len(msg))
		}
		if i > 4 {
			return fmt.Errorf("%w: a remaining length longer than 4 bytes", ErrNotOnePacket)
		}
		rl += int(msg[i]&0x7f) * mul
		mul *= 128
		if msg[i]&0x80 == 0 {
			if want := i + 1 + rl; len(msg) != want {
				part := "part of a packet"
				if len(msg) > want {
					part = "more than one packet"
				}
				return fmt.Errorf("%w: a message of %d bytes holds %s (type byte 0x%02x, packet of %d bytes)", ErrNotOnePacket, len(msg), part, msg[0], want)
			}
			return nil
		}
	}
}

// timeoutError is a read or write timeout; it matches os.ErrDeadlineExceeded.
type timeoutError struct{ op string }

func (e *timeoutError) Error() string   { return "transport: websocket " + e.op + ": i/o timeout" }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }
func (e *timeoutError) Unwrap() error   { return os.ErrDeadlineExceeded }

var _ net.Error = (*timeoutError)(nil)

// mapReadErr turns a normal close into io.EOF; other errors are wrapped.
func mapReadErr(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		if ce.Code == websocket.CloseNormalClosure || ce.Code == websocket.CloseNoStatusReceived {
			return io.EOF
		}
		return fmt.Errorf("transport: websocket closed by peer: %w", err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("transport: websocket connection ended without close frame: %w", io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("transport: websocket read: %w", err)
}

// Close runs the WebSocket closing handshake (bounded by CloseTimeout),
// closes the TCP connection and stops the I/O goroutines. Later calls return
// the first call's result.
func (c *WSConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		timeout := c.CloseTimeout
		if timeout <= 0 {
			timeout = DefaultCloseTimeout
		}
		deadline := time.Now().Add(timeout)
		code := websocket.CloseNormalClosure
		select {
		case <-c.rdone:
			if c.rerr == ErrTextFrame {
				// RFC 6455 §7.4.1: a type of data it cannot accept.
				code = websocket.CloseUnsupportedData
			}
			if errors.Is(c.rerr, ErrNotOnePacket) {
				code = websocket.CloseProtocolError
			}
		default:
		}
		err := c.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(code, ""), deadline)
		if err == nil {
			// The read pump ends when the peer's close frame arrives.
			t := time.NewTimer(time.Until(deadline))
			select {
			case <-c.rdone:
			case <-t.C:
			}
			t.Stop()
		}
		c.closeErr = c.ws.Close()
		<-c.rdone
		<-c.wdone
		c.rdl.stop()
		c.wdl.stop()
	})
	return c.closeErr
}

// LocalAddr returns the local network address.
func (c *WSConn) LocalAddr() net.Addr { return c.ws.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *WSConn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

// SetDeadline sets both the read and the write deadline.
func (c *WSConn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

// SetReadDeadline sets the deadline for Read; a zero t means none.
func (c *WSConn) SetReadDeadline(t time.Time) error { c.rdl.set(t); return nil }

// SetWriteDeadline sets the deadline for Write; a zero t means none.
func (c *WSConn) SetWriteDeadline(t time.Time) error { c.wdl.set(t); return nil }

// deadline is a settable deadline whose wait channel is closed when it
// passes (the pattern of net.Pipe).
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{}
}

func makeDeadline() deadline { return deadline{cancel: make(chan struct{})} }

// set arms the deadline for t; zero disarms it, a past t fires it now.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for its close
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

// wait returns a channel closed when the deadline passes.
func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

// stop releases the timer. It leaves the deadline settable: a later set
// must not wait for a timer that stop has already stopped (it did, and so
// SetWriteDeadline after Close blocked for ever).
func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for its close, as set does
	}
	d.timer = nil
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
