package dps

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// JSONErrorOffset is the byte offset in data, counted from 0 as every
// offset dps-conform reports, of what an encoding/json error is about:
// the bad byte of a *json.SyntaxError (whose Offset counts the bytes read,
// the bad one included), the first byte of the value of a
// *json.UnmarshalTypeError (whose Offset is the end of a scalar, or just
// past the '[' or '{' of an array or object), or len(data) when the input
// ran out. -1 for other errors.
func JSONErrorOffset(data []byte, err error) int {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		if se.Offset <= 0 || int(se.Offset) >= len(data) && strings.HasPrefix(se.Error(), "unexpected end") {
			return len(data)
		}
		return min(int(se.Offset)-1, len(data))
	case errors.As(err, &te):
		end := int(te.Offset)
		if end <= 0 || end > len(data) {
			return max(0, min(end, len(data)))
		}
		switch data[end-1] {
		case '[', '{':
			return end - 1
		case '"':
			for i := end - 2; i >= 0; i-- {
				if data[i] != '"' {
					continue
				}
				bs := 0
				for j := i - 1; j >= 0 && data[j] == '\\'; j-- {
					bs++
				}
				if bs%2 == 0 {
					return i
				}
			}
			return end
		}
		i := end // a number, true, false
		for i > 0 && strings.IndexByte("0123456789.+-eEtrufalsn", data[i-1]) >= 0 {
			i--
		}
		return i
	}
	return -1
}

// JSONTypeError describes a *json.UnmarshalTypeError in JSON's terms,
// never Go's: `member "a.b" is a JSON string where an integer was
// expected`, or, at the top level, `a JSON array where TOP was expected`.
func JSONTypeError(te *json.UnmarshalTypeError, top string) string {
	if te.Field == "" {
		kind, _, _ := strings.Cut(te.Value, " ")
		return fmt.Sprintf("a JSON %s where %s was expected", kind, top)
	}
	return fmt.Sprintf("member %q is a JSON %s where %s was expected", te.Field, te.Value, JSONWant(te.Type))
}

// JSONWant names what a value of Go type t reads, in JSON's terms: "an
// object", "an array", "a string", "an integer", ….
func JSONWant(t reflect.Type) string {
	if t == nil {
		return "another value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tu := reflect.TypeFor[encoding.TextUnmarshaler]()
	if t.Implements(tu) || reflect.PointerTo(t).Implements(tu) {
		return "a string"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "another value"
}
