package tracer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/bits"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer/tlstrace"
)

// Options control Decode.
type Options struct {
	// KeyLog holds TLS secrets (NSS key log format) for decrypting
	// TLS connections; nil decodes only the handshake facts.
	KeyLog *tlstrace.KeyLog
	// Ports are extra plaintext MQTT server ports. 1883 (MQTT), 8883
	// (MQTT over TLS), 443 (TLS, WebSocket over TLS) and 80 and 8080
	// (WebSocket) are always known; a connection on any other port whose
	// first client bytes sniff as an MQTT CONNECT, a TLS ClientHello or a
	// WebSocket upgrade request is decoded too.
	Ports []int
	// MaxStreamBuffer caps the bytes buffered per stream direction
	// (out-of-order segments and an incomplete MQTT packet); 0 means
	// DefaultMaxStreamBuffer. What does not fit is reported as a gap or a
	// problem, never buffered.
	MaxStreamBuffer int
	// Workers is the number of goroutines that reassemble and decode
	// flows; 0 or 1 decodes on the calling goroutine. With more, the
	// calling goroutine reads the frames and hands each flow's segments
	// to one of them.
	Workers int
	// OnConversation, when set, receives each conversation once its
	// connection has closed (FIN in both directions or RST) and its
	// time-wait has ended (5 s of capture time later, or sooner when
	// more than 4096 closed connections wait; late segments of the
	// connection arrive in that time), or when the capture ends, instead
	// of Capture.Conversations collecting them: memory then stays
	// bounded by the open and waiting flows, whatever the size of the
	// capture. Connections that carried no data (a SYN flood, a port
	// scan) are forgotten, least recently seen first, while more than
	// 65,536 are open; Capture.Warnings counts them.
	// IDs are assigned in delivery order. With Workers > 1 it is called
	// from the worker goroutines, one call at a time.
	OnConversation func(*Conversation)
	// OnPacket, when set, receives each MQTT packet as soon as it is
	// decoded, with its conversation, instead of Conversation.Packets
	// collecting it: memory then holds only the reassembly buffers and a
	// little state per open flow, however many packets a flow carries.
	// The Packet and everything it refers to (Raw, the byte slices of
	// Packet.Packet) are valid only during the call: clone what you keep
	// (Packet.Packet.Clone(), slices.Clone(Raw)). The Conversation is the
	// one later delivered to OnConversation or listed in
	// Capture.Conversations; its ID is 0 until then, so key by the
	// pointer. With Workers > 1 it is called from the worker goroutines,
	// one call at a time (OnConversation included); packets of one
	// conversation arrive in capture order.
	OnPacket func(*Conversation, *Packet)

	// quietFlows overrides maxQuietFlows (tests).
	quietFlows int
}

// ErrIsDirectory is returned by DecodeFile for a directory.
var ErrIsDirectory = errors.New("is a directory, not a capture file")

// DecodeFile decodes the pcap or pcapng file at path.
func DecodeFile(path string, o Options) (*Capture, error) {
	return DecodeFileContext(context.Background(), path, o)
}

// DecodeFileContext is DecodeFile that stops when ctx ends: between
// records, while waiting for a named pipe's writer to open it, and in a
// read that waits for a pipe's writer. It then returns what it decoded so
// far (as DecodeContext does; nil if the file never opened) with an error
// wrapping ctx.Err(). A pipe lets a live capture be decoded as it is read:
// dps-conform trace <(tcpdump -U -w - port 8883), ended by Ctrl-C.
func DecodeFileContext(ctx context.Context, path string, o Options) (*Capture, error) {
	f, err := openContext(ctx, path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%s: %w", path, ErrIsDirectory)
	}
	// A past deadline ends a read blocked on a pipe; regular files have
	// no deadlines and never block for long.
	defer context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })()
	c, err := DecodeContext(ctx, f, o)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// openContext opens path for reading. Opening a named pipe waits for a
