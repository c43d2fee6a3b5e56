package tracer

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/google/gopacket"
)

// Side is one end of a TCP connection: the MQTT client (the device) or the
// MQTT server.
type Side uint8

// The two ends of a connection. As a direction of data, Client means
// client to server and Server means server to client.
const (
	Client Side = iota
	Server
)

// String returns "client" or "server".
func (s Side) String() string {
	switch s {
	case Client:
		return "client"
	case Server:
		return "server"
	}
	return fmt.Sprintf("Side(%d)", uint8(s))
}

// peer is the other end.
func (s Side) peer() Side { return 1 - s }

// Layer is what the bytes of a recorded connection are, which decides the
// synthetic server port and so how Wireshark dissects them.
type Layer uint8

// Layers of a recorded connection.
const (
	// Plain is MQTT bytes, shown on server port 1883.
	Plain Layer = iota
	// TLS is raw TLS records carrying MQTT, shown on server port 8883.
	TLS
	// WebSocket is an HTTP upgrade then WebSocket frames carrying MQTT,
	// shown on server port 80.
	WebSocket
	// WebSocketTLS is raw TLS records carrying WebSocket, shown on server
	// port 443.
	WebSocketTLS
)

// Port is the server port a Layer is shown on: 1883, 8883, 80 or 443.
func (l Layer) Port() uint16 {
	switch l {
	case TLS:
		return 8883
	case WebSocket:
		return 80
	case WebSocketTLS:
		return 443
	}
	return 1883
}

// String names the layer.
func (l Layer) String() string {
	switch l {
	case Plain:
		return "plain"
	case TLS:
		return "tls"
	case WebSocket:
		return "websocket"
	case WebSocketTLS:
		return "websocket-tls"
	}
	return fmt.Sprintf("Layer(%d)", uint8(l))
}

// RecorderOptions configure a Recorder.
type RecorderOptions struct {
	// Now gives packet timestamps; nil means time.Now.
	Now func() time.Time
	// Comment is the section comment (tool, version, run).
	Comment string
	// KeyLogPath, when set, is where the TLS key log lines given to
	// KeyLogWriter are also written, in NSS key log format.
	KeyLogPath string
	// SnapLen caps the captured bytes of a frame; 0 means 262144. Frames
	// longer than SnapLen are truncated, as a capture tool would.
	SnapLen int
	// MSS is the largest TCP payload of a segment; 0 means 1460 over IPv4
	// and 1440 over IPv6 (a 1500-byte Ethernet MTU).
	MSS int
	// PlainPort is the server port a Wrap of Layer Plain with derived
	// endpoints is shown on; 0 means Plain.Port (1883). The suite sets it
	// to TLS.Port: its plaintext connections go to the target's TLS port,
	// and the capture must say so (the tracer then knows a plaintext
	// CONNECT to a TLS port, Conversation.PlainToTLSPort).
	PlainPort uint16
}

// DefaultSnapLen is the snapshot length when RecorderOptions.SnapLen is 0.
const DefaultSnapLen = 262144

// ErrRecorderClosed is returned by Flow methods after Recorder.Close.
var ErrRecorderClosed = errors.New("tracer: recorder closed")

// Recorder writes a pcapng capture of synthetic but valid
// Ethernet/IP/TCP frames carrying the bytes of wrapped connections, so that
// Wireshark and tshark dissect MQTT (and TLS with the embedded key log)
// directly. It is safe for concurrent use by many connections.
type Recorder struct {
	mu      sync.Mutex
	pw      pcapngWriter
	bw      *bufio.Writer
	file    *os.File // CreateRecorder's file, closed by Close
	keylog  *os.File
	path    string
	now     func() time.Time
	snapLen int
	mss     int
	plain   uint16 // RecorderOptions.PlainPort
	err     error  // first error while recording, reported by Close
	closed  bool
	used    map[[2]netip.AddrPort]bool
	// deferred are TLS-layer connections with reads not yet recorded.
	deferred map[*recConn]bool
	klLine   []byte // partial key log line
	// at, when set, is the timestamp of the frames being written (a
	// deferred read's time) instead of now().
	at   time.Time
	sbuf gopacket.SerializeBuffer
}

