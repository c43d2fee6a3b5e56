package packets

// §3.11 UNSUBACK – Unsubscribe acknowledgement.

// Unsuback is the UNSUBACK control packet (MQTT 3.1.1 §3.11).
type Unsuback struct {
	PacketID uint16
}

// Type returns TypeUnsuback.
func (*Unsuback) Type() Type { return TypeUnsuback }

func (*Unsuback) flags() byte { return requiredFlags[TypeUnsuback] }

// Len returns the encoded length (always 4).
func (*Unsuback) Len() int { return 4 }

// Append appends the encoding of p to b.
func (p *Unsuback) Append(b []byte) ([]byte, error) {
	return appendIDPacket(b, TypeUnsuback, p.PacketID), nil
}

// Clone returns a copy of p.
func (p *Unsuback) Clone() Packet { q := *p; return &q }

func (p *Unsuback) String() string { return idString(TypeUnsuback, p.PacketID) }

func (*Unsuback) bodyLen() int                 { return 2 }
func (p *Unsuback) appendBody(b []byte) []byte { return appendPacketID(b, p.PacketID) }