// writer, in a system call nothing interrupts: it runs in a goroutine, and
// ctx ending returns at once (the goroutine closes the file if the open
// ever completes).
func openContext(ctx context.Context, path string) (*os.File, error) {
	if st, err := os.Stat(path); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		return os.Open(path)
	}
	type opened struct {
		f   *os.File
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		f, err := os.Open(path)
		ch <- opened{f, err}
	}()
	select {
	case o := <-ch:
		return o.f, o.err
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.f != nil {
				o.f.Close()
			}
		}()
		return nil, fmt.Errorf("%s: waiting for a writer to open the pipe: %w", path, ctx.Err())
	}
}

// Decode reads a pcap or pcapng capture (sniffed from its magic number),
// reassembles its TCP connections and decodes the MQTT they carry. A
// corrupt file is an error naming the byte offset and the record or block;
// a truncated last record is a warning.
func Decode(r io.Reader, o Options) (*Capture, error) {
	return DecodeContext(context.Background(), r, o)
}

// DecodeContext is Decode that stops between records when ctx ends: it
// returns the capture decoded so far (its flows closed as at the end of a
// file, Capture.Incomplete saying where it stopped) with an error wrapping
// ctx.Err(). It cannot end a Read of r that blocks: DecodeFileContext does
// that for the files it opens.
func DecodeContext(ctx context.Context, r io.Reader, o Options) (*Capture, error) {
	src, err := openSource(r)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("%w (%v)", cerr, err)
		}
		return nil, err
	}
	if o.Workers > 1 {
		return decodeSharded(ctx, src, o)
	}
	d := newDecoder(o)
	d.emit = d.segment
	d.onPacket = o.OnPacket
	if o.OnConversation != nil {
		id := 0
		d.deliver = func(c *Conversation) {
			id++
			c.ID = id
			o.OnConversation(c)
		}
	}
	c := &Capture{}
	err = readFrames(ctx, src, c, d, func(kl *tlstrace.KeyLog) { d.keyLog.Merge(kl) })
	if err != nil && !stopped(ctx, c, err) {
		return nil, err
	}
	c.Conversations = d.finish()
	c.Warnings = append(c.Warnings, d.warnings()...)
	c.TCPServerPorts = d.serverPorts()
	return c, err
}

// stopped reports whether err is readFrames stopping because ctx ended;
// it then marks c as the incomplete capture it is.
func stopped(ctx context.Context, c *Capture, err error) bool {
	if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
		return false
	}
	c.Incomplete = fmt.Sprintf("tracer: decoding stopped after %d frames: %v", c.Frames, ctx.Err())
	c.Warnings = append(c.Warnings, c.Incomplete)
	return true
}

// maxSeenPorts bounds the server ports remembered for Capture.TCPServerPorts.
const maxSeenPorts = 64

// seePort remembers the server port of segment s.
func (d *decoder) seePort(s *segInfo) {
	p := s.dst.Port()
	if !s.syn || s.ackf {
		if s.syn {
			p = s.src.Port()
		} else {
			p = min(s.src.Port(), s.dst.Port())
		}
	}
	// A bit per port: a map assignment (or lookup) for every segment
	// cost the reading goroutine 4 % of its time.
	w, bit := p/64, uint64(1)<<(p%64)
	if d.seenPorts[w]&bit == 0 && d.nSeenPorts < maxSeenPorts {
		d.seenPorts[w] |= bit
		d.nSeenPorts++
	}
}

// serverPorts are the ports seePort remembered, sorted.
func (d *decoder) serverPorts() []uint16 {
	out := make([]uint16, 0, d.nSeenPorts)
	for w, m := range d.seenPorts[:] {
		for ; m != 0; m &= m - 1 {
			out = append(out, uint16(w*64+bits.TrailingZeros64(m)))
		}
	}
	return out
}

// ctxCheckEvery is how many frames readFrames reads between looks at its
// context.
const ctxCheckEvery = 256

