package tracer

import (
	"context"
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/dps-conform/dps-conform/tracer/tlstrace"
)

// batchBytes is the payload capacity of a batch of segments handed to a
// worker.
const batchBytes = 256 << 10

// segBatch carries segments (their payloads copied into buf) or, when keys
// is set, secrets to merge before the segments that follow, or, when tick
// is set, the capture time reached (closed flows whose time-wait ended are
// finished, as one worker does at every segment).
type segBatch struct {
	segs []segInfo
	buf  []byte
	keys *tlstrace.KeyLog
	tick time.Time
}

// tickEvery is how much capture time passes between the ticks that tell
// every worker the time (decodeSharded).
const tickEvery = time.Second

// decodeSharded decodes with o.Workers goroutines: the calling goroutine
// reads frames and parses them down to TCP, and each flow is reassembled
// and decoded by the worker its endpoints hash to. The calling goroutine
// is worker 0: its flows are decoded inline, without copying their
// payloads into a batch; the others receive batches of segments.
func decodeSharded(ctx context.Context, src source, o Options) (*Capture, error) {
	n := o.Workers
	workers := make([]*decoder, n)
	in := make([]chan *segBatch, n)
	free := make(chan *segBatch, 4*n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	id := 0
	for i := range workers {
		workers[i] = newDecoder(o)
		if o.OnPacket != nil {
			workers[i].onPacket = func(c *Conversation, p *Packet) {
				mu.Lock()
				defer mu.Unlock()
				o.OnPacket(c, p)
			}
		}
		if o.OnConversation != nil {
			workers[i].deliver = func(c *Conversation) {
				mu.Lock()
				defer mu.Unlock()
				id++
				c.ID = id
				o.OnConversation(c)
			}
		}
		if i == 0 {
			continue // shard 0 is decoded inline by the reading goroutine
		}
		in[i] = make(chan *segBatch, 4)
		wg.Add(1)
		go func(d *decoder, ch <-chan *segBatch) {
			defer wg.Done()
			for b := range ch {
				if b.keys != nil {
					d.keyLog.Merge(b.keys)
					continue
				}
				if !b.tick.IsZero() {
					d.expire(b.tick)
					continue
				}
				for j := range b.segs {
					d.segment(&b.segs[j])
				}
				b.segs, b.buf = b.segs[:0], b.buf[:0]
				select {
				case free <- b:
				default:
				}
			}
		}(workers[i], in[i])
	}
	cur := make([]*segBatch, n)
	newBatch := func() *segBatch {
		select {
		case b := <-free:
			return b
		default:
			return &segBatch{segs: make([]segInfo, 0, 512), buf: make([]byte, 0, batchBytes)}
		}
	}
	send := func(i int) {
		if cur[i] != nil && len(cur[i].segs) > 0 {
			in[i] <- cur[i]
			cur[i] = nil
		}
	}
	reader := newDecoder(o)
	var lastTick time.Time
	reader.emit = func(s *segInfo) {
		// Time going back (merged or multi-queue captures) expires
		// nothing: no tick, which would flush every batch, and lastTick
		// stays, or a skewed second source would tick on every segment.
		if d := s.ts.Sub(lastTick); d >= tickEvery {
			// A worker that sees no segment would otherwise keep its
			// closed flows until the end.
			lastTick = s.ts
			workers[0].expire(s.ts)
			for i := 1; i < n; i++ {
				send(i)
				in[i] <- &segBatch{tick: s.ts}
			}
		}
		i := shardOf(s.src, s.dst, n)
		if i == 0 {
			workers[0].segment(s)
			return
		}
		bt := cur[i]
		if bt == nil || len(bt.buf)+len(s.payload) > cap(bt.buf) {
			send(i)
			bt = newBatch()
			cur[i] = bt
		}
		seg := *s
		if len(s.payload) > cap(bt.buf) {
			seg.payload = slices.Clone(s.payload)
		} else {
			off := len(bt.buf)
			bt.buf = append(bt.buf, s.payload...)
			seg.payload = bt.buf[off:len(bt.buf):len(bt.buf)]
		}
		bt.segs = append(bt.segs, seg)
	}
	c := &Capture{}
	err := readFrames(ctx, src, c, reader, func(kl *tlstrace.KeyLog) {
		workers[0].keyLog.Merge(kl)
		for i := 1; i < n; i++ {
			send(i)
			in[i] <- &segBatch{keys: kl}
		}
	})
	for i := 1; i < n; i++ {
		send(i)
		close(in[i])
	}
	wg.Wait()
	if err != nil && !stopped(ctx, c, err) {
		return nil, err
	}
	// Flows still open at the end are collected from every worker and
	// numbered (or delivered) in the order of their first frame.
	var convs []*Conversation
	for _, d := range workers {
		d.deliver = nil
		convs = append(convs, d.finish()...)
	}
	slices.SortStableFunc(convs, func(a, b *Conversation) int { return a.firstFrame - b.firstFrame })
	if o.OnConversation != nil {
		for _, cv := range convs {
			id++
			cv.ID = id
			o.OnConversation(cv)
		}
		convs = nil
	}
	for i, cv := range convs {
		cv.ID = i + 1
	}
	c.Conversations = convs
	for _, d := range workers {
		reader.forgotten += d.forgotten
	}
	c.Warnings = append(c.Warnings, reader.warnings()...)
	c.TCPServerPorts = reader.serverPorts()
	return c, err
}

// shardOf is the shard, of n, of the connection between endpoints x and
// y, whichever sent the segment. It runs on the reading goroutine for
// every segment, so it is a multiply and a fold per endpoint: the seeded
// maphash over the ordered endpoints that it replaced took a fifth of
// that goroutine's time.
func shardOf(x, y netip.AddrPort, n int) int {
	h := mixEndpoint(x) ^ mixEndpoint(y) // the same in both directions
	return int((uint64(uint32(h^h>>32)) * uint64(n)) >> 32)
}

// mixEndpoint hashes an address and port (wyhash's 64×64→128 multiply,
// its halves folded).
func mixEndpoint(ap netip.AddrPort) uint64 {
	a := ap.Addr().As16()
	hi, lo := bits.Mul64(binary.LittleEndian.Uint64(a[:8])^0xa0761d6478bd642f,
		binary.LittleEndian.Uint64(a[8:])^uint64(ap.Port())^0xe7037ed1a0b428db)
	return hi ^ lo
}
