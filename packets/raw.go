package packets

// Raw is a packet given as bytes, for sending what the typed packets refuse
// to encode: reserved types and flags, truncated or padded bodies, a
// remaining length that disagrees with the body. Decode returns a *Raw (in
// lenient mode) for the reserved packet types 0 and 15.
type Raw struct {
	// Header is the whole first byte: type << 4 | flags.
	Header byte
	// Body is everything after the remaining length.
	Body []byte
	// RemainingLength, when non-nil, is written verbatim instead of the
	// encoding of len(Body), e.g. {0xff, 0xff, 0xff, 0xff, 0x7f}.
	RemainingLength []byte
}

// Type returns the type in the high nibble of Header.
func (p *Raw) Type() Type { return Type(p.Header >> 4) }

func (p *Raw) flags() byte { return p.Header & 0x0f }

// Len returns the encoded length.
func (p *Raw) Len() int {
	if p.RemainingLength != nil {
		return 1 + len(p.RemainingLength) + len(p.Body)
	}
	return packetLen(p)
}

// Append appends the bytes of p. Raw packets are never validated.
func (p *Raw) Append(b []byte) ([]byte, error) { return appendPacket(b, p) }

// Clone returns a deep copy of p.
func (p *Raw) Clone() Packet {
	return &Raw{Header: p.Header, Body: cloneBytes(p.Body), RemainingLength: cloneBytes(p.RemainingLength)}
}

func (p *Raw) bodyLen() int               { return len(p.Body) }
func (p *Raw) appendBody(b []byte) []byte { return append(b, p.Body...) }

// ToRaw encodes p (under opt) and splits the bytes into a Raw, so a test can
// change one thing, e.g. r.Header |= 0x01 for a reserved flag.
func ToRaw(p Packet, opt EncodeOptions) (*Raw, error) {
	b, err := Encode(nil, p, opt)
	if err != nil {
		return nil, err
	}
	_, hdr, err := readFixedHeader(b)
	if err != nil {
		return nil, err
	}
	r := &Raw{Header: b[0], Body: b[hdr:]}
	if varintLen(uint32(len(r.Body))) != hdr-1 {
		r.RemainingLength = b[1:hdr]
	}
	return r, nil
}
