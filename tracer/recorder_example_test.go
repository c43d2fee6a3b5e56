package tracer_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
)

// ExampleRecorder_Flow writes a synthetic MQTT exchange with a lost and
// retransmitted segment, then counts the frames.
func ExampleRecorder_Flow() {
	var buf bytes.Buffer
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec, err := tracer.NewRecorder(&buf, tracer.RecorderOptions{
		Comment: "example",
		Now:     func() time.Time { t0 = t0.Add(time.Millisecond); return t0 },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	f, err := rec.Flow(netip.MustParseAddrPort("192.0.2.1:50000"), netip.MustParseAddrPort("192.0.2.2:1883"),
		tracer.FlowOptions{Comment: "device 1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	connect, _ := (&packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, ClientID: []byte("dev")}).Append(nil)
	publish, _ := (&packets.Publish{Topic: []byte("t"), Payload: make([]byte, 3000)}).Append(nil)
	f.Send(tracer.Client, connect, tracer.SegOpts{})
	f.Send(tracer.Client, publish, tracer.SegOpts{Drop: []int{0}}) // 3 segments, the first lost
	f.Close()
	if err := rec.Close(); err != nil {
		fmt.Println(err)
		return
	}
	r, err := pcapgo.NewNgReader(&buf, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		fmt.Println(err)
		return
	}
	n := 0
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			break
		}
		n++
	}
	fmt.Println("frames:", n)
	// Output:
	// frames: 15
}
