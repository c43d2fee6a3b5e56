package reports

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRelative: capture paths become relative to the results directory
// whether either is given relative or absolute, so the HTML report's links
// work; a path outside it is kept as it is.
func TestRelative(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(wd, "out")
	for _, tc := range []struct{ dir, path, want string }{
		{abs, filepath.Join(abs, "pcaps", "001-X.pcapng"), "pcaps/001-X.pcapng"},
		{abs, filepath.Join("out", "pcaps", "001-X.pcapng"), "pcaps/001-X.pcapng"},
		{"out", filepath.Join(abs, "pcaps", "001-X.pcapng"), "pcaps/001-X.pcapng"},
		{abs, "/elsewhere/x.pcapng", "/elsewhere/x.pcapng"},
		{"", "out/pcaps/x.pcapng", "out/pcaps/x.pcapng"},
	} {
		if got := relative(tc.dir, tc.path); got != tc.want {
			t.Errorf("relative(%q, %q) = %q, want %q", tc.dir, tc.path, got, tc.want)
		}
	}
}

// TestFormatSeconds: the times of the sequence diagram and the timing
// chart's axis, which starts at 0.
func TestFormatSeconds(t *testing.T) {
	for _, tc := range []struct {
		t    float64
		want string
	}{
		{0, "0 s"}, {0.0125, "12.500 ms"}, {1, "1.000 s"}, {61.5, "61.500 s"},
	} {
		if got := formatSeconds(tc.t); got != tc.want {
			t.Errorf("formatSeconds(%v) = %q, want %q", tc.t, got, tc.want)
		}
	}
}
