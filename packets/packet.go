// Package packets is a hand-written codec for the control packets of MQTT
// 3.1.1 (OASIS Standard, 29 October 2014).
//
// It decodes from byte slices (Decode, Decoder) and streams (ReadPacket,
// Reader), and encodes by appending to a caller's buffer (Append, Encode,
// WritePacket, Writer). Decoding is strict by default: the first broken rule
// of the standard is returned as a *ProtocolError carrying the normative
// clause ID. Lenient decoding (DecodeOptions.Lenient) returns the packet
// together with every rule it broke, for judging field traffic. Raw and
// EncodeOptions emit illegal encodings on purpose, for conformance tests.
//
// Ownership: byte-slice fields of decoded packets (topics, client
// identifiers, payloads, ...) alias the input buffer. Call Clone to keep a
// packet beyond the life of that buffer.
package packets

import "fmt"

// Type is the MQTT control packet type, the high nibble of the first byte
// (MQTT 3.1.1 §2.2.1).
type Type byte

// Control packet types (MQTT 3.1.1 §2.2.1, Table 2.1). 0 and 15 are reserved.
const (
	TypeReserved0   Type = 0
	TypeConnect     Type = 1
	TypeConnack     Type = 2
	TypePublish     Type = 3
	TypePuback      Type = 4
	TypePubrec      Type = 5
	TypePubrel      Type = 6
	TypePubcomp     Type = 7
	TypeSubscribe   Type = 8
	TypeSuback      Type = 9
	TypeUnsubscribe Type = 10
	TypeUnsuback    Type = 11
	TypePingreq     Type = 12
	TypePingresp    Type = 13
	TypeDisconnect  Type = 14
	TypeReserved15  Type = 15
)

var typeNames = [16]string{
	"RESERVED0", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
	"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "RESERVED15",
}