// NewRecorder starts a pcapng capture on w: a section header with
// o.Comment and one Ethernet interface. Frames are buffered; Flush or Close
// writes them out.
func NewRecorder(w io.Writer, o RecorderOptions) (*Recorder, error) {
	if o.SnapLen < 0 || o.MSS < 0 {
		return nil, fmt.Errorf("tracer: negative SnapLen %d or MSS %d", o.SnapLen, o.MSS)
	}
	if o.MSS > 65495 {
		return nil, fmt.Errorf("tracer: MSS %d does not fit in an IP packet", o.MSS)
	}
	r := &Recorder{
		now:      o.Now,
		snapLen:  o.SnapLen,
		mss:      o.MSS,
		plain:    o.PlainPort,
		used:     map[[2]netip.AddrPort]bool{},
		deferred: map[*recConn]bool{},
		sbuf:     gopacket.NewSerializeBuffer(),
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.snapLen == 0 {
		r.snapLen = DefaultSnapLen
	}
	r.bw = bufio.NewWriterSize(w, 64<<10)
	r.pw.w = r.bw
	if err := r.pw.writeSHB(o.Comment, "dps-conform tracer.Recorder"); err != nil {
		return nil, fmt.Errorf("tracer: writing section header: %w", err)
	}
	if err := r.pw.writeIDB("synthetic", uint32(r.snapLen)); err != nil {
		return nil, fmt.Errorf("tracer: writing interface description: %w", err)
	}
	if o.KeyLogPath != "" {
		f, err := os.OpenFile(o.KeyLogPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("tracer: key log: %w", err)
		}
		r.keylog = f
	}
	return r, nil
}

// CreateRecorder creates (or truncates) the file at path and starts a
// capture in it, as NewRecorder.
func CreateRecorder(path string, o RecorderOptions) (*Recorder, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("tracer: %w", err)
	}
	r, err := NewRecorder(f, o)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.file, r.path = f, path
	return r, nil
}

// Path is the file CreateRecorder wrote to, or "" for NewRecorder.
func (r *Recorder) Path() string { return r.path }

// Flush writes buffered frames to the underlying writer.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.err
	}
	r.flushDeferred()
	r.fail(r.bw.Flush())
	return r.err
}

// flushDeferred records every connection's deferred reads, in a stable
// order; r.mu is held.
func (r *Recorder) flushDeferred() {
	conns := make([]*recConn, 0, len(r.deferred))
	for c := range r.deferred {
		conns = append(conns, c)
	}
	slices.SortFunc(conns, func(a, b *recConn) int {
		return cmp.Or(a.f.ep[Client].Compare(b.f.ep[Client]), a.f.ep[Server].Compare(b.f.ep[Server]))
	})
	for _, c := range conns {
		r.flushConn(c)
	}
}

// Close flushes the capture, closes the files the Recorder opened and
// reports the first error met while recording, if any. Connections wrapped
// by the Recorder keep working after Close, unrecorded.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.err
	}
	r.flushDeferred()
	if len(r.klLine) > 0 {
		// An unterminated last line: complete it so readers accept it.
		r.writeKeyLog(append(r.klLine, '\n'))
		r.klLine = nil
	}
	r.closed = true
	r.fail(r.bw.Flush())
	if r.file != nil {
		r.fail(r.file.Close())
	}
	if r.keylog != nil {
		r.fail(r.keylog.Close())
	}
	return r.err
}

// fail records the first error.
func (r *Recorder) fail(err error) {
	if err != nil && r.err == nil {
		r.err = fmt.Errorf("tracer: recording: %w", err)
	}
}