// readFrames reads every frame of src into d.frame, counting them in c,
// and passes key logs embedded in the capture to keys. It stops with an
// error wrapping ctx.Err() when ctx ends.
func readFrames(ctx context.Context, src source, c *Capture, d *decoder, keys func(*tlstrace.KeyLog)) error {
	nsecrets := 0
	// Frames cut short by the snapshot length lose bytes that then show
	// as gaps: the capture, not the network, lost them.
	cut, firstCut := 0, 0
	defer func() {
		if cut > 0 {
			c.Warnings = append(c.Warnings, fmt.Sprintf("tracer: %d frame(s) cut short by the capture's snapshot length (first: frame %d): fewer bytes were captured than were on the wire, and the missing bytes show as gaps; capture with a larger snaplen (tcpdump -s 0)", cut, firstCut))
		}
	}()
	for {
		if c.Frames%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("stopped after %d frames: %w", c.Frames, err)
			}
		}
		data, ts, lt, err := src.next()
		if err == io.EOF {
			return nil
		}
		if err != nil && ctx.Err() != nil {
			// A read ended by DecodeFileContext's deadline.
			return fmt.Errorf("stopped after %d frames: %w", c.Frames, ctx.Err())
		}
		if err != nil {
			if w, ok := err.(truncatedError); ok {
				c.Warnings = append(c.Warnings, w.Error())
				c.Incomplete = w.Error()
				return nil
			}
			return err
		}
		c.Frames++
		if src.cut() {
			if cut++; cut == 1 {
				firstCut = c.Frames
			}
		}
		if sec := src.secrets(); len(sec) != nsecrets {
			kl, err := tlstrace.ParseKeyLog(bytes.NewReader(sec[nsecrets:]))
			if err != nil {
				c.Warnings = append(c.Warnings, fmt.Sprintf("tracer: key log embedded in the capture: %v", err))
			} else {
				keys(kl)
			}
			nsecrets = len(sec)
		}
		d.frame(c.Frames, ts, lt, data)
	}
}

// linkType numbers from the tcpdump.org registry.
const (
	linkNull     = 0
	linkEthernet = 1
	linkRaw      = 101
	linkLoop     = 108
	linkSLL      = 113
	linkIPv4     = 228
	linkIPv6     = 229
	linkSLL2     = 276
)

// decoder holds the flow table of a capture.
type decoder struct {
	o          Options
	max        int
	ports      map[uint16]portKind
	flows      map[flowKey]*tcpFlow
	done       []*Conversation
	ip4        layers.IPv4
	ip6        layers.IPv6
	tcp        layers.TCP
	warnOnce   map[string]int
	keyLog     *tlstrace.KeyLog     // Options.KeyLog plus pcapng Decryption Secrets Blocks
	seenPorts  [1 << 16 / 64]uint64 // server ports of the TCP segments, a bit each (seePort)
	nSeenPorts int                  // bits set in seenPorts
	emit       func(*segInfo)       // receives the parsed TCP segments
	deliver    func(*Conversation)  // Options.OnConversation, numbering
	seg        segInfo              // the segment being emitted (reused)
	tw         []twEntry            // closed flows in time-wait, oldest first from twHead
	twHead     int
	twLive     int // flows of tw still in the table
	maxQuiet   int // quiet flows kept (maxQuietFlows)
	sweepAt    int // table size at which the next sweep runs
	forgotten  int // quiet flows forgotten by sweeps

	// MQTT decoding state shared by the flows (one goroutine per decoder).
	onPacket func(*Conversation, *Packet)              // Options.OnPacket (serialised)
	pkt      Packet                                    // the packet handed to onPacket
	lenient  packets.Decoder                           // decodes the packets reported
	strict   packets.Decoder                           // confirms resync candidates
	spare    [maxSpareBits - minSpareBits + 1][][]byte // partial-packet buffers to reuse (streaming)
}

type portKind uint8

const (
	portUnknown portKind = iota
	portMQTT
	portTLS
	portWS
)

