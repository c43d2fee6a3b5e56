package reports

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// resultsFiles are a small results directory as "dps-conform run --out"
// leaves it.
var resultsFiles = map[string]string{
	"results.json":                  `{"title":"dps-conform service conformance report: test","tool":{"name":"dps-conform","version":"(devel)"}}` + "\n",
	"summary.md":                    "## report\n\n✅ **CONFORMANT**\n",
	"junit.xml":                     `<?xml version="1.0" encoding="UTF-8"?>` + "\n<testsuites tests=\"1\"></testsuites>\n",
	"ginkgo-report.json":            `[{"SuitePath":"/x","SuiteDescription":"dps"}]` + "\n",
	"pcaps/001-DPS-SUB-002.pcapng":  "\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a\x01\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\x1c\x00\x00\x00",
	"pcaps/001-DPS-SUB-002.keylog":  "CLIENT_RANDOM 0011 2233\n",
	"pcaps/002-DPS-REG-001.pcapng":  "\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x1c\x00\x00\x00",
	"pcaps/sub dir/note with space": "x",
}

var testTime = time.Date(2026, 12, 6, 21, 3, 38, 0, time.UTC)

// writeResults writes resultsFiles and the manifest into a new directory.
func writeResults(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range resultsFiles {
		name := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := writeManifest(dir, "dps-conform test", testTime, defaultLimits()); err != nil {
		t.Fatal(err)
	}
	return dir
}

// packResults returns a bundle of writeResults' directory.
func packResults(t testing.TB) (dir, bundle string) {
	t.Helper()
	dir = writeResults(t)
	bundle = filepath.Join(t.TempDir(), "results.tar.gz")
	if err := Pack(dir, bundle); err != nil {
		t.Fatal(err)
	}
	return dir, bundle
}

func sortedPaths() []string {
	var ps []string
	for p := range resultsFiles {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

func TestWriteManifest(t *testing.T) {
	dir := writeResults(t)
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	var ps problems
	m, _ := parseManifest(b, defaultLimits(), &ps)
	if len(ps.list) > 0 || m == nil {
		t.Fatalf("fresh manifest has problems: %v", ps.list)
	}
	if m.Tool != "dps-conform test" || !m.Created.Equal(testTime) {
		t.Errorf("tool %q created %v, want dps-conform test, %v", m.Tool, m.Created, testTime)
	}
	var got []string
	for _, f := range m.Files {
		got = append(got, f.Path)
		sum := sha256.Sum256([]byte(resultsFiles[f.Path]))
		if f.Size != int64(len(resultsFiles[f.Path])) || f.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: size %d sha256 %s, want %d %x", f.Path, f.Size, f.SHA256, len(resultsFiles[f.Path]), sum)
		}
	}
	if want := sortedPaths(); !slices.Equal(got, want) {
		t.Errorf("files %q, want %q", got, want)
	}
	for _, key := range []string{`"tool":`, `"created":`, `"files":`, `"path":`, `"size":`, `"sha256":`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("manifest.json has no %s key:\n%s", key, b)
		}
	}
	// Rewriting is stable and leaves the old manifest out of the new one.
	m2, err := writeManifest(dir, "dps-conform test", testTime, defaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if m2.SHA256 != m.SHA256 {
		t.Errorf("rewritten manifest has digest %s, was %s", m2.SHA256, m.SHA256)
	}
}

func TestWriteManifestRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"symlink", func(t *testing.T, dir string) {
			if err := os.Symlink("results.json", filepath.Join(dir, "link.json")); err != nil {
				t.Skip(err)
			}
		}, "link.json: is a symlink"},
		{"symlinked manifest", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, ManifestName))
			if err := os.Symlink("results.json", filepath.Join(dir, ManifestName)); err != nil {
				t.Skip(err)
			}
		}, "manifest.json: is a symlink"},
		{"backslash in a name", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, `a\b`), nil, 0o644); err != nil {
				t.Skip(err)
			}
		}, "backslash in path"},
		{"not a directory", func(t *testing.T, dir string) {}, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeResults(t)
			if tt.name == "not a directory" {
				dir = filepath.Join(dir, "results.json")
			}
			tt.setup(t, dir)
			_, err := WriteManifest(dir, "x")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("WriteManifest: %v, want an error containing %q", err, tt.want)
			}
			if tt.name != "not a directory" && !errors.Is(err, ErrNotRegular) {
				t.Errorf("error %v does not wrap ErrNotRegular", err)
			}
		})
	}
}

