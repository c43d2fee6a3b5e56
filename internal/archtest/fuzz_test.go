package archtest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCIFuzzesEveryTarget keeps .ci/run's fuzz list complete: every
// "func FuzzX(f *testing.F)" in the module must appear there as a
// "fuzz ./pkg/ FuzzX N" line, so a new decoder cannot land unfuzzed in CI
// and a removed target cannot leave a line that fuzzes nothing.
func TestCIFuzzesEveryTarget(t *testing.T) {
	root := filepath.Join("..", "..")
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*fuzz (\./\S*?)/? (Fuzz\w+) \d+$`).FindAllStringSubmatch(string(ci), -1) {
		listed[strings.TrimPrefix(m[1], "./")+" "+m[2]] = true
	}
	// The dps targets are fuzzed by a loop over their names.
	for _, m := range regexp.MustCompile(`for target in ([^;]+); do\s+fuzz \./(\S+?)/? "\$target"`).FindAllStringSubmatch(string(ci), -1) {
		for _, name := range strings.Fields(m[1]) {
			listed[m[2]+" "+name] = true
		}
	}

	decl := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(f \*testing\.F\)`)
	found := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		for _, m := range decl.FindAllStringSubmatch(string(src), -1) {
			found[filepath.ToSlash(rel)+" "+m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) == 0 {
		t.Fatal("found no fuzz targets in the module: the walk is broken")
	}
	for k := range found {
		if !listed[k] {
			t.Errorf("fuzz target %s is not run by .ci/run: add a line \"fuzz ./%s/ %s N\"", k, strings.Fields(k)[0], strings.Fields(k)[1])
		}
	}
	for k := range listed {
		if !found[k] {
			t.Errorf(".ci/run fuzzes %s, which does not exist", k)
		}
	}
}
