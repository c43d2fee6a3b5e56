package tracer

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"time"

	pahopackets "github.com/eclipse/paho.golang/packets"

	"github.com/dps-conform/dps-conform/packets"
)

// mqttStream frames and decodes the MQTT byte stream of one direction. It
// buffers at most max bytes of an incomplete packet; after a gap, a
// malformed packet or a mid-stream start it resynchronises on the next
// plausible fixed header.
type mqttStream struct {
	dir     Direction
	conv    *Conversation
	d       *decoder // shared decoding state of the flow table
	buf     []byte
	off     int64 // stream offset of buf[0]
	syncing bool  // looking for a plausible fixed header
	// syncDefect reports that the resynchronisation under way was caused
	// by a defect of the capture (a gap, a mid-stream start), not by a
	// malformed packet: the bytes it skips are Problem.CaptureDefect.
	syncDefect bool
	discard    int64  // bytes of an oversized packet still to skip
	partial    []byte // a packet of known length being filled
	fill       int    // bytes of partial filled
	// The last resync problem (1-based index into conv.Problems), to
	// extend while consecutive bytes are skipped.
	skipIdx int
	skipEnd int64
	skipN   int64
	max     int
	// tentative counts the packets after a resynchronisation that must
	// still decode strictly before the stream is trusted again; until
	// then a header that fails plausibleHeader resynchronises instead of
	// being reported as a malformed packet.
	tentative int
	// scanned counts the offsets resync examined and tried the strict
	// decodes it ran: tests bound the work per byte with them.
	scanned, tried int64
	// scanTo is the stream offset up to which resync has looked for a
	// chain of packets past a candidate it waits for.
	scanTo int64
	// first is the first packet framed in the stream (decoded or
	// malformed), kept for midStreamStart; frame is 0 when none was.
	first struct {
		typ   packets.Type
		frame int
		off   int64
	}
}

// resyncWindow bounds a resynchronisation: a candidate packet longer than
// this is not waited for, so at most this many bytes are held and examined
// past the offset where the search stands.
const resyncWindow = 64 << 10

// plausibleHeader reports whether b starts with a fixed header that could
// begin a packet sent in direction d, and the packet's total length if its
// header is complete (0 when more bytes are needed).
func plausibleHeader(b []byte, d Direction, max int) (ok bool, n int) {
	if len(b) == 0 {
		return true, 0
	}
	h := b[0]
	t, flags := packets.Type(h>>4), h&0x0f
	switch t {
	case packets.TypeReserved0, packets.Type(15):
		return false, 0
	case packets.Type(3): // PUBLISH
		if flags&0x06 == 0x06 {
			return false, 0
		}
	case packets.Type(6), packets.Type(8), packets.Type(10): // PUBREL SUBSCRIBE UNSUBSCRIBE
		if flags != 0x02 {
			return false, 0
		}
	default:
		if flags != 0 {
			return false, 0
		}
	}
	switch t {
	case 1, 8, 10, 12, 14: // CONNECT SUBSCRIBE UNSUBSCRIBE PINGREQ DISCONNECT
		if d != ClientToServer {
			return false, 0
		}
	case 2, 9, 11, 13: // CONNACK SUBACK UNSUBACK PINGRESP
		if d != ServerToClient {
			return false, 0
		}
	}
	l, err := packets.PacketLength(b)
	if err != nil {
		var sb *packets.ShortBufferError
		if errors.As(err, &sb) {
			return true, 0
		}
		return false, 0
	}
	rl := l - headerLen(b)
	switch t {
	case 2, 4, 5, 6, 7, 11: // CONNACK PUBACK PUBREC PUBREL PUBCOMP UNSUBACK
		ok = rl == 2
	case 12, 13, 14:
		ok = rl == 0
	case 1:
		ok = rl >= 10
	case 3:
		ok = rl >= 2
	case 8, 10:
		ok = rl >= 5
	case 9:
		ok = rl >= 3
	}
	if !ok || l > max {
		return false, 0
	}
	return true, l
}