func TestWriteManifestLimits(t *testing.T) {
	dir := writeResults(t)
	lim := defaultLimits()
	lim.file = 20
	if _, err := writeManifest(dir, "x", testTime, lim); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("per-file limit: %v", err)
	}
	lim = defaultLimits()
	lim.total = 100
	if _, err := writeManifest(dir, "x", testTime, lim); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("total limit: %v", err)
	}
}

func TestVerifyGood(t *testing.T) {
	dir, bundle := packResults(t)
	for _, p := range []string{dir, bundle} {
		m, err := Verify(p)
		if err != nil {
			t.Fatalf("Verify(%s): %v", p, err)
		}
		if len(m.Files) != len(resultsFiles) {
			t.Errorf("Verify(%s): %d files, want %d", p, len(m.Files), len(resultsFiles))
		}
	}
}

func TestPackLayout(t *testing.T) {
	_, bundle := packResults(t)
	f, err := os.Open(bundle)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names, files []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if h.Mode != 0o755 || !strings.HasSuffix(h.Name, "/") {
				t.Errorf("dir %s: mode %o", h.Name, h.Mode)
			}
		case tar.TypeReg:
			files = append(files, h.Name)
			if h.Mode != 0o644 {
				t.Errorf("file %s: mode %o", h.Name, h.Mode)
			}
		default:
			t.Errorf("entry %s of type %q", h.Name, h.Typeflag)
		}
		if unsafePath(strings.TrimSuffix(h.Name, "/")) != "" {
			t.Errorf("unsafe entry %q", h.Name)
		}
	}
	want := append(sortedPaths(), ManifestName)
	slices.Sort(want)
	if !slices.Equal(files, want) {
		t.Errorf("files %q, want %q", files, want)
	}
	wantNames := []string{"ginkgo-report.json", "junit.xml", "manifest.json", "pcaps/",
		"pcaps/001-DPS-SUB-002.keylog", "pcaps/001-DPS-SUB-002.pcapng", "pcaps/002-DPS-REG-001.pcapng",
		"pcaps/sub dir/", "pcaps/sub dir/note with space", "results.json", "summary.md"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("entries %q, want %q", names, wantNames)
	}
}

func TestPackRefuses(t *testing.T) {
	dir := writeResults(t)
	if err := Pack(dir, filepath.Join(dir, "pcaps", "b.tar.gz")); err == nil || !strings.Contains(err.Error(), "must not be inside") {
		t.Errorf("bundle inside the directory: %v", err)
	}
	os.Remove(filepath.Join(dir, ManifestName))
	out := filepath.Join(t.TempDir(), "b.tar.gz")
	if err := Pack(dir, out); err == nil || !strings.Contains(err.Error(), "no manifest.json") {
		t.Errorf("no manifest: %v", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed Pack left %s: %v", out, err)
	}
	// A manifest that does not parse is the one problem: it lists nothing,
	// so no file is "present but not listed".
	if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Pack(dir, out)
	if err == nil || !strings.Contains(err.Error(), "not a valid manifest") || strings.Contains(err.Error(), "not listed") {
		t.Errorf("corrupt manifest: %v", err)
	}
}

// TestPackChecksContent: a file changed after the manifest was written,
// listed, missing or unlisted, fails Pack with an error naming the file, and
// no bundle is left. Pack hashes while it copies, so the same-size change is
// caught in the copy.
func TestPackChecksContent(t *testing.T) {
	tests := []struct {
		name, file, want string
		apply            func(t *testing.T, dir string)
	}{
		{"same size", "summary.md", "summary.md: sha256 mismatch: manifest.json says ", func(t *testing.T, dir string) {
			writeFile(t, dir, "summary.md", strings.ToUpper(resultsFiles["summary.md"]))
		}},
		{"same size, in a subdirectory", "pcaps/sub dir/note with space", "pcaps/sub dir/note with space: sha256 mismatch", func(t *testing.T, dir string) {
			writeFile(t, dir, "pcaps/sub dir/note with space", "y")
		}},
		{"other size", "results.json", "results.json: size mismatch: manifest.json says ", func(t *testing.T, dir string) {
			writeFile(t, dir, "results.json", "{}\n")
		}},
		{"missing", "junit.xml", "junit.xml: listed in manifest.json but missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "junit.xml"))
		}},
		{"unlisted", "extra", "extra: present but not listed in manifest.json", func(t *testing.T, dir string) {
			writeFile(t, dir, "extra", "")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeResults(t)
			tt.apply(t, dir)
			out := filepath.Join(t.TempDir(), "b.tar.gz")
			err := Pack(dir, out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Pack after changing %s: %v, want an error with %q", tt.file, err, tt.want)
			}
			if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a failed Pack left %s: %v", out, err)
			}
		})
	}
}

