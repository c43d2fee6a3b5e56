// Package archtest keeps the import directions of docs/ARCHITECTURE.md §2
// true: it lists the module's packages with "go list" and fails on an import
// the table does not allow, on a package the table does not know, and on any
// non-standard-library dependency of packets.
package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/dps-conform/dps-conform"

// allowedImports is ARCHITECTURE.md §2 "may import (ours)", for non-test
// files, keyed by module-relative package path. An entry "x/..." allows x and
// every package below it; "..." allows every package of the module. A package
// may always import the packages below itself (conformance →
// conformance/matchers), but each of those needs its own row.
//
// A package missing here fails TestImportDirections: add it, with the
// imports it is meant to have, both here and in docs/ARCHITECTURE.md.
var allowedImports = map[string][]string{
	"packets":            {},
	"packets/packettest": {"packets"},
	"dps":                {"packets"},
	"transport":          {},
	"tracer":             {"packets", "dps"},
	"tracer/tlstrace":    {},
	"tracer/wstrace":     {},
	"emulator":           {"packets", "dps", "transport"},
	"emulator/registry":  {"packets", "dps", "transport"},
	// Test support (the httptest idea): starts an in-process emulator.
	"emulator/emulatortest": {"emulator/...", "packets/...", "dps", "transport"},
	"device":                {"packets", "dps", "transport"},
	"tlsprobe":              {"transport"},
	// Everything above except emulator (the suite reaches targets through
	// conformance.Target, plain data). Test files may import emulator.
	"conformance": {"packets/...", "dps", "transport", "tracer/...", "device", "tlsprobe"},
	// The report model reads the catalogue and the evidence entries the
	// suite attaches (conformance types); it decodes no capture itself.
	"reports":           {"conformance/...", "dps"},
	"internal/cli":      {"..."},
	"internal/archtest": {},
	// Test support: edits pcapng files block by block (standard library).
	"internal/pcapngtest": {},
	// Test support: runs parts of a test in child processes (standard library).
	"internal/testproc": {},
	// Test support: loopback peers that misbehave on purpose (standard library).
	"internal/testnet": {},
	// Generator of testdata/pcaps: drives the emulator and device client.
	"internal/gen/pcaps": {"..."},
	"cmd/dps-conform":    {"internal/cli"},
	"interop":            {"..."},
}

// stdlibOnly are packages whose whole dependency graph must be standard
// library: the codec is the base everyone builds on.
var stdlibOnly = []string{"packets"}

