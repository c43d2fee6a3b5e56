package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/internal/cli"
	"github.com/dps-conform/dps-conform/reports"
)

// runCLI runs dps-conform with args and returns the exit code and output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Main(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// resultsDir makes a results directory as "dps-conform run --out" leaves
// it, from a real results.json, and renders it with "report render".
func resultsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	rj, err := os.ReadFile(filepath.Join("..", "..", "reports", "testdata", "results-grant-qos2.json"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"results.json":                 string(rj),
		"ginkgo-report.json":           `[{"SuitePath":"/x","SuiteDescription":"dps-conform service suite","SuiteSucceeded":true,"SpecReports":[]}]`,
		"pcaps/001-DPS-SUB-002.pcapng": "\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a\x01\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\x1c\x00\x00\x00",
		"pcaps/001-DPS-SUB-002.keylog": "CLIENT_RANDOM 0011 2233\n",
	}
	for p, c := range files {
		name := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, stderr := runCLI(t, "report", "render", dir)
	if code != 0 || stderr != "" {
		t.Fatalf("report render: exit %d, stderr %q", code, stderr)
	}
	want := "rendered report.html, summary.md, junit.xml in " + dir + "; manifest.json lists 7 files\n"
	if stdout != want {
		t.Fatalf("report render: stdout %q, want %q", stdout, want)
	}
	return dir
}

func TestReportRender(t *testing.T) {
	dir := resultsDir(t)
	for name, want := range map[string]string{
		"report.html":   "<html",
		"summary.md":    "NON-CONFORMANT",
		"junit.xml":     "<testsuites",
		"manifest.json": `"path": "pcaps/001-DPS-SUB-002.keylog"`,
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s has no %q", name, want)
		}
	}
	// A stale summary is rewritten; the manifest follows.
	if err := os.WriteFile(filepath.Join(dir, "summary.md"), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, "report", "render", dir); code != 0 {
		t.Fatalf("second render: exit %d, %s", code, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "summary.md")); !strings.Contains(string(b), "NON-CONFORMANT") {
		t.Errorf("summary.md not rewritten: %q", b)
	}
	if code, stdout, stderr := runCLI(t, "report", "verify", dir); code != 0 || stdout != "bundle OK: 7 files, sha256 verified\n" {
		t.Errorf("verify after render: exit %d, %q, %q", code, stdout, stderr)
	}
	// Without ginkgo-report.json there is no junit.xml to rewrite. (The
	// manifest listed it: a directory without its manifest renders as it
	// is.)
	os.Remove(filepath.Join(dir, "ginkgo-report.json"))
	os.Remove(filepath.Join(dir, "manifest.json"))
	code, stdout, _ := runCLI(t, "report", "render", dir)
	if code != 0 || !strings.HasPrefix(stdout, "rendered report.html, summary.md in ") {
		t.Errorf("render without ginkgo-report.json: exit %d, %q", code, stdout)
	}
}

// TestReportRenderRefusesEdits: render must not seal a results.json
// edited since the run. With the manifest, any file but the rendered pages
// that differs from it is refused (exit 1) and nothing is written; without
// it, a summary that disagrees with the requirements' verdicts (a FAIL
// turned CONFORMANT by hand) is refused (exit 2).
func TestReportRenderRefusesEdits(t *testing.T) {
	for _, tc := range []struct {
		name     string
		manifest bool
		edit     func(string) string
		code     int
		want     string
	}{
		{"summary edited, sealed", true, func(s string) string {
			return strings.Replace(s, `"mustFailed": 1`, `"mustFailed": 0`, 1)
		}, cli.ExitNonConformant, "results.json: sha256 mismatch"},
		{"reason edited, sealed", true, func(s string) string {
			return strings.Replace(s, `"reason": "1 of 1 specs failed`, `"reason": "1 of 1 specs passed`, 1)
		}, cli.ExitNonConformant, "rendering would seal the change, so nothing was written"},
		{"summary edited, no manifest", false, func(s string) string {
			return strings.Replace(s, `"mustFailed": 1`, `"mustFailed": 0`, 1)
		}, cli.ExitUsage, "the summary's mustFailed is 0, but the requirements give 1 (MUST requirements failed: [DPS-SUB-002])"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := resultsDir(t)
			name := filepath.Join(dir, "results.json")
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			edited := tc.edit(string(b))
			if edited == string(b) {
				t.Fatal("the edit changed nothing")
			}
			if err := os.WriteFile(name, []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
			if !tc.manifest {
				os.Remove(filepath.Join(dir, "manifest.json"))
			}
			os.Remove(filepath.Join(dir, "summary.md"))
			code, _, stderr := runCLI(t, "report", "render", dir)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d (want %d), stderr lacks %q:\n%s", code, tc.code, tc.want, stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, "summary.md")); err == nil {
				t.Error("summary.md was written")
			}
		})
	}
}

