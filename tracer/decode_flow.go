package tracer

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/dps-conform/dps-conform/tracer/tlstrace"
)

// flowKind is what a flow was sniffed to carry.
type flowKind uint8

const (
	kindUndecided flowKind = iota
	kindNone               // not MQTT: ignored
	kindMQTT
	kindTLS
	kindWS
)

// sniffLen is how many client bytes decide what a flow carries.
const sniffLen = 12

// maxSniff bounds the bytes buffered before a flow is decided.
const maxSniff = 16 << 10

// tcpFlow is one TCP connection being reassembled and decoded.
type tcpFlow struct {
	d              *decoder
	max            int
	client, server netip.AddrPort
	port           portKind
	first, last    time.Time
	firstFrame     int
	lastFrame      int
	midStream      bool
	timeWait       bool      // closed both ways (FINs or RST), until twUntil
	twUntil        time.Time // capture time after which the 4-tuple is a new connection
	closed         [2]bool
	closeFrame     [2]int
	closeTime      [2]time.Time
	half           [2]halfStream
	kind           flowKind
	sniff          [2][]byte // bytes held until the flow is decided
	sniffMeta      [2]struct {
		frame int
		ts    time.Time
	}
	conv *Conversation
	up   *upper // layers above TCP, nil until decided
}

func (f *tcpFlow) dirOf(src netip.AddrPort) Direction {
	if src == f.client {
		return ClientToServer
	}
	return ServerToClient
}

// data receives in-order TCP bytes (sink).
func (f *tcpFlow) data(d Direction, b []byte, frame int, ts time.Time) {
	switch f.kind {
	case kindNone:
		return
	case kindUndecided:
		f.sniff[d] = append(f.sniff[d], b...)
		f.sniffMeta[d].frame, f.sniffMeta[d].ts = frame, ts
		if !f.decide(false) {
			return
		}
		if f.kind == kindNone {
			f.sniff = [2][]byte{}
			return
		}
		// Replay the held bytes, client first.
		for _, dd := range []Direction{ClientToServer, ServerToClient} {
			if len(f.sniff[dd]) > 0 {
				f.up.data(dd, f.sniff[dd], f.sniffMeta[dd].frame, f.sniffMeta[dd].ts)
			}
		}
		f.sniff = [2][]byte{}
		return
	}
	f.up.data(d, b, frame, ts)
}

// gap receives a hole in the TCP stream (sink).
func (f *tcpFlow) gap(d Direction, n int, frame, noticed int, cut bool) {
	c := f.conversation()
	off := f.half[d].offset
	c.Gaps = append(c.Gaps, Gap{Dir: d, Frame: frame, Noticed: noticed, Offset: off, Len: n, Cut: cut})
	switch f.kind {
	case kindNone:
		return
	case kindUndecided:
		if len(f.sniff[ClientToServer]) == 0 && d == ClientToServer {
			// Nothing held yet: whatever follows is mid-stream.
			f.midStream = true
		}
		f.decide(true)
		if f.kind == kindNone {
			f.sniff = [2][]byte{}
			return
		}
		for _, dd := range []Direction{ClientToServer, ServerToClient} {
			if len(f.sniff[dd]) > 0 {
				f.up.data(dd, f.sniff[dd], f.sniffMeta[dd].frame, f.sniffMeta[dd].ts)
			}
		}
		f.sniff = [2][]byte{}
	}
	f.up.gap(d, n, frame)
}

// conflict records a retransmission whose bytes differ from the copy
// already held (sink).
func (f *tcpFlow) conflict(d Direction, off int64, n int, frame, first int) {
	c := f.conversation()
	c.Problems = append(c.Problems, Problem{Dir: d, Frame: frame, Offset: off, Clause: ClauseOverlap,
		Msg: fmt.Sprintf("frame %d carries other bytes than frame %d at TCP stream offset %d (%d bytes from the first difference to the last); the copy of frame %d is decoded", frame, first, off, n, first)})
}

// conversation returns the flow's Conversation, creating it (it is kept
// only if the flow turns out to carry MQTT).
func (f *tcpFlow) conversation() *Conversation {
	if f.conv == nil {
		f.conv = &Conversation{Client: f.client, Server: f.server, Start: f.first, firstFrame: f.firstFrame}
	}
	return f.conv
}

// looksLikeConnect reports whether b starts like an MQTT CONNECT (3.1,
// 3.1.1 or 5); more reports that b is too short to tell.
func looksLikeConnect(b []byte) (yes, more bool) {
	if len(b) == 0 {
		return false, true
	}
	if b[0] != 0x10 {
		return false, false
	}
	i := 1
	for ; i < len(b) && i < 5 && b[i]&0x80 != 0; i++ {
	}
	if i >= 5 {
		return false, false
	}
	v := b[min(i+1, len(b)):]
	for _, name := range [][]byte{[]byte("\x00\x04MQTT"), []byte("\x00\x06MQIsdp")} {
		n := min(len(v), len(name))
		if bytes.Equal(v[:n], name[:n]) {
			return n == len(name), n < len(name)
		}
	}
	return false, false
}

