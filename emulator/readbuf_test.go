package emulator

import (
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
)

// TestReadBufferLending checks the session's read path, which lends a read
// buffer only while bytes are arriving and waits for the first byte of a
// request without one: packets that arrive together (several in one write),
// split (one byte per write) or larger than the buffer are all answered, in
// order.
func TestReadBufferLending(t *testing.T) {
	encode := func(ps ...packets.Packet) []byte {
		var b []byte
		for _, p := range ps {
			var err error
			if b, err = p.Append(b); err != nil {
				t.Fatal(err)
			}
		}
		return b
	}
	sub := &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 1}}}
	big := make([]byte, 3*readBufSize)
	for i := range big {
		big[i] = 'a'
	}
	tests := []struct {
		name   string
		chunk  int // bytes per write; 0 = all at once
		before []packets.Packet
		want   []packets.Type
	}{
		{"pipelined", 0, []packets.Packet{&packets.Pingreq{}, sub, &packets.Pingreq{}},
			[]packets.Type{packets.TypeConnack, packets.TypePingresp, packets.TypeSuback, packets.TypePingresp}},
		{"one byte per write", 1, []packets.Packet{sub, &packets.Pingreq{}},
			[]packets.Type{packets.TypeConnack, packets.TypeSuback, packets.TypePingresp}},
		{"larger than the read buffer", 0, []packets.Packet{
			&packets.Subscribe{PacketID: 2, Subscriptions: []packets.Subscription{{Filter: big, QoS: 0}}}, &packets.Pingreq{}},
			[]packets.Type{packets.TypeConnack, packets.TypeSuback, packets.TypePingresp}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startPlain(t, Config{Limits: Limits{MaxPacketSize: 64 << 10}})
			c := dialPlain(t, addr)
			b := encode(append([]packets.Packet{connectPacket(t, "dev-1")}, tt.before...)...)
			step := tt.chunk
			if step == 0 {
				step = len(b)
			}
			for len(b) > 0 {
				n := min(step, len(b))
				if err := c.sendRaw(b[:n]); err != nil {
					t.Fatal(err)
				}
				b = b[n:]
				if tt.chunk > 0 {
					time.Sleep(100 * time.Microsecond) // let the server see each write apart
				}
			}
			for i, w := range tt.want {
				if got := c.next(); got.Type() != w {
					t.Fatalf("packet %d: %v, want %v", i, got.Type(), w)
				}
			}
		})
	}
}
