package packets

// §3.6 PUBREL – Publish release (QoS 2 publish received, part 2).

// Pubrel is the PUBREL control packet (MQTT 3.1.1 §3.6).
type Pubrel struct {
	PacketID uint16
}

// Type returns TypePubrel.
func (*Pubrel) Type() Type { return TypePubrel }

func (*Pubrel) flags() byte { return requiredFlags[TypePubrel] }

// Len returns the encoded length (always 4).
func (*Pubrel) Len() int { return 4 }

// Append appends the encoding of p to b.
func (p *Pubrel) Append(b []byte) ([]byte, error) {
	return appendIDPacket(b, TypePubrel, p.PacketID), nil
}

// Clone returns a copy of p.
func (p *Pubrel) Clone() Packet { q := *p; return &q }

func (p *Pubrel) String() string { return idString(TypePubrel, p.PacketID) }

func (*Pubrel) bodyLen() int                 { return 2 }
func (p *Pubrel) appendBody(b []byte) []byte { return appendPacketID(b, p.PacketID) }
