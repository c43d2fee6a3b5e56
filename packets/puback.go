package packets

// §3.4 PUBACK – Publish acknowledgement (QoS 1).

// Puback is the PUBACK control packet (MQTT 3.1.1 §3.4).
type Puback struct {
	PacketID uint16
}

// Type returns TypePuback.
func (*Puback) Type() Type { return TypePuback }

func (*Puback) flags() byte { return requiredFlags[TypePuback] }

// Len returns the encoded length (always 4).
func (*Puback) Len() int { return 4 }

// Append appends the encoding of p to b.
func (p *Puback) Append(b []byte) ([]byte, error) {
	return appendIDPacket(b, TypePuback, p.PacketID), nil
}

// Clone returns a copy of p.
func (p *Puback) Clone() Packet { q := *p; return &q }

func (p *Puback) String() string { return idString(TypePuback, p.PacketID) }

func (*Puback) bodyLen() int                 { return 2 }
func (p *Puback) appendBody(b []byte) []byte { return appendPacketID(b, p.PacketID) }
