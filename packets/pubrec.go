package packets

// §3.5 PUBREC – Publish received (QoS 2 publish received, part 1).

// Pubrec is the PUBREC control packet (MQTT 3.1.1 §3.5).
type Pubrec struct {
	PacketID uint16
}

// Type returns TypePubrec.
func (*Pubrec) Type() Type { return TypePubrec }

func (*Pubrec) flags() byte { return requiredFlags[TypePubrec] }

// Len returns the encoded length (always 4).
func (*Pubrec) Len() int { return 4 }

// Append appends the encoding of p to b.
func (p *Pubrec) Append(b []byte) ([]byte, error) {
	return appendIDPacket(b, TypePubrec, p.PacketID), nil
}

// Clone returns a copy of p.
func (p *Pubrec) Clone() Packet { q := *p; return &q }

func (p *Pubrec) String() string { return idString(TypePubrec, p.PacketID) }

func (*Pubrec) bodyLen() int                 { return 2 }
func (p *Pubrec) appendBody(b []byte) []byte { return appendPacketID(b, p.PacketID) }
