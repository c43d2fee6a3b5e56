package packets_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/packets/packettest"
)

var strict, lenient = packets.DecodeOptions{}, packets.DecodeOptions{Lenient: true}

// headerFlagClauses are the rules about fixed-header flags, which a typed
// packet cannot express (it always encodes the required flags).
var headerFlagClauses = map[string]bool{
	"MQTT-2.2.2-1": true, "MQTT-3.6.1-1": true, "MQTT-3.8.1-1": true, "MQTT-3.10.1-1": true, "MQTT-3.14.1-1": true, "MQTT-2.2.1": true,
}

func TestVectorTableIsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range packettest.Vectors {
		if v.Name == "" || seen[v.Name] {
			t.Errorf("vector name %q is empty or duplicated", v.Name)
		}
		seen[v.Name] = true
		if len(v.Clause) < len("MQTT-1") || v.Clause[:5] != "MQTT-" {
			t.Errorf("%s: clause %q is not an MQTT clause or section", v.Name, v.Clause)
		}
		if (v.Kind == packettest.Malformed) != (v.Packet == nil) {
			t.Errorf("%s: Packet must be nil exactly for malformed vectors", v.Name)
		}
	}
	for _, k := range []packettest.Kind{packettest.Valid, packettest.Malformed, packettest.Invalid, packettest.Edge} {
		if len(packettest.OfKind(k)) == 0 {
			t.Errorf("no %v vectors", k)
		}
	}
}

func TestVectors(t *testing.T) {
	for _, v := range packettest.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			checkPrefixes(t, v)
			switch v.Kind {
			case packettest.Valid, packettest.Edge:
				checkValid(t, v)
			case packettest.Invalid:
				checkInvalid(t, v)
			case packettest.Malformed:
				checkMalformed(t, v)
			}
		})
	}
}

// checkPrefixes is the quic-go prefix loop: every proper prefix of a framed
// packet is short input, never a protocol error.
func checkPrefixes(t *testing.T, v packettest.Vector) {
	t.Helper()
	framed, _ := packets.PacketLength(v.Raw)
	for i := 0; i < len(v.Raw); i++ {
		p, n, err := packets.Decode(v.Raw[:i], strict)
		var short *packets.ShortBufferError
		if errors.As(err, &short) {
			if p != nil || n != 0 || short.Need < 1 || !errors.Is(err, packets.ErrShortBuffer) {
				t.Fatalf("prefix %d: p=%v n=%d need=%d", i, p, n, short.Need)
			}
			if framed > 0 && short.Need > framed-i {
				t.Fatalf("prefix %d: need %d, but only %d bytes are missing", i, short.Need, framed-i)
			}
			var pe *packets.ProtocolError
			if errors.As(err, &pe) {
				t.Fatalf("prefix %d: short buffer error is also a ProtocolError", i)
			}
			continue
		}
		if i < framed || v.Kind != packettest.Malformed {
			t.Fatalf("prefix %d of %d: want a short buffer error, got %v", i, len(v.Raw), err)
		}
	}
}

func checkValid(t *testing.T, v packettest.Vector) {
	t.Helper()
	for _, opt := range []packets.DecodeOptions{strict, lenient} {
		p, n, err := packets.Decode(v.Raw, opt)
		if err != nil {
			t.Fatalf("Decode(lenient=%v): %v", opt.Lenient, err)
		}
		if n != len(v.Raw) {
			t.Fatalf("Decode used %d bytes of %d", n, len(v.Raw))
		}
		if !reflect.DeepEqual(p, v.Packet) {
			t.Fatalf("Decode =\n%#v\nwant\n%#v", p, v.Packet)
		}
	}
	var d packets.Decoder
	for range 2 { // twice: the second decode reuses the storage
		p, n, err := d.Decode(v.Raw)
		if err != nil || n != len(v.Raw) || !reflect.DeepEqual(p, v.Packet) {
			t.Fatalf("Decoder.Decode = %#v, %d, %v", p, n, err)
		}
	}
	enc, err := v.Packet.Append([]byte("prefix"))
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if string(enc[:6]) != "prefix" {
		t.Fatalf("Append overwrote the caller's bytes")
	}
	enc = enc[6:]
	if got := v.Packet.Len(); got != len(enc) {
		t.Errorf("Len = %d, Append wrote %d", got, len(enc))
	}
	if v.Kind == packettest.Valid && !bytes.Equal(enc, v.Raw) {
		t.Fatalf("Append =\n% x\nwant\n% x", enc, v.Raw)
	}
	again, _, err := packets.Decode(enc, strict)
	if err != nil || !reflect.DeepEqual(again, v.Packet) {
		t.Fatalf("re-decode of the encoding = %#v, %v", again, err)
	}
	checkClone(t, v)
}

