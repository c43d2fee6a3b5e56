package packets

// §3.12 PINGREQ – PING request.

// Pingreq is the PINGREQ control packet (MQTT 3.1.1 §3.12). It has no fields.
type Pingreq struct{}

// Type returns TypePingreq.
func (*Pingreq) Type() Type { return TypePingreq }

func (*Pingreq) flags() byte { return 0 }

// Len returns the encoded length (always 2).
func (*Pingreq) Len() int { return 2 }

// Append appends the encoding of p to b.
func (p *Pingreq) Append(b []byte) ([]byte, error) { return appendEmptyPacket(b, TypePingreq), nil }

// Clone returns a copy of p.
func (*Pingreq) Clone() Packet { return &Pingreq{} }

func (*Pingreq) bodyLen() int               { return 0 }
func (*Pingreq) appendBody(b []byte) []byte { return b }
