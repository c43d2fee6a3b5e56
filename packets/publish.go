package packets

import "encoding/binary"

// §3.3 PUBLISH – Publish message.

// Publish is the PUBLISH control packet (MQTT 3.1.1 §3.3). Topic and Payload
// of a decoded Publish alias the decoder's input.
type Publish struct {
	Dup    bool
	QoS    byte // 0, 1 or 2; 3 is a violation [MQTT-3.3.1-4]
	Retain bool
	Topic  []byte
	// PacketID is present on the wire only when QoS > 0.
	PacketID uint16
	Payload  []byte
}

// Type returns TypePublish.
func (*Publish) Type() Type { return TypePublish }

func (p *Publish) flags() byte {
	f := (p.QoS & 0x03) << 1
	if p.Dup {
		f |= 0x08
	}
	if p.Retain {
		f |= 0x01
	}
	return f
}

// Len returns the encoded length.
func (p *Publish) Len() int { return packetLen(p) }

// Append appends the encoding of p to b.
func (p *Publish) Append(b []byte) ([]byte, error) {
	// A packet with nothing for validate to report (QoS 0-2, no DUP at QoS 0,
	// an identifier at QoS 1-2, a plain topic) is written at once; anything
	// else goes through Encode.
	n := p.bodyLen()
	plain := p.QoS <= 2 && (p.QoS != 0 || !p.Dup) && (p.QoS == 0 || p.PacketID != 0) &&
		len(p.Topic) > 0 && len(p.Topic) <= MaxStringLength && plainTopic(p.Topic)
	if !plain || n > MaxRemainingLength {
		return appendPacket(b, p)
	}
	return p.appendBody(appendHeader(b, byte(TypePublish)<<4|p.flags(), n)), nil
}

// Clone returns a deep copy of p.
func (p *Publish) Clone() Packet {
	q := *p
	q.Topic = cloneBytes(p.Topic)
	q.Payload = cloneBytes(p.Payload)
	return &q
}

func (p *Publish) bodyLen() int {
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS&0x03 != 0 {
		n += 2
	}
	return n
}

func (p *Publish) appendBody(b []byte) []byte {
	b = appendString(b, p.Topic)
	if p.QoS&0x03 != 0 {
		b = binary.BigEndian.AppendUint16(b, p.PacketID)
	}
	return append(b, p.Payload...)
}

func (p *Publish) validate(c *checker) {
	c.checkEncodable(p.Topic, "topic name")
	if p.QoS > 3 {
		c.malformed("MQTT-3.3.1-4", -c.base, "QoS %d does not fit in two bits", p.QoS)
	}
	p.check(c, 2+len(p.Topic))
}

func (p *Publish) check(c *checker, idOff int) {
	// [MQTT-3.3.1-4] A PUBLISH Packet MUST NOT have both QoS bits set to 1.
	if p.QoS == 3 {
		c.violation("MQTT-3.3.1-4", -c.base, "QoS 3 (both QoS bits set)")
	}
	// [MQTT-3.3.1-2] The DUP flag MUST be set to 0 for all QoS 0 messages.
	if p.QoS == 0 && p.Dup {
		c.violation("MQTT-3.3.1-2", -c.base, "DUP set on a QoS 0 message")
	}
	// [MQTT-3.3.2-1] The Topic Name MUST be present ... It MUST be a UTF-8 encoded string.
	if len(p.Topic) == 0 || !plainTopic(p.Topic) { // the fast path of topicName, without its call
		c.topicName(p.Topic, 0)
	}
	// [MQTT-2.3.1-1] ... PUBLISH (in cases where QoS > 0) Control Packets MUST
	// contain a non-zero 16-bit Packet Identifier.
	if p.QoS != 0 && p.PacketID == 0 {
		c.violation("MQTT-2.3.1-1", idOff, "packet identifier 0 on a QoS %d PUBLISH", p.QoS)
	}
}

func (p *Publish) decode(c *checker, flags byte, body []byte) {
	*p = Publish{}
	p.Dup = flags&0x08 != 0
	p.QoS = flags >> 1 & 0x03
	p.Retain = flags&0x01 != 0
	var off int
	var ok bool
	p.Topic, off, ok = prefixed(body, 0)
	if !ok {
		p.Topic, off = c.lenPrefixedSlow(body, 0, "topic name")
	}
	idOff := off
	if p.QoS != 0 && !c.fatal {
		p.PacketID, off = c.uint16At(body, off, "packet identifier")
	}
	if c.fatal {
		return
	}
	p.Payload = body[off:len(body):len(body)]
	p.check(c, idOff)
}
