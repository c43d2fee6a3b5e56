package packets

import "encoding/binary"

// §3.8 SUBSCRIBE – Subscribe to topics.

// Subscription is one Topic Filter / requested QoS pair of a SUBSCRIBE.
type Subscription struct {
	Filter []byte
	// QoS is the whole Requested QoS byte as sent: values above 2, including
	// any set reserved bit, are violations [MQTT-3.8.3-4].
	QoS byte
}

// Subscribe is the SUBSCRIBE control packet (MQTT 3.1.1 §3.8). Filters of a
// decoded Subscribe alias the decoder's input.
type Subscribe struct {
	PacketID      uint16
	Subscriptions []Subscription
}

// Type returns TypeSubscribe.
func (*Subscribe) Type() Type { return TypeSubscribe }

func (*Subscribe) flags() byte { return requiredFlags[TypeSubscribe] }

// Len returns the encoded length.
func (p *Subscribe) Len() int { return packetLen(p) }

// Append appends the encoding of p to b.
func (p *Subscribe) Append(b []byte) ([]byte, error) {
	// A packet with nothing for validate to report (plain filters, QoS 0-2,
	// an identifier) is written at once; anything else goes through Encode.
	n, plain := p.bodyLen(), p.PacketID != 0 && len(p.Subscriptions) > 0
	for _, s := range p.Subscriptions {
		plain = plain && s.QoS <= 2 && plainFilter(s.Filter)
	}
	if !plain || n > MaxRemainingLength {
		return appendPacket(b, p)
	}
	return p.appendBody(appendHeader(b, byte(TypeSubscribe)<<4|p.flags(), n)), nil
}

// Clone returns a deep copy of p.
func (p *Subscribe) Clone() Packet {
	q := &Subscribe{PacketID: p.PacketID}
	if p.Subscriptions != nil {
		q.Subscriptions = make([]Subscription, len(p.Subscriptions))
		for i, s := range p.Subscriptions {
			q.Subscriptions[i] = Subscription{Filter: cloneBytes(s.Filter), QoS: s.QoS}
		}
	}
	return q
}

func (p *Subscribe) bodyLen() int {
	n := 2
	for _, s := range p.Subscriptions {
		n += 3 + len(s.Filter)
	}
	return n
}

func (p *Subscribe) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, p.PacketID)
	for _, s := range p.Subscriptions {
		b = appendString(b, s.Filter)
		b = append(b, s.QoS)
	}
	return b
}

func (p *Subscribe) validate(c *checker) {
	off := 2
	for _, s := range p.Subscriptions {
		c.checkEncodable(s.Filter, "topic filter")
		p.checkOne(c, s, off)
		off += 3 + len(s.Filter)
	}
	p.checkCommon(c)
}

func (p *Subscribe) checkCommon(c *checker) {
	// [MQTT-2.3.1-1] SUBSCRIBE ... MUST contain a non-zero 16-bit Packet Identifier.
	if p.PacketID == 0 {
		c.violation("MQTT-2.3.1-1", 0, "packet identifier 0")
	}
	// [MQTT-3.8.3-3] The payload of a SUBSCRIBE packet MUST contain at least
	// one Topic Filter / QoS pair.
	if len(p.Subscriptions) == 0 {
		c.violation("MQTT-3.8.3-3", 2, "no topic filter")
	}
}

func (p *Subscribe) checkOne(c *checker, s Subscription, off int) {
	// [MQTT-3.8.3-1] The Topic Filters ... MUST be UTF-8 encoded strings.
	c.topicFilter(s.Filter, off)
	// [MQTT-3.8.3-4] The Server MUST treat a SUBSCRIBE packet as malformed ...
	// if any of Reserved bits in the payload are non-zero, or QoS is not 0,1 or 2.
	if s.QoS > 2 {
		c.violation("MQTT-3.8.3-4", off+2+len(s.Filter), "requested QoS byte 0x%02x (reserved bits or QoS 3)", s.QoS)
	}
}

func (p *Subscribe) decode(c *checker, body []byte) {
	p.Subscriptions = p.Subscriptions[:0] // reused by a Decoder
	var off int
	p.PacketID, off = c.uint16At(body, 0, "packet identifier")
	for off < len(body) && !c.failed() {
		start := off
		var s Subscription
		var ok bool
		s.Filter, off, ok = prefixed(body, off)
		if !ok {
			s.Filter, off = c.lenPrefixedSlow(body, off, "topic filter")
		}
		if c.fatal {
			return
		}
		if off >= len(body) {
			c.malformed("MQTT-3.8.3", off, "topic filter without a requested QoS byte")
			return
		}
		s.QoS = body[off]
		off++
		if s.QoS > 2 || !plainFilter(s.Filter) { // checkOne has something to say
			p.checkOne(c, s, start)
		}
		p.Subscriptions = append(p.Subscriptions, s)
	}
	if len(p.Subscriptions) == 0 {
		p.Subscriptions = nil // as a fresh decoding has it
	}
	if !c.fatal {
		p.checkCommon(c)
	}
}
