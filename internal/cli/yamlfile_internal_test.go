package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestJSONSyntaxError: a config written as JSON gets the line and column
// (in characters) of the byte where its syntax breaks; YAML and valid
// JSON get nothing from it (yaml.v3's own message stands).
func TestJSONSyntaxError(t *testing.T) {
	for _, tc := range []struct {
		in        string
		line, col int
		msg       string
		ok        bool
	}{
		{`{"a": 1,, "b": 2}`, 1, 9, "invalid character ','", true},
		{"{\n  \"é\": \"ü\",\n  ]\n}", 3, 3, "invalid character ']'", true},
		{"  [1, 2", 1, 8, "the file ends inside a JSON value", true},
		{"{}\n{}", 2, 1, "invalid character '{' after top-level value", true},
		{`{"a": 1}`, 0, 0, "", false},
		{"a: [1,,]", 0, 0, "", false},
		{"", 0, 0, "", false},
	} {
		line, col, msg, ok := jsonSyntaxError([]byte(tc.in))
		if ok != tc.ok || line != tc.line || col != tc.col || !strings.HasPrefix(msg, tc.msg) {
			t.Errorf("%q: %d:%d %q %v, want %d:%d %q… %v", tc.in, line, col, msg, ok, tc.line, tc.col, tc.msg, tc.ok)
		}
	}
}

// TestReadInputFileLimit: a --config or --product that is not a small
// YAML file (a capture given by mistake) is refused, naming the flag,
// before it is read whole (a 300 MB file took 7 s to be refused as "not a
// target file").
func TestReadInputFileLimit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(p, make([]byte, maxInputFile+1), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := readInputFile("--config", p)
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "--config: "+p+": larger than") {
		t.Errorf("got %v, want a usage error naming --config and the file", err)
	}
	if err := os.WriteFile(p, make([]byte, maxInputFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := readInputFile("--config", p); err != nil || len(b) != maxInputFile {
		t.Errorf("a file of exactly the limit: %d bytes, %v", len(b), err)
	}
}
