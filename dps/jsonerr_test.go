package dps

import (
	"encoding/json"
	"errors"
	"testing"
)

// TestJSONErrorOffset: the offset counts from 0 and points at the bad
// byte or at the first byte of the value of the wrong type, whatever
// encoding/json's own Offset counts; the text names JSON's types.
func TestJSONErrorOffset(t *testing.T) {
	type doc struct {
		Tool struct{ Name string } `json:"tool"`
		N    []int                 `json:"n"`
		B    uint8                 `json:"b"`
		S    string                `json:"s"`
	}
	for _, tc := range []struct {
		in   string
		off  int
		text string // JSONTypeError, "" for a syntax error
	}{
		{`[1,2]`, 0, "a JSON array where a document was expected"},
		{`  "abc"`, 2, "a JSON string where a document was expected"},
		{`{"tool": 5}`, 9, `member "tool" is a JSON number where an object was expected`},
		{`{"n": "x\"y"}`, 6, `member "n" is a JSON string where an array was expected`},
		{`{"n": "x\\"}`, 6, `member "n" is a JSON string where an array was expected`},
		{`{"tool": {"Name": 7}}`, 18, `member "tool.Name" is a JSON number where a string was expected`},
		{`{"n": [1, "a"]}`, 10, `member "n" is a JSON string where an integer was expected`},
		{`{"n": [1, [2]]}`, 10, `member "n" is a JSON array where an integer was expected`},
		{`{"n": {"a":1}}`, 6, `member "n" is a JSON object where an array was expected`},
		{`{"b": 300}`, 6, `member "b" is a JSON number 300 where a non-negative integer was expected`},
		{`{"s": true}`, 6, `member "s" is a JSON bool where a string was expected`},
		{`{"s": -1.5e3}`, 6, `member "s" is a JSON number where a string was expected`},
		{`{"s": false}`, 6, `member "s" is a JSON bool where a string was expected`},
		{`{"tool" 5}`, 8, ""},
		{`{x`, 1, ""},
		{`{"tool": `, 9, ""},
		{`{} x`, 3, ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var d doc
			b := []byte(tc.in)
			err := json.Unmarshal(b, &d)
			if err == nil {
				t.Fatal("no error")
			}
			if got := JSONErrorOffset(b, err); got != tc.off {
				t.Errorf("JSONErrorOffset = %d, want %d (%v)", got, tc.off, err)
			}
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) != (tc.text != "") {
				t.Fatalf("err = %v (%T)", err, err)
			}
			if te != nil {
				if got := JSONTypeError(te, "a document"); got != tc.text {
					t.Errorf("JSONTypeError = %q, want %q", got, tc.text)
				}
			}
		})
	}
	if got := JSONErrorOffset(nil, errors.New("other")); got != -1 {
		t.Errorf("JSONErrorOffset(other) = %d, want -1", got)
	}
}
