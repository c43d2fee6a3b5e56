package packets

import "encoding/binary"

// §3.10 UNSUBSCRIBE – Unsubscribe from topics.

// Unsubscribe is the UNSUBSCRIBE control packet (MQTT 3.1.1 §3.10). Filters
// of a decoded Unsubscribe alias the decoder's input.
type Unsubscribe struct {
	PacketID uint16
	Filters  [][]byte
}

// Type returns TypeUnsubscribe.
func (*Unsubscribe) Type() Type { return TypeUnsubscribe }

func (*Unsubscribe) flags() byte { return requiredFlags[TypeUnsubscribe] }

// Len returns the encoded length.
func (p *Unsubscribe) Len() int { return packetLen(p) }

// Append appends the encoding of p to b.
func (p *Unsubscribe) Append(b []byte) ([]byte, error) { return appendPacket(b, p) }

// Clone returns a deep copy of p.
func (p *Unsubscribe) Clone() Packet {
	q := &Unsubscribe{PacketID: p.PacketID}
	if p.Filters != nil {
		q.Filters = make([][]byte, len(p.Filters))
		for i, f := range p.Filters {
			q.Filters[i] = cloneBytes(f)
		}
	}
	return q
}

func (p *Unsubscribe) bodyLen() int {
	n := 2
	for _, f := range p.Filters {
		n += 2 + len(f)
	}
	return n
}

func (p *Unsubscribe) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, p.PacketID)
	for _, f := range p.Filters {
		b = appendString(b, f)
	}
	return b
}

func (p *Unsubscribe) validate(c *checker) {
	off := 2
	for _, f := range p.Filters {
		c.checkEncodable(f, "topic filter")
		c.topicFilter(f, off)
		off += 2 + len(f)
	}
	p.checkCommon(c)
}

func (p *Unsubscribe) checkCommon(c *checker) {
	// [MQTT-2.3.1-1] UNSUBSCRIBE ... MUST contain a non-zero 16-bit Packet Identifier.
	if p.PacketID == 0 {
		c.violation("MQTT-2.3.1-1", 0, "packet identifier 0")
	}
	// [MQTT-3.10.3-2] The Payload of an UNSUBSCRIBE packet MUST contain at
	// least one Topic Filter.
	if len(p.Filters) == 0 {
		c.violation("MQTT-3.10.3-2", 2, "no topic filter")
	}
}

func (p *Unsubscribe) decode(c *checker, body []byte) {
	p.Filters = p.Filters[:0] // reused by a Decoder
	var off int
	p.PacketID, off = c.uint16At(body, 0, "packet identifier")
	for off < len(body) && !c.failed() {
		start := off
		var f []byte
		f, off = c.lenPrefixed(body, off, "topic filter")
		if c.fatal {
			return
		}
		// [MQTT-3.10.3-1] The Topic Filters in an UNSUBSCRIBE packet MUST be
		// UTF-8 encoded strings.
		c.topicFilter(f, start)
		p.Filters = append(p.Filters, f)
	}
	if len(p.Filters) == 0 {
		p.Filters = nil // as a fresh decoding has it
	}
	if !c.fatal {
		p.checkCommon(c)
	}
}