// headerLen is the length of the fixed header at the start of b (which
// PacketLength has accepted).
func headerLen(b []byte) int {
	i := 1
	for i < len(b) && i < 5 && b[i]&0x80 != 0 {
		i++
	}
	return i + 1
}

// feed appends stream bytes and decodes every complete packet.
func (m *mqttStream) feed(b []byte, frame int, ts time.Time) {
	if m.discard > 0 {
		if int64(len(b)) <= m.discard {
			m.discard -= int64(len(b))
			m.off += int64(len(b))
			return
		}
		b = b[m.discard:]
		m.off += m.discard
		m.discard = 0
	}
	if m.partial != nil {
		k := copy(m.partial[m.fill:], b)
		m.fill += k
		b = b[k:]
		if m.fill < len(m.partial) {
			return
		}
		p := m.partial
		m.partial, m.fill = nil, 0
		m.packetOwned(p, frame, ts)
		m.off += int64(len(p))
		m.d.putBuf(p)
		if len(b) == 0 {
			return
		}
	}
	if len(m.buf) == 0 && !m.syncing && m.tentative == 0 {
		// Fast path: decode straight from b, keep only the tail.
		n := m.decodeAll(b, frame, ts)
		m.keepTail(b[n:])
		return
	}
	m.buf = append(m.buf, b...)
	n := m.decodeAll(m.buf, frame, ts)
	tail := m.buf[n:]
	switch {
	case !m.syncing && m.tentative == 0 && m.startPartial(tail):
		m.buf = m.buf[:0]
	case len(tail) <= n:
		m.buf = m.buf[:copy(m.buf, tail)]
	default:
		// Moving the tail would cost more than the bytes consumed: keep
		// it in place (append reallocates when the capacity runs out).
		m.buf = tail
	}
	switch {
	case len(m.buf) == 0:
		m.buf = nil // an idle flow holds no buffer
	case cap(m.buf) > 64<<10 && len(m.buf) < 4<<10:
		m.buf = append([]byte(nil), m.buf...)
	}
}

// keepTail keeps the undecoded tail of fed bytes.
func (m *mqttStream) keepTail(t []byte) {
	if len(t) == 0 || !m.syncing && m.tentative == 0 && m.startPartial(t) {
		return
	}
	m.buf = append(m.buf[:0], t...)
}

// startPartial allocates the packet that t begins, when its fixed header is
// complete, so that later bytes are copied once, straight into it.
func (m *mqttStream) startPartial(t []byte) bool {
	if len(t) == 0 {
		return false
	}
	l, err := packets.PacketLength(t)
	if err != nil || l > m.max || l <= len(t) {
		return false
	}
	m.partial = m.d.getBuf(l)
	m.fill = copy(m.partial, t)
	return true
}

// Partial-packet buffers are recycled when packets are streamed
// (Options.OnPacket), in power-of-two size classes from 1<<minSpareBits
// to 1<<maxSpareBits bytes, at most maxSpares per class.
const (
	minSpareBits = 8
	maxSpareBits = 16
	maxSpares    = 64
)

// getBuf returns a buffer of n bytes for a partial packet.
func (d *decoder) getBuf(n int) []byte {
	if d.onPacket == nil || n > 1<<maxSpareBits {
		return make([]byte, n)
	}
	k := max(bits.Len(uint(n-1)), minSpareBits)
	if s := d.spare[k-minSpareBits]; len(s) > 0 {
		b := s[len(s)-1]
		d.spare[k-minSpareBits] = s[:len(s)-1]
		return b[:n]
	}
	return make([]byte, n, 1<<k)
}

// putBuf recycles a buffer from getBuf once its packet was delivered.
func (d *decoder) putBuf(b []byte) {
	c := cap(b)
	if d.onPacket == nil || c < 1<<minSpareBits || c > 1<<maxSpareBits || c&(c-1) != 0 {
		return
	}
	k := bits.Len(uint(c-1)) - minSpareBits
	if len(d.spare[k]) < maxSpares {
		d.spare[k] = append(d.spare[k], b)
	}
}

