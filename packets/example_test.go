package packets_test

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/dps-conform/dps-conform/packets"
)

func ExampleDecode() {
	raw := []byte{
		0x82, 0x1d, // fixed header: SUBSCRIBE, remaining length 29
		0x00, 0x01, // packet identifier 1
		0x00, 0x18, '$', 'd', 'p', 's', '/', 'r', 'e', 'g', 'i', 's', 't', 'r', 'a', 't', 'i', 'o', 'n', 's', '/', 'r', 'e', 's', '/', '#',
		0x01, // requested QoS 1
	}
	p, n, err := packets.Decode(raw, packets.DecodeOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	s := p.(*packets.Subscribe)
	fmt.Println(p.Type(), n, s.PacketID, string(s.Subscriptions[0].Filter), s.Subscriptions[0].QoS)
	// Output: SUBSCRIBE 31 1 $dps/registrations/res/# 1
}

func ExampleDecode_strictError() {
	// CONNECT with the reserved connect flag set.
	raw := []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x03, 0x00, 0x00, 0x00, 0x01, 'a'}
	_, _, err := packets.Decode(raw, packets.DecodeOptions{})
	var pe *packets.ProtocolError
	if errors.As(err, &pe) {
		fmt.Println(pe.Clause, pe.Offset)
	}
	fmt.Println(err)
	// Output:
	// MQTT-3.1.2-3 9
	// mqtt: CONNECT @9: reserved connect flag (bit 0) must be 0 [MQTT-3.1.2-3]
}

func ExampleDecode_lenient() {
	// PUBLISH at QoS 3: a strict decoder refuses it; a lenient one returns it
	// with the rule it broke, as a tracer judging field traffic needs.
	raw := []byte{0x36, 0x07, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x01}
	p, _, err := packets.Decode(raw, packets.DecodeOptions{Lenient: true})
	var vs packets.Violations
	if errors.As(err, &vs) {
		fmt.Println(p.(*packets.Publish).QoS, vs[0].Clause)
	}
	// Output: 3 MQTT-3.3.1-4
}

func ExampleDecode_shortBuffer() {
	full, _ := (&packets.Puback{PacketID: 1}).Append(nil)
	_, _, err := packets.Decode(full[:2], packets.DecodeOptions{})
	var short *packets.ShortBufferError
	fmt.Println(errors.As(err, &short), short.Need)
	// Output: true 2
}

func ExampleDecoder() {
	stream := []byte{0x40, 0x02, 0x00, 0x01, 0xd0, 0x00} // PUBACK id 1, PINGRESP
	var d packets.Decoder                                // reuses its storage: no allocations
	for len(stream) > 0 {
		p, n, err := d.Decode(stream)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(p.Type())
		stream = stream[n:]
	}
	// Output:
	// PUBACK
	// PINGRESP
}

func ExampleConnect_Append() {
	c := &packets.Connect{
		ProtocolName:  []byte(packets.ProtocolName311),
		ProtocolLevel: packets.ProtocolLevel311,
		CleanSession:  true,
		KeepAlive:     60,
		ClientID:      []byte("reg-1"),
	}
	b, err := c.Append(nil)
	fmt.Printf("% x %v\n", b, err)
	// Output: 10 11 00 04 4d 51 54 54 04 02 00 3c 00 05 72 65 67 2d 31 <nil>
}

func ExampleEncode() {
	// A PUBLISH whose topic holds a wildcard, sent on purpose to test a server.
	p := &packets.Publish{Topic: []byte("a/#")}
	_, err := p.Append(nil)
	fmt.Println(err)
	b, _ := packets.Encode(nil, p, packets.EncodeOptions{AllowInvalid: true})
	fmt.Printf("% x\n", b)
	// Output:
	// mqtt: invalid packet for encoding: PUBLISH @6: topic name contains wildcard '#' at byte 2 [MQTT-3.3.2-2]
	// 30 05 00 03 61 2f 23
}

func ExampleToRaw() {
	r, _ := packets.ToRaw(&packets.Pingreq{}, packets.EncodeOptions{})
	r.Header |= 0x01 // set a reserved fixed-header flag
	b, _ := r.Append(nil)
	_, _, err := packets.Decode(b, packets.DecodeOptions{})
	fmt.Println(err)
	// Output: mqtt: PINGREQ @0: fixed header flags 0x1, must be 0x0 [MQTT-2.2.2-1]
}

func ExampleReader() {
	var buf bytes.Buffer
	w := packets.NewWriter(&buf)
	_ = w.WritePacket(&packets.Connack{ReturnCode: packets.ConnackRefusedNotAuthorized})
	_ = w.WritePacket(&packets.Disconnect{})
	r := packets.NewReader(&buf, packets.DecodeOptions{MaxPacketSize: 96 << 10})
	for {
		p, err := r.ReadPacket()
		if err != nil {
			fmt.Println(err)
			return
		}
		if ca, ok := p.(*packets.Connack); ok {
			fmt.Println(p.Type(), ca.ReturnCode)
			continue
		}
		fmt.Println(p.Type())
	}
	// Output:
	// CONNACK Connection Refused, not authorized
	// DISCONNECT
	// EOF
}