func newDecoder(o Options) *decoder {
	d := &decoder{o: o, max: o.MaxStreamBuffer, flows: make(map[flowKey]*tcpFlow), warnOnce: map[string]int{}, maxQuiet: maxQuietFlows}
	if o.quietFlows > 0 {
		d.maxQuiet = o.quietFlows
	}
	d.sweepAt = 2 * d.maxQuiet
	d.lenient.Options.Lenient = true
	d.keyLog, _ = tlstrace.ParseKeyLog(bytes.NewReader(nil))
	d.keyLog.Merge(o.KeyLog)
	if d.max <= 0 {
		d.max = DefaultMaxStreamBuffer
	}
	d.ports = maps.Clone(knownPorts)
	for _, p := range o.Ports {
		if p > 0 && p < 65536 {
			d.ports[uint16(p)] = portMQTT
		}
	}
	return d
}

func (d *decoder) warn(kind string) { d.warnOnce[kind]++ }

// knownPorts are the server ports recognised without Options.Ports: MQTT
// on 1883, MQTT over TLS on 8883, MQTT over WebSocket over TLS on 443,
// over plain WebSocket on 80 and 8080.
var knownPorts = map[uint16]portKind{1883: portMQTT, 8883: portTLS, 443: portTLS, 80: portWS, 8080: portWS}

// KnownPort reports whether the tracer recognises server port p without
// Options.Ports.
func KnownPort(p uint16) bool {
	_, ok := knownPorts[p]
	return ok
}

func (d *decoder) warnings() []string {
	var w []string
	for k, n := range d.warnOnce {
		w = append(w, fmt.Sprintf("%s (%d frames)", k, n))
	}
	if d.forgotten > 0 {
		w = append(w, fmt.Sprintf("%d TCP connections that had carried no data were forgotten while more than %d were open (a later segment of one starts a mid-stream conversation)", d.forgotten, d.maxQuiet))
	}
	slices.Sort(w)
	return w
}

