package packets

import "encoding/binary"

// §3.1 CONNECT – Client requests a connection to a Server.

// ProtocolName311 and ProtocolLevel311 identify MQTT 3.1.1 (§3.1.2.1, §3.1.2.2).
const (
	ProtocolName311         = "MQTT"
	ProtocolLevel311   byte = 4
	protocolNameMQIsdp      = "MQIsdp" // MQTT 3.1, level 3
)

// Connect is the CONNECT control packet (MQTT 3.1.1 §3.1).
//
// Optional payload fields are present exactly when they are non-nil: the
// encoder derives the Will, User Name and Password flags from WillTopic,
// Username and Password, and the decoder sets them to nil when the flag is 0
// (and to a non-nil, possibly empty, slice when it is 1). Byte-slice fields of
// a decoded Connect alias the decoder's input.
type Connect struct {
	ProtocolName  []byte // "MQTT"
	ProtocolLevel byte   // 4 for MQTT 3.1.1
	CleanSession  bool
	// Reserved is bit 0 of the Connect Flags; it must be false [MQTT-3.1.2-3].
	Reserved    bool
	KeepAlive   uint16 // seconds
	ClientID    []byte
	WillTopic   []byte // nil: Will Flag 0
	WillMessage []byte // binary; must be non-nil when WillTopic is
	WillQoS     byte
	WillRetain  bool
	Username    []byte // nil: User Name Flag 0
	Password    []byte // nil: Password Flag 0
}

// Type returns TypeConnect.
func (*Connect) Type() Type { return TypeConnect }

func (*Connect) flags() byte { return 0 }

// Len returns the encoded length.
func (p *Connect) Len() int { return packetLen(p) }

// Append appends the encoding of p to b.
func (p *Connect) Append(b []byte) ([]byte, error) { return appendPacket(b, p) }

// ConnectFlags returns the Connect Flags byte that p encodes to (§3.1.2.3).
func (p *Connect) ConnectFlags() byte {
	var f byte
	if p.Reserved {
		f |= 0x01
	}
	if p.CleanSession {
		f |= 0x02
	}
	if p.WillTopic != nil {
		f |= 0x04
	}
	f |= (p.WillQoS & 0x03) << 3
	if p.WillRetain {
		f |= 0x20
	}
	if p.Password != nil {
		f |= 0x40
	}
	if p.Username != nil {
		f |= 0x80
	}
	return f
}

func (p *Connect) bodyLen() int {
	n := 2 + len(p.ProtocolName) + 1 + 1 + 2 + 2 + len(p.ClientID)
	if p.WillTopic != nil {
		n += 2 + len(p.WillTopic) + 2 + len(p.WillMessage)
	}
	if p.Username != nil {
		n += 2 + len(p.Username)
	}
	if p.Password != nil {
		n += 2 + len(p.Password)
	}
	return n
}

func (p *Connect) appendBody(b []byte) []byte {
	b = appendString(b, p.ProtocolName)
	b = append(b, p.ProtocolLevel, p.ConnectFlags())
	b = binary.BigEndian.AppendUint16(b, p.KeepAlive)
	b = appendString(b, p.ClientID)
	if p.WillTopic != nil {
		b = appendString(b, p.WillTopic)
		b = appendString(b, p.WillMessage)
	}
	if p.Username != nil {
		b = appendString(b, p.Username)
	}
	if p.Password != nil {
		b = appendString(b, p.Password)
	}
	return b
}

// Clone returns a deep copy of p.
func (p *Connect) Clone() Packet {
	q := *p
	q.ProtocolName = cloneBytes(p.ProtocolName)
	q.ClientID = cloneBytes(p.ClientID)
	q.WillTopic = cloneBytes(p.WillTopic)
	q.WillMessage = cloneBytes(p.WillMessage)
	q.Username = cloneBytes(p.Username)
	q.Password = cloneBytes(p.Password)
	return &q
}

