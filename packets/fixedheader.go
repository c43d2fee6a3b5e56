package packets

import "fmt"

// MaxRemainingLength is the largest remaining length four bytes can encode
// (MQTT 3.1.1 §2.2.3).
const MaxRemainingLength = 268_435_455

// readFixedHeader reads the first byte and the remaining length of the
// packet at the start of b. It returns the remaining length and the size of
// the fixed header. A short b gives a *ShortBufferError; a remaining length
// longer than four bytes gives a malformed *ProtocolError.
func readFixedHeader(b []byte) (rem uint32, hdrLen int, err error) {
	if len(b) < 2 {
		return 0, 0, &ShortBufferError{Need: 2 - len(b)}
	}
	var shift uint
	for i := 1; ; i++ {
		if i >= len(b) {
			return 0, 0, &ShortBufferError{Need: 1}
		}
		c := b[i]
		rem |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return rem, i + 1, nil
		}
		if i == 4 {
			// §2.2.3: "The maximum number of bytes in the Remaining Length field is four."
			return 0, 0, &ProtocolError{Clause: "MQTT-2.2.3", Type: Type(b[0] >> 4), Offset: 4,
				Msg: "remaining length continues past 4 bytes", Err: ErrMalformed}
		}
		shift += 7
	}
}

// PacketLength reports the total length of the packet at the start of b
// (fixed header included) once its fixed header is complete, without
// decoding the body. It is what a stream reader needs to frame packets.
func PacketLength(b []byte) (int, error) {
	rem, hdr, err := readFixedHeader(b)
	if err != nil {
		return 0, err
	}
	return hdr + int(rem), nil
}

// checker collects rule breaks while decoding (or validating for encoding).
type checker struct {
	typ      Type
	base     int  // offset of the body within the packet
	lenient  bool // collect violations instead of failing
	encoding bool // validating a packet we are about to encode
	err      error
	fatal    bool // err is a malformation, not a rule violation
	viol     []*ProtocolError
}

// violation records a broken rule at body offset off (negative offsets reach
// into the fixed header).
func (c *checker) violation(clause string, off int, format string, args ...any) {
	e := &ProtocolError{Clause: clause, Type: c.typ, Offset: c.base + off, Msg: fmt.Sprintf(format, args...), Err: ErrProtocolViolation}
	if c.lenient && !c.encoding {
		c.viol = append(c.viol, e)
		return
	}
	if c.err == nil {
		c.err = e
	}
}

// remainingLength is the body offset of the Remaining Length field (packet
// offset 1), for errors about the size of the body.
func (c *checker) remainingLength() int { return 1 - c.base }

// malformed records a packet that cannot be parsed; it is fatal in every mode.
func (c *checker) malformed(clause string, off int, format string, args ...any) {
	if c.fatal {
		return
	}
	c.err = &ProtocolError{Clause: clause, Type: c.typ, Offset: c.base + off, Msg: fmt.Sprintf(format, args...), Err: ErrMalformed}
	c.fatal = true
}

// failed reports whether decoding must stop.
func (c *checker) failed() bool { return c.fatal || (c.err != nil && !c.lenient) }
