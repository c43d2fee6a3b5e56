package packets_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/dps-conform/dps-conform/packets"
)

func TestProtocolErrorFormatAndMatching(t *testing.T) {
	e := &packets.ProtocolError{Clause: "MQTT-3.1.2-3", Type: packets.TypeConnect, Offset: 9,
		Msg: "reserved connect flag (bit 0) must be 0", Err: packets.ErrProtocolViolation}
	if got, want := e.Error(), "mqtt: CONNECT @9: reserved connect flag (bit 0) must be 0 [MQTT-3.1.2-3]"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	wrapped := fmt.Errorf("conn 1: %w", e)
	tests := []struct {
		target error
		want   bool
	}{
		{packets.ErrProtocolViolation, true},
		{packets.ErrMalformed, false},
		{&packets.ProtocolError{Clause: "MQTT-3.1.2-3"}, true},
		{&packets.ProtocolError{Clause: "MQTT-3.1.2-2"}, false},
		{&packets.ProtocolError{}, false}, // an empty clause matches nothing
	}
	for _, tt := range tests {
		if got := errors.Is(wrapped, tt.target); got != tt.want {
			t.Errorf("errors.Is(%v) = %v, want %v", tt.target, got, tt.want)
		}
	}
}

func TestViolationsUnwrapToEveryViolation(t *testing.T) {
	// QoS 1 PUBLISH with a wildcard topic and packet id 0: two rules broken.
	raw := []byte{0x32, 0x07, 0x00, 0x03, 'a', '/', '#', 0x00, 0x00}
	p, _, err := packets.Decode(raw, packets.DecodeOptions{Lenient: true})
	if p == nil {
		t.Fatalf("lenient decode returned no packet: %v", err)
	}
	var vs packets.Violations
	if !errors.As(err, &vs) || len(vs) != 2 {
		t.Fatalf("err = %v, want 2 violations", err)
	}
	for _, clause := range []string{"MQTT-3.3.2-2", "MQTT-2.3.1-1"} {
		if !errors.Is(err, &packets.ProtocolError{Clause: clause}) {
			t.Errorf("violations do not include %s: %v", clause, err)
		}
	}
	if !errors.Is(err, packets.ErrProtocolViolation) || errors.Is(err, packets.ErrMalformed) {
		t.Errorf("category of %v is wrong", err)
	}
	// Strict mode reports only the first rule broken.
	if _, _, err := packets.Decode(raw, packets.DecodeOptions{}); !errors.Is(err, &packets.ProtocolError{Clause: "MQTT-3.3.2-2"}) {
		t.Errorf("strict error = %v", err)
	}
}

func TestTypeAndCodeStrings(t *testing.T) {
	tests := []struct{ got, want string }{
		{packets.TypeConnect.String(), "CONNECT"},
		{packets.TypeDisconnect.String(), "DISCONNECT"},
		{packets.Type(15).String(), "RESERVED15"},
		{packets.Type(16).String(), "Type(16)"},
		{packets.ConnackRefusedNotAuthorized.String(), "Connection Refused, not authorized"},
		{packets.ConnackCode(9).String(), "reserved return code 0x09"},
		{packets.SubackFailure.String(), "Failure"},
		{packets.SubackCode(3).String(), "reserved return code"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// TestWrongRemainingLengthOffset: a packet whose body must have one exact
// size is reported at the Remaining Length field, offset 1 (as the vectors
// with a one-byte length have it), however many bytes encode the length.
func TestWrongRemainingLengthOffset(t *testing.T) {
	tests := []struct {
		name string
		raw  []byte
	}{
		{"PUBACK 1-byte length", []byte{0x40, 0x03, 0x00, 0x01, 0x00}},
		{"PUBACK 2-byte length", []byte{0x40, 0x83, 0x00, 0x00, 0x01, 0x00}},
		{"UNSUBACK 3-byte length", []byte{0xb0, 0x81, 0x80, 0x00, 0x00}},
		{"PINGREQ 2-byte length", []byte{0xc0, 0x81, 0x00, 0x00}},
		{"DISCONNECT 4-byte length", []byte{0xe0, 0x81, 0x80, 0x80, 0x00, 0x00}},
		{"CONNACK 2-byte length", []byte{0x20, 0x83, 0x00, 0x00, 0x00, 0x00}},
	}
	for _, tt := range tests {
		_, _, err := packets.Decode(tt.raw, packets.DecodeOptions{})
		var pe *packets.ProtocolError
		if !errors.As(err, &pe) || !errors.Is(err, packets.ErrMalformed) || pe.Offset != 1 {
			t.Errorf("%s: %v, want a malformed error at offset 1", tt.name, err)
		}
	}
}
