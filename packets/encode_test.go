package packets_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/packets/packettest"
)

func TestEncodeRemainingLengthSize(t *testing.T) {
	p := &packets.Puback{PacketID: 7}
	tests := []struct {
		size         int
		allowInvalid bool
		want         []byte
		wantErr      bool
	}{
		{size: 0, want: []byte{0x40, 0x02, 0x00, 0x07}},
		{size: 1, want: []byte{0x40, 0x02, 0x00, 0x07}},
		{size: 2, want: []byte{0x40, 0x82, 0x00, 0x00, 0x07}},
		{size: 4, want: []byte{0x40, 0x82, 0x80, 0x80, 0x00, 0x00, 0x07}},
		{size: 5, wantErr: true},
		{size: 5, allowInvalid: true, want: []byte{0x40, 0x82, 0x80, 0x80, 0x80, 0x00, 0x00, 0x07}},
		{size: 6, allowInvalid: true, wantErr: true},
	}
	for _, tt := range tests {
		got, err := packets.Encode(nil, p, packets.EncodeOptions{RemainingLengthSize: tt.size, AllowInvalid: tt.allowInvalid})
		if (err != nil) != tt.wantErr || !bytes.Equal(got, tt.want) {
			t.Errorf("size %d: % x, %v; want % x (err %v)", tt.size, got, err, tt.want, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		q, _, err := packets.Decode(got, packets.DecodeOptions{})
		if tt.size <= 4 && (err != nil || !reflect.DeepEqual(q, p)) {
			t.Errorf("size %d: decodes to %v, %v", tt.size, q, err)
		}
		if tt.size == 5 && !errors.Is(err, &packets.ProtocolError{Clause: "MQTT-2.2.3"}) {
			t.Errorf("five-byte remaining length decodes with %v, want MQTT-2.2.3", err)
		}
	}
}

func TestEncodeRefusesUnrepresentableFields(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 65536)
	tests := []struct {
		name string
		p    packets.Packet
	}{
		{"topic over 65535 bytes", &packets.Publish{Topic: long}},
		{"client id over 65535 bytes", &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, ClientID: long}},
		{"filter over 65535 bytes", &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: long}}}},
		{"will message without will topic", &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, ClientID: []byte("a"), WillMessage: []byte("m")}},
		{"will topic without will message", &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, ClientID: []byte("a"), WillTopic: []byte("t")}},
		{"QoS 4", &packets.Publish{QoS: 4, Topic: []byte("t"), PacketID: 1}},
	}
	for _, tt := range tests {
		for _, allow := range []bool{false, true} {
			b, err := packets.Encode([]byte{1, 2}, tt.p, packets.EncodeOptions{AllowInvalid: allow})
			if !errors.Is(err, packets.ErrInvalidPacket) || !errors.Is(err, packets.ErrMalformed) {
				t.Errorf("%s (AllowInvalid=%v): err = %v, want ErrInvalidPacket+ErrMalformed", tt.name, allow, err)
			}
			if !bytes.Equal(b, []byte{1, 2}) {
				t.Errorf("%s: a failed Encode changed dst to % x", tt.name, b)
			}
		}
	}
}

func TestToRawForIllegalHeaderFlags(t *testing.T) {
	r, err := packets.ToRaw(&packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte("a"), QoS: 1}}}, packets.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Header &^= 0x02 // SUBSCRIBE flags 0000 instead of 0010
	b, err := r.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := packets.Decode(b, packets.DecodeOptions{}); !errors.Is(err, &packets.ProtocolError{Clause: "MQTT-3.8.1-1"}) {
		t.Errorf("decode of SUBSCRIBE with flags 0 = %v, want MQTT-3.8.1-1", err)
	}
	// A remaining length that lies about the body.
	r = &packets.Raw{Header: 0x40, Body: []byte{0x00, 0x01}, RemainingLength: []byte{0x05}}
	b, _ = r.Append(nil)
	if want := []byte{0x40, 0x05, 0x00, 0x01}; !bytes.Equal(b, want) || r.Len() != 4 {
		t.Errorf("Raw with RemainingLength = % x (Len %d), want % x", b, r.Len(), want)
	}
	var short *packets.ShortBufferError
	if _, _, err := packets.Decode(b, packets.DecodeOptions{}); !errors.As(err, &short) || short.Need != 3 {
		t.Errorf("decode = %v, want short buffer needing 3", err)
	}
	// ToRaw keeps a padded remaining length.
	r, _ = packets.ToRaw(&packets.Pingreq{}, packets.EncodeOptions{RemainingLengthSize: 3})
	if b, _ := r.Append(nil); !bytes.Equal(b, []byte{0xc0, 0x80, 0x80, 0x00}) {
		t.Errorf("ToRaw lost the padding: % x", b)
	}
}

func TestConnectFlagsDerivedFromFields(t *testing.T) {
	c := &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, ClientID: []byte("id"),
		WillTopic: []byte("w"), WillMessage: []byte{}, WillQoS: 2, WillRetain: true, Username: []byte("u"), Password: []byte{}}
	if got, want := c.ConnectFlags(), byte(0x80|0x40|0x20|0x10|0x04); got != want {
		t.Errorf("ConnectFlags = %08b, want %08b", got, want)
	}
}

