// Package packettest holds a clause-tagged table of MQTT 3.1.1 byte vectors
// (valid, malformed, invalid and edge cases, plus the exact packets that the
// DPS flows of the Azure IoT SDKs produce). It drives the packets unit tests
// and fuzz seeds, and later the emulator's and the conformance suite's
// negative tests. It is an httptest-style package: production code that
// does not need the vectors does not link it.
//
// The Raw bytes are written by hand in byte groups, independently of the
// packets encoder, so a test that compares the encoder's output with them
// checks the encoder against the standard rather than against itself.
package packettest

import (
	"fmt"

	"github.com/dps-conform/dps-conform/packets"
)

// Kind classifies a vector (after mochi-mqtt's tpackets taxonomy).
type Kind int

const (
	// Valid bytes decode strictly to Packet, and Packet encodes to exactly Raw.
	Valid Kind = iota
	// Malformed bytes cannot be parsed: both strict and lenient decoding
	// return a *packets.ProtocolError wrapping packets.ErrMalformed with Clause
	// and Offset.
	Malformed
	// Invalid bytes parse but break the rule Clause: strict decoding fails
	// with that clause at Offset; lenient decoding returns Packet together
	// with the violations.
	Invalid
	// Edge bytes are legal but unusual (boundaries, non-minimal lengths):
	// they decode strictly to Packet, and Packet re-encodes to bytes that
	// decode to the same Packet (not necessarily to Raw).
	Edge
)

func (k Kind) String() string {
	switch k {
	case Valid:
		return "valid"
	case Malformed:
		return "malformed"
	case Invalid:
		return "invalid"
	case Edge:
		return "edge"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Vector is one test case.
type Vector struct {
	// Name is unique, "<type>/<case>" or "dps/<sdk>-<packet>".
	Name string
	// Clause is the normative statement (or section) the vector exercises:
	// for Invalid and Malformed ones, the clause the first error must carry.
	Clause string
	Kind   Kind
	Raw    []byte
	// Packet is what Raw decodes to (leniently, for Invalid); nil for Malformed.
	Packet packets.Packet
	// Offset is the packet offset the first strict error must name
	// (Invalid and Malformed only).
	Offset int
	// Source says where the bytes come from when they reproduce a real
	// client (DPS-PROTOCOL.md Part B keys: N, C, P, J, EC, ...).
	Source string
}

// Vectors is the table. Treat it as read-only: the Raw slices are shared.
var Vectors = buildVectors()

// ByName returns the vector with the given name, or false.
func ByName(name string) (Vector, bool) {
	for _, v := range Vectors {
		if v.Name == name {
			return v, true
		}
	}
	return Vector{}, false
}

// OfKind returns the vectors of the given kinds.
func OfKind(kinds ...Kind) []Vector {
	var out []Vector
	for _, v := range Vectors {
		for _, k := range kinds {
			if v.Kind == k {
				out = append(out, v)
				break
			}
		}
	}
	return out
}

// str is a UTF-8 string or binary field: a two-byte length, then the bytes.
func str(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

// cat concatenates byte groups.
func cat(groups ...[]byte) []byte {
	var out []byte
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// frame prefixes a body with its fixed header: the first byte and the
// remaining length, encoded here independently of the packets encoder.
func frame(first byte, body ...[]byte) []byte {
	b := cat(body...)
	out := []byte{first}
	n := len(b)
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		out = append(out, c)
		if n == 0 {
			break
		}
	}
	return append(out, b...)
}

func bs(s string) []byte { return []byte(s) }

func repeat(c byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return b
}