// KeyLogWriter returns a writer for tls.Config.KeyLogWriter. Each complete
// line is written to the capture as a Decryption Secrets Block (before the
// frames that need it, since crypto/tls logs a secret before using it) and
// to RecorderOptions.KeyLogPath. Write never fails, so a recording problem
// cannot break a handshake; Close reports it.
func (r *Recorder) KeyLogWriter() io.Writer { return keyLogWriter{r} }

type keyLogWriter struct{ r *Recorder }

func (k keyLogWriter) Write(p []byte) (int, error) {
	r := k.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return len(p), nil
	}
	r.klLine = append(r.klLine, p...)
	last := -1
	for i, c := range r.klLine {
		if c == '\n' {
			last = i
		}
	}
	if last >= 0 {
		r.writeKeyLog(r.klLine[:last+1])
		r.klLine = append(r.klLine[:0], r.klLine[last+1:]...)
	}
	return len(p), nil
}

// writeKeyLog writes complete key log lines as a DSB and to the key log file.
func (r *Recorder) writeKeyLog(lines []byte) {
	r.fail(r.pw.writeDSB(SecretsTypeTLSKeyLog, lines))
	if r.keylog != nil {
		_, err := r.keylog.Write(lines)
		r.fail(err)
	}
}

// FlowOptions configure a synthetic TCP flow.
type FlowOptions struct {
	// Comment is attached to the first frame of the flow.
	Comment string
	// MSS overrides RecorderOptions.MSS for this flow.
	MSS int
	// MidStream starts the flow without a handshake, as a capture started
	// while the connection was open.
	MidStream bool
	// ISN are the initial sequence numbers of the client and the server;
	// zero values are derived from the endpoints, so captures are
	// reproducible.
	ISN [2]uint32
}

// SegOpts control how one Send is cut into TCP segments and what the
// capture sees of them. Segment indexes count from 0 in sequence order.
type SegOpts struct {
	// Split gives the sizes of the first segments; the rest is cut at MSS.
	// A size of 0 or more than MSS is an error.
	Split []int
	// Drop lists segments the capture misses at first: the receiver
	// acknowledges only up to the gap (duplicate ACKs) and the sender
	// retransmits them after the others.
	Drop []int
	// Retransmit lists segments captured twice in a row (spurious
	// retransmission).
	Retransmit []int
	// Reorder lists segments captured after the segment that follows them.
	Reorder []int
	// Comment is attached to the first frame this Send writes.
	Comment string
}

// Flow is one synthetic TCP connection in a capture. Its methods write
// frames with consistent sequence and acknowledgement numbers; they are
// safe for concurrent use and serialised with the whole Recorder.
type Flow struct {
	r       *Recorder
	ep      [2]netip.AddrPort // indexed by Side
	nxt     [2]uint32         // next sequence number each side sends
	rcv     [2]uint32         // what each side acknowledges
	fin     [2]bool
	ipID    [2]uint16
	mss     int
	comment string // pending comment for the next frame
}

// Flow starts a synthetic TCP flow between client and server: unless
// o.MidStream, it writes the SYN, SYN-ACK, ACK handshake. The two
// addresses must be of the same family (an IPv4-mapped IPv6 address counts
// as IPv4).
func (r *Recorder) Flow(client, server netip.AddrPort, o FlowOptions) (*Flow, error) {
	client = unmap(client)
	server = unmap(server)
	if !client.IsValid() || !server.IsValid() {
		return nil, fmt.Errorf("tracer: flow endpoints %v → %v: invalid address", client, server)
	}
	if client.Addr().Is4() != server.Addr().Is4() {
		return nil, fmt.Errorf("tracer: flow endpoints %v → %v: mixed IPv4 and IPv6", client, server)
	}
	mss := o.MSS
	if mss == 0 {
		mss = r.mss
	}
	if mss == 0 {
		mss = 1460
		if client.Addr().Is6() {
			mss = 1440
		}
	}
	if mss < 0 || mss > 65495 {
		return nil, fmt.Errorf("tracer: flow MSS %d out of range", mss)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrRecorderClosed
	}
	r.used[[2]netip.AddrPort{client, server}] = true
	f := &Flow{r: r, ep: [2]netip.AddrPort{client, server}, mss: mss, comment: o.Comment}
	for s := range 2 {
		f.nxt[s] = o.ISN[s]
		if f.nxt[s] == 0 {
			f.nxt[s] = deriveISN(client, server, Side(s))
		}
	}
	f.rcv[Client], f.rcv[Server] = f.nxt[Server], f.nxt[Client]
	if o.MidStream {
		return f, nil
	}
	// SYN and SYN-ACK consume one sequence number each.
	c, s := f.nxt[Client], f.nxt[Server]
	f.frame(Client, tcpSYN, c, 0, nil)
	f.frame(Server, tcpSYN|tcpACK, s, c+1, nil)
	f.nxt[Client], f.nxt[Server] = c+1, s+1
	f.rcv[Client], f.rcv[Server] = s+1, c+1
	f.frame(Client, tcpACK, c+1, s+1, nil)
	return f, r.err
}

