package tracer

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"time"
)

// ConnOptions describe a connection given to Recorder.Wrap.
type ConnOptions struct {
	// Side is the end of the connection c is: Client means c is our client
	// end (its Writes are client to server), Server means c is our server
	// end (its Writes are server to client).
	Side Side
	// Comment is attached to the first frame of the connection.
	Comment string
	// Layer says what the bytes are, which sets the synthetic server port.
	Layer Layer
	// Client and Server are the synthetic endpoints. When either is zero
	// both are derived from c.LocalAddr and c.RemoteAddr (or, for
	// connections without IP addresses such as net.Pipe, from 192.0.2.1
	// and 192.0.2.2): the server port becomes Layer.Port and the client
	// port is moved on until the flow is distinct from every flow already
	// in the capture.
	Client, Server netip.AddrPort
	// MSS overrides RecorderOptions.MSS.
	MSS int
}

// Wrap returns a connection that behaves as c and records what crosses it:
// the handshake at once, then each Read and Write as TCP segments with
// correct sequence and acknowledgement numbers and the receiver's ACKs, and
// a FIN when either side closes (Close on the returned connection, or a
// Read returning io.EOF or a connection reset). Written bytes are recorded before they are handed
// to c, so an answer can never precede its request in the capture; the
// bytes of a Write that fails are recorded all the same.
//
// Recording problems do not disturb the connection; Recorder.Close reports
// them. After Recorder.Close the connection is no longer recorded.
func (r *Recorder) Wrap(c net.Conn, o ConnOptions) net.Conn {
	client, server := o.Client, o.Server
	if !client.IsValid() || !server.IsValid() {
		client, server = r.derive(c, o)
	}
	f, err := r.Flow(client, server, FlowOptions{Comment: o.Comment, MSS: o.MSS})
	if err != nil {
		r.mu.Lock()
		if !errors.Is(err, ErrRecorderClosed) {
			r.fail(err)
		}
		r.mu.Unlock()
		return c
	}
	rc := &recConn{Conn: c, f: f, side: o.Side}
	// crypto/tls logs a secret only after reading the message it comes
	// from (a client logs its handshake secrets after the ServerHello), and
	// Wireshark must meet a secret before the first record that needs it.
	// So for TLS layers what a Read returns is recorded at the start of the
	// next Read, Write or Close (by then the key log lines are written),
	// or by Recorder.Flush and Close.
	rc.deferReads = o.Layer == TLS || o.Layer == WebSocketTLS
	return rc
}

// derive picks distinct synthetic endpoints for c.
func (r *Recorder) derive(c net.Conn, o ConnOptions) (client, server netip.AddrPort) {
	local, remote := addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())
	client, server = local, remote
	if o.Side == Server {
		client, server = remote, local
	}
	client, server = unmap(client), unmap(server)
	if !client.IsValid() || !server.IsValid() || client.Addr().Is4() != server.Addr().Is4() {
		client = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, 1}), 49152)
		server = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, 2}), 0)
	}
	port := o.Layer.Port()
	if o.Layer == Plain && r.plain != 0 {
		port = r.plain
	}
	server = netip.AddrPortFrom(server.Addr(), port)
	r.mu.Lock()
	defer r.mu.Unlock()
	port = client.Port()
	if port == 0 {
		port = 49152
	}
	// Bounded: at most 65536 ports to try.
	for range 1 << 16 {
		client = netip.AddrPortFrom(client.Addr(), port)
		if !r.used[[2]netip.AddrPort{client, server}] && port != 0 {
			break
		}
		port++
	}
	return client, server
}

// addrPort is the IP address and port of a, or the zero AddrPort.
func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}
	}
	return ap
}

// recConn is a recorded connection.
type recConn struct {
	net.Conn
	f          *Flow
	side       Side
	deferReads bool
	// pending are the peer's reads not yet recorded (deferReads), each
	// with the time it returned, in order. Guarded by f.r.mu.
	pending []pendingRead
}

// pendingRead is one deferred Read: its bytes, whether the peer's FIN
// (io.EOF) came with it, and when it returned.
type pendingRead struct {
	data []byte
	fin  bool
	at   time.Time
}

// Read reads from the connection and records the bytes as sent by the peer;
// io.EOF is recorded as the peer's FIN.
func (c *recConn) Read(b []byte) (int, error) {
	c.flushPending()
	n, err := c.Conn.Read(b)
	// A reset is the peer closing too (it closed with our bytes unread):
	// record it as its FIN, or the capture would show a peer that never
	// closed.
	eof := errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
	if c.deferReads && (n > 0 || eof) {
		r := c.f.r
		r.mu.Lock()
		if !r.closed {
			// The read time is kept so the frames carry it, however late
			// they are written.
			c.pending = append(c.pending, pendingRead{data: slices.Clone(b[:n]), fin: eof, at: r.now()})
			r.deferred[c] = true
		}
		r.mu.Unlock()
		return n, err
	}
	if n > 0 {
		c.record(c.f.Send(c.side.peer(), b[:n], SegOpts{}))
	}
	if eof {
		c.record(c.f.Fin(c.side.peer()))
	}
	return n, err
}

// flushPending records deferred reads.
func (c *recConn) flushPending() {
	if !c.deferReads {
		return
	}
	r := c.f.r
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushConn(c)
}

// flushConn records c's deferred reads with the times they returned, so
// the frames are written after the key log blocks that precede them but
// keep their original timestamps; r.mu is held.
func (r *Recorder) flushConn(c *recConn) {
	defer func() { r.at = time.Time{} }()
	for _, p := range c.pending {
		r.at = p.at
		if len(p.data) > 0 {
			r.fail(c.f.sendLocked(c.side.peer(), p.data, SegOpts{}))
		}
		if p.fin {
			r.fail(c.f.finLocked(c.side.peer()))
		}
	}
	clear(c.pending)
	c.pending = c.pending[:0]
	delete(r.deferred, c)
}

// Write records b as sent by our side, then writes it.
func (c *recConn) Write(b []byte) (int, error) {
	c.flushPending()
	c.record(c.f.Send(c.side, b, SegOpts{}))
	return c.Conn.Write(b)
}

// Close records our FIN and closes the connection.
func (c *recConn) Close() error {
	c.flushPending()
	c.record(c.f.Fin(c.side))
	return c.Conn.Close()
}

// record keeps a recording error for Recorder.Close; a closed recorder is
// not an error.
func (c *recConn) record(err error) {
	if err == nil || errors.Is(err, ErrRecorderClosed) {
		return
	}
	r := c.f.r
	r.mu.Lock()
	r.fail(err)
	r.mu.Unlock()
}