func TestReportVerify(t *testing.T) {
	dir := resultsDir(t)
	bundle := filepath.Join(t.TempDir(), "results.tar.gz")
	if err := reports.Pack(dir, bundle); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, bundle} {
		code, stdout, stderr := runCLI(t, "report", "verify", p)
		if code != 0 || stdout != "bundle OK: 7 files, sha256 verified\n" || stderr != "" {
			t.Errorf("verify %s: exit %d, stdout %q, stderr %q", p, code, stdout, stderr)
		}
	}

	// One byte flipped in a capture of the directory: exit 1 naming it.
	pcap := filepath.Join(dir, "pcaps", "001-DPS-SUB-002.pcapng")
	b, err := os.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	b[9] ^= 0x01
	if err := os.WriteFile(pcap, b, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "extra.txt"), nil, 0o644)
	code, stdout, stderr := runCLI(t, "report", "verify", dir)
	wantErr := `^dps-conform report verify: extra.txt: present but not listed in manifest.json
dps-conform report verify: pcaps/001-DPS-SUB-002.pcapng: sha256 mismatch: manifest.json says [0-9a-f]{12}…, content hashes to [0-9a-f]{12}…
dps-conform report: .* failed verification: 2 problems
$`
	if code != 1 || stdout != "" || !regexp.MustCompile(wantErr).MatchString(stderr) {
		t.Errorf("verify flipped directory: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}

	// One byte flipped in the bundle.
	b, err = os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	flipped := filepath.Join(t.TempDir(), "flipped.tar.gz")
	if err := os.WriteFile(flipped, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runCLI(t, "report", "verify", flipped)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "dps-conform report verify: flipped.tar.gz: ") ||
		!strings.Contains(stderr, "failed verification") {
		t.Errorf("verify flipped bundle: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
}

func TestReportErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("empty/.keep", "")
	write("badjson/results.json", "{")
	write("arrayjson/results.json", `[{"title": "x"}]`)
	rj, err := os.ReadFile(filepath.Join("..", "..", "reports", "testdata", "results-grant-qos2.json"))
	if err != nil {
		t.Fatal(err)
	}
	write("badginkgo/results.json", string(rj))
	write("badginkgo/ginkgo-report.json", `{"not": "an array"}`)
	write("elemginkgo/results.json", string(rj))
	write("elemginkgo/ginkgo-report.json", `[[{"SuitePath": "x"}]]`)
	write("noginkgo/results.json", string(rj))
	write("noginkgo/ginkgo-report.json", `[]`)
	notes := write("notes.txt", "hello")
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string // regexp
	}{
		{"no subcommand", []string{"report"}, 2, `(?s)^Usage:\n  dps-conform report verify .*\ndps-conform report: missing subcommand: verify or render\n$`},
		{"unknown subcommand", []string{"report", "pack"}, 2, `^dps-conform report: unknown subcommand "pack": want verify or render\n$`},
		{"flag before subcommand", []string{"report", "--out", "x"}, 2, `^dps-conform report: unknown flag "--out" \(the subcommand comes first`},
		{"verify without argument", []string{"report", "verify"}, 2, `^dps-conform report: missing BUNDLE or DIR to verify\n$`},
		{"verify two arguments", []string{"report", "verify", "a", "b"}, 2, `^dps-conform report: want one BUNDLE or DIR, got 2 arguments\n$`},
		{"verify missing", []string{"report", "verify", filepath.Join(dir, "nosuch.tar.gz")}, 2, `^dps-conform report: stat .*nosuch.tar.gz: no such file or directory\n$`},
		{"verify unknown flag", []string{"report", "verify", "--strict", dir}, 2, `^dps-conform report: flag provided but not defined: --strict\n$`},
		{"verify not a bundle", []string{"report", "verify", notes}, 1, `^dps-conform report verify: notes.txt: not a gzip-compressed bundle: it starts with "hell", not the gzip magic number\n`},
		{"verify no manifest", []string{"report", "verify", filepath.Join(dir, "empty")}, 1, `^dps-conform report verify: manifest.json: missing\ndps-conform report: .*empty failed verification: 1 problem\n$`},
		{"render without argument", []string{"report", "render"}, 2, `^dps-conform report: missing RESULTS_DIR\n$`},
		{"render missing", []string{"report", "render", filepath.Join(dir, "nosuch")}, 2, `no such file or directory\n$`},
		{"render a file", []string{"report", "render", notes}, 2, `notes.txt: not a results directory\n$`},
		{"render without results.json", []string{"report", "render", filepath.Join(dir, "empty")}, 2, `^dps-conform report: open .*results.json: no such file or directory\n$`},
		{"render bad results.json", []string{"report", "render", filepath.Join(dir, "badjson")}, 2, `results.json: reading results.json: the file ends inside a JSON value \(cut off\?\): unexpected EOF\n$`},
		// JSON of the wrong type: the file, the offset (from 0) and what
		// was expected, not Go's type (it said "cannot unmarshal array
		// into Go value of type reports.Report").
		{"render results.json of the wrong type", []string{"report", "render", filepath.Join(dir, "arrayjson")}, 2,
			`^dps-conform report: .*arrayjson/results.json: reading results.json at byte offset 0: a JSON array where a dps-conform report \(a JSON object, as 'dps-conform run --out' writes it\) was expected\n$`},
		{"render bad ginkgo-report.json", []string{"report", "render", filepath.Join(dir, "badginkgo")}, 2,
			`^dps-conform report: .*badginkgo/ginkgo-report.json: not a Ginkgo JSON report: at byte offset 0: a JSON object where an array of Ginkgo reports \(as --json-report writes it\) was expected\n$`},
		// An element of the array of the wrong type: what the element
		// should be, not the array (it said "a JSON array where an array
		// of Ginkgo reports … was expected").
		{"render ginkgo-report.json with a bad element", []string{"report", "render", filepath.Join(dir, "elemginkgo")}, 2,
			`^dps-conform report: .*elemginkgo/ginkgo-report.json: not a Ginkgo JSON report: at byte offset 1: a JSON array where an object was expected\n$`},
		{"render empty ginkgo-report.json", []string{"report", "render", filepath.Join(dir, "noginkgo")}, 2, `ginkgo-report.json: holds no report\n$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tt.args...)
			if code != tt.code || !regexp.MustCompile(tt.stderr).MatchString(stderr) {
				t.Errorf("%q: exit %d, stderr %q; want exit %d, stderr matching %q", tt.args, code, stderr, tt.code, tt.stderr)
			}
		})
	}
}

func TestReportHelp(t *testing.T) {
	for _, args := range [][]string{{"report", "-h"}, {"report", "--help"}, {"help", "report"}} {
		code, stdout, stderr := runCLI(t, args...)
		if code != 0 || !strings.HasPrefix(stdout, "Usage:\n  dps-conform report verify BUNDLE|DIR\n  dps-conform report render RESULTS_DIR\n") || stderr != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
	for sub, want := range map[string]string{"verify": "Usage:\n  dps-conform report verify BUNDLE|DIR\n\nChecks", "render": "Usage:\n  dps-conform report render RESULTS_DIR\n\nRe-renders"} {
		code, stdout, _ := runCLI(t, "report", sub, "-h")
		if code != 0 || !strings.HasPrefix(stdout, want) {
			t.Errorf("report %s -h: exit %d, stdout %q", sub, code, stdout)
		}
	}
}
