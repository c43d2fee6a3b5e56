package device

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
)

// writeRecorder records the packets of each Write on the client side.
type writeRecorder struct {
	net.Conn
	mu     sync.Mutex
	writes [][]string
}

func (w *writeRecorder) Write(b []byte) (int, error) {
	var kinds []string
	for rest := b; len(rest) > 0; {
		p, n, err := packets.Decode(rest, packets.DecodeOptions{})
		if err != nil || n <= 0 {
			kinds = append(kinds, "undecodable")
			break
		}
		kinds = append(kinds, p.Type().String())
		rest = rest[n:]
	}
	w.mu.Lock()
	w.writes = append(w.writes, kinds)
	w.mu.Unlock()
	return w.Conn.Write(b)
}

// TestProvisionAckCoalescing checks that Provision writes the PUBACK of an
// answer together with the request that follows at once (retry-after 0) or
// with DISCONNECT, and never holds it across a wait (retry-after 1): the
// PUBACK is sent, then the wait begins.
func TestProvisionAckCoalescing(t *testing.T) {
	h, cfg := serve(t, func(f *fake) {
		f.accept()
		reg, r1 := f.request(dps.Register)
		f.puback(reg)
		f.answer(202, r1.RID, 0, assigningOp, 7)
		f.ackDelivery(7)
		poll1, r2 := f.request(dps.Poll)
		f.puback(poll1)
		f.answer(202, r2.RID, 1, assigningReg, 8)
		f.ackDelivery(8)
		poll2, r3 := f.request(dps.Poll)
		f.puback(poll2)
		f.answer(200, r3.RID, -1, assignedOp, 9)
		f.ackDelivery(9)
		f.expectDisconnect()
	})
	inner := cfg.DialFunc
	rec := &writeRecorder{}
	cfg.DialFunc = func(ctx context.Context) (net.Conn, error) {
		c, err := inner(ctx)
		rec.Conn = c
		return rec, err
	}
	res, err := Provision(ctxT(t), cfg)
	h.wait()
	if err != nil || res.Status != dps.StatusAssigned {
		t.Fatalf("Provision: %v, %+v", err, res)
	}
	var got []string
	for _, w := range rec.writes {
		got = append(got, strings.Join(w, "+"))
	}
	want := []string{"CONNECT", "SUBSCRIBE", "PUBLISH", "PUBACK+PUBLISH", "PUBACK", "PUBLISH", "PUBACK+DISCONNECT"}
	if !slices.Equal(got, want) {
		t.Errorf("writes = %q, want %q", got, want)
	}
	// The trace: the first PUBACK goes out with the poll, after the 0 s
	// wait; the second is sent before the 1 s wait begins.
	h.mu.Lock()
	defer h.mu.Unlock()
	var order []string
	for _, e := range h.events {
		switch {
		case e.Dir == Waited:
			order = append(order, "wait")
		case e.Dir == Sent && e.Packet.Type() == packets.TypePuback:
			order = append(order, "puback")
		case e.Dir == Sent && e.Packet.Type() == packets.TypePublish:
			order = append(order, "publish")
		}
	}
	if want := []string{"publish", "wait", "puback", "publish", "puback", "wait", "publish", "puback"}; !slices.Equal(order, want) {
		t.Errorf("sent/wait order = %q, want %q", order, want)
	}
}
