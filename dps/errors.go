package dps

import (
	"errors"
	"strconv"
	"strings"
)

// Category sentinels. Every *Error returned by this package unwraps to exactly
// one of them, so callers can branch with errors.Is.
var (
	ErrInvalidUsername       = errors.New("dps: invalid username")
	ErrInvalidRegistrationID = errors.New("dps: invalid registration id")
	ErrInvalidKey            = errors.New("dps: invalid symmetric key")
	ErrInvalidSASToken       = errors.New("dps: invalid SAS token")
	ErrSignatureMismatch     = errors.New("dps: SAS signature mismatch")
	ErrTokenExpired          = errors.New("dps: SAS token expired")
	ErrResourceMismatch      = errors.New("dps: SAS resource mismatch")
	ErrInvalidTopic          = errors.New("dps: invalid topic")
	ErrInvalidPayload        = errors.New("dps: invalid payload")
)

// ErrRIDWithoutDollar is the topic typo "?rid=" (no "$") in place of
// "?$rid=". It wraps ErrInvalidTopic, so errors.Is matches both.
var ErrRIDWithoutDollar = &sentinel{msg: `dps: "rid" without "$" in topic`, parent: ErrInvalidTopic}

// sentinel is a category error that is itself a sub-category of parent.
type sentinel struct {
	msg    string
	parent error
}

func (s *sentinel) Error() string { return s.msg }
func (s *sentinel) Unwrap() error { return s.parent }

// redacted replaces secret values (keys, signatures) in an Error's Value.
const redacted = "[redacted]"

// Error describes why a DPS value was rejected.
//
// Field names the element ("username", "sas.sig", "topic", "body", …), Value
// holds the offending input (redacted for secrets; it is not part of the
// Error() text), Offset is the byte offset into the parsed input or -1 when
// none applies, Msg says what is wrong and Err is the category sentinel.
type Error struct {
	Field  string
	Value  string
	Offset int
	Msg    string
	Err    error
}

var _ error = (*Error)(nil)

// Error formats as "dps: <field> @<offset>: <msg>", e.g.
// "dps: username @12: api-version missing". The "@offset" part is left out
// when Offset is negative.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("dps: ")
	b.WriteString(e.Field)
	if e.Offset >= 0 {
		b.WriteString(" @")
		b.WriteString(strconv.Itoa(e.Offset))
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the category sentinel.
func (e *Error) Unwrap() error { return e.Err }

func newError(category error, field, value string, offset int, msg string) *Error {
	return &Error{Field: field, Value: value, Offset: offset, Msg: msg, Err: category}
}

// shift moves err's offset by delta and renames its field, for errors produced
// on a substring (a registration id inside a username): Value becomes the
// whole input, so that Offset still points into it. Other errors pass
// through.
func shift(err error, field, value string, category error, delta int) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	c := *e
	c.Field = field
	c.Value = value
	if c.Offset >= 0 {
		c.Offset += delta
	}
	c.Msg = e.Field + ": " + e.Msg
	c.Err = category
	return &c
}