// Endpoints are the flow's client and server addresses.
func (f *Flow) Endpoints() (client, server netip.AddrPort) { return f.ep[Client], f.ep[Server] }

// segment is one piece of a Send.
type segment struct {
	seq  uint32
	data []byte
}

// Send writes data sent by from as TCP segments, and the receiver's ACKs.
func (f *Flow) Send(from Side, data []byte, o SegOpts) error {
	if from > Server {
		return fmt.Errorf("tracer: Send from %v: no such side", from)
	}
	if len(data) == 0 {
		return nil
	}
	r := f.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrRecorderClosed
	}
	return f.sendLocked(from, data, o)
}

// sendLocked is Send with r.mu held and the recorder open.
func (f *Flow) sendLocked(from Side, data []byte, o SegOpts) error {
	r := f.r
	if f.fin[from] {
		return fmt.Errorf("tracer: Send from %v after its FIN", from)
	}
	base := f.nxt[from]
	segs, err := f.cut(base, data, o.Split)
	if err != nil {
		return err
	}
	order, err := segOrder(len(segs), o)
	if err != nil {
		return err
	}
	if o.Comment != "" {
		f.comment = joinComment(f.comment, o.Comment)
	}
	to := from.peer()
	end := base + uint32(len(data))
	got := make([]bool, len(segs))
	rcv := f.rcv[to]
	lastAck := rcv
	next := 0 // first segment not yet received in order
	hi := rcv // end of the highest segment received
	for _, i := range order {
		s := segs[i]
		flags := tcpACK
		if i == len(segs)-1 {
			flags |= tcpPSH
		}
		f.frame(from, flags, s.seq, f.rcv[from], s.data)
		got[i] = true
		old := rcv
		for next < len(segs) && got[next] {
			rcv += uint32(len(segs[next].data))
			next++
		}
		if e := s.seq + uint32(len(s.data)); int32(e-hi) > 0 {
			hi = e
		}
		// Out of order, duplicate, or filling a gap: acknowledge at once,
		// as a receiver does (RFC 5681 §4.2). In order: one ACK at the end.
		if s.seq != old || rcv != old+uint32(len(s.data)) || rcv != hi {
			f.frame(to, tcpACK, f.nxt[to], rcv, nil)
			lastAck = rcv
		}
	}
	if rcv != end {
		return fmt.Errorf("tracer: internal error: receiver at %d, want %d", rcv, end)
	}
	if lastAck != rcv {
		f.frame(to, tcpACK, f.nxt[to], rcv, nil)
	}
	f.nxt[from], f.rcv[to] = end, end
	return r.err
}

