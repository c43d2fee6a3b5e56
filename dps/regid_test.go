package dps

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateRegistrationID(t *testing.T) {
	valid := []string{
		"a",
		"myRegistrationId",
		"sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
		"paho-sample-device1",
		"dev:1.2_3-x",
		"-", // start/end rules are not enforced (§11.9)
		strings.Repeat("z", 128),
	}
	for _, id := range valid {
		if err := ValidateRegistrationID(id); err != nil {
			t.Errorf("ValidateRegistrationID(%q) = %v", id, err)
		}
	}

	invalid := []struct {
		id      string
		off     int
		wantMsg string
	}{
		{"", 0, "dps: registration id @0: empty"},
		{strings.Repeat("z", 129), 128, "dps: registration id @128: longer than 128 characters (129 bytes)"},
		{"dev/1", 3, `dps: registration id @3: invalid character '/' (U+002F); allowed: letters, digits, - . _ :`},
		{"dev 1", 3, `dps: registration id @3: invalid character ' ' (U+0020); allowed: letters, digits, - . _ :`},
		{"dév", 1, `dps: registration id @1: invalid character 'é' (U+00E9); allowed: letters, digits, - . _ :`},
		{"ab\xff", 2, `dps: registration id @2: invalid character byte 0xff; allowed: letters, digits, - . _ :`},
		{"a%2f", 1, `dps: registration id @1: invalid character '%' (U+0025); allowed: letters, digits, - . _ :`},
		{"a&b", 1, `dps: registration id @1: invalid character '&' (U+0026); allowed: letters, digits, - . _ :`},
	}
	for _, tt := range invalid {
		err := ValidateRegistrationID(tt.id)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("ValidateRegistrationID(%q) = %v, want *Error", tt.id, err)
			continue
		}
		if !errors.Is(err, ErrInvalidRegistrationID) || e.Offset != tt.off || err.Error() != tt.wantMsg {
			t.Errorf("ValidateRegistrationID(%q) = %q (offset %d), want %q (offset %d)", tt.id, err, e.Offset, tt.wantMsg, tt.off)
		}
	}
}

func TestEqualRegistrationID(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"myRegistrationId", "myregistrationid", true},
		{"MYREGISTRATIONID", "myRegistrationId", true},
		{"dev-1", "dev-1", true},
		{"dev-1", "dev-2", false},
		{"dev", "dev1", false},
		{"", "", true},
		{"k", "\u212a", false}, // Kelvin sign: only ASCII folds
		{"[", "{", false},      // '[' + 0x20 == '{' but neither is a letter
	}
	for _, tt := range tests {
		if got := EqualRegistrationID(tt.a, tt.b); got != tt.want {
			t.Errorf("EqualRegistrationID(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
