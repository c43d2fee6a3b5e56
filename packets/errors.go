package packets

import (
	"errors"
	"fmt"
	"strings"
)

// Category sentinels. Every *ProtocolError unwraps to exactly one of them, so
// callers can branch with errors.Is without knowing individual clauses.
var (
	// ErrMalformed: the bytes cannot be parsed as the packet they claim to be
	// (a length runs past its packet, a remaining length of more than four
	// bytes, a body of the wrong size). Fatal in strict and lenient mode.
	ErrMalformed = errors.New("mqtt: malformed packet")
	// ErrProtocolViolation: the packet parses but breaks a normative rule of
	// MQTT 3.1.1 (reserved flags, QoS 3, bad UTF-8, packet identifier 0, ...).
	// Fatal in strict mode; collected as a Violation in lenient mode.
	ErrProtocolViolation = errors.New("mqtt: protocol violation")
	// ErrTooLarge: the packet exceeds DecodeOptions.MaxPacketSize.
	ErrTooLarge = errors.New("mqtt: packet too large")
	// ErrShortBuffer: the input ends before the packet does. It is never a
	// *ProtocolError; the concrete error is a *ShortBufferError saying how
	// many more bytes are needed at least.
	ErrShortBuffer = errors.New("mqtt: short buffer")
	// ErrInvalidPacket is returned by the encoder when a packet breaks a
	// rule and EncodeOptions.AllowInvalid is not set. It wraps the
	// *ProtocolError describing the rule.
	ErrInvalidPacket = errors.New("mqtt: invalid packet for encoding")
)

// ProtocolError reports a packet that breaks the MQTT 3.1.1 standard, with the
// normative statement it breaks.
//
// Clause is the OASIS normative statement ID ("MQTT-3.1.2-3") or, where the
// standard states a format rule in section text without a numbered statement,
// the section ("MQTT-3.2.2.1": dotted, no dash). Offset is the byte offset of
// the offending field from the first byte of the packet (the fixed header).
type ProtocolError struct {
	Clause string
	Type   Type
	Offset int
	Msg    string
	Err    error // ErrMalformed, ErrProtocolViolation or ErrTooLarge
}

var _ error = (*ProtocolError)(nil)

func (e *ProtocolError) Error() string {
	var b strings.Builder
	b.WriteString("mqtt: ")
	b.WriteString(e.Type.String())
	fmt.Fprintf(&b, " @%d: %s", e.Offset, e.Msg)
	if e.Clause != "" {
		b.WriteString(" [")
		b.WriteString(e.Clause)
		b.WriteString("]")
	}
	return b.String()
}

// Unwrap returns the category sentinel.
func (e *ProtocolError) Unwrap() error { return e.Err }

// Is reports whether target is a *ProtocolError with the same Clause, so that
// errors.Is(err, &ProtocolError{Clause: "MQTT-3.1.2-3"}) works.
func (e *ProtocolError) Is(target error) bool {
	t, ok := target.(*ProtocolError)
	return ok && t.Clause != "" && t.Clause == e.Clause
}

// Violation is one broken rule found while decoding in lenient mode.
type Violation = *ProtocolError

// Violations is returned, together with a non-nil packet, by lenient
// decoding when the packet parsed but broke rules. It unwraps to each
// violation, so errors.Is(err, ErrProtocolViolation) and errors.As(err,
// &pe) work on it.
type Violations []*ProtocolError

func (v Violations) Error() string {
	switch len(v) {
	case 0:
		return "mqtt: no violations"
	case 1:
		return v[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d violations: ", len(v))
	for i, e := range v {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap exposes every violation to errors.Is and errors.As.
func (v Violations) Unwrap() []error {
	errs := make([]error, len(v))
	for i, e := range v {
		errs[i] = e
	}
	return errs
}

// ShortBufferError reports input that ends inside a packet. Need is the
// least number of further bytes required before decoding can make progress:
// exact once the fixed header has been read; while it is incomplete, what
// its shortest form still lacks (2 for no input, 1 inside the remaining
// length).
type ShortBufferError struct {
	Need int
}

func (e *ShortBufferError) Error() string {
	return fmt.Sprintf("mqtt: short buffer: need %d more bytes", e.Need)
}

// Unwrap returns ErrShortBuffer.
func (e *ShortBufferError) Unwrap() error { return ErrShortBuffer }

// invalidPacketError is the encoder's refusal of a packet: it unwraps to
// ErrInvalidPacket and to the rule broken (a *ProtocolError), and says
// "mqtt:" once.
type invalidPacketError struct{ err error }

// invalidPacket wraps err, the rule a packet to encode breaks.
func invalidPacket(err error) error { return &invalidPacketError{err} }

func (e *invalidPacketError) Error() string {
	return ErrInvalidPacket.Error() + ": " + strings.TrimPrefix(e.err.Error(), "mqtt: ")
}

func (e *invalidPacketError) Unwrap() []error { return []error{ErrInvalidPacket, e.err} }
