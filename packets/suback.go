package packets

import "encoding/binary"

// §3.9 SUBACK – Subscribe acknowledgement.

// SubackCode is a SUBACK return code (MQTT 3.1.1 §3.9.3).
type SubackCode byte

// SUBACK return codes; every other value is reserved [MQTT-3.9.3-2].
const (
	SubackMaxQoS0 SubackCode = 0x00
	SubackMaxQoS1 SubackCode = 0x01
	SubackMaxQoS2 SubackCode = 0x02
	SubackFailure SubackCode = 0x80
)

// String names the code as §3.9.3 does.
func (c SubackCode) String() string {
	switch c {
	case SubackMaxQoS0:
		return "Success - Maximum QoS 0"
	case SubackMaxQoS1:
		return "Success - Maximum QoS 1"
	case SubackMaxQoS2:
		return "Success - Maximum QoS 2"
	case SubackFailure:
		return "Failure"
	}
	return "reserved return code"
}

// Suback is the SUBACK control packet (MQTT 3.1.1 §3.9).
type Suback struct {
	PacketID    uint16
	ReturnCodes []SubackCode
}

// Type returns TypeSuback.
func (*Suback) Type() Type  { return TypeSuback }
func (*Suback) flags() byte { return 0 }

// Len returns the encoded length.
func (p *Suback) Len() int { return packetLen(p) }

// Append appends the encoding of p to b.
func (p *Suback) Append(b []byte) ([]byte, error) { return appendPacket(b, p) }

// Clone returns a deep copy of p.
func (p *Suback) Clone() Packet {
	q := &Suback{PacketID: p.PacketID}
	if p.ReturnCodes != nil {
		q.ReturnCodes = append(make([]SubackCode, 0, len(p.ReturnCodes)), p.ReturnCodes...)
	}
	return q
}

func (p *Suback) bodyLen() int { return 2 + len(p.ReturnCodes) }

func (p *Suback) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, p.PacketID)
	for _, rc := range p.ReturnCodes {
		b = append(b, byte(rc))
	}
	return b
}

func (p *Suback) check(c *checker) {
	// [MQTT-3.8.4-5] The SUBACK Packet MUST contain a return code for each
	// Topic Filter/QoS pair; a SUBSCRIBE carries at least one.
	if len(p.ReturnCodes) == 0 {
		c.violation("MQTT-3.8.4-5", 2, "no return code")
	}
	for i, rc := range p.ReturnCodes {
		// [MQTT-3.9.3-2] SUBACK return codes other than 0x00, 0x01, 0x02 and
		// 0x80 are reserved and MUST NOT be used.
		if rc > SubackMaxQoS2 && rc != SubackFailure {
			c.violation("MQTT-3.9.3-2", 2+i, "reserved return code 0x%02x", byte(rc))
		}
	}
}

func (p *Suback) decode(c *checker, body []byte) {
	p.ReturnCodes = p.ReturnCodes[:0] // reused by a Decoder
	if len(body) < 2 {
		c.malformed("MQTT-3.9.2", 0, "remaining length %d, needs at least 2", len(body))
		return
	}
	p.PacketID = binary.BigEndian.Uint16(body)
	for _, rc := range body[2:] {
		p.ReturnCodes = append(p.ReturnCodes, SubackCode(rc))
	}
	if len(p.ReturnCodes) == 0 {
		p.ReturnCodes = nil // as a fresh decoding has it
	}
	p.check(c)
}
