package packets

// §3.13 PINGRESP – PING response.

// Pingresp is the PINGRESP control packet (MQTT 3.1.1 §3.13). It has no fields.
type Pingresp struct{}

// Type returns TypePingresp.
func (*Pingresp) Type() Type { return TypePingresp }

func (*Pingresp) flags() byte { return 0 }

// Len returns the encoded length (always 2).
func (*Pingresp) Len() int { return 2 }

// Append appends the encoding of p to b.
func (p *Pingresp) Append(b []byte) ([]byte, error) { return appendEmptyPacket(b, TypePingresp), nil }

// Clone returns a copy of p.
func (*Pingresp) Clone() Packet { return &Pingresp{} }

func (*Pingresp) bodyLen() int               { return 0 }
func (*Pingresp) appendBody(b []byte) []byte { return b }