// gap tells the stream that n bytes are missing before the next feed;
// frame is the frame that revealed the gap.
func (m *mqttStream) gap(n int, frame int) {
	if m.partial != nil {
		m.buf = append(m.buf[:0], m.partial[:m.fill]...)
		m.partial, m.fill = nil, 0
	}
	if len(m.buf) > 0 && !m.syncing {
		m.problem(frame, m.off, "tracer-gap", fmt.Sprintf("%d bytes of an incomplete %s packet lost in a gap", len(m.buf), packets.Type(m.buf[0]>>4)))
		p := &m.conv.Problems[len(m.conv.Problems)-1]
		p.CaptureDefect = true
		p.PacketLen = m.announced()
	}
	m.off += int64(len(m.buf)) + int64(n)
	m.buf = m.buf[:0]
	m.discard = 0
	m.syncing, m.syncDefect = true, true
}

// end reports bytes left over when the stream ends; closed reports that a
// FIN or RST ended the direction (otherwise the capture ended first).
func (m *mqttStream) end(frame int, closed bool) {
	if m.partial != nil {
		m.buf = append(m.buf[:0], m.partial[:m.fill]...)
		m.partial, m.fill = nil, 0
	}
	if len(m.buf) > 0 && m.syncing {
		// Nothing plausible was confirmed in the bytes held.
		m.skipped(frame, len(m.buf))
		m.buf = m.buf[:0]
	}
	if len(m.buf) > 0 && !m.syncing {
		m.problem(frame, m.off, "tracer-truncated", fmt.Sprintf("stream ends inside a %s packet (%d bytes buffered)", packets.Type(m.buf[0]>>4), len(m.buf)))
		p := &m.conv.Problems[len(m.conv.Problems)-1]
		// With no FIN or RST seen, the capture ended before the packet
		// did; the peer may well have sent the rest.
		p.CaptureDefect = !closed
		p.PacketLen = m.announced()
	}
}

// midStreamStart records, for a conversation captured mid-stream (no
// SYN seen), that its beginning is missing when the client's first packet
// is not a CONNECT: a ClauseMidStream capture defect at the client's first
// packet (at the server's when the client sent none). The first packet a
// client sends is its CONNECT [MQTT-3.1.0-1], so a conversation seen from
// its CONNECT on lost nothing but the TCP handshake, and gets none. Nor
// does one whose client stream starts inside a packet: the bytes skipped
// there are already a "tracer-resync" capture defect at offset 0, nor one
// whose client stream was seen from its start (the SYN) and lost its first
// bytes in a gap, a capture defect already.
func midStreamStart(c *Conversation, mq *[2]mqttStream) {
	cs, sc := &mq[ClientToServer].first, &mq[ServerToClient].first
	if cs.frame == 0 && sc.frame == 0 || cs.frame != 0 && cs.typ == packets.TypeConnect {
		return // no MQTT seen (e.g. TLS not decrypted), or the start is there
	}
	for _, p := range c.Problems {
		if p.Clause == "tracer-resync" && p.Dir == ClientToServer && p.Offset == 0 && p.CaptureDefect {
			return
		}
	}
	for _, g := range c.Gaps {
		if g.Dir == ClientToServer && g.Offset == 0 {
			return // the start was captured (a SYN), then lost: a gap says so
		}
	}
	d, f := ClientToServer, cs
	if cs.frame == 0 {
		d, f = ServerToClient, sc
	}
	c.Problems = append(c.Problems, Problem{Dir: d, Frame: f.frame, Offset: f.off, Clause: ClauseMidStream, CaptureDefect: true,
		Msg: fmt.Sprintf("capture starts mid-connection: the connection's CONNECT, and whatever preceded the first packet seen (%v %s, frame %d), was not captured", d, f.typ, f.frame)})
}

