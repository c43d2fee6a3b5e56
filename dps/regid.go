package dps

import (
	"fmt"
	"unicode/utf8"
)

// MaxRegistrationIDLen is the longest registration id DPS accepts, in bytes
// (all allowed characters are ASCII).
//
// DPS-PROTOCOL.md Part A §11; §8 (D-TERMS "up to 128 characters long").
const MaxRegistrationIDLen = 128

// ValidateRegistrationID reports whether id is a valid registration id: 1 to
// 128 characters of ASCII letters, digits and "- . _ :".
//
// The rules on the first and last character (D-TERMS: last must be
// alphanumeric or "-"; SPEC: no special character at either end) disagree,
// so they are not enforced (DPS-PROTOCOL.md §11.9, Part A §11).
//
// The returned *Error names the byte offset and the offending character.
func ValidateRegistrationID(id string) error {
	const field = "registration id"
	// Part A §11: "1 to 128 characters of letters, digits and - . _ :".
	if id == "" {
		return newError(ErrInvalidRegistrationID, field, id, 0, "empty")
	}
	for i := 0; i < len(id); i++ {
		if i == MaxRegistrationIDLen {
			return newError(ErrInvalidRegistrationID, field, id, i,
				fmt.Sprintf("longer than %d characters (%d bytes)", MaxRegistrationIDLen, len(id)))
		}
		if c := id[i]; !isRegIDByte(c) {
			return newError(ErrInvalidRegistrationID, field, id, i,
				"invalid character "+describeChar(id[i:])+"; allowed: letters, digits, - . _ :")
		}
	}
	return nil
}

// describeChar names the first character of s for an error message: the
// quoted rune and its code point, or the byte value when s is not UTF-8.
func describeChar(s string) string {
	r, size := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && size <= 1 {
		if s == "" {
			return "end of input"
		}
		return fmt.Sprintf("byte 0x%02x", s[0])
	}
	return fmt.Sprintf("%q (%U)", r, r)
}

func isRegIDByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '-', c == '.', c == '_', c == ':':
		return true
	}
	return false
}

// EqualRegistrationID reports whether a and b name the same registration:
// registration ids are compared case-insensitively (ASCII case folding only,
// since valid ids are ASCII).
//
// DPS-PROTOCOL.md Part A §11; §4.5 (SPEC models.tsp "case-insensitive
// string").
func EqualRegistrationID(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}