// frame decodes one captured frame down to TCP and feeds its flow.
func (d *decoder) frame(n int, ts time.Time, lt uint32, b []byte) {
	ipb, ver := d.link(lt, b)
	if ipb == nil {
		return
	}
	// The link layer's type must agree with the header's own version
	// field: a datagram of another version is discarded (RFC 1122
	// §3.2.1.1), as gopacket's decoders would not notice.
	if len(ipb) == 0 || int(ipb[0]>>4) != ver {
		d.warn("frames whose IP version field disagrees with the link layer's IPv4/IPv6 type ignored (RFC 1122 §3.2.1.1)")
		return
	}
	var src, dst netip.Addr
	var tcpb []byte
	wire := 0 // bytes of the IP datagram on the wire, by its header; 0 if unknown
	switch ver {
	case 4:
		if err := d.ip4.DecodeFromBytes(ipb, gopacket.NilDecodeFeedback); err != nil {
			d.warn("malformed IPv4 header")
			return
		}
		if d.ip4.Protocol != layers.IPProtocolTCP {
			return
		}
		if d.ip4.Flags&layers.IPv4MoreFragments != 0 || d.ip4.FragOffset != 0 {
			d.warn("IPv4 fragments ignored")
			return
		}
		src = netip.AddrFrom4([4]byte(d.ip4.SrcIP.To4()))
		dst = netip.AddrFrom4([4]byte(d.ip4.DstIP.To4()))
		tcpb = d.ip4.Payload
		wire = int(d.ip4.Length)
	case 6:
		if err := d.ip6.DecodeFromBytes(ipb, gopacket.NilDecodeFeedback); err != nil {
			d.warn("malformed IPv6 header")
			return
		}
		tcpb = d.ip6.Payload
		if d.ip6.Length != 0 { // 0: a jumbogram (RFC 2675)
			wire = 40 + int(d.ip6.Length)
		}
		nh := d.ip6.NextHeader
		if hbh := d.ip6.HopByHop; hbh != nil {
			// gopacket skipped the hop-by-hop header (Payload follows
			// it) but left NextHeader at 0: go on from the header's own
			// next header, within the payload length, which counts it.
			nh = hbh.NextHeader
			if n := int(d.ip6.Length) - hbh.ActualLength; d.ip6.Length != 0 && n >= 0 && n < len(tcpb) {
				tcpb = tcpb[:n]
			}
		}
		// Skip the common extension headers.
		for i := 0; nh != layers.IPProtocolTCP; i++ {
			if i == 8 {
				d.warn("IPv6 extension header chains longer than 8 ignored")
				return
			}
			switch nh {
			case layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing, layers.IPProtocolIPv6Destination, layers.IPProtocolAH:
				if len(tcpb) < 8 {
					d.warn("malformed IPv6 extension header")
					return
				}
				l := 8 + int(tcpb[1])*8
				if nh == layers.IPProtocolAH {
					l = (int(tcpb[1]) + 2) * 4 // RFC 4302: in 4-byte units
				}
				if len(tcpb) < l {
					d.warn("malformed IPv6 extension header")
					return
				}
				nh = layers.IPProtocol(tcpb[0])
				tcpb = tcpb[l:]
			case layers.IPProtocolIPv6Fragment:
				if len(tcpb) < 8 {
					d.warn("malformed IPv6 extension header")
					return
				}
				if binary.BigEndian.Uint16(tcpb[2:])&0xfff9 != 0 {
					// Offset or More Fragments set: a real fragment.
					// An atomic fragment (RFC 6946) is whole.
					d.warn("IPv6 fragments ignored")
					return
				}
				nh = layers.IPProtocol(tcpb[0])
				tcpb = tcpb[8:]
			case layers.IPProtocolESP, 135, 139, 140, 253, 254:
				// Extension headers that cannot be skipped or hide
				// what follows: ESP, Mobility, HIP, Shim6, experimental.
				d.warn(fmt.Sprintf("IPv6 next header %d not supported", uint8(nh)))
				return
			default:
				return // another transport, such as UDP or ICMPv6: not TCP
			}
		}
		src = netip.AddrFrom16([16]byte(d.ip6.SrcIP.To16())).Unmap()
		dst = netip.AddrFrom16([16]byte(d.ip6.DstIP.To16())).Unmap()
	default:
		return
	}
	if err := d.tcp.DecodeFromBytes(tcpb, gopacket.NilDecodeFeedback); err != nil {
		if wire > len(ipb) {
			d.warn("TCP headers cut by the capture's snapshot length: segments ignored")
			return
		}
		d.warn("malformed TCP header")
		return
	}
	t := &d.tcp
	d.seg = segInfo{
		frame: n, ts: ts,
		src: netip.AddrPortFrom(src, uint16(t.SrcPort)), dst: netip.AddrPortFrom(dst, uint16(t.DstPort)),
		seq: t.Seq, ack: t.Ack, syn: t.SYN, ackf: t.ACK, fin: t.FIN, rst: t.RST,
		payload: t.Payload,
	}
	if wire > len(ipb) {
		// The frame was cut (a small snapshot length): the payload's
		// last bytes are missing.
		d.seg.lost = wire - len(ipb)
	}
	d.seePort(&d.seg)
	d.emit(&d.seg)
}