func (t Type) String() string {
	if t < 16 {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", byte(t))
}

// requiredFlags gives the fixed-header flags (low nibble) each type must
// carry (MQTT 3.1.1 §2.2.2, Table 2.2). PUBLISH is checked separately.
var requiredFlags = [16]byte{TypePubrel: 0x2, TypeSubscribe: 0x2, TypeUnsubscribe: 0x2}

// Packet is one MQTT control packet. The concrete types are *Connect,
// *Connack, *Publish, *Puback, *Pubrec, *Pubrel, *Pubcomp, *Subscribe,
// *Suback, *Unsubscribe, *Unsuback, *Pingreq, *Pingresp, *Disconnect and
// *Raw.
type Packet interface {
	// Type is the control packet type.
	Type() Type
	// Len is the encoded length, fixed header included.
	Len() int
	// Append appends the encoding of the packet to b. It fails with an
	// error wrapping ErrInvalidPacket (and a *ProtocolError) if the packet
	// breaks a rule of the standard; use Encode with AllowInvalid to send
	// it anyway.
	Append(b []byte) ([]byte, error)
	// Clone returns a deep copy that shares no memory with the original.
	Clone() Packet

	flags() byte
	bodyLen() int
	appendBody(b []byte) []byte
}

// DecodeOptions control Decode, Decoder, ReadPacket and Reader.
// The zero value decodes strictly, with no size limit beyond the standard's.
type DecodeOptions struct {
	// Lenient returns packets that parse but break rules of the standard,
	// together with a Violations error listing the rules. Malformed packets
	// (that cannot be parsed) are errors in both modes.
	Lenient bool
	// MaxPacketSize limits the whole packet (fixed header included), in
	// bytes; 0 means the standard's maximum, 268,435,460 (a 5-byte fixed
	// header and the largest remaining length). A larger
	// packet fails with ErrTooLarge as soon as its fixed header is read.
	MaxPacketSize int
}

// EncodeOptions control Encode.
type EncodeOptions struct {
	// AllowInvalid skips the checks of the standard's rules, so that
	// conformance tests can send illegal packets (reserved flags, QoS 3,
	// bad UTF-8, packet identifier 0, wildcards in a PUBLISH topic, ...).
	// Fields that cannot be represented at all (a string over 65,535
	// bytes) are still errors.
	AllowInvalid bool
	// RemainingLengthSize, when larger than the minimal size, pads the
	// remaining length to this many bytes (1 to 5). MQTT 3.1.1 allows at
	// most 4 (§2.2.3); 5 produces a malformed packet and needs AllowInvalid.
	RemainingLengthSize int
}

// Encode appends the encoding of p to dst under opt.
func Encode(dst []byte, p Packet, opt EncodeOptions) ([]byte, error) {
	if p == nil {
		return dst, fmt.Errorf("%w: nil packet", ErrInvalidPacket)
	}
	n := p.bodyLen()
	// Offsets count from the packet's first byte, as the decoder's do: the
	// body starts after the remaining length as it will be written.
	lenSize := varintLen(uint32(min(n, MaxRemainingLength)))
	if opt.RemainingLengthSize > lenSize && opt.RemainingLengthSize <= 5 { // more is refused below
		lenSize = opt.RemainingLengthSize
	}
	c := checker{typ: p.Type(), encoding: true, base: 1 + lenSize}
	validate(p, &c)
	if c.err != nil && (!opt.AllowInvalid || c.fatal) {
		return dst, invalidPacket(c.err)
	}
	if r, ok := p.(*Raw); ok && r.RemainingLength != nil {
		dst = append(dst, r.Header)
		dst = append(dst, r.RemainingLength...)
		return append(dst, r.Body...), nil
	}
	if n > MaxRemainingLength {
		return dst, invalidPacket(&ProtocolError{Clause: "MQTT-2.2.3", Type: p.Type(),
			Msg: fmt.Sprintf("remaining length %d exceeds the maximum %d", n, MaxRemainingLength), Err: ErrMalformed})
	}
	size := opt.RemainingLengthSize
	if size > 4 && !opt.AllowInvalid {
		return dst, invalidPacket(&ProtocolError{Clause: "MQTT-2.2.3", Type: p.Type(), Offset: 1,
			Msg: fmt.Sprintf("remaining length of %d bytes (at most 4 allowed)", size), Err: ErrMalformed})
	}
	if size > 5 {
		return dst, fmt.Errorf("%w: RemainingLengthSize %d out of range 1..5", ErrInvalidPacket, size)
	}
	dst = append(dst, byte(p.Type())<<4|p.flags())
	dst = appendVarint(dst, uint32(n), size)
	return p.appendBody(dst), nil
}

func appendPacket(b []byte, p Packet) ([]byte, error) { return Encode(b, p, EncodeOptions{}) }

// Every Append is Encode with the zero EncodeOptions (TestAppendMatchesEncode).
// Most call appendPacket. PUBLISH and SUBSCRIBE, the packets of the DPS
// flow, first test whether there is anything for validate to report and,
// when there is not, write the packet themselves, calling their own
// bodyLen and appendBody rather than through the Packet interface (about a
// third off the time of a small packet); anything else goes through Encode,
// so an error is Encode's, word for word. The identifier-only and empty
// packets have no rule to check and write themselves.

// appendHeader appends a fixed header with the minimal remaining length n.
func appendHeader(b []byte, first byte, n int) []byte {
	if n < 128 {
		return append(b, first, byte(n))
	}
	return appendVarint(append(b, first), uint32(n), 0)
}

func packetLen(p Packet) int {
	n := p.bodyLen()
	return 1 + varintLen(uint32(n)) + n
}

// Decode decodes the first packet in b and returns it with the number of
// bytes it used. The packet's byte-slice fields alias b.
//
// If b ends inside the packet the error is a *ShortBufferError (errors.Is
// ErrShortBuffer) and never a *ProtocolError. A packet that breaks a rule
// returns a *ProtocolError in strict mode; in lenient mode the packet is
// returned with a Violations error. A malformed packet returns a
// *ProtocolError wrapping ErrMalformed in both modes; n is then the framed
// length of the bad packet when the fixed header was readable (so a reader
// can skip it), else 0. n <= len(b) always.
//
// Decode allocates a Decoder (a few hundred bytes) that holds the returned
// packet; to keep many packets, Clone them, or reuse a Decoder.
func Decode(b []byte, opt DecodeOptions) (Packet, int, error) {
	return (&Decoder{Options: opt}).Decode(b)
}

// Decoder decodes packets into storage it owns and reuses, so decoding
// allocates nothing in the common case. The packet returned by Decode is
// valid until the next call; its byte-slice fields alias the input.
// A Decoder is not safe for concurrent use.
type Decoder struct {
	Options DecodeOptions

	connect     Connect
	connack     Connack
	publish     Publish
	puback      Puback
	pubrec      Pubrec
	pubrel      Pubrel
	pubcomp     Pubcomp
	subscribe   Subscribe
	suback      Suback
	unsubscribe Unsubscribe
	unsuback    Unsuback
	pingreq     Pingreq
	pingresp    Pingresp
	disconnect  Disconnect
	raw         Raw
}

// Decode is like the package-level Decode with d.Options, reusing d's
// storage for the result.
func (d *Decoder) Decode(b []byte) (Packet, int, error) {
	var rem uint32
	var hdr int
	switch {
	case len(b) >= 2 && b[1] < 0x80: // a one-byte remaining length: most packets
		rem, hdr = uint32(b[1]), 2
	case len(b) >= 3 && b[2] < 0x80: // two bytes: CONNECT with a SAS token, 200 answers
		rem, hdr = uint32(b[1]&0x7f)|uint32(b[2])<<7, 3
	default:
		var err error
		if rem, hdr, err = readFixedHeader(b); err != nil {
			return nil, 0, err
		}
	}
	t := Type(b[0] >> 4)
	total := hdr + int(rem)
	if max := d.Options.MaxPacketSize; max > 0 && total > max {
		return nil, 0, tooLarge(b[0], total, max)
	}
	if len(b) < total {
		return nil, 0, &ShortBufferError{Need: total - len(b)}
	}
	c := checker{typ: t, base: hdr, lenient: d.Options.Lenient}
	flags := b[0] & 0x0f
	body := b[hdr:total:total]
	var p Packet
	switch {
	case t == TypeReserved0 || t == TypeReserved15:
		// [MQTT-2.2.1] Control packet types 0 and 15 are reserved ("Forbidden").
		c.violation("MQTT-2.2.1", -hdr, "reserved control packet type %d", byte(t))
		d.raw = Raw{Header: b[0], Body: body}
		p = &d.raw
	case t != TypePublish && flags != requiredFlags[t]:
		// [MQTT-2.2.2-1] Where a flag bit is marked as "Reserved" ... it MUST be
		// set to the value listed. [MQTT-2.2.2-2] invalid flags: close.
		c.violation(flagClauses[t], -hdr, "fixed header flags 0x%x, must be 0x%x", flags, requiredFlags[t])
		fallthrough
	default:
		if c.err == nil {
			p = d.decodeBody(t, &c, flags, body)
		}
	}
	if c.err != nil {
		return nil, total, c.err
	}
	if len(c.viol) > 0 {
		return p, total, Violations(c.viol)
	}
	return p, total, nil
}

// flagClauses names the rule a wrong fixed-header flag breaks: the general
// [MQTT-2.2.2-1], or the packet's own statement where it has one.
var flagClauses = [16]string{
	TypeConnect: "MQTT-2.2.2-1", TypeConnack: "MQTT-2.2.2-1", TypePuback: "MQTT-2.2.2-1", TypePubrec: "MQTT-2.2.2-1",
	TypePubrel: "MQTT-3.6.1-1", TypePubcomp: "MQTT-2.2.2-1", TypeSubscribe: "MQTT-3.8.1-1", TypeSuback: "MQTT-2.2.2-1",
	TypeUnsubscribe: "MQTT-3.10.1-1", TypeUnsuback: "MQTT-2.2.2-1", TypePingreq: "MQTT-2.2.2-1", TypePingresp: "MQTT-2.2.2-1",
	TypeDisconnect: "MQTT-3.14.1-1",
}

// decodeBody decodes the body of a packet of type t into d's storage for
// that type. Calling each type's decode directly, not through an interface,
// lets escape analysis keep the checker on the stack (a call through an
// interface makes its pointer arguments escape: one allocation per packet).
func (d *Decoder) decodeBody(t Type, c *checker, flags byte, body []byte) Packet {
	switch t {
	case TypeConnect:
		d.connect.decode(c, body)
		return &d.connect
	case TypeConnack:
		d.connack.decode(c, body)
		return &d.connack
	case TypePublish:
		d.publish.decode(c, flags, body)
		return &d.publish
	case TypePuback:
		d.puback.PacketID = decodePacketID(c, body, "MQTT-3.4.1")
		return &d.puback
	case TypePubrec:
		d.pubrec.PacketID = decodePacketID(c, body, "MQTT-3.5.1")
		return &d.pubrec
	case TypePubrel:
		d.pubrel.PacketID = decodePacketID(c, body, "MQTT-3.6.1")
		return &d.pubrel
	case TypePubcomp:
		d.pubcomp.PacketID = decodePacketID(c, body, "MQTT-3.7.1")
		return &d.pubcomp
	case TypeSubscribe:
		d.subscribe.decode(c, body)
		return &d.subscribe
	case TypeSuback:
		d.suback.decode(c, body)
		return &d.suback
	case TypeUnsubscribe:
		d.unsubscribe.decode(c, body)
		return &d.unsubscribe
	case TypeUnsuback:
		d.unsuback.PacketID = decodePacketID(c, body, "MQTT-3.11.1")
		return &d.unsuback
	case TypePingreq:
		decodeEmpty(c, body, "MQTT-3.12.1")
		return &d.pingreq
	case TypePingresp:
		decodeEmpty(c, body, "MQTT-3.13.1")
		return &d.pingresp
	}
	decodeEmpty(c, body, "MQTT-3.14.1")
	return &d.disconnect
}

// validate applies the rules of the standard to a packet about to be
// encoded. It dispatches on the concrete type for the same reason as
// decodeBody. The identifier-only and empty packets have nothing to check,
// and Raw is never checked.
func validate(p Packet, c *checker) {
	switch q := p.(type) {
	case *Connect:
		q.validate(c)
	case *Connack:
		q.check(c)
	case *Publish:
		q.validate(c)
	case *Subscribe:
		q.validate(c)
	case *Suback:
		q.check(c)
	case *Unsubscribe:
		q.validate(c)
	}
}
