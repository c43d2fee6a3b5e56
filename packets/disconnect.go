package packets

// §3.14 DISCONNECT – Disconnect notification.

// Disconnect is the DISCONNECT control packet (MQTT 3.1.1 §3.14). It has no fields.
type Disconnect struct{}

// Type returns TypeDisconnect.
func (*Disconnect) Type() Type { return TypeDisconnect }

func (*Disconnect) flags() byte { return 0 }

// Len returns the encoded length (always 2).
func (*Disconnect) Len() int { return 2 }

// Append appends the encoding of p to b.
func (p *Disconnect) Append(b []byte) ([]byte, error) {
	return appendEmptyPacket(b, TypeDisconnect), nil
}

// Clone returns a copy of p.
func (*Disconnect) Clone() Packet { return &Disconnect{} }

func (*Disconnect) bodyLen() int               { return 0 }
func (*Disconnect) appendBody(b []byte) []byte { return b }