// TestImportDirections checks the real module against the table.
func TestImportDirections(t *testing.T) {
	pkgs := listModule(t)

	imports := map[string][]string{}
	for _, p := range pkgs {
		rel, ours := relPath(p.ImportPath)
		if !ours || p.Standard {
			continue
		}
		if p.Error != nil {
			// Broken packages are the compiler's business; their import
			// lists are still checked.
			t.Logf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
		var own []string
		for _, imp := range p.Imports {
			if r, ok := relPath(imp); ok {
				own = append(own, r)
			}
		}
		imports[rel] = own
	}
	if len(imports) == 0 {
		t.Fatal("go list found no packages of " + module)
	}
	for _, v := range checkImports(allowedImports, imports) {
		t.Error(v)
	}

	standard := map[string]bool{}
	deps := map[string][]string{}
	for _, p := range pkgs {
		standard[p.ImportPath] = p.Standard
		if rel, ours := relPath(p.ImportPath); ours {
			deps[rel] = p.Deps
		}
	}
	for _, pkg := range stdlibOnly {
		d, ok := deps[pkg]
		if !ok {
			continue // not written yet
		}
		for _, v := range checkStdlibOnly(pkg, d, standard) {
			t.Error(v)
		}
	}
}

// checkImports returns one message per import of ours that breaks the table
// (imports maps module-relative package paths to the module-relative paths
// they import), sorted. Besides the table it enforces the internal/ rule:
// internal/cli may be imported by cmd/dps-conform only, and other internal/X
// helpers by internal/cli (and their own subpackages) only.
func checkImports(allowed map[string][]string, imports map[string][]string) []string {
	var out []string
	for _, pkg := range sortedKeys(imports) {
		patterns, known := allowed[pkg]
		if !known {
			out = append(out, fmt.Sprintf("package %s is not in the import table: add it, with the imports it may have, to allowedImports in internal/archtest/imports_test.go and to docs/ARCHITECTURE.md §2", pkg))
			continue
		}
		for _, imp := range imports[pkg] {
			if msg := internalRule(pkg, imp); msg != "" {
				out = append(out, msg)
				continue
			}
			if within(imp, pkg) || slices.ContainsFunc(patterns, func(p string) bool { return matchPattern(p, imp) }) {
				continue
			}
			may := "nothing of ours"
			if len(patterns) > 0 {
				may = strings.Join(patterns, ", ")
			}
			out = append(out, fmt.Sprintf("%s imports %s, but may import only %s (docs/ARCHITECTURE.md §2)", pkg, imp, may))
		}
	}
	return out
}

// internalRule returns a message if pkg may not import imp because imp is
// under internal/.
func internalRule(pkg, imp string) string {
	top := internalTop(imp)
	switch {
	case top == "":
		return ""
	case imp == "internal/cli":
		if pkg == "cmd/dps-conform" {
			return ""
		}
		return fmt.Sprintf("%s imports internal/cli, which only cmd/dps-conform may import (docs/ARCHITECTURE.md §2)", pkg)
	case pkg == "internal/cli" || internalTop(pkg) == top:
		return ""
	default:
		return fmt.Sprintf("%s imports %s; internal helpers may be imported only from internal/cli (docs/ARCHITECTURE.md §2)", pkg, imp)
	}
}

// internalTop returns "internal/X" for a package at or below internal/X.
func internalTop(rel string) string {
	parts := strings.SplitN(rel, "/", 3)
	if len(parts) < 2 || parts[0] != "internal" {
		return ""
	}
	return parts[0] + "/" + parts[1]
}

// checkStdlibOnly returns one message per dependency of pkg that is not in
// the standard library.
func checkStdlibOnly(pkg string, deps []string, standard map[string]bool) []string {
	var out []string
	for _, d := range deps {
		if !standard[d] {
			out = append(out, fmt.Sprintf("%s depends on %s; it may depend on the standard library only (docs/ARCHITECTURE.md §2)", pkg, d))
		}
	}
	return out
}

// matchPattern reports whether module-relative path rel matches p ("x",
// "x/..." or "...").
func matchPattern(p, rel string) bool {
	if p == "..." {
		return true
	}
	if base, ok := strings.CutSuffix(p, "/..."); ok {
		return within(rel, base)
	}
	return rel == p
}

// within reports whether rel is base or below it.
func within(rel, base string) bool {
	return rel == base || strings.HasPrefix(rel, base+"/")
}

// relPath returns the module-relative path of an import path of ours ("." for
// the module root).
func relPath(importPath string) (string, bool) {
	if importPath == module {
		return ".", true
	}
	rel, ok := strings.CutPrefix(importPath, module+"/")
	return rel, ok
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// listedPackage holds the "go list -json" fields used here.
type listedPackage struct {
	ImportPath string
	Standard   bool
	Imports    []string // non-test imports
	Deps       []string // transitive non-test dependencies
	Error      *struct{ Err string }
}

// listModule runs "go list -e -deps -json ./..." in the module root and
// returns every package it prints (ours and their dependencies).
func listModule(t *testing.T) []listedPackage {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("skipping: the go command is not on PATH (%v); this test needs \"go list\" to read the import graph", err)
	}
	gomod, err := exec.Command(goTool, "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if root == "." || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == "/dev/null" {
		t.Fatalf("go env GOMOD = %q: not inside the module", gomod)
	}

	cmd := exec.Command(goTool, "list", "-e", "-deps", "-json=ImportPath,Standard,Imports,Deps,Error", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list in %s: %v\n%s", root, err, stderr.Bytes())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestCheckImports shows the checker fails when a rule is broken, on a fake
// module graph.
func TestCheckImports(t *testing.T) {
	table := map[string][]string{
		"packets":            {},
		"packets/packettest": {"packets"},
		"dps":                {"packets"},
		"transport":          {},
		"emulator":           {"packets", "dps", "transport"},
		"emulator/registry":  {"packets", "dps", "transport"},
		// Test support (the httptest idea): starts an in-process emulator.
		"emulator/emulatortest": {"emulator/...", "packets/...", "dps", "transport"},
		"conformance":           {"packets/...", "dps", "transport"},
		"internal/cli":          {"..."},
		"internal/gen":          {"conformance"},
		"cmd/dps-conform":       {"internal/cli"},
		"interop":               {"..."},
	}
	for _, tc := range []struct {
		name    string
		imports map[string][]string
		want    []string // substrings, one per expected violation, in order
	}{
		{"clean graph", map[string][]string{
			"packets":            nil,
			"packets/packettest": {"packets"},
			"dps":                {"packets"},
			"emulator":           {"packets", "dps", "transport"},
			"emulator/registry":  {"packets", "dps", "transport"},
			// Test support (the httptest idea): starts an in-process emulator.
			"emulator/emulatortest": {"emulator/...", "packets/...", "dps", "transport"},
			"conformance":           {"packets", "packets/packettest", "dps", "conformance/matchers"},
			"internal/cli":          {"emulator", "conformance", "internal/gen"},
			"cmd/dps-conform":       {"internal/cli"},
			"interop":               {"emulator", "conformance"},
		}, nil},
		{"packets imports dps", map[string][]string{
			"packets": {"dps"},
			"dps":     {"packets"},
		}, []string{"packets imports dps, but may import only nothing of ours"}},
		{"conformance imports emulator", map[string][]string{
			"conformance": {"dps", "emulator"},
		}, []string{"conformance imports emulator, but may import only packets/..., dps, transport"}},
		{"transport imports packets", map[string][]string{
			"transport": {"packets"},
		}, []string{"transport imports packets"}},
		{"unknown package", map[string][]string{
			"tracer/pcapx": {"packets"},
		}, []string{"package tracer/pcapx is not in the import table: add it"}},
		{"main imports more than the cli", map[string][]string{
			"cmd/dps-conform": {"internal/cli", "emulator"},
		}, []string{"cmd/dps-conform imports emulator"}},
		{"internal/cli imported outside cmd", map[string][]string{
			"interop": {"internal/cli"},
		}, []string{"interop imports internal/cli, which only cmd/dps-conform may import"}},
		{"internal helper imported outside internal/cli", map[string][]string{
			"interop": {"internal/gen"},
		}, []string{"interop imports internal/gen; internal helpers may be imported only from internal/cli"}},
		{"several violations, sorted by package", map[string][]string{
			"transport": {"dps"},
			"dps":       {"packets", "transport"},
		}, []string{"dps imports transport", "transport imports dps"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := checkImports(table, tc.imports)
			if len(got) != len(tc.want) {
				t.Fatalf("checkImports = %q, want %d violation(s) %q", got, len(tc.want), tc.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("violation %d = %q, want it to contain %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestCheckStdlibOnly(t *testing.T) {
	standard := map[string]bool{"bytes": true, "errors": true, "golang.org/x/net/websocket": false}
	if got := checkStdlibOnly("packets", []string{"bytes", "errors"}, standard); len(got) != 0 {
		t.Errorf("stdlib-only deps: got violations %q", got)
	}
	got := checkStdlibOnly("packets", []string{"bytes", "golang.org/x/net/websocket"}, standard)
	if len(got) != 1 || !strings.Contains(got[0], "packets depends on golang.org/x/net/websocket") {
		t.Errorf("third-party dep: got %q, want one violation naming golang.org/x/net/websocket", got)
	}
	// A dependency go list did not describe counts as non-standard.
	if got := checkStdlibOnly("packets", []string{"example.com/unknown"}, standard); len(got) != 1 {
		t.Errorf("unknown dep: got %q, want one violation", got)
	}
}

func TestMatchPattern(t *testing.T) {
	for _, tc := range []struct {
		p, rel string
		want   bool
	}{
		{"packets", "packets", true},
		{"packets", "packets/packettest", false},
		{"packets/...", "packets", true},
		{"packets/...", "packets/packettest", true},
		{"packets/...", "packetsx", false},
		{"...", "anything/at/all", true},
	} {
		if got := matchPattern(tc.p, tc.rel); got != tc.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", tc.p, tc.rel, got, tc.want)
		}
	}
}

// TestImportTableDocumented keeps docs/ARCHITECTURE.md §2 and
// allowedImports the same: a row per package, whose "may import (ours)"
// column names (in backquotes) exactly the entries of allowedImports.
func TestImportTableDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/ARCHITECTURE.md")
	if err != nil {
		t.Fatalf("docs/ARCHITECTURE.md: %v", err)
	}
	rows := docImportTable(string(doc))
	if len(rows) == 0 {
		t.Fatal("docs/ARCHITECTURE.md: no import table (| path | role | may import (ours) |) found")
	}
	for pkg, may := range rows {
		want, ok := allowedImports[pkg]
		switch {
		case may == nil && ok:
			t.Errorf("docs/ARCHITECTURE.md §2: %s is marked as no Go package, but allowedImports has it", pkg)
		case may == nil:
		case !ok:
			t.Errorf("docs/ARCHITECTURE.md §2 has a row for %s, which allowedImports does not know", pkg)
		case !slices.Equal(sortedSet(may), sortedSet(want)):
			t.Errorf("docs/ARCHITECTURE.md §2: %s may import %q by the doc, %q by allowedImports", pkg, sortedSet(may), sortedSet(want))
		}
	}
	for _, pkg := range sortedKeys(allowedImports) {
		if _, ok := rows[pkg]; !ok {
			t.Errorf("docs/ARCHITECTURE.md §2 has no row for %s", pkg)
		}
	}
}

// docImportTable reads the import table of ARCHITECTURE.md: module-relative
// package → the backquoted names of its last column (non-nil, maybe empty);
// nil for a row whose last column says it is not a Go package.
func docImportTable(doc string) map[string][]string {
	_, rest, ok := strings.Cut(doc, "| path | role | may import (ours) |\n|---|---|---|\n")
	if !ok {
		return nil
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(line, "| `") {
			break
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		pkg := strings.TrimSuffix(strings.Trim(cells[0], "`"), "/")
		last := cells[len(cells)-1]
		if strings.Contains(last, "not a Go package") {
			rows[pkg] = nil
			continue
		}
		may := []string{}
		for i, part := range strings.Split(last, "`") {
			if i%2 == 1 {
				may = append(may, part)
			}
		}
		rows[pkg] = may
	}
	return rows
}

func sortedSet(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
