package tracer

import (
	"bytes"
	"slices"
	"sort"
	"time"
)

// DefaultMaxStreamBuffer is the default cap on the bytes buffered per
// stream direction: out-of-order segments waiting for a hole to fill, and an
// incomplete MQTT packet waiting for its end.
const DefaultMaxStreamBuffer = 4 << 20

// pendingSeg is an out-of-order segment waiting for the bytes before it.
type pendingSeg struct {
	seq   uint32
	data  []byte // owned copy
	frame int    // the frame that carried it
	ts    time.Time
}

// sink receives the in-order bytes of one direction.
type sink interface {
	data(d Direction, b []byte, frame int, ts time.Time)
	// gap reports n bytes missing before the next data: frame is the
	// frame of the segment that resumes the stream after them (cut: the
	// frame that carried them, cut short by the snapshot length), noticed
	// the frame whose arrival made them a gap.
	gap(d Direction, n int, frame, noticed int, cut bool)
	// conflict reports that frame carries n bytes at TCP stream offset
	// off that differ from the copy held from frame first.
	conflict(d Direction, off int64, n int, frame, first int)
}

// halfStream reassembles one direction of a TCP connection: it delivers
// bytes in sequence order exactly once, buffers segments that arrive
// ahead of a hole (up to max bytes) and reports holes it gives up on as
// gaps.
type halfStream struct {
	dir      Direction
	started  bool   // next is known
	next     uint32 // sequence number of the next byte to deliver
	base     uint32 // first sequence number seen (the ISN after a SYN)
	offset   int64  // stream offset of next
	pending  []pendingSeg
	buffered int
	max      int
	synSeen  bool
	synSeq   uint32
	// The peer's acknowledgements past next: ackTo the highest, ackFrame
	// the first frame that acknowledged bytes past next (0: none).
	ackTo    uint32
	ackFrame int
	finSeen  bool
	finSeq   uint32 // sequence number of the FIN
}

func seqDiff(a, b uint32) int64 { return int64(int32(a - b)) }

// syn records the initial sequence number.
func (h *halfStream) syn(seq uint32) {
	if !h.started {
		h.started = true
		h.next, h.base = seq+1, seq
	}
	if !h.synSeen {
		h.synSeen, h.synSeq = true, seq
	}
}

// segment feeds the payload of a segment with sequence number seq.
func (h *halfStream) segment(seq uint32, payload []byte, frame int, ts time.Time, out sink) {
	if len(payload) == 0 {
		return
	}
	if !h.started {
		h.started = true
		h.next, h.base = seq, seq
	}
	d := seqDiff(seq, h.next)
	if d > 0 {
		if d > int64(h.max)+1<<30 { // wildly ahead: not this stream (or a bogus segment)
			return
		}
		h.hold(seq, payload, frame, ts, out)
		if h.buffered > h.max {
			h.skip(frame, out)
		}
		return
	}
	if -d >= int64(len(payload)) {
		return // retransmission of delivered bytes
	}
	payload = payload[-d:]
	if len(h.pending) > 0 {
		// Bytes already held past a hole this segment fills are not
		// replaced: the first copy of a byte wins.
		if e := seqDiff(h.pending[0].seq, h.next); e < int64(len(payload)) {
			h.hold(h.next+uint32(e), payload[e:], frame, ts, out)
			payload = payload[:e]
		}
	}
	h.deliver(payload, frame, ts, out)
	h.drain(frame, ts, out, false)
}

func (h *halfStream) deliver(b []byte, frame int, ts time.Time, out sink) {
	h.next += uint32(len(b))
	h.offset += int64(len(b))
	out.data(h.dir, b, frame, ts)
}

// hold stores the bytes of an out-of-order segment that no held segment
// has yet: the first copy of a byte wins, and a copy that differs from it
// is reported to out. pending stays sorted by sequence number, its
// segments disjoint.
func (h *halfStream) hold(seq uint32, payload []byte, frame int, ts time.Time, out sink) {
	i := sort.Search(len(h.pending), func(i int) bool {
		p := h.pending[i]
		return seqDiff(p.seq+uint32(len(p.data)), seq) > 0
	})
	for len(payload) > 0 {
		if i == len(h.pending) || seqDiff(h.pending[i].seq, seq) >= int64(len(payload)) {
			h.insert(i, seq, payload, frame, ts)
			return
		}
		p := h.pending[i]
		if lead := seqDiff(p.seq, seq); lead > 0 {
			h.insert(i, seq, payload[:lead], frame, ts)
			i++
			seq, payload = p.seq, payload[lead:]
		}
		// seq is within p: compare the overlap, keep p's bytes.
		at := seqDiff(seq, p.seq)
		n := min(int64(len(payload)), int64(len(p.data))-at)
		if a, b := payload[:n], p.data[at:at+n]; !bytes.Equal(a, b) {
			lo, hi := 0, len(a)
			for a[lo] == b[lo] {
				lo++
			}
			for a[hi-1] == b[hi-1] {
				hi--
			}
			out.conflict(h.dir, h.offset+seqDiff(seq, h.next)+int64(lo), hi-lo, frame, p.frame)
		}
		seq, payload = seq+uint32(n), payload[n:]
		i++
	}
}