// link strips the link-layer header and returns the IP packet and its
// version (4 or 6); nil for frames that do not carry IP.
func (d *decoder) link(lt uint32, b []byte) ([]byte, int) {
	var et uint16
	switch lt {
	case linkEthernet:
		if len(b) < 14 {
			d.warn("truncated Ethernet header")
			return nil, 0
		}
		et = binary.BigEndian.Uint16(b[12:])
		b = b[14:]
		for i := 0; i < 2 && (et == 0x8100 || et == 0x88a8); i++ {
			if len(b) < 4 {
				return nil, 0
			}
			et = binary.BigEndian.Uint16(b[2:])
			b = b[4:]
		}
	case linkSLL:
		if len(b) < 16 {
			d.warn("truncated Linux SLL header")
			return nil, 0
		}
		et = binary.BigEndian.Uint16(b[14:])
		b = b[16:]
	case linkSLL2:
		if len(b) < 20 {
			d.warn("truncated Linux SLL2 header")
			return nil, 0
		}
		et = binary.BigEndian.Uint16(b[0:])
		b = b[20:]
	case linkNull, linkLoop:
		if len(b) < 4 {
			d.warn("truncated loopback header")
			return nil, 0
		}
		fam := binary.LittleEndian.Uint32(b)
		if lt == linkLoop || fam > 0xffff {
			fam = binary.BigEndian.Uint32(b)
		}
		b = b[4:]
		switch fam {
		case 2:
			et = 0x0800
		case 10, 24, 28, 30:
			et = 0x86dd
		default:
			return nil, 0
		}
	case linkRaw, linkIPv4, linkIPv6, 12, 14: // 12, 14: raw IP on some BSDs
		if len(b) == 0 {
			return nil, 0
		}
		switch b[0] >> 4 {
		case 4:
			return b, 4
		case 6:
			return b, 6
		}
		return nil, 0
	default:
		d.warn(fmt.Sprintf("unsupported link type %d", lt))
		return nil, 0
	}
	switch et {
	case 0x0800:
		return b, 4
	case 0x86dd:
		return b, 6
	}
	return nil, 0
}

// segInfo is a TCP segment.
type segInfo struct {
	frame               int
	ts                  time.Time
	src, dst            netip.AddrPort
	seq, ack            uint32
	syn, ackf, fin, rst bool
	payload             []byte
	lost                int // payload bytes on the wire after payload, not captured
}

// flowID identifies a TCP connection regardless of direction: a is the
// lesser endpoint.
type flowID struct {
	a, b netip.AddrPort
}

func lessAP(x, y netip.AddrPort) bool {
	if c := x.Addr().Compare(y.Addr()); c != 0 {
		return c < 0
	}
	return x.Port() < y.Port()
}

// flowKey is a flowID packed into bytes: a cheaper map key than the
// netip values (hashed and compared as one block of memory). Addresses
// are 16-byte forms; the decoder unmaps IPv4-mapped IPv6 addresses and
// captures carry no zones, so distinct flows have distinct keys.
type flowKey [36]byte

func (id flowID) key() flowKey {
	var k flowKey
	a, b := id.a.Addr().As16(), id.b.Addr().As16()
	copy(k[0:16], a[:])
	copy(k[16:32], b[:])
	k[32], k[33] = byte(id.a.Port()>>8), byte(id.a.Port())
	k[34], k[35] = byte(id.b.Port()>>8), byte(id.b.Port())
	return k
}

func idOf(src, dst netip.AddrPort) flowID {
	if lessAP(src, dst) {
		return flowID{src, dst}
	}
	return flowID{dst, src}
}

// Closed connections wait in time-wait before they are finished, so
// that their late segments (the peer's data in flight when an RST was
// sent, a retransmission after both FINs, data captured after its FIN)
// land in their own conversation instead of starting a made-up
// mid-stream one on the same 4-tuple.
const (
	// timeWait is how long, in capture time after the connection
	// closed, segments within its window still belong to it. RFC 9293's
	// 2×MSL (60 s on Linux) guards against any stray duplicate; a
	// capture only needs to cover what is in flight when the connection
	// closes (one round trip) and the first retransmissions (RFC 6298
	// starts at 1 s and doubles: 1 s + 2 s), while a conversation
	// delivered to Options.OnConversation should not wait a minute.
	timeWait = 5 * time.Second
	// maxTimeWait bounds the closed connections kept per decoder; the
	// oldest is finished first.
	maxTimeWait = 4096
	// timeWaitWindow is how far past the next expected byte a late
	// segment may start and still belong to the closed connection: more
	// than Linux's default maximum receive window (6 MiB), so in-flight
	// data fits, and small enough that a new connection's random ISN
	// falls in it by chance only about once in 250.
	timeWaitWindow = 16 << 20
)

