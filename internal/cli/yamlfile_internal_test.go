package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