// announced is the length the fixed header at the start of m.buf
// announces (Problem.PacketLen), 0 when unknown: also when that header is
// one a resynchronisation only guessed (m.tentative), which no packet
// after it confirmed; its length says nothing of what the peer sent.
func (m *mqttStream) announced() int {
	if m.tentative > 0 {
		return 0
	}
	n, err := packets.PacketLength(m.buf)
	if err != nil {
		return 0
	}
	return n
}

// skipped records n bytes skipped while resynchronising at m.off and
// advances m.off; consecutive skips are reported as one problem.
func (m *mqttStream) skipped(frame, n int) {
	probs := m.conv.Problems
	if m.skipIdx > 0 && m.skipIdx <= len(probs) && m.skipEnd == m.off && probs[m.skipIdx-1].CaptureDefect == m.syncDefect {
		p := &probs[m.skipIdx-1]
		m.skipN += int64(n)
		p.Msg = fmt.Sprintf("skipped %d bytes to the next plausible fixed header", m.skipN)
	} else {
		m.problem(frame, m.off, "tracer-resync", fmt.Sprintf("skipped %d bytes to the next plausible fixed header", n))
		m.conv.Problems[len(m.conv.Problems)-1].CaptureDefect = m.syncDefect
		m.skipIdx, m.skipN = len(m.conv.Problems), int64(n)
	}
	m.off += int64(n)
	m.skipEnd = m.off
}

func (m *mqttStream) problem(frame int, off int64, clause, msg string) {
	m.conv.Problems = append(m.conv.Problems, Problem{Dir: m.dir, Frame: frame, Offset: off, Clause: clause, Msg: msg})
}

// decodeAll decodes the packets at the start of b and returns the number
// of bytes consumed; m.off advances by the same amount.
func (m *mqttStream) decodeAll(b []byte, frame int, ts time.Time) int {
	i := 0
	for i < len(b) {
		if m.syncing {
			j, wait := m.resync(b[i:])
			if j > 0 {
				m.skipped(frame, j)
				i += j
			}
			if wait {
				if len(b)-i > m.max {
					// Nothing plausible fits in the buffer: drop it.
					m.skipped(frame, len(b)-i)
					i = len(b)
				}
				return i
			}
			m.syncing = false
			m.tentative = 2
		}
		if m.tentative > 0 {
			if ok, _ := plausibleHeader(b[i:], m.dir, m.max); !ok {
				// Not a header this direction can send, right after a
				// guessed resynchronisation: the guess was wrong.
				m.syncing = true
				continue
			}
		}
		l, err := packets.PacketLength(b[i:])
		if err != nil {
			var sb *packets.ShortBufferError
			if errors.As(err, &sb) {
				return i
			}
			m.problem(frame, m.off, clauseOf(err, "MQTT-2.2.3"), msgOf(err))
			// The bytes skipped after a malformed packet are the peer's.
			m.syncing, m.syncDefect = true, false
			continue
		}
		if l > m.max {
			m.problem(frame, m.off, "tracer-buffer", fmt.Sprintf("%s packet of %d bytes exceeds the stream buffer of %d bytes; skipped", packets.Type(b[i]>>4), l, m.max))
			m.conv.Problems[len(m.conv.Problems)-1].PacketLen = l
			if len(b)-i < l {
				m.discard = int64(l - (len(b) - i))
				m.off += int64(len(b) - i)
				return len(b)
			}
			m.off += int64(l)
			i += l
			continue
		}
		if len(b)-i < l {
			return i
		}
		if m.tentative > 0 {
			m.tried++
			switch {
			case m.decodes(b[i : i+l]):
				m.tentative--
			case !m.framesLeniently(b[i : i+l]):
				// Not even a malformed packet with violations, right
				// after a guessed resynchronisation: the guess was wrong.
				m.syncing = true
				continue
			}
		}
		m.packet(b[i:i+l], frame, ts)
		m.off += int64(l)
		i += l
	}
	return i
}