// twEntry is a closed flow waiting in time-wait.
type twEntry struct {
	id flowKey
	f  *tcpFlow
}

// segment feeds a segment to its flow, creating or retiring flows.
func (d *decoder) segment(s *segInfo) {
	d.expire(s.ts)
	id := idOf(s.src, s.dst).key()
	f := d.flows[id]
	if f != nil && f.timeWait && !f.late(s) {
		// Not a late segment of the closed connection: a new one.
		d.retire(id, f)
		f = nil
	}
	if f != nil && s.syn && !s.ackf {
		if h := &f.half[f.dirOf(s.src)]; !h.synSeen || h.synSeq != s.seq {
			// A new connection reusing the 4-tuple.
			d.retire(id, f)
			f = nil
		}
	}
	if f == nil {
		f = d.newFlow(s)
		d.flows[id] = f
		if len(d.flows) > d.sweepAt {
			d.sweep(f)
		}
	}
	f.last, f.lastFrame = s.ts, s.frame
	dir := f.dirOf(s.src)
	h := &f.half[dir]
	if s.syn {
		h.syn(s.seq)
	}
	if s.ackf {
		f.half[1-dir].acked(s.ack, s.frame, f)
	}
	if len(s.payload) > 0 && f.kind != kindNone {
		seq := s.seq
		if s.syn {
			seq++ // TCP Fast Open (RFC 7413): the data follows the SYN's sequence number
		}
		h.segment(seq, s.payload, s.frame, s.ts, f)
	}
	if s.lost > 0 && f.kind != kindNone {
		seq := s.seq + uint32(len(s.payload))
		if s.syn {
			seq++
		}
		h.cut(seq, s.lost, s.frame, f)
	}
	if s.fin {
		seq := s.seq + uint32(len(s.payload)) + uint32(s.lost)
		if s.syn {
			seq++
		}
		h.fin(seq)
	}
	if s.fin || s.rst {
		f.close(dir, s.frame, s.ts)
		if s.rst {
			f.close(1-dir, s.frame, s.ts)
		}
	}
	if !f.timeWait && f.closed[0] && f.closed[1] {
		f.timeWait, f.twUntil = true, s.ts.Add(timeWait)
		d.tw = append(d.tw, twEntry{id, f})
		d.twLive++
		if d.twLive > maxTimeWait {
			d.expire(time.Time{})
		}
	}
}

// late reports whether s, arriving for closed flow f, is one of its late
// segments: within timeWait of the close, not a SYN with a new initial
// sequence number, and within the window of its direction (from the
// first sequence number seen to timeWaitWindow past the next expected
// byte).
func (f *tcpFlow) late(s *segInfo) bool {
	if s.ts.After(f.twUntil) {
		return false
	}
	h := &f.half[f.dirOf(s.src)]
	if s.syn {
		return h.synSeen && h.synSeq == s.seq
	}
	if !h.started {
		return true // nothing to compare with: not clearly outside
	}
	return seqDiff(s.seq, h.base) >= 0 && seqDiff(s.seq, h.next) <= timeWaitWindow
}

// expire finishes the closed flows whose time-wait ended before now, and
// the oldest ones while more than maxTimeWait wait (now zero: only
// those).
func (d *decoder) expire(now time.Time) {
	for d.twHead < len(d.tw) {
		e := d.tw[d.twHead]
		if d.flows[e.id] == e.f {
			if d.twLive <= maxTimeWait && (now.IsZero() || !now.After(e.f.twUntil)) {
				break
			}
			d.retire(e.id, e.f)
		}
		d.tw[d.twHead] = twEntry{}
		d.twHead++
	}
	if d.twHead > 64 && d.twHead*2 > len(d.tw) {
		d.tw = append(d.tw[:0], d.tw[d.twHead:]...)
		d.twHead = 0
	}
}

