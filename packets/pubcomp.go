package packets

// §3.7 PUBCOMP – Publish complete (QoS 2 publish received, part 3).

// Pubcomp is the PUBCOMP control packet (MQTT 3.1.1 §3.7).
type Pubcomp struct {
	PacketID uint16
}

// Type returns TypePubcomp.
func (*Pubcomp) Type() Type { return TypePubcomp }

func (*Pubcomp) flags() byte { return requiredFlags[TypePubcomp] }

// Len returns the encoded length (always 4).
func (*Pubcomp) Len() int { return 4 }

// Append appends the encoding of p to b.
func (p *Pubcomp) Append(b []byte) ([]byte, error) {
	return appendIDPacket(b, TypePubcomp, p.PacketID), nil
}

// Clone returns a copy of p.
func (p *Pubcomp) Clone() Packet { q := *p; return &q }

func (p *Pubcomp) String() string { return idString(TypePubcomp, p.PacketID) }

func (*Pubcomp) bodyLen() int                 { return 2 }
func (p *Pubcomp) appendBody(b []byte) []byte { return appendPacketID(b, p.PacketID) }