// resync finds the first offset in b where a plausible packet starts: a
// fixed header that passes plausibleHeader (cheap: type, flags, direction,
// remaining length, and a packet of at most resyncWindow bytes), a packet
// that decodes strictly, and a next header that is plausible too (or the
// packet ends exactly at the end of b). A candidate that needs more bytes
// than b holds is passed over when a later one decodes as a chain of
// packets up to the end of b; otherwise wait reports that b ends before
// the candidate at j could be confirmed. The caller skips the bytes before
// j, so the next call resumes there; the later offsets already tried as
// such a chain are not tried again (m.scanTo), even if their chain was
// only cut by the end of b, so that the work is linear in the bytes: an
// offset is examined forward, as a chain start, and again only by a later
// resynchronisation that starts before it.
func (m *mqttStream) resync(b []byte) (j int, wait bool) {
	lim := min(m.max, resyncWindow)
	waitAt := -1
	for j = 0; j < len(b); j++ {
		if waitAt >= 0 {
			// Resume the search for a chain where the last call left it.
			if k := int(m.scanTo - m.off); j < k {
				j = min(k, len(b))
				if j == len(b) {
					break
				}
			}
		}
		m.scanned++
		ok, n := plausibleHeader(b[j:], m.dir, lim)
		if !ok {
			continue
		}
		if n == 0 || j+n > len(b) {
			if waitAt < 0 {
				waitAt = j
			}
			continue
		}
		m.tried++
		if !m.decodes(b[j : j+n]) {
			continue
		}
		if waitAt >= 0 {
			if m.chainToEnd(b[j:]) {
				m.scanTo = 0
				return j, false
			}
			continue
		}
		rest := b[j+n:]
		if len(rest) == 0 {
			m.scanTo = 0
			return j, false
		}
		ok2, n2 := plausibleHeader(rest, m.dir, m.max)
		if !ok2 {
			continue
		}
		if n2 == 0 && len(rest) < 5 {
			waitAt = j
			continue
		}
		m.scanTo = 0
		return j, false
	}
	if waitAt >= 0 {
		m.scanTo = m.off + int64(len(b))
		return waitAt, true
	}
	return len(b), true
}