// maxQuietFlows bounds the quiet flows (see quiet) a decoder keeps: a
// capture of a SYN flood or a port scan opens a flow per SYN and closes
// none, and would otherwise hold about 700 bytes for each until the end.
// A sweep forgets the least recently seen quiet flows beyond it; nothing
// is lost unless a forgotten connection sends data later.
const maxQuietFlows = 1 << 16

// quiet reports whether forgetting f loses nothing it would report: it
// is not in time-wait and has carried no data (none sniffed, none held
// out of order, no conversation). A flow decided not to be MQTT is not
// quiet: it carried data, and more of it on a forgotten flow would start a
// mid-stream one, which the TLS and WebSocket ports decide by port alone.
func (f *tcpFlow) quiet() bool {
	return !f.timeWait && f.kind == kindUndecided && f.conv == nil &&
		len(f.sniff[0])+len(f.sniff[1]) == 0 &&
		len(f.half[0].pending)+len(f.half[1].pending) == 0
}

// sweep runs when the table has grown past sweepAt: it forgets the least
// recently seen quiet flows beyond maxQuiet (keep, the flow just
// created, stays), and sets the next sweep maxQuiet flows further on. A
// sweep walks the whole table, so a new flow costs amortised
// O(1 + open flows / maxQuiet): O(1) in a flood of quiet flows, more when
// far more than maxQuiet flows carrying data are open at once.
func (d *decoder) sweep(keep *tcpFlow) {
	var quiet []*tcpFlow
	for _, f := range d.flows {
		if f != keep && f.quiet() {
			quiet = append(quiet, f)
		}
	}
	if n := len(quiet) - (d.maxQuiet - 1); n > 0 {
		slices.SortFunc(quiet, func(a, b *tcpFlow) int {
			if c := a.last.Compare(b.last); c != 0 {
				return c
			}
			return a.lastFrame - b.lastFrame
		})
		for _, f := range quiet[:n] {
			d.retire(idOf(f.client, f.server).key(), f)
		}
		d.forgotten += n
	}
	d.sweepAt = len(d.flows) + d.maxQuiet
}

// retire finishes a flow and removes it from the table.
func (d *decoder) retire(id flowKey, f *tcpFlow) {
	delete(d.flows, id)
	if f.timeWait {
		d.twLive--
	}
	if c := f.finish(); c != nil {
		if d.deliver != nil {
			d.deliver(c)
			return
		}
		d.done = append(d.done, c)
	}
}

// finish retires every open flow and returns the conversations numbered in
// the order of their first frame (none when they are delivered to
// Options.OnConversation instead).
func (d *decoder) finish() []*Conversation {
	open := make([]*tcpFlow, 0, len(d.flows))
	for _, f := range d.flows {
		open = append(open, f)
	}
	slices.SortFunc(open, func(a, b *tcpFlow) int { return a.firstFrame - b.firstFrame })
	for _, f := range open {
		d.retire(idOf(f.client, f.server).key(), f)
	}
	slices.SortStableFunc(d.done, func(a, b *Conversation) int { return a.firstFrame - b.firstFrame })
	for i, c := range d.done {
		c.ID = i + 1
	}
	return d.done
}

func (d *decoder) newFlow(s *segInfo) *tcpFlow {
	f := &tcpFlow{d: d, max: d.max, first: s.ts, firstFrame: s.frame}
	client, server := s.src, s.dst
	switch {
	case s.syn && !s.ackf:
	case s.syn && s.ackf:
		client, server = s.dst, s.src
	default:
		f.midStream = true
		ks, kd := d.ports[s.src.Port()], d.ports[s.dst.Port()]
		if kd == portUnknown && (ks != portUnknown || s.src.Port() < s.dst.Port()) {
			client, server = s.dst, s.src
		}
	}
	f.client, f.server = client, server
	f.port = d.ports[server.Port()]
	f.half[0] = halfStream{dir: ClientToServer, max: d.max}
	f.half[1] = halfStream{dir: ServerToClient, max: d.max}
	return f
}