func TestMaxPacketSize(t *testing.T) {
	b, _ := (&packets.Publish{Topic: []byte("t"), Payload: []byte(strings.Repeat("x", 200))}).Append(nil)
	opt := packets.DecodeOptions{MaxPacketSize: 100}
	// Refused from the fixed header alone, before the body has arrived.
	_, _, err := packets.Decode(b[:3], opt)
	var pe *packets.ProtocolError
	if !errors.Is(err, packets.ErrTooLarge) || !errors.As(err, &pe) || pe.Offset != 1 {
		t.Fatalf("Decode = %v, want ErrTooLarge at offset 1", err)
	}
	if !strings.Contains(err.Error(), "206 bytes exceeds the limit of 100") {
		t.Errorf("message %q does not give the sizes", err)
	}
	if _, _, err := packets.Decode(b, packets.DecodeOptions{MaxPacketSize: len(b)}); err != nil {
		t.Errorf("a packet of exactly the limit: %v", err)
	}
}

func TestEncodeErrorOffsetsMatchDecodeOffsets(t *testing.T) {
	// The encoder names the same offset the decoder would for the bytes it
	// refuses to write, also with a padded remaining length.
	tests := []struct {
		name string
		p    packets.Packet
		opt  packets.EncodeOptions
	}{
		{"CONNECT username not UTF-8", &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, ClientID: []byte("a"),
			Username: []byte{0xc3, 0x28}}, packets.EncodeOptions{}}, // CleanSession 0 is fine with a client id
		{"PUBLISH wildcard topic", &packets.Publish{Topic: []byte("a/#")}, packets.EncodeOptions{}},
		{"PUBLISH wildcard topic, length in 4 bytes", &packets.Publish{Topic: []byte("a/#")}, packets.EncodeOptions{RemainingLengthSize: 4}},
		{"SUBSCRIBE bad filter, length in 2 bytes", &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte("a+")}}},
			packets.EncodeOptions{RemainingLengthSize: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := packets.Encode(nil, tt.p, tt.opt)
			lenient := tt.opt
			lenient.AllowInvalid = true
			enc, lerr := packets.Encode(nil, tt.p, lenient)
			if lerr != nil {
				t.Fatal(lerr)
			}
			_, _, derr := packets.Decode(enc, packets.DecodeOptions{})
			var pe, dpe *packets.ProtocolError
			if !errors.As(err, &pe) || !errors.As(derr, &dpe) || pe.Clause != dpe.Clause || pe.Offset != dpe.Offset {
				t.Fatalf("encode error %v, decode error %v of % x: want the same clause and offset", err, derr, enc)
			}
		})
	}
	if _, err := packets.Encode(nil, nil, packets.EncodeOptions{}); !errors.Is(err, packets.ErrInvalidPacket) {
		t.Errorf("Encode(nil) = %v", err)
	}
}

// TestAppendMatchesEncode checks that every type's own Append is Encode with
// the zero options: the same bytes for valid packets, and the same error,
// word for word, for packets that break a rule (the lenient decodings of the
// Invalid vectors) or cannot be encoded at all.
func TestAppendMatchesEncode(t *testing.T) {
	var cases []packets.Packet
	for _, v := range packettest.Vectors {
		if v.Packet != nil {
			cases = append(cases, v.Packet)
		}
	}
	g := newRandGen(7)
	for range 5000 {
		cases = append(cases, g.Packet())
	}
	long := bytes.Repeat([]byte{'a'}, packets.MaxStringLength+1)
	cases = append(cases,
		&packets.Publish{QoS: 3, Topic: []byte("a")},
		&packets.Publish{QoS: 1, Topic: []byte("a/#")},
		&packets.Publish{Topic: long},
		&packets.Subscribe{PacketID: 1},
		&packets.Subscribe{Subscriptions: []packets.Subscription{{Filter: []byte("a+")}}},
		&packets.Unsubscribe{PacketID: 1, Filters: [][]byte{{}}},
		&packets.Connack{ReturnCode: 9, SessionPresent: true},
		&packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{3}},
		&packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, ClientID: long},
		&packets.Raw{Header: 0xf0, Body: []byte{1}},
		&packets.Raw{Header: 0x30, RemainingLength: []byte{0xff, 0xff, 0xff, 0xff, 0x7f}},
	)
	for i, p := range cases {
		prefix := []byte{0xee} // Append must append, not overwrite
		got, gotErr := p.Append(prefix)
		want, wantErr := packets.Encode([]byte{0xee}, p, packets.EncodeOptions{})
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || !bytes.Equal(got, want) {
			t.Fatalf("case %d %v:\nAppend % x, %v\nEncode % x, %v", i, p.Type(), got, gotErr, want, wantErr)
		}
		if gotErr == nil && len(got)-1 != p.Len() {
			t.Fatalf("case %d %v: Append wrote %d bytes, Len says %d", i, p.Type(), len(got)-1, p.Len())
		}
	}
}