// checkClone: a clone equals the original and shares no memory with the input.
func checkClone(t *testing.T, v packettest.Vector) {
	t.Helper()
	raw := bytes.Clone(v.Raw)
	p, _, err := packets.Decode(raw, lenient)
	if p == nil {
		t.Fatalf("Decode: %v", err)
	}
	c := p.Clone()
	if !reflect.DeepEqual(c, v.Packet) {
		t.Fatalf("Clone = %#v, want %#v", c, v.Packet)
	}
	for i := range raw {
		raw[i] ^= 0xff
	}
	if !reflect.DeepEqual(c, v.Packet) {
		t.Fatalf("Clone aliases the input: after changing the input it is %#v", c)
	}
}

func checkInvalid(t *testing.T, v packettest.Vector) {
	t.Helper()
	p, n, err := packets.Decode(v.Raw, strict)
	pe := wantProtocolError(t, err, v, packets.ErrProtocolViolation)
	if p != nil || n != len(v.Raw) {
		t.Errorf("strict Decode = %v, n=%d; want nil, n=%d (the framed length)", p, n, len(v.Raw))
	}
	if !errors.Is(err, &packets.ProtocolError{Clause: v.Clause}) {
		t.Errorf("errors.Is by clause failed for %v", pe)
	}

	p, n, err = packets.Decode(v.Raw, lenient)
	var vs packets.Violations
	if !errors.As(err, &vs) || len(vs) == 0 {
		t.Fatalf("lenient Decode error = %v, want Violations", err)
	}
	if vs[0].Clause != v.Clause || vs[0].Offset != v.Offset {
		t.Errorf("first violation %v, want clause %s at offset %d", vs[0], v.Clause, v.Offset)
	}
	if n != len(v.Raw) || !reflect.DeepEqual(p, v.Packet) {
		t.Fatalf("lenient Decode = %#v, n=%d\nwant %#v", p, n, v.Packet)
	}
	checkClone(t, v)

	// Encoding: strict refuses the packet, AllowInvalid reproduces the bytes.
	if headerFlagClauses[v.Clause] {
		return // the typed packet carries no fixed-header flags to break
	}
	if _, err := v.Packet.Append(nil); !errors.Is(err, packets.ErrInvalidPacket) || !errors.Is(err, &packets.ProtocolError{Clause: v.Clause}) {
		t.Errorf("Append of an invalid packet = %v, want ErrInvalidPacket with clause %s", err, v.Clause)
	}
	enc, err := packets.Encode(nil, v.Packet, packets.EncodeOptions{AllowInvalid: true})
	if err != nil || !bytes.Equal(enc, v.Raw) {
		t.Errorf("Encode(AllowInvalid) = % x, %v\nwant % x", enc, err, v.Raw)
	}
}

func checkMalformed(t *testing.T, v packettest.Vector) {
	t.Helper()
	for _, opt := range []packets.DecodeOptions{strict, lenient} {
		p, _, err := packets.Decode(v.Raw, opt)
		wantProtocolError(t, err, v, packets.ErrMalformed)
		if p != nil {
			t.Errorf("Decode(lenient=%v) returned a packet for malformed input: %#v", opt.Lenient, p)
		}
	}
}

func wantProtocolError(t *testing.T, err error, v packettest.Vector, category error) *packets.ProtocolError {
	t.Helper()
	var pe *packets.ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("error = %v, want *ProtocolError", err)
	}
	if pe.Clause != v.Clause || pe.Offset != v.Offset || !errors.Is(err, category) {
		t.Fatalf("error = %v (clause %s, offset %d), want clause %s at offset %d, category %v",
			err, pe.Clause, pe.Offset, v.Clause, v.Offset, category)
	}
	if pe.Type != packets.Type(v.Raw[0]>>4) {
		t.Errorf("error type %v, want %v", pe.Type, packets.Type(v.Raw[0]>>4))
	}
	return pe
}

// TestStreamOfVectors decodes every valid vector back to back from one
// buffer, as a reader of a TCP stream would.
func TestStreamOfVectors(t *testing.T) {
	var stream []byte
	var want []packets.Packet
	for _, v := range packettest.OfKind(packettest.Valid, packettest.Edge) {
		stream = append(stream, v.Raw...)
		want = append(want, v.Packet)
	}
	var d packets.Decoder
	for i, b := 0, stream; len(b) > 0; i++ {
		p, n, err := d.Decode(b)
		if err != nil || !reflect.DeepEqual(p, want[i]) {
			t.Fatalf("packet %d: %#v, %v", i, p, err)
		}
		b = b[n:]
	}
}