// validate checks a Connect about to be encoded; offsets are where the
// fields will be in the encoding.
func (p *Connect) validate(c *checker) {
	for _, f := range [...]struct {
		v    []byte
		name string
	}{{p.ProtocolName, "protocol name"}, {p.ClientID, "client identifier"}, {p.WillTopic, "will topic"},
		{p.WillMessage, "will message"}, {p.Username, "user name"}, {p.Password, "password"}} {
		c.checkEncodable(f.v, f.name)
	}
	if p.WillTopic == nil && p.WillMessage != nil {
		c.malformed("MQTT-3.1.2-11", 0, "will message set without a will topic")
	}
	if p.WillTopic != nil && p.WillMessage == nil {
		c.malformed("MQTT-3.1.2-9", 0, "will topic set without a will message (use an empty, non-nil slice)")
	}
	if p.WillQoS > 3 {
		c.malformed("MQTT-3.1.2-14", 0, "will QoS %d does not fit in two bits", p.WillQoS)
	}
	o := connectOffsets{flags: 2 + len(p.ProtocolName) + 1}
	o.clientID = o.flags + 3
	o.willTopic = o.clientID + 2 + len(p.ClientID)
	o.username = o.willTopic
	if p.WillTopic != nil {
		o.username += 2 + len(p.WillTopic) + 2 + len(p.WillMessage)
	}
	p.check(c, o)
}

// connectOffsets locates fields in the body, for error offsets.
type connectOffsets struct{ flags, clientID, willTopic, username int }

// checkHeader applies the rules of §3.1.2 to the variable header.
func (p *Connect) checkHeader(c *checker, o connectOffsets) {
	// [MQTT-3.1.2-2] The Server MUST respond ... with a CONNACK return code 0x01
	// (unacceptable protocol level) ... if the Protocol Level is not supported.
	// Checked first, so a strict decoder names the clause a server answers.
	if p.ProtocolLevel != ProtocolLevel311 {
		c.violation("MQTT-3.1.2-2", o.flags-1, "protocol level %d, want 4 (MQTT 3.1.1)", p.ProtocolLevel)
	}
	// [MQTT-3.1.2-1] If the protocol name is incorrect the Server MAY disconnect the Client.
	if string(p.ProtocolName) != ProtocolName311 {
		c.violation("MQTT-3.1.2-1", 0, "protocol name %q, want %q", p.ProtocolName, ProtocolName311)
	}
	// [MQTT-3.1.2-3] The Server MUST validate that the reserved flag in the
	// CONNECT Control Packet is set to zero.
	if p.Reserved {
		c.violation("MQTT-3.1.2-3", o.flags, "reserved connect flag (bit 0) must be 0")
	}
}

// check applies the rules of §3.1.2 and §3.1.3 to the decoded (or to be
// encoded) fields.
func (p *Connect) check(c *checker, o connectOffsets) {
	if p.ProtocolLevel != ProtocolLevel311 || p.Reserved || string(p.ProtocolName) != ProtocolName311 {
		p.checkHeader(c, o) // something to report
	}
	if p.WillTopic == nil {
		// [MQTT-3.1.2-13] If the Will Flag is set to 0, then the Will QoS MUST be set to 0.
		if p.WillQoS != 0 {
			c.violation("MQTT-3.1.2-13", o.flags, "will QoS %d with will flag 0", p.WillQoS)
		}
		// [MQTT-3.1.2-15] If the Will Flag is set to 0, then the Will Retain Flag MUST be set to 0.
		if p.WillRetain {
			c.violation("MQTT-3.1.2-15", o.flags, "will retain set with will flag 0")
		}
	} else {
		// [MQTT-3.1.2-14] ... the value of Will QoS ... MUST NOT be 3.
		if p.WillQoS == 3 {
			c.violation("MQTT-3.1.2-14", o.flags, "will QoS 3")
		}
		// [MQTT-3.1.3-10] The Will Topic MUST be a UTF-8 encoded string.
		c.utf8String(p.WillTopic, o.willTopic, "will topic")
		if len(p.WillTopic) == 0 {
			c.violation("MQTT-4.7.3-1", o.willTopic, "will topic is empty")
		}
		if i := indexWildcard(p.WillTopic); i >= 0 {
			c.violation("MQTT-3.3.2-2", o.willTopic+2+i, "will topic contains wildcard %q", p.WillTopic[i])
		}
	}
	// [MQTT-3.1.2-22] If the User Name Flag is set to 0, the Password Flag MUST be set to 0.
	if p.Username == nil && p.Password != nil {
		c.violation("MQTT-3.1.2-22", o.flags, "password flag set without user name flag")
	}
	// [MQTT-3.1.3-4] The ClientId MUST be a UTF-8 encoded string.
	if !plainText(p.ClientID) { // the fast path of utf8String, without its call
		c.utf8String(p.ClientID, o.clientID, "client identifier")
	}
	// [MQTT-3.1.3-7] If the Client supplies a zero-byte ClientId, the Client
	// MUST also set CleanSession to 1.
	if len(p.ClientID) == 0 && !p.CleanSession {
		c.violation("MQTT-3.1.3-7", o.clientID, "empty client identifier with CleanSession 0")
	}
	if p.Username != nil {
		// [MQTT-3.1.3-11] The User Name MUST be a UTF-8 encoded string.
		if !plainText(p.Username) {
			c.utf8String(p.Username, o.username, "user name")
		}
	}
}