// verifyProblems runs verify and returns the problems; it fails the test on
// success or on an error that is not a *VerifyError.
func verifyProblems(t *testing.T, p string, lim limits) []string {
	t.Helper()
	_, err := verify(p, lim)
	return problemsOf(t, err)
}

func problemsOf(t *testing.T, err error) []string {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("verify: %v, want a *VerifyError", err)
	}
	if len(ve.Problems) == 0 || !strings.Contains(ve.Error(), ve.Problems[0]) {
		t.Fatalf("VerifyError %q does not list its problems %q", ve.Error(), ve.Problems)
	}
	return ve.Problems
}

func hasProblem(ps []string, prefix, part string) bool {
	return slices.ContainsFunc(ps, func(p string) bool {
		return strings.HasPrefix(p, prefix+": ") && strings.Contains(p, part)
	})
}

// TestVerifyDirByteFlips flips every byte of every file of a results
// directory: each must fail with a problem naming that file. The manifest's
// bytes are flipped in three ways each and checked in memory against the
// files (a sample through Verify), the others through Verify.
func TestVerifyDirByteFlips(t *testing.T) {
	dir := writeResults(t)
	files := map[string]found{}
	for p, c := range resultsFiles {
		sum := sha256.Sum256([]byte(c))
		files[p] = found{int64(len(c)), hex.EncodeToString(sum[:])}
	}
	for _, p := range append(sortedPaths(), ManifestName) {
		name := filepath.Join(dir, filepath.FromSlash(p))
		orig, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for i := range orig {
			for _, mask := range []byte{0x01, 0x20, 0xff} {
				b := slices.Clone(orig)
				b[i] ^= mask
				if p == ManifestName {
					var ps problems
					checkManifest(b, files, true, defaultLimits(), &ps, nil)
					if err := ps.err(dir); err == nil || !hasProblem(err.(*VerifyError).Problems, p, "") {
						t.Fatalf("%s byte %d ^ %#02x: problems %v do not name the file", p, i, mask, err)
					}
					if i%7 != 0 || mask != 0x01 {
						continue
					}
				} else if mask != 0xff {
					continue
				}
				if err := os.WriteFile(name, b, 0o644); err != nil {
					t.Fatal(err)
				}
				_, err := Verify(dir)
				var ve *VerifyError
				if !errors.As(err, &ve) {
					t.Fatalf("%s byte %d ^ %#02x: Verify gave %v", p, i, mask, err)
				}
				if !hasProblem(ve.Problems, p, "") {
					t.Fatalf("%s byte %d ^ %#02x: problems %q do not name the file", p, i, mask, ve.Problems)
				}
			}
		}
		if err := os.WriteFile(name, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Verify(dir); err != nil {
		t.Fatalf("restored directory: %v", err)
	}
}

// TestVerifyBundleByteFlips flips every byte of a packed bundle: gzip
// header (which carries a header CRC), deflate data and trailer alike.
func TestVerifyBundleByteFlips(t *testing.T) {
	_, bundle := packResults(t)
	orig, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifyTarGz(bytes.NewReader(orig), "b.tar.gz", defaultLimits()); err != nil {
		t.Fatalf("intact bundle: %v", err)
	}
	plain := gunzip(t, orig)
	null := 0
	for i := range orig {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			b := slices.Clone(orig)
			b[i] ^= mask
			_, err := verifyTarGz(bytes.NewReader(b), "b.tar.gz", defaultLimits())
			var ve *VerifyError
			if errors.As(err, &ve) {
				continue
			}
			// Deflate has a little redundancy (e.g. the code length of a
			// symbol the data never uses): such a flip leaves every
			// decompressed byte as it was, so nothing in the bundle changed.
			if err != nil || !bytes.Equal(gunzip(t, b), plain) {
				t.Fatalf("byte %d of %d ^ %#02x: verify gave %v", i, len(orig), mask, err)
			}
			null++
		}
	}
	t.Logf("%d of %d flips left the decompressed bundle unchanged", null, 3*len(orig))
	// And through Verify on the file, in the gzip header (MTIME, OS and the
	// header CRC included) and trailer (CRC-32 and size).
	for _, off := range []int{0, 1, 2, 3, 4, 8, 9, 10, 11, len(orig) - 8, len(orig) - 5, len(orig) - 1} {
		b := slices.Clone(orig)
		b[off] ^= 0x01
		p := filepath.Join(t.TempDir(), "flipped.tar.gz")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ps := verifyProblems(t, p, defaultLimits())
		if !strings.HasPrefix(ps[0], "flipped.tar.gz: ") {
			t.Errorf("offset %d: problems %q do not name the bundle", off, ps)
		}
	}
}

// gunzip returns the decompressed data, or nil when it is not valid gzip.
func gunzip(t *testing.T, b []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	d, err := io.ReadAll(zr)
	if err != nil {
		return nil
	}
	return d
}

// TestVerifyTruncated cuts a bundle at every length.
func TestVerifyTruncated(t *testing.T) {
	_, bundle := packResults(t)
	orig, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(orig) {
		_, err := verifyTarGz(bytes.NewReader(orig[:n]), "b.tar.gz", defaultLimits())
		var ve *VerifyError
		if !errors.As(err, &ve) {
			t.Fatalf("cut at %d of %d: verify gave %v", n, len(orig), err)
		}
		switch {
		case n == 0:
			if !hasProblem(ve.Problems, "b.tar.gz", "empty file") {
				t.Errorf("cut at 0: %q", ve.Problems)
			}
		case n >= 20:
			if !hasProblem(ve.Problems, "b.tar.gz", fmt.Sprintf("truncated: the data ends at compressed byte %d", n)) {
				t.Errorf("cut at %d: %q", n, ve.Problems)
			}
		}
	}
}

// change is a named damage to a results directory: apply makes it (some
// rewrite manifest.json so that it is itself intact, as a careless re-render
// would).
type change struct {
	name  string
	apply func(t *testing.T, dir string)
	// want are (file, part of the message) pairs that must be among the
	// problems.
	want [][2]string
}

func editManifest(t *testing.T, dir string, f func(m *Manifest)) {
	t.Helper()
	name := filepath.Join(dir, ManifestName)
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var ps problems
	m, _ := parseManifest(b, defaultLimits(), &ps)
	f(m)
	if b, err = m.encode(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, dir, p, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(p)), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

var changes = []change{
	{"no results.json, sealed again", func(t *testing.T, dir string) {
		os.Remove(filepath.Join(dir, "results.json"))
		if _, err := WriteManifest(dir, "anyone"); err != nil {
			t.Fatal(err)
		}
	}, [][2]string{{"results.json", "not listed in manifest.json: a results directory or bundle holds it"}}},
	{"missing file", func(t *testing.T, dir string) {
		os.Remove(filepath.Join(dir, "pcaps", "001-DPS-SUB-002.keylog"))
	}, [][2]string{{"pcaps/001-DPS-SUB-002.keylog", "listed in manifest.json but missing"}}},
	{"extra file", func(t *testing.T, dir string) {
		writeFile(t, dir, "pcaps/003-DPS-X.pcapng", "new")
	}, [][2]string{{"pcaps/003-DPS-X.pcapng", "present but not listed in manifest.json"}}},
	{"content changed, same size", func(t *testing.T, dir string) {
		writeFile(t, dir, "summary.md", strings.ToUpper(resultsFiles["summary.md"]))
	}, [][2]string{{"summary.md", "sha256 mismatch: manifest.json says "}}},
	{"content changed, other size", func(t *testing.T, dir string) {
		writeFile(t, dir, "results.json", "{}\n")
	}, [][2]string{{"results.json", fmt.Sprintf("size mismatch: manifest.json says %d bytes, found 3", len(resultsFiles["results.json"]))}}},
	{"tampered manifest hash", func(t *testing.T, dir string) {
		editManifest(t, dir, func(m *Manifest) { m.Files[1].SHA256 = strings.Repeat("0", 64) })
	}, [][2]string{{"junit.xml", "sha256 mismatch: manifest.json says 000000000000…, content hashes to "}}},
	{"tampered manifest size", func(t *testing.T, dir string) {
		editManifest(t, dir, func(m *Manifest) { m.Files[0].Size++ })
	}, [][2]string{{"ginkgo-report.json", "size mismatch"}}},
	{"manifest entry renamed", func(t *testing.T, dir string) {
		editManifest(t, dir, func(m *Manifest) { m.Files[5].Path = "pcaps/sub dir/other" })
	}, [][2]string{{"pcaps/sub dir/other", "listed in manifest.json but missing"}, {"pcaps/sub dir/note with space", "present but not listed"}}},
	{"manifest entry unsafe", func(t *testing.T, dir string) {
		editManifest(t, dir, func(m *Manifest) { m.Files[0].Path = "../etc/passwd" })
	}, [][2]string{{"manifest.json", `"../etc/passwd": path escapes the bundle`}}},
	{"manifest entry malformed hash", func(t *testing.T, dir string) {
		editManifest(t, dir, func(m *Manifest) { m.Files[0].SHA256 = "XYZ" })
	}, [][2]string{{"ginkgo-report.json", `malformed sha256 "XYZ"`}}},
	{"manifest lists a file twice", func(t *testing.T, dir string) {
		editManifest(t, dir, func(m *Manifest) { m.Files = slices.Insert(m.Files, 1, m.Files[0]) })
	}, [][2]string{{"ginkgo-report.json", "listed twice"}}},
	{"manifest out of order", func(t *testing.T, dir string) {
		editManifest(t, dir, func(m *Manifest) { m.Files[0], m.Files[1] = m.Files[1], m.Files[0] })
	}, [][2]string{{"manifest.json", "out of path order"}}},
	{"manifest tool changed, digest kept", func(t *testing.T, dir string) {
		b, _ := os.ReadFile(filepath.Join(dir, ManifestName))
		writeFile(t, dir, ManifestName, strings.Replace(string(b), "dps-conform test", "dps-conform tesT", 1))
	}, [][2]string{{"manifest.json", "damaged: its own sha256 is "}}},
	{"manifest reformatted", func(t *testing.T, dir string) {
		b, _ := os.ReadFile(filepath.Join(dir, ManifestName))
		writeFile(t, dir, ManifestName, strings.TrimSuffix(string(b), "\n"))
	}, [][2]string{{"manifest.json", "not in the form WriteManifest writes"}}},
	{"manifest missing", func(t *testing.T, dir string) {
		os.Remove(filepath.Join(dir, ManifestName))
	}, [][2]string{{"manifest.json", "missing"}}},
	{"manifest unparsable", func(t *testing.T, dir string) {
		writeFile(t, dir, ManifestName, `{"tool": "x", "files": [`)
	}, [][2]string{{"manifest.json", "not a valid manifest: unexpected EOF"}}},
	{"manifest with an unknown field", func(t *testing.T, dir string) {
		writeFile(t, dir, ManifestName, `{"tool": "x", "signature": "y"}`)
	}, [][2]string{{"manifest.json", `unknown field "signature"`}}},
	{"manifest with trailing data", func(t *testing.T, dir string) {
		writeFile(t, dir, ManifestName, `{"tool": "x"} {}`)
	}, [][2]string{{"manifest.json", "data after the manifest"}}},
	{"several problems at once", func(t *testing.T, dir string) {
		os.Remove(filepath.Join(dir, "junit.xml"))
		writeFile(t, dir, "summary.md", "changed")
		writeFile(t, dir, "extra", "")
	}, [][2]string{{"junit.xml", "missing"}, {"summary.md", "size mismatch"}, {"extra", "not listed"}}},
}

// packUnchecked packs dir as Pack did before it checked files against the
// manifest: every regular file as it is, so that Verify can be shown a
// bundle of a damaged directory.
func packUnchecked(t *testing.T, dir, bundle string) {
	t.Helper()
	files, err := regularFiles(dir, defaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, ManifestName)
	slices.Sort(files)
	f, err := os.Create(bundle)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = writeTarGz(f, files, func(tw *tar.Writer, p string) error {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil {
			return err
		}
		return packBytes(tw, p, b, testTime)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestVerifyChanges applies each change to a results directory and checks
// Verify on the directory and on a bundle of it; Pack refuses to seal the
// damaged directory, so the bundle is packed unchecked.
func TestVerifyChanges(t *testing.T) {
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			dir := writeResults(t)
			c.apply(t, dir)
			ps := verifyProblems(t, dir, defaultLimits())
			for _, w := range c.want {
				if !hasProblem(ps, w[0], w[1]) {
					t.Errorf("directory: no problem %q about %s among %q", w[1], w[0], ps)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, ManifestName)); err != nil {
				return // Pack needs a manifest
			}
			bundle := filepath.Join(t.TempDir(), "b.tar.gz")
			if err := Pack(dir, bundle); err == nil {
				t.Errorf("Pack sealed a directory that does not match its manifest")
			} else if _, err := os.Stat(bundle); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a failed Pack left %s: %v", bundle, err)
			}
			packUnchecked(t, dir, bundle)
			ps = verifyProblems(t, bundle, defaultLimits())
			for _, w := range c.want {
				if !hasProblem(ps, w[0], w[1]) {
					t.Errorf("bundle: no problem %q about %s among %q", w[1], w[0], ps)
				}
			}
		})
	}
}

func TestVerifyDirNonRegular(t *testing.T) {
	dir := writeResults(t)
	if err := os.Symlink("results.json", filepath.Join(dir, "link")); err != nil {
		t.Skip(err)
	}
	ps := verifyProblems(t, dir, defaultLimits())
	if !hasProblem(ps, "link", "is a symlink, not a regular file") {
		t.Errorf("problems %q", ps)
	}
}

func TestVerifyLimits(t *testing.T) {
	dir, bundle := packResults(t)
	tests := []struct {
		name string
		lim  func(*limits)
		want [2]string
	}{
		{"file", func(l *limits) { l.file = 30 }, [2]string{"results.json", "30-byte limit"}},
		{"total", func(l *limits) { l.total = 200 }, [2]string{"", "limit on a bundle"}},
		{"files", func(l *limits) { l.files = 3 }, [2]string{"", "more than 3"}},
		{"manifest", func(l *limits) { l.manifest = 100 }, [2]string{"manifest.json", "100-byte limit"}},
	}
	for _, tt := range tests {
		for _, p := range []string{dir, bundle} {
			t.Run(tt.name+"/"+filepath.Base(p), func(t *testing.T) {
				lim := defaultLimits()
				tt.lim(&lim)
				ps := verifyProblems(t, p, lim)
				file := tt.want[0]
				if file == "" {
					file = p
					if p == bundle {
						file = filepath.Base(p)
					}
				}
				if !hasProblem(ps, file, tt.want[1]) {
					t.Errorf("no problem %q about %s among %q", tt.want[1], file, ps)
				}
			})
		}
	}
}

func TestVerifyIOErrors(t *testing.T) {
	_, err := Verify(filepath.Join(t.TempDir(), "nosuch.tar.gz"))
	var ve *VerifyError
	if err == nil || errors.As(err, &ve) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing bundle: %v, want a plain error wrapping fs.ErrNotExist", err)
	}
	// A read error of the bundle file is an I/O failure, not damage, at any
	// point of the stream.
	_, bundle := packResults(t)
	data, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	disk := errors.New("input/output error")
	for _, n := range []int{0, 3, 10, 100, len(data) / 2, len(data) - 1} {
		r := io.MultiReader(bytes.NewReader(data[:n]), iotest.ErrReader(disk))
		_, err := verifyTarGz(r, "b.tar.gz", defaultLimits())
		if !errors.Is(err, disk) || errors.As(err, &ve) {
			t.Errorf("read error after %d bytes: %v, want a plain error wrapping it", n, err)
		}
	}
}