// looksLikeHTTPUpgrade reports whether b starts like an HTTP GET request.
func looksLikeHTTPUpgrade(b []byte) (yes, more bool) {
	const get = "GET "
	n := min(len(b), len(get))
	if string(b[:n]) != get[:n] {
		return false, false
	}
	return n == len(get), n < len(get)
}

// decide sniffs the held client bytes; final forces a decision with what
// is held. It reports whether the flow is decided.
func (f *tcpFlow) decide(final bool) bool {
	c2s := f.sniff[ClientToServer]
	total := len(c2s) + len(f.sniff[ServerToClient])
	if !final && len(c2s) < sniffLen && total < maxSniff {
		// Decide early when the first byte already rules MQTT and TLS out
		// and the port says nothing.
		if len(c2s) == 0 {
			return false
		}
		if yes, more := looksLikeConnect(c2s); yes || more {
			if yes {
				f.start(kindMQTT)
				return true
			}
			return false
		}
		if yes, more := looksLikeTLS(c2s); yes || more {
			if yes {
				f.start(kindTLS)
				return true
			}
			return false
		}
		if _, more := looksLikeHTTPUpgrade(c2s); more {
			return false
		}
	}
	switch {
	case first(looksLikeConnect(c2s)):
		f.start(kindMQTT)
	case first(looksLikeTLS(c2s)):
		f.start(kindTLS)
	case first(looksLikeHTTPUpgrade(c2s)):
		f.start(kindWS)
	case f.port == portMQTT:
		f.start(kindMQTT)
	case f.port == portTLS && (f.midStream || tlstrace.StartsHandshakeRecord(c2s)):
		// On the MQTT-over-TLS port, a stream opening with a TLS
		// handshake record header whose length is out of bounds is TLS
		// gone wrong: its decoder reports the bad record.
		f.start(kindTLS)
	case f.port == portWS && f.midStream:
		f.start(kindWS)
	default:
		f.kind = kindNone
		f.conv = nil
	}
	return true
}

func first(a, _ bool) bool { return a }

// start commits the flow to carrying MQTT over the given layers.
func (f *tcpFlow) start(k flowKind) {
	f.kind = k
	c := f.conversation()
	c.MidStream = f.midStream
	c.PlainToTLSPort = k != kindTLS && f.port == portTLS
	f.up = newUpper(f, c, k)
}

// finish flushes the flow and returns its conversation, nil if it carried
// no MQTT.
func (f *tcpFlow) finish() *Conversation {
	for d := range f.half {
		f.half[d].flush(f.lastFrame, f)
	}
	if f.kind == kindUndecided {
		if len(f.sniff[0])+len(f.sniff[1]) == 0 && f.conv == nil {
			return nil // no payload at all
		}
		f.decide(true)
		if f.kind != kindNone {
			for _, dd := range []Direction{ClientToServer, ServerToClient} {
				if len(f.sniff[dd]) > 0 {
					f.up.data(dd, f.sniff[dd], f.sniffMeta[dd].frame, f.sniffMeta[dd].ts)
				}
			}
		}
	}
	if f.kind == kindNone || f.kind == kindUndecided || f.up == nil {
		return nil
	}
	f.up.end(f.lastFrame)
	if f.up.notMQTT {
		return nil
	}
	c := f.conv
	if f.midStream {
		midStreamStart(c, &f.up.mq)
	}
	sortByFrame(c)
	c.End = f.last
	c.Closed = f.closed
	c.CloseFrame, c.CloseTime = f.closeFrame, f.closeTime
	c.MidStream = f.midStream
	return c
}

// sortByFrame puts c's packets, gaps and problems in frame order (stable):
// the segments held after a gap are delivered when the gap is declared,
// possibly after later frames of the other direction, but carry their own
// frame numbers.
func sortByFrame(c *Conversation) {
	if !slices.IsSortedFunc(c.Packets, func(a, b Packet) int { return a.Frame - b.Frame }) {
		slices.SortStableFunc(c.Packets, func(a, b Packet) int { return a.Frame - b.Frame })
	}
	if !slices.IsSortedFunc(c.Gaps, func(a, b Gap) int { return a.Frame - b.Frame }) {
		slices.SortStableFunc(c.Gaps, func(a, b Gap) int { return a.Frame - b.Frame })
	}
	if !slices.IsSortedFunc(c.Problems, func(a, b Problem) int { return a.Frame - b.Frame }) {
		slices.SortStableFunc(c.Problems, func(a, b Problem) int { return a.Frame - b.Frame })
	}
}

// close records the first FIN or RST of direction d.
func (f *tcpFlow) close(d Direction, frame int, ts time.Time) {
	if f.closed[d] {
		return
	}
	f.closed[d], f.closeFrame[d], f.closeTime[d] = true, frame, ts
}