// insert holds a copy of b at index i of pending.
func (h *halfStream) insert(i int, seq uint32, b []byte, frame int, ts time.Time) {
	c := make([]byte, len(b))
	copy(c, b)
	h.pending = slices.Insert(h.pending, i, pendingSeg{seq: seq, data: c, frame: frame, ts: ts})
	h.buffered += len(c)
}

// drain delivers held segments that the stream has reached. A hole just
// filled by frame completes what follows it at that frame; after a gap
// (own), each held segment is delivered as of the frame that carried it
// (or of a later frame of a segment before it in the stream, without which
// its bytes could not be framed): the packets it completes are dated by
// their own frames, not by the frame that revealed the gap.
func (h *halfStream) drain(frame int, ts time.Time, out sink, own bool) {
	if own {
		frame, ts = 0, time.Time{}
	}
	for len(h.pending) > 0 {
		p := h.pending[0]
		d := seqDiff(p.seq, h.next)
		if d > 0 {
			return
		}
		h.pending = h.pending[1:]
		h.buffered -= len(p.data)
		if own && p.frame > frame {
			frame, ts = p.frame, p.ts
		}
		if -d < int64(len(p.data)) {
			h.deliver(p.data[-d:], frame, ts, out)
		}
	}
	h.pending = nil
}

// skip gives up on the hole before the first held segment: it reports a
// gap, located before that segment's frame and noticed at frame, and
// delivers what follows.
func (h *halfStream) skip(frame int, out sink) {
	if len(h.pending) == 0 {
		return
	}
	n := seqDiff(h.pending[0].seq, h.next)
	if n > 0 {
		out.gap(h.dir, int(n), h.pending[0].frame, frame, false)
		h.next += uint32(n)
		h.offset += n
	}
	h.drain(0, time.Time{}, out, true)
}

// cut tells the stream that the n bytes from seq were on the wire in
// frame but not captured (the frame was cut by the snapshot length). When
// the stream has reached them they are a gap at once, less what another
// copy supplied (a retransmission captured whole, a segment held past
// them); otherwise they are a hole like any other.
func (h *halfStream) cut(seq uint32, n int, frame int, out sink) {
	if !h.started {
		h.started = true
		h.next, h.base = seq, seq
	}
	d := seqDiff(seq, h.next)
	if d > 0 || -d >= int64(n) {
		return
	}
	n += int(d)
	if len(h.pending) > 0 {
		n = int(min(int64(n), seqDiff(h.pending[0].seq, h.next)))
	}
	if n <= 0 {
		return
	}
	out.gap(h.dir, n, frame, frame, true)
	h.next += uint32(n)
	h.offset += int64(n)
	h.drain(0, time.Time{}, out, true)
}

// acked tells the stream that the peer acknowledged everything before ack:
// a hole before ack will never be filled by a retransmission the capture
// could see, so it is a gap now.
func (h *halfStream) acked(ack uint32, frame int, out sink) {
	if !h.started {
		return
	}
	if seqDiff(ack, h.next) > 0 {
		if h.ackFrame == 0 || seqDiff(h.ackTo, h.next) <= 0 {
			h.ackFrame, h.ackTo = frame, ack
		} else if seqDiff(ack, h.ackTo) > 0 {
			h.ackTo = ack
		}
	}
	if len(h.pending) == 0 {
		return
	}
	if seqDiff(ack, h.next) > 0 && seqDiff(h.pending[0].seq, ack) <= 0 {
		h.skip(frame, out)
	}
}

// fin records the sequence number of a FIN.
func (h *halfStream) fin(seq uint32) {
	if !h.finSeen {
		h.finSeen, h.finSeq = true, seq
	}
}

// flush ends the stream: every hole is a gap, and so are bytes the peer
// acknowledged past the last byte captured (the capture lost the
// direction's last segments), before the FIN if one was seen. An
// acknowledgement one byte past them, with no FIN seen, is taken for that
// of a FIN the capture missed.
func (h *halfStream) flush(frame int, out sink) {
	for len(h.pending) > 0 {
		h.skip(frame, out)
	}
	if h.ackFrame == 0 || seqDiff(h.ackTo, h.next) <= 0 {
		return
	}
	n := seqDiff(h.ackTo, h.next)
	switch {
	case h.finSeen && seqDiff(h.finSeq, h.next) >= 0:
		n = min(n, seqDiff(h.finSeq, h.next))
	case n == 1:
		n = 0
	}
	if n > 0 && n <= int64(h.max)+1<<30 {
		out.gap(h.dir, int(n), h.ackFrame, frame, false)
		h.next += uint32(n)
		h.offset += n
	}
}