// tarEntry is an entry of a hand-made archive.
type tarEntry struct {
	name     string
	typeflag byte
	content  string
}

// manifestOf returns the manifest.json of files (path → content).
func manifestOf(t testing.TB, files map[string]string) string {
	m := &Manifest{Tool: "t", Created: testTime, Files: []ManifestFile{}}
	for p, c := range files {
		sum := sha256.Sum256([]byte(c))
		m.Files = append(m.Files, ManifestFile{Path: p, Size: int64(len(c)), SHA256: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(m.Files, func(a, b ManifestFile) int { return strings.Compare(a.Path, b.Path) })
	b, err := m.encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tarGz builds an archive with compress/gzip (not Pack's writer) and
// appends tail to the tar data before compressing it.
func tarGz(t testing.TB, entries []tarEntry, tail []byte) []byte {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typeflag, Mode: 0o644, Size: int64(len(e.content))}
		switch e.typeflag {
		case tar.TypeSymlink:
			h.Linkname, h.Size = e.content, 0
		case tar.TypeDir:
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			io.WriteString(tw, e.content)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	tb.Write(tail)
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(tb.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return zb.Bytes()
}

func TestVerifyCraftedArchives(t *testing.T) {
	files := map[string]string{"results.json": "alpha", "d/b.txt": "beta"}
	mf := manifestOf(t, files)
	good := []tarEntry{{"results.json", tar.TypeReg, "alpha"}, {"d/", tar.TypeDir, ""}, {"d/b.txt", tar.TypeReg, "beta"}, {ManifestName, tar.TypeReg, mf}}
	with := func(extra ...tarEntry) []tarEntry { return append(slices.Clone(good), extra...) }
	gzipOf := func(b []byte) []byte {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		zw.Write(b)
		zw.Close()
		return zb.Bytes()
	}
	tests := []struct {
		name string
		data []byte
		want [][2]string // "" file: the bundle
	}{
		{"good", tarGz(t, good, nil), nil},
		{"good, tar padded with zeros", tarGz(t, good, make([]byte, 9216)), nil},
		{"absolute path", tarGz(t, with(tarEntry{"/etc/passwd", tar.TypeReg, "x"}), nil), [][2]string{{"", `entry "/etc/passwd" at uncompressed byte 3584: unsafe path: absolute path`}}},
		{"dot-dot path", tarGz(t, with(tarEntry{"d/../../x", tar.TypeReg, "x"}), nil), [][2]string{{"", `entry "d/../../x" at uncompressed byte 3584: unsafe path: path escapes the bundle with ".."`}}},
		{"unclean path", tarGz(t, with(tarEntry{"./results.json", tar.TypeReg, "alpha"}), nil), [][2]string{{"", `"./results.json"`}}},
		{"duplicate entry", tarGz(t, with(tarEntry{"results.json", tar.TypeReg, "evil"}), nil), [][2]string{{"results.json", "duplicate entry in the archive (at uncompressed byte 3584)"}}},
		{"duplicate manifest", tarGz(t, with(tarEntry{ManifestName, tar.TypeReg, "{}"}), nil), [][2]string{{ManifestName, "duplicate entry"}}},
		{"symlink entry", tarGz(t, with(tarEntry{"link", tar.TypeSymlink, "/etc/passwd"}), nil), [][2]string{{"link", "archive entry of type symlink, not a regular file"}}},
		{"hard link entry", tarGz(t, with(tarEntry{"hl", tar.TypeLink, "results.json"}), nil), [][2]string{{"hl", "type hard link"}}},
		{"fifo entry", tarGz(t, with(tarEntry{"p", tar.TypeFifo, ""}), nil), [][2]string{{"p", "type named pipe"}}},
		{"extra entry", tarGz(t, with(tarEntry{"c.txt", tar.TypeReg, "gamma"}), nil), [][2]string{{"c.txt", "present but not listed"}}},
		{"missing entry", tarGz(t, good[1:], nil), [][2]string{{"results.json", "listed in manifest.json but missing"}}},
		{"no manifest", tarGz(t, good[:3], nil), [][2]string{{ManifestName, "missing from the archive"}}},
		{"data after the tar end", tarGz(t, good, []byte("trailing")), [][2]string{{"", "data after the end of the tar archive, at uncompressed byte 4608"}}},
		{"garbage after the gzip member", append(tarGz(t, good, nil), "garbage!!!"...), [][2]string{{"", "invalid gzip header"}}},
		{"second gzip member with data", append(tarGz(t, good, nil), gzipOf([]byte("x"))...), [][2]string{{"", "data after the end of the tar archive"}}},
		{"not gzip", []byte("hello, world\n"), [][2]string{{"", `not a gzip-compressed bundle: it starts with "hell", not the gzip magic number`}}},
		{"gzip magic, bad method", []byte("\x1f\x8b\x07\x00\x00\x00\x00\x00\x00\xff"), [][2]string{{"", "not a gzip-compressed bundle: invalid gzip header at compressed byte 10"}}},
		{"empty", nil, [][2]string{{"", "empty file"}}},
		{"gzip of not a tar", gzipOf(bytes.Repeat([]byte("not a tar "), 100)), [][2]string{{"", "corrupt tar header in uncompressed bytes 0 to 512"}}},
		{"reserved gzip flags", func() []byte {
			b := tarGz(t, good, nil)
			b[3] |= 0x80
			return b
		}(), [][2]string{{"", "reserved flag bits set (0x80)"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := verifyTarGz(bytes.NewReader(tt.data), "b.tar.gz", defaultLimits())
			if tt.want == nil {
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				return
			}
			ps := problemsOf(t, err)
			for _, w := range tt.want {
				file := w[0]
				if file == "" {
					file = "b.tar.gz"
				}
				if !hasProblem(ps, file, w[1]) {
					t.Errorf("no problem %q about %s among %q", w[1], file, ps)
				}
			}
		})
	}
}

// TestVerifyGzipBomb: a small bundle that inflates past the total limit is
// stopped there.
func TestVerifyGzipBomb(t *testing.T) {
	data := tarGz(t, []tarEntry{{"zeros", tar.TypeReg, string(make([]byte, 8<<20))}}, nil)
	lim := defaultLimits()
	lim.file = 1 << 20
	_, err := verifyTarGz(bytes.NewReader(data), "bomb.tar.gz", lim)
	ps := problemsOf(t, err)
	if !hasProblem(ps, "zeros", "over the 1048576-byte limit") {
		t.Errorf("problems %q", ps)
	}
	lim.file, lim.total = 16<<20, 1<<20
	_, err = verifyTarGz(bytes.NewReader(data), "bomb.tar.gz", lim)
	ps = problemsOf(t, err)
	if !hasProblem(ps, "bomb.tar.gz", "over the 1048576-byte limit on a bundle") {
		t.Errorf("problems %q", ps)
	}
}

func TestUnsafePath(t *testing.T) {
	tests := []struct {
		p    string
		want string
	}{
		{"results.json", ""},
		{"pcaps/001-DPS-SUB-002.pcapng", ""},
		{"pcaps/sub dir/x", ""},
		{"..foo", ""},
		{"", "empty"},
		{"/etc/passwd", "absolute"},
		{"C:/x", "drive letter"},
		{`a\b`, "backslash"},
		{"a/../b", ".."},
		{"..", ".."},
		{"a/./b", "not clean"},
		{"a//b", "not clean"},
		{"a/", "not clean"},
		{".", "not clean"},
		{"a\x00b", "control"},
		{"a\nb", "control"},
		{"\xff", "UTF-8"},
	}
	for _, tt := range tests {
		got := unsafePath(tt.p)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("unsafePath(%q) = %q, want %q", tt.p, got, tt.want)
		}
	}
}

// FuzzVerifyBundle: any bytes as a bundle must give a result or a
// *VerifyError, never a panic, a hang or an I/O error.
func FuzzVerifyBundle(f *testing.F) {
	_, bundle := packResults(f)
	b, err := os.ReadFile(bundle)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add(tarGz(f, []tarEntry{{"a", tar.TypeReg, "a"}, {ManifestName, tar.TypeReg, manifestOf(f, map[string]string{"a": "a"})}}, nil))
	lim := limits{file: 1 << 20, total: 4 << 20, manifest: 1 << 20, files: 1000}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := verifyTarGz(bytes.NewReader(data), "fuzz.tar.gz", lim)
		if err == nil {
			if m == nil {
				t.Fatal("no error and no manifest")
			}
			return
		}
		var ve *VerifyError
		if !errors.As(err, &ve) || len(ve.Problems) == 0 {
			t.Fatalf("error %v is not a *VerifyError with problems", err)
		}
	})
}

// TestCheckBundlePath: what Pack would refuse for the bundle's path alone
// is found before anything is written.
func TestCheckBundlePath(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	file := filepath.Join(other, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, path, want string }{
		{"beside the directory", filepath.Join(other, "b.tar.gz"), ""},
		{"an existing file is replaced", file, ""},
		{"inside the directory", filepath.Join(dir, "pcaps", "b.tar.gz"), "must not be inside"},
		{"a directory", other, "is a directory"},
		{"no such parent", filepath.Join(other, "nosuch", "b.tar.gz"), "no such file or directory"},
		{"parent is a file", filepath.Join(file, "b.tar.gz"), "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckBundlePath(dir, tt.path)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("CheckBundlePath(%s) = %v, want %q", tt.path, err, tt.want)
			}
		})
	}
}

// TestSymlinkedResultsDir: a results directory named through a symlink
// (a "latest" link, --out pointing at one) is the directory it names:
// sealed, verified and packed as such, not empty, nor "not a directory".
func TestSymlinkedResultsDir(t *testing.T) {
	dir := writeResults(t)
	link := filepath.Join(t.TempDir(), "latest")
	if err := os.Symlink(dir, link); err != nil {
		t.Skip(err)
	}
	if _, err := Verify(link); err != nil {
		t.Errorf("Verify(link): %v", err)
	}
	if _, err := VerifyExcept(link, "report.html"); err != nil {
		t.Errorf("VerifyExcept(link): %v", err)
	}
	m, err := WriteManifest(link, "dps-conform test")
	if err != nil {
		t.Fatalf("WriteManifest(link): %v", err)
	}
	if len(m.Files) != len(resultsFiles) {
		t.Errorf("WriteManifest(link): %d files, want %d", len(m.Files), len(resultsFiles))
	}
	bundle := filepath.Join(t.TempDir(), "r.tar.gz")
	if err := Pack(link, bundle); err != nil {
		t.Fatalf("Pack(link): %v", err)
	}
	if _, err := Verify(bundle); err != nil {
		t.Errorf("Verify(bundle of link): %v", err)
	}
}
