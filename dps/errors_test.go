package dps

import (
	"errors"
	"testing"
)

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"with offset", &Error{Field: "username", Offset: 12, Msg: "api-version missing", Err: ErrInvalidUsername},
			"dps: username @12: api-version missing"},
		{"offset zero", &Error{Field: "topic", Offset: 0, Msg: "not a DPS request topic", Err: ErrInvalidTopic},
			"dps: topic @0: not a DPS request topic"},
		{"no offset", &Error{Field: "sas.se", Value: "1", Offset: -1, Msg: "expired", Err: ErrTokenExpired},
			"dps: sas.se: expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if !errors.Is(tt.err, tt.err.Err) {
				t.Errorf("errors.Is(err, %v) = false", tt.err.Err)
			}
		})
	}
}

func TestSentinelsDistinct(t *testing.T) {
	all := []error{ErrInvalidUsername, ErrInvalidRegistrationID, ErrInvalidKey, ErrInvalidSASToken,
		ErrSignatureMismatch, ErrTokenExpired, ErrResourceMismatch, ErrInvalidTopic, ErrInvalidPayload}
	for i, a := range all {
		for j, b := range all {
			if (i == j) != errors.Is(a, b) {
				t.Errorf("errors.Is(%v, %v) = %v", a, b, errors.Is(a, b))
			}
		}
	}
	if !errors.Is(ErrRIDWithoutDollar, ErrInvalidTopic) {
		t.Error("ErrRIDWithoutDollar does not match ErrInvalidTopic")
	}
	if errors.Is(ErrInvalidTopic, ErrRIDWithoutDollar) {
		t.Error("ErrInvalidTopic matches the narrower ErrRIDWithoutDollar")
	}
}

func TestShift(t *testing.T) {
	inner := newError(ErrInvalidRegistrationID, "registration id", "a!", 1, "bad")
	got := shift(inner, "username", "scope/reg/a!/x", ErrInvalidUsername, 10)
	var e *Error
	if !errors.As(got, &e) {
		t.Fatalf("shift returned %T", got)
	}
	if e.Offset != 11 || e.Field != "username" || e.Value != "scope/reg/a!/x" || e.Value[e.Offset] != '!' || !errors.Is(got, ErrInvalidUsername) {
		t.Errorf("shift = %+v", e)
	}
	if want := "dps: username @11: registration id: bad"; got.Error() != want {
		t.Errorf("Error() = %q, want %q", got.Error(), want)
	}
	if inner.Offset != 1 {
		t.Error("shift modified its input")
	}
	plain := errors.New("x")
	if shift(plain, "f", "v", ErrInvalidUsername, 1) != plain {
		t.Error("shift changed a non-*Error")
	}
}
