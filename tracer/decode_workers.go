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
const batchBytes = 128 << 10

// queuedBatches is how many batches wait for each worker.
const queuedBatches = 4

// batchSegs is the number of segments a batch holds: a batch is handed
// over when either its segments or its payload bytes are full.
const batchSegs = 1024

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
// reads frames, parses them down to TCP and hands each segment, its
// payload copied into a batch, to the worker its endpoints hash to, which
// reassembles and decodes the flow. The calling goroutine decodes no flow
// itself: reading, parsing and routing the frames already cost about as
// much as decoding half of them, so a reader that also decoded a shard
// was the bottleneck, and the other worker waited. Without a shard of
// its own, the reader and the workers share the cores as the work comes:
// the reader waits when the workers' queues are full.
func decodeSharded(ctx context.Context, src source, o Options) (*Capture, error) {
	n := o.Workers
	workers := make([]*decoder, n)
	in := make([]chan *segBatch, n)
	// At most (queuedBatches+2)·n batches are ever in use (per worker:
	// one filling, queuedBatches queued, one decoding), so free holds
	// every one handed back, and none is dropped and allocated again.
	free := make(chan *segBatch, (queuedBatches+2)*n)
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
		in[i] = make(chan *segBatch, queuedBatches)
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
				clear(b.segs) // no payload or address kept alive
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
			return &segBatch{segs: make([]segInfo, 0, batchSegs), buf: make([]byte, 0, batchBytes)}
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
			for i := range n {
				send(i)
				in[i] <- &segBatch{tick: s.ts}
			}
		}
		i := shardOf(s.src, s.dst, n)
		bt := cur[i]
		if bt == nil || len(bt.segs) == cap(bt.segs) || len(bt.buf)+len(s.payload) > cap(bt.buf) {
			send(i)
			bt = newBatch()
			cur[i] = bt
		}
		bt.segs = append(bt.segs, *s)
		seg := &bt.segs[len(bt.segs)-1]
		if len(s.payload) > cap(bt.buf) {
			seg.payload = slices.Clone(s.payload)
		} else {
			off := len(bt.buf)
			bt.buf = append(bt.buf, s.payload...)
			seg.payload = bt.buf[off:len(bt.buf):len(bt.buf)]
		}
	}
	c := &Capture{}
	err := readFrames(ctx, src, c, reader, func(kl *tlstrace.KeyLog) {
		for i := range n {
			send(i)
			in[i] <- &segBatch{keys: kl}
		}
	})
	for i := range n {
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
// its halves folded). An IPv4 address is read with As4: As16's two 8-byte
// stores read back as one 16-byte value stalled the store forwarding,
// and made the hash 3 times slower.
func mixEndpoint(ap netip.AddrPort) uint64 {
	var hi, lo uint64
	if a := ap.Addr(); a.Is4() {
		v := a.As4()
		lo = uint64(binary.BigEndian.Uint32(v[:]))
	} else {
		v := a.As16()
		hi, lo = binary.BigEndian.Uint64(v[:8]), binary.BigEndian.Uint64(v[8:])
	}
	h, l := bits.Mul64(hi^0xa0761d6478bd642f, lo^uint64(ap.Port())<<32^0xe7037ed1a0b428db)
	return h ^ l
}