// cut splits data, which starts at sequence number base, into segments:
// split sizes first, then MSS.
func (f *Flow) cut(base uint32, data []byte, split []int) ([]segment, error) {
	var segs []segment
	off := 0
	for k, n := range split {
		if off == len(data) {
			return nil, fmt.Errorf("tracer: Split[%d]: no data left", k)
		}
		if n <= 0 || n > f.mss {
			return nil, fmt.Errorf("tracer: Split[%d] = %d: want 1..%d (MSS)", k, n, f.mss)
		}
		n = min(n, len(data)-off)
		segs = append(segs, segment{base + uint32(off), data[off : off+n]})
		off += n
	}
	for off < len(data) {
		n := min(f.mss, len(data)-off)
		segs = append(segs, segment{base + uint32(off), data[off : off+n]})
		off += n
	}
	return segs, nil
}

// segOrder is the capture order of n segments under o.
func segOrder(n int, o SegOpts) ([]int, error) {
	check := func(name string, idx []int) error {
		for _, i := range idx {
			if i < 0 || i >= n {
				return fmt.Errorf("tracer: SegOpts.%s: segment %d of %d", name, i, n)
			}
		}
		return nil
	}
	if err := errors.Join(check("Drop", o.Drop), check("Retransmit", o.Retransmit), check("Reorder", o.Reorder)); err != nil {
		return nil, err
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	for _, i := range o.Reorder {
		if i+1 >= n {
			return nil, fmt.Errorf("tracer: SegOpts.Reorder: segment %d is the last", i)
		}
		p, q := pos(order, i), pos(order, i+1)
		order[p], order[q] = order[q], order[p]
	}
	var dropped []int
	for _, i := range o.Drop {
		if p := pos(order, i); p >= 0 {
			order = append(order[:p], order[p+1:]...)
			dropped = append(dropped, i)
		}
	}
	order = append(order, dropped...)
	for _, i := range o.Retransmit {
		p := pos(order, i)
		order = append(order[:p+1], append([]int{i}, order[p+1:]...)...)
	}
	return order, nil
}

// pos is the index of v in s, or -1.
func pos(s []int, v int) int {
	for k, x := range s {
		if x == v {
			return k
		}
	}
	return -1
}

// Fin closes the flow in from's direction: a FIN from it and the peer's
// ACK. A second Fin from the same side does nothing.
func (f *Flow) Fin(from Side) error {
	if from > Server {
		return fmt.Errorf("tracer: Fin from %v: no such side", from)
	}
	r := f.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrRecorderClosed
	}
	return f.finLocked(from)
}

// finLocked is Fin with r.mu held and the recorder open.
func (f *Flow) finLocked(from Side) error {
	r := f.r
	if f.fin[from] {
		return r.err
	}
	f.fin[from] = true
	to := from.peer()
	f.frame(from, tcpFIN|tcpACK, f.nxt[from], f.rcv[from], nil)
	f.nxt[from]++
	f.rcv[to] = f.nxt[from]
	f.frame(to, tcpACK, f.nxt[to], f.rcv[to], nil)
	return r.err
}

// Close closes both directions, the client first; what is already closed
// is skipped.
func (f *Flow) Close() error {
	return errors.Join(f.Fin(Client), f.Fin(Server))
}

// Comment attaches c to the next frame of the flow.
func (f *Flow) Comment(c string) {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	f.comment = joinComment(f.comment, c)
}

// joinComment appends b to a on a new line.
func joinComment(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "\n" + b
}

// unmap turns an IPv4-mapped IPv6 address into IPv4.
func unmap(ap netip.AddrPort) netip.AddrPort {
	if !ap.IsValid() {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// deriveISN is a reproducible initial sequence number for side s of a flow
// (FNV-1a over the endpoints and the side).
func deriveISN(client, server netip.AddrPort, s Side) uint32 {
	h := uint32(2166136261)
	add := func(b []byte) {
		for _, c := range b {
			h ^= uint32(c)
			h *= 16777619
		}
	}
	for _, ap := range []netip.AddrPort{client, server} {
		b, _ := ap.MarshalBinary()
		add(b)
	}
	add([]byte{byte(s)})
	if h == 0 {
		h = 1
	}
	return h
}
