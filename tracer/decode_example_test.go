package tracer_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
)

// ExampleDecode records a short MQTT exchange with a Recorder, decodes the
// capture and prints its transcript.
func ExampleDecode() {
	var file bytes.Buffer
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec, _ := tracer.NewRecorder(&file, tracer.RecorderOptions{Now: func() time.Time {
		ts = ts.Add(5 * time.Millisecond)
		return ts
	}})
	flow, _ := rec.Flow(netip.MustParseAddrPort("192.0.2.10:50000"), netip.MustParseAddrPort("192.0.2.1:1883"), tracer.FlowOptions{})
	for _, step := range []struct {
		side tracer.Side
		p    packets.Packet
	}{
		{tracer.Client, &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, KeepAlive: 30, ClientID: []byte("dev-1")}},
		{tracer.Server, &packets.Connack{}},
		{tracer.Client, &packets.Publish{QoS: 1, PacketID: 1, Topic: []byte("$dps/registrations/PUT/iotdps-register/?$rid=1"), Payload: []byte(`{"registrationId":"dev-1"}`)}},
		{tracer.Server, &packets.Publish{Topic: []byte("$dps/registrations/res/202/?$rid=1&retry-after=3"), Payload: []byte(`{"operationId":"4.x","status":"assigning"}`)}},
	} {
		b, _ := step.p.Append(nil)
		flow.Send(step.side, b, tracer.SegOpts{})
	}
	flow.Close()
	rec.Close()

	capt, err := tracer.Decode(&file, tracer.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	c := capt.Conversations[0]
	fmt.Println(len(c.Packets), "packets,", tracer.CountViolations(capt), "violations")
	tracer.WriteText(os.Stdout, capt, tracer.TranscriptOptions{})
	// Output:
	// 4 packets, 0 violations
	// conversation 1 192.0.2.10:50000 > 192.0.2.1:1883 mqtt MQTT 3.1.1
	// 0.015 c>s #4 CONNECT clientId=dev-1 clean=1 keepalive=30
	// 0.025 s>c #6 CONNACK rc=0 sp=0
	// 0.035 c>s #8 PUBLISH register $rid=1 qos=1 id=1 len=26
	// 0.045 s>c #10 PUBLISH 202 $rid=1 retry-after=3 operationId=4.x status=assigning qos=0 len=42
}

// ExampleOptions_onPacket streams a capture: each packet is handed over as
// it is decoded and each conversation when its connection closes, so memory
// holds only the open flows. What outlives the call is cloned.
func ExampleOptions_onPacket() {
	var file bytes.Buffer
	rec, _ := tracer.NewRecorder(&file, tracer.RecorderOptions{})
	flow, _ := rec.Flow(netip.MustParseAddrPort("192.0.2.10:50000"), netip.MustParseAddrPort("192.0.2.1:1883"), tracer.FlowOptions{})
	for _, step := range []struct {
		side tracer.Side
		p    packets.Packet
	}{
		{tracer.Client, &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, ClientID: []byte("dev-1")}},
		{tracer.Server, &packets.Connack{}},
		{tracer.Client, &packets.Publish{Topic: []byte("telemetry"), Payload: []byte("21.5")}},
		{tracer.Client, &packets.Disconnect{}},
	} {
		b, _ := step.p.Append(nil)
		flow.Send(step.side, b, tracer.SegOpts{})
	}
	flow.Close()
	rec.Close()

	var kept []packets.Packet
	_, err := tracer.Decode(&file, tracer.Options{
		OnPacket: func(c *tracer.Conversation, p *tracer.Packet) {
			fmt.Println(p.Dir, p.Packet.Type(), len(p.Raw), "bytes")
			if p.Packet.Type() == packets.TypePublish {
				kept = append(kept, p.Packet.Clone()) // valid after the call
			}
		},
		OnConversation: func(c *tracer.Conversation) {
			fmt.Println("conversation", c.ID, c.Client, "closed, packets collected:", len(c.Packets))
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("kept %s\n", kept[0].(*packets.Publish).Payload)
	// Output:
	// c2s CONNECT 19 bytes
	// s2c CONNACK 4 bytes
	// c2s PUBLISH 17 bytes
	// c2s DISCONNECT 2 bytes
	// conversation 1 192.0.2.10:50000 closed, packets collected: 0
	// kept 21.5
}