func (p *Connect) decode(c *checker, body []byte) {
	// Every field is set below on the way to a decoded packet; the optional
	// ones are nil unless their flag is set. (A packet that fails to decode
	// is never returned, so a field left over from the previous packet
	// after an early return is never seen.)
	p.WillTopic, p.WillMessage, p.Username, p.Password = nil, nil, nil, nil
	var off int
	var ok bool
	p.ProtocolName, off, ok = prefixed(body, 0)
	if !ok {
		p.ProtocolName, off = c.lenPrefixedSlow(body, 0, "protocol name")
	}
	if c.fatal {
		return
	}
	if off+4 > len(body) {
		c.malformed("MQTT-3.1.2", off, "variable header needs 4 more bytes (level, flags, keep alive), %d left", len(body)-off)
		return
	}
	flagsOff := off + 1
	p.ProtocolLevel = body[off]
	f := body[flagsOff]
	p.Reserved = f&0x01 != 0
	p.CleanSession = f&0x02 != 0
	willFlag := f&0x04 != 0
	p.WillQoS = f >> 3 & 0x03
	p.WillRetain = f&0x20 != 0
	passwordFlag := f&0x40 != 0
	usernameFlag := f&0x80 != 0
	p.KeepAlive = binary.BigEndian.Uint16(body[off+2:])
	off += 4
	if p.ProtocolLevel != ProtocolLevel311 && p.ProtocolLevel != 3 {
		// Another protocol version (MQTT 5 adds properties here): the payload
		// cannot be read as 3.1.1. Levels 3 (MQTT 3.1, "MQIsdp") and 4 share
		// the 3.1.1 layout and are decoded, with violations where they differ.
		// It is malformed for this codec in both modes; the clause tells a
		// server to answer CONNACK 0x01 and a tracer to hand over to an
		// MQTT 5 decoder.
		c.malformed("MQTT-3.1.2-2", flagsOff-1, "protocol %q level %d cannot be decoded as MQTT 3.1.1", p.ProtocolName, p.ProtocolLevel)
		return
	}
	// [MQTT-3.1.3-1] These fields, if present, MUST appear in the order Client
	// Identifier, Will Topic, Will Message, User Name, Password.
	// [MQTT-3.1.3-3] The ClientId MUST be present and MUST be the first field.
	clientIDOff := off
	p.ClientID, off, ok = prefixed(body, off)
	if !ok {
		p.ClientID, off = c.lenPrefixedSlow(body, off, "client identifier")
	}
	willTopicOff := off
	if willFlag && !c.fatal {
		// [MQTT-3.1.2-9] ... the Will Topic and Will Message fields MUST be present in the payload.
		p.WillTopic, off = c.lenPrefixed(body, off, "will topic")
		if !c.fatal {
			p.WillMessage, off = c.lenPrefixed(body, off, "will message")
		}
	}
	usernameOff := off
	if usernameFlag && !c.fatal {
		// [MQTT-3.1.2-19] If the User Name Flag is set to 1, a user name MUST be present.
		p.Username, off, ok = prefixed(body, off)
		if !ok {
			p.Username, off = c.lenPrefixedSlow(body, off, "user name")
		}
	}
	if passwordFlag && !c.fatal {
		// [MQTT-3.1.2-21] If the Password Flag is set to 1, a password MUST be present.
		p.Password, off, ok = prefixed(body, off)
		if !ok {
			p.Password, off = c.lenPrefixedSlow(body, off, "password")
		}
	}
	if c.fatal {
		return
	}
	// [MQTT-3.1.2-18], [MQTT-3.1.2-20]: with a flag at 0 the field MUST NOT be present.
	c.trailing(body, off, "MQTT-3.1.3-1")
	if c.fatal {
		return
	}
	p.check(c, connectOffsets{flags: flagsOff, clientID: clientIDOff, willTopic: willTopicOff, username: usernameOff})
}