// chainToEnd reports whether b is a sequence of whole packets that decode.
func (m *mqttStream) chainToEnd(b []byte) bool {
	for len(b) > 0 {
		ok, n := plausibleHeader(b, m.dir, m.max)
		if !ok || n == 0 || n > len(b) {
			return false
		}
		if m.tried++; !m.decodes(b[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// decodes reports whether the framed packet b decodes strictly (any
// packet, for MQTT 5 conversations).
func (m *mqttStream) decodes(b []byte) bool {
	if m.conv.MQTTVersion == 5 {
		return true
	}
	_, _, err := m.d.strict.Decode(b)
	return err == nil
}

// framesLeniently reports whether the framed packet b decodes in lenient
// mode, with or without violations.
func (m *mqttStream) framesLeniently(b []byte) bool {
	_, _, err := m.d.lenient.Decode(b)
	var vs packets.Violations
	return err == nil || errors.As(err, &vs)
}

// msgOf is the message of a *packets.ProtocolError without the clause
// (which Problem carries separately), prefixed with the packet type.
func msgOf(err error) string {
	var pe *packets.ProtocolError
	if errors.As(err, &pe) {
		return fmt.Sprintf("malformed %s: %s", pe.Type, pe.Msg)
	}
	return err.Error()
}

func clauseOf(err error, def string) string {
	var pe *packets.ProtocolError
	if errors.As(err, &pe) && pe.Clause != "" {
		return pe.Clause
	}
	return def
}

// packet decodes one framed packet that b (the caller's bytes) holds.
func (m *mqttStream) packet(b []byte, frame int, ts time.Time) {
	if m.d.onPacket == nil {
		// Kept: Raw and the decoded packet share this one copy.
		b = append([]byte(nil), b...)
	}
	m.packetOwned(b, frame, ts)
}

// packetOwned decodes the framed packet raw and appends it to the
// conversation, which then owns raw, or, with Options.OnPacket, hands it
// to the callback, for the duration of the call only.
func (m *mqttStream) packetOwned(raw []byte, frame int, ts time.Time) {
	c := m.conv
	if m.first.frame == 0 {
		m.first.typ, m.first.frame, m.first.off = packets.Type(raw[0]>>4), frame, m.off
	}
	if c.MQTTVersion == 0 && m.dir == ClientToServer && packets.Type(raw[0]>>4) == 1 {
		c.MQTTVersion = connectLevel(raw)
	}
	stream := m.d.onPacket != nil
	var p *Packet
	if stream {
		p = &m.d.pkt
		*p = Packet{Dir: m.dir, Time: ts, Frame: frame, Offset: m.off, Raw: raw}
	} else {
		c.Packets = append(c.Packets, Packet{Dir: m.dir, Time: ts, Frame: frame, Offset: m.off, Raw: raw})
		p = &c.Packets[len(c.Packets)-1]
	}
	if c.MQTTVersion == 5 {
		cp, err := pahopackets.ReadPacket(bytes.NewReader(raw))
		if err != nil {
			m.problem(frame, m.off, "MQTT5", fmt.Sprintf("MQTT 5 %s packet: %v", packets.Type(raw[0]>>4), err))
		} else {
			p.V5 = cp
		}
		hl := headerLen(raw)
		p.Packet = &packets.Raw{Header: raw[0], Body: raw[hl:]}
		if stream {
			m.d.onPacket(c, p)
		}
		return
	}
	pk, _, err := m.d.lenient.Decode(raw)
	if err != nil {
		// vs is declared here so that it escapes (errors.As) only on this
		// path, not for every packet.
		var vs packets.Violations
		if !errors.As(err, &vs) {
			if !stream {
				c.Packets = c.Packets[:len(c.Packets)-1]
			}
			m.problem(frame, m.off, clauseOf(err, "MQTT-2"), msgOf(err))
			return
		}
		p.Violations = vs
	}
	if stream {
		p.Packet = pk
		m.d.onPacket(c, p)
		return
	}
	p.Packet = keepPacket(pk)
}

// keepPacket copies a packet decoded into a packets.Decoder's reused
// storage into storage of its own. Its byte slices keep aliasing the
// decoder's input (the Packet's Raw): only the struct, and the slices
// the Decoder reuses, are copied.
func keepPacket(pk packets.Packet) packets.Packet {
	switch v := pk.(type) {
	case *packets.Publish:
		q := *v
		return &q
	case *packets.Puback:
		q := *v
		return &q
	case *packets.Pubrec:
		q := *v
		return &q
	case *packets.Pubrel:
		q := *v
		return &q
	case *packets.Pubcomp:
		q := *v
		return &q
	case *packets.Connect:
		q := *v
		return &q
	case *packets.Connack:
		q := *v
		return &q
	case *packets.Subscribe:
		q := *v
		q.Subscriptions = slices.Clone(v.Subscriptions)
		return &q
	case *packets.Suback:
		q := *v
		q.ReturnCodes = slices.Clone(v.ReturnCodes)
		return &q
	case *packets.Unsubscribe:
		q := *v
		q.Filters = slices.Clone(v.Filters)
		return &q
	case *packets.Unsuback:
		q := *v
		return &q
	case *packets.Raw:
		q := *v
		return &q
	}
	return pk.Clone() // Pingreq, Pingresp, Disconnect: no fields
}

// connectLevel returns the protocol level of an encoded CONNECT, 0 if it
// cannot be read.
func connectLevel(raw []byte) int {
	hl := headerLen(raw)
	v := raw[hl:]
	if len(v) < 2 {
		return 0
	}
	nl := int(v[0])<<8 | int(v[1])
	if len(v) < 2+nl+1 {
		return 0
	}
	return int(v[2+nl])
}
