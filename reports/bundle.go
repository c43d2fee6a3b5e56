package reports

// Results bundles: a results directory (what "dps-conform run --out DIR"
// leaves) with a SHA-256 manifest of its files, packed as a .tar.gz that
// anyone can check with "dps-conform report verify" before trusting a
// certification report.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"cmp"
	"compress/flate"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ManifestName is the manifest's file name at the top of a results
// directory or bundle.
const ManifestName = "manifest.json"

// Limits on what WriteManifest, Pack and Verify read, so that a hostile or
// damaged bundle (a gzip bomb, a tar header claiming an exabyte) cannot
// exhaust memory or disk bandwidth.
const (
	// MaxFileSize caps one file of a bundle.
	MaxFileSize int64 = 1 << 30
	// MaxTotalSize caps all files of a bundle together, uncompressed.
	MaxTotalSize int64 = 4 << 30
	// MaxFiles caps the number of entries of a bundle.
	MaxFiles = 100_000
	// MaxManifestSize caps manifest.json.
	MaxManifestSize int64 = 64 << 20
)

// ErrNotRegular is wrapped by the errors of WriteManifest and Pack for a
// symlink, device, socket or pipe in a results directory, or a file name a
// bundle cannot carry safely: a bundle holds regular files only.
var ErrNotRegular = errors.New("a results bundle holds regular files only")

// Manifest lists the files of a results directory with their SHA-256.
type Manifest struct {
	// Tool is the program (and version) that wrote the manifest.
	Tool    string    `json:"tool"`
	Created time.Time `json:"created"`
	// Files are every regular file of the directory but manifest.json, in
	// path order.
	Files []ManifestFile `json:"files"`
	// SHA256 is the hex SHA-256 of the manifest's own encoding with this
	// field empty, so that damage to manifest.json itself (its tool or
	// creation time) is detected too.
	SHA256 string `json:"sha256"`
}

// ManifestFile is one file of a manifest.
type ManifestFile struct {
	// Path is slash-separated and relative to the results directory.
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// VerifyError is a bundle or results directory that failed verification.
// Problems name the file and what is wrong with it, one problem each.
type VerifyError struct {
	// Path is the bundle or directory verified.
	Path     string
	Problems []string
}

func (e *VerifyError) Error() string {
	n := "1 problem"
	if len(e.Problems) != 1 {
		n = fmt.Sprintf("%d problems", len(e.Problems))
	}
	return fmt.Sprintf("%s failed verification, %s: %s", e.Path, n, strings.Join(e.Problems, "; "))
}

var _ error = (*VerifyError)(nil)

// limits are the caps in force; tests lower them.
type limits struct {
	file, total, manifest int64
	files                 int
}

func defaultLimits() limits {
	return limits{file: MaxFileSize, total: MaxTotalSize, manifest: MaxManifestSize, files: MaxFiles}
}

// WriteManifest hashes every regular file under dir (but dir/manifest.json)
// and writes dir/manifest.json naming tool as its writer. A symlink or other
// non-regular file, or a file over the size limits, is an error (wrapping
// [ErrNotRegular] for the former): the bundle could not be verified later.
func WriteManifest(dir string, tool string) (*Manifest, error) {
	return writeManifest(dir, tool, time.Now(), defaultLimits())
}

func writeManifest(dir, tool string, now time.Time, lim limits) (*Manifest, error) {
	files, err := regularFiles(dir, lim)
	if err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", dir, err)
	}
	m := &Manifest{Tool: tool, Created: now.UTC().Truncate(time.Second), Files: []ManifestFile{}}
	var total int64
	for _, p := range files {
		size, sum, err := hashFile(filepath.Join(dir, filepath.FromSlash(p)), lim.file)
		if err != nil {
			return nil, fmt.Errorf("manifest of %s: %w", dir, err)
		}
		if size > lim.file {
			return nil, fmt.Errorf("manifest of %s: %s: larger than the %d-byte limit on a bundled file", dir, p, lim.file)
		}
		if total += size; total > lim.total {
			return nil, fmt.Errorf("manifest of %s: files larger than the %d-byte limit on a bundle", dir, lim.total)
		}
		m.Files = append(m.Files, ManifestFile{Path: p, Size: size, SHA256: sum})
	}
	b, err := m.encode()
	if err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestName), b, 0o644); err != nil {
		return nil, fmt.Errorf("writing manifest: %w", err)
	}
	return m, nil
}

// encode returns the manifest's canonical encoding, with m.SHA256 set to its
// digest.
func (m *Manifest) encode() ([]byte, error) {
	c := *m
	c.SHA256 = ""
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	m.SHA256 = hex.EncodeToString(sum[:])
	c.SHA256 = m.SHA256
	if b, err = json.MarshalIndent(&c, "", "  "); err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// regularFiles lists the regular files under dir, slash-separated, relative
// and sorted, without the top-level manifest.json. Anything else but
// directories is an error wrapping ErrNotRegular.
func regularFiles(dir string, lim limits) ([]string, error) {
	var files []string
	root := walkRoot(dir)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			if !d.IsDir() {
				return fmt.Errorf("%s: not a directory", dir)
			}
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if why := unsafePath(rel); why != "" {
			return fmt.Errorf("%q: %s: %w", rel, why, ErrNotRegular)
		}
		switch {
		case d.IsDir():
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s: is a symlink: %w", rel, ErrNotRegular)
		case !d.Type().IsRegular():
			return fmt.Errorf("%s: is a %s: %w", rel, fileKind(d.Type()), ErrNotRegular)
		case rel == ManifestName:
			return nil
		}
		if len(files) >= lim.files {
			return fmt.Errorf("more than %d files", lim.files)
		}
		files = append(files, rel)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	return files, nil
}

// walkRoot is the directory to walk for dir: the one it names when dir is
// a symlink (a "latest" link, --out naming one), which filepath.WalkDir
// would not enter. Symlinks inside the directory stay findings.
func walkRoot(dir string) string {
	if fi, err := os.Lstat(dir); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			return r
		}
	}
	return dir
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	default:
		return "non-regular file"
	}
}

// hashFile hashes at most limit+1 bytes of the file; a size over limit means
// the file is larger than limit.
func hashFile(name string, limit int64) (int64, string, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	n, sum, err := hashReader(f, limit)
	if err != nil {
		return 0, "", fmt.Errorf("reading %s: %w", name, err)
	}
	return n, sum, nil
}

func hashReader(r io.Reader, limit int64) (int64, string, error) {
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r, limit+1))
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// unsafePath says why p cannot name a file of a bundle, or "" when it can:
// it must be a clean, relative, slash-separated UTF-8 path without "..",
// backslashes, drive letters or control characters.
func unsafePath(p string) string {
	switch {
	case p == "":
		return "empty path"
	case !utf8.ValidString(p):
		return "path is not valid UTF-8"
	case strings.HasPrefix(p, "/"):
		return "absolute path"
	case len(p) >= 2 && p[1] == ':' && (p[0]|0x20 >= 'a' && p[0]|0x20 <= 'z'):
		return "path with a drive letter"
	case strings.Contains(p, `\`):
		return "backslash in path"
	case strings.ContainsFunc(p, unicode.IsControl):
		return "control character in path"
	case slices.Contains(strings.Split(p, "/"), ".."):
		return `path escapes the bundle with ".."`
	case p == "." || path.Clean(p) != p:
		return "path is not clean"
	}
	return ""
}

// CheckBundlePath reports what would make Pack(dir, tgzPath) fail for the
// bundle's path alone, before anything is written: the bundle inside dir,
// a directory where the bundle goes, or no directory to put it in. A
// caller checks it before a long run whose results it will pack.
func CheckBundlePath(dir, tgzPath string) error {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	absOut, err := filepath.Abs(tgzPath)
	if err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	if rel, err := filepath.Rel(absDir, absOut); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("pack: the bundle %s must not be inside the directory %s", tgzPath, dir)
	}
	if fi, err := os.Stat(tgzPath); err == nil && fi.IsDir() {
		return fmt.Errorf("pack: the bundle %s is a directory; give a file name (name.tar.gz)", tgzPath)
	}
	parent := filepath.Dir(absOut)
	if fi, err := os.Stat(parent); err != nil {
		return fmt.Errorf("pack: the bundle's directory %s: %w", filepath.Dir(tgzPath), err)
	} else if !fi.IsDir() {
		return fmt.Errorf("pack: the bundle's directory %s is not a directory", filepath.Dir(tgzPath))
	}
	return nil
}

// Pack writes dir as a gzip-compressed tar file at tgzPath: the files its
// manifest.json lists and manifest.json itself (which must exist: write it
// with [WriteManifest] first) under their relative slash-separated paths, in
// path order, with mode 0644, each preceded by its parent directories (mode
// 0755) on first use. Each file is hashed while it is copied: a file whose
// size or SHA-256 no longer matches the manifest, a file missing or not
// listed, or a damaged manifest fails Pack, naming the file (a
// [*VerifyError] for what is found before packing). No absolute path, "..",
// link or device goes in. The gzip header carries a header CRC, so every
// byte of the bundle is covered by a checksum. tgzPath must not be inside
// dir; it is replaced only when the bundle is complete.
func Pack(dir, tgzPath string) error {
	if err := CheckBundlePath(dir, tgzPath); err != nil {
		return err
	}
	lim := defaultLimits()
	mi, err := os.Lstat(filepath.Join(dir, ManifestName))
	if err != nil {
		return fmt.Errorf("pack %s: no %s (write it first): %w", dir, ManifestName, err)
	} else if !mi.Mode().IsRegular() {
		return fmt.Errorf("pack %s: %s: is a %s: %w", dir, ManifestName, fileKind(mi.Mode()), ErrNotRegular)
	}
	var ps problems
	mb, err := readManifestFile(filepath.Join(dir, ManifestName), lim, &ps)
	if err != nil {
		return fmt.Errorf("pack %s: %w", dir, err)
	}
	var m *Manifest
	var entries map[string]ManifestFile
	if mb != nil {
		m, entries = parseManifest(mb, lim, &ps)
	}
	// The walk reads names only, no content: it refuses unsafe paths,
	// symlinks and other non-regular files anywhere under dir, and finds
	// the files the manifest does not list.
	present, err := regularFiles(dir, lim)
	if err != nil {
		return fmt.Errorf("pack %s: %w", dir, err)
	}
	if m != nil { // a manifest that does not parse lists nothing to compare
		compareNames(entries, present, &ps)
	}
	if err := ps.err(dir); err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	// The manifest's list, now known to name exactly the files present.
	files := []string{ManifestName}
	for p := range entries {
		files = append(files, p)
	}
	slices.Sort(files)

	tmp, err := os.CreateTemp(filepath.Dir(tgzPath), ".bundle-*.tar.gz")
	if err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	err = writeTarGz(tmp, files, func(tw *tar.Writer, p string) error {
		if p == ManifestName {
			// The bytes checked above, not a second read.
			return packBytes(tw, p, mb, mi.ModTime())
		}
		return packFile(tw, dir, entries[p])
	})
	if err != nil {
		tmp.Close()
		return fmt.Errorf("pack %s: %w", dir, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	if err := os.Rename(tmp.Name(), tgzPath); err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	return nil
}

// compareNames reports the files listed in the manifest but not present
// and those present but not listed; contents are checked while packing.
func compareNames(entries map[string]ManifestFile, present []string, ps *problems) {
	for p := range entries {
		if _, ok := slices.BinarySearch(present, p); !ok {
			ps.add(p, "listed in %s but missing", ManifestName)
		}
	}
	for _, p := range present {
		if _, ok := entries[p]; !ok {
			ps.add(p, "present but not listed in %s", ManifestName)
		}
	}
}

// writeTarGz writes files, in the order given, as a gzip-compressed tar
// archive; add writes one file's header and content.
func writeTarGz(w io.Writer, files []string, add func(tw *tar.Writer, p string) error) error {
	zw, err := newGzipWriter(w)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	dirs := map[string]bool{}
	for _, p := range files {
		// Parent directories first, outermost first.
		var parents []string
		for d := path.Dir(p); d != "." && !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
			dirs[d] = true
		}
		slices.Reverse(parents)
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}); err != nil {
				return err
			}
		}
		if err := add(tw, p); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// packBytes writes one file whose content is in memory.
func packBytes(tw *tar.Writer, p string, b []byte, mtime time.Time) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: 0o644, Size: int64(len(b)), ModTime: mtime.UTC().Truncate(time.Second)}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

// packFile copies the file of manifest entry e, hashing it on the way: a
// size or SHA-256 other than the manifest's is an error naming the file.
func packFile(tw *tar.Writer, dir string, e ManifestFile) error {
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(e.Path)))
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: is a %s: %w", e.Path, fileKind(fi.Mode()), ErrNotRegular)
	}
	if fi.Size() != e.Size {
		return fmt.Errorf("%s: size mismatch: %s says %d bytes, found %d (changed after the manifest was written?)", e.Path, ManifestName, e.Size, fi.Size())
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: e.Path, Mode: 0o644, Size: e.Size, ModTime: fi.ModTime().UTC().Truncate(time.Second)}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	// A file that shrinks while being packed fails here; only the bytes
	// the manifest covers are copied, and they must hash as it says.
	h := sha256.New()
	if _, err := io.CopyN(tw, io.TeeReader(f, h), e.Size); err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != e.SHA256 {
		return fmt.Errorf("%s: sha256 mismatch: %s says %s, content hashes to %s (changed after the manifest was written?)", e.Path, ManifestName, short(e.SHA256), short(sum))
	}
	return nil
}

// gzip header fields (RFC 1952 §2.3.1).
const (
	gzipFlagHeaderCRC = 0x02
	gzipFlagReserved  = 0xe0
	gzipOSUnknown     = 255
)

// gzipWriter writes one gzip member whose header has a CRC16 (FHCRC), which
// compress/gzip's writer cannot write but its reader checks: without it the
// header's MTIME, XFL and OS bytes are covered by no checksum.
type gzipWriter struct {
	w    io.Writer
	fw   *flate.Writer
	crc  uint32
	size uint32
}

func newGzipWriter(w io.Writer) (*gzipWriter, error) {
	hdr := []byte{0x1f, 0x8b, 8, gzipFlagHeaderCRC, 0, 0, 0, 0, 0, gzipOSUnknown}
	hdr = binary.LittleEndian.AppendUint16(hdr, uint16(crc32.ChecksumIEEE(hdr)))
	if _, err := w.Write(hdr); err != nil {
		return nil, err
	}
	fw, err := flate.NewWriter(w, flate.DefaultCompression)
	if err != nil {
		return nil, err
	}
	return &gzipWriter{w: w, fw: fw}, nil
}

func (z *gzipWriter) Write(p []byte) (int, error) {
	z.crc = crc32.Update(z.crc, crc32.IEEETable, p)
	z.size += uint32(len(p)) // ISIZE is the size modulo 2^32
	return z.fw.Write(p)
}

func (z *gzipWriter) Close() error {
	if err := z.fw.Close(); err != nil {
		return err
	}
	var t [8]byte
	binary.LittleEndian.PutUint32(t[:4], z.crc)
	binary.LittleEndian.PutUint32(t[4:], z.size)
	_, err := z.w.Write(t[:])
	return err
}

// Verify checks a results directory or a .tar.gz bundle against its
// manifest.json: every listed file present with its size and SHA-256, no
// file unlisted, and for a bundle an intact gzip stream (every checksum read
// to the end) and tar archive with safe, unique paths and regular files only.
// Every problem is reported, in an [*VerifyError]; any other error is an I/O
// failure (the bundle could not be read). The manifest is returned when it
// could be parsed.
func Verify(path string) (*Manifest, error) {
	return verify(path, defaultLimits())
}

func verify(p string, lim limits) (*Manifest, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if fi.IsDir() {
		return verifyDir(p, lim, nil)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("verify: %s: is a %s, not a results directory or bundle", p, fileKind(fi.Mode()))
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	m, err := verifyTarGz(f, filepath.Base(p), lim)
	var ve *VerifyError
	if errors.As(err, &ve) {
		ve.Path = p
	}
	return m, err
}

// problems collects verification problems, each about one file (or about the
// bundle as a whole when path is "").
type problems struct {
	list []problem
}

type problem struct{ path, msg string }

func (ps *problems) add(path, format string, args ...any) {
	ps.list = append(ps.list, problem{path, fmt.Sprintf(format, args...)})
}

// err returns nil without problems, else a *VerifyError listing them: those
// about the whole first, then by path, each kept in the order found.
func (ps *problems) err(name string) error {
	if len(ps.list) == 0 {
		return nil
	}
	slices.SortStableFunc(ps.list, func(a, b problem) int { return cmp.Compare(a.path, b.path) })
	e := &VerifyError{Path: name}
	for _, p := range ps.list {
		if p.path == "" {
			e.Problems = append(e.Problems, fmt.Sprintf("%s: %s", name, p.msg))
		} else {
			e.Problems = append(e.Problems, fmt.Sprintf("%s: %s", p.path, p.msg))
		}
	}
	return e
}

// found is a file as read from the directory or archive.
type found struct {
	size int64
	sum  string
}

// parseManifest decodes manifest.json strictly and checks it: canonical
// form, its own digest, and each entry's path, size and hash syntax. It
// returns the manifest (nil when it cannot be decoded) and its valid entries
// by path.
func parseManifest(b []byte, lim limits, ps *problems) (*Manifest, map[string]ManifestFile) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(&m)
	if err == nil && dec.More() {
		err = errors.New("data after the manifest")
	}
	if err != nil {
		ps.add(ManifestName, "not a valid manifest: %v", err)
		return nil, nil
	}
	stored := m.SHA256
	canon, err := m.encode() // sets m.SHA256 to the digest of the content
	switch {
	case err != nil:
		ps.add(ManifestName, "cannot be re-encoded: %v", err)
	case stored != m.SHA256:
		ps.add(ManifestName, "damaged: its own sha256 is %s, its content hashes to %s", short(stored), short(m.SHA256))
	case !bytes.Equal(canon, b):
		ps.add(ManifestName, "not in the form WriteManifest writes (edited?)")
	}
	m.SHA256 = stored
	entries := make(map[string]ManifestFile, len(m.Files))
	for i, f := range m.Files {
		why := unsafePath(f.Path)
		switch {
		case why != "":
			ps.add(ManifestName, "entry %d: %q: %s", i, f.Path, why)
			continue
		case f.Path == ManifestName:
			ps.add(ManifestName, "lists itself")
			continue
		case i > 0 && m.Files[i-1].Path >= f.Path:
			if _, dup := entries[f.Path]; dup {
				ps.add(f.Path, "listed twice in %s", ManifestName)
				continue
			}
			ps.add(ManifestName, "entry %d: %s is out of path order", i, f.Path)
		}
		if f.Size < 0 || f.Size > lim.file {
			ps.add(f.Path, "%s gives an impossible size %d", ManifestName, f.Size)
		}
		if len(f.SHA256) != sha256.Size*2 || strings.ToLower(f.SHA256) != f.SHA256 || !isHex(f.SHA256) {
			ps.add(f.Path, "%s gives a malformed sha256 %q", ManifestName, f.SHA256)
		}
		entries[f.Path] = f
	}
	if len(m.Files) > lim.files {
		ps.add(ManifestName, "lists %d files, over the limit of %d", len(m.Files), lim.files)
	}
	// A manifest of nothing (or of files without the results) vouches for
	// nothing: every results directory holds results.json.
	if _, ok := entries["results.json"]; !ok {
		ps.add("results.json", "not listed in %s: a results directory or bundle holds it", ManifestName)
	}
	return &m, entries
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// short abbreviates a hex digest for messages.
func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12] + "…"
	}
	if sum == "" {
		return `""`
	}
	return sum
}

// compare reports the differences between the manifest's entries and the
// files found. complete is false when the archive could not be read to its
// end: files not reached are then not reported missing.
func compare(entries map[string]ManifestFile, files map[string]found, complete bool, ps *problems) {
	var notReached int
	for p, e := range entries {
		f, ok := files[p]
		switch {
		case !ok && complete:
			ps.add(p, "listed in %s but missing", ManifestName)
		case !ok:
			notReached++
		case f.size != e.Size:
			ps.add(p, "size mismatch: %s says %d bytes, found %d", ManifestName, e.Size, f.size)
		case f.sum != e.SHA256:
			ps.add(p, "sha256 mismatch: %s says %s, content hashes to %s", ManifestName, short(e.SHA256), short(f.sum))
		}
	}
	if notReached > 0 {
		ps.add("", "%d listed files not reached, so not verified", notReached)
	}
	for p := range files {
		if _, ok := entries[p]; !ok {
			ps.add(p, "present but not listed in %s", ManifestName)
		}
	}
}

// VerifyExcept verifies a results directory as Verify does, leaving out
// the files named in except (slash-separated paths, such as the pages
// `report render` writes again): they may be missing or differ. The
// other files, results.json above all, must be as the manifest lists
// them, so that rendering and sealing again cannot vouch for an edited
// result.
func VerifyExcept(dir string, except ...string) (*Manifest, error) {
	skip := map[string]bool{}
	for _, e := range except {
		skip[e] = true
	}
	return verifyDir(dir, defaultLimits(), skip)
}

func verifyDir(dir string, lim limits, except map[string]bool) (*Manifest, error) {
	var ps problems
	files := map[string]found{}
	var total int64
	stopped := false
	root := walkRoot(dir)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root || d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		why := unsafePath(rel)
		switch {
		case rel == ManifestName:
			return nil // read below
		case except[rel]:
			return nil
		case why != "":
			ps.add(rel, "%s", why)
			return nil
		case !d.Type().IsRegular():
			ps.add(rel, "is a %s, not a regular file", fileKind(d.Type()))
			return nil
		case len(files) >= lim.files:
			ps.add("", "more than %d files; verification stopped", lim.files)
			stopped = true
			return fs.SkipAll
		}
		size, sum, err := hashFile(p, lim.file)
		if err != nil {
			return err
		}
		if size > lim.file {
			ps.add(rel, "larger than the %d-byte limit on a bundled file", lim.file)
			return nil
		}
		if total += size; total > lim.total {
			ps.add("", "files larger than the %d-byte limit on a bundle; verification stopped", lim.total)
			stopped = true
			return fs.SkipAll
		}
		files[rel] = found{size, sum}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	b, err := readManifestFile(filepath.Join(dir, ManifestName), lim, &ps)
	if err != nil {
		return nil, err
	}
	var m *Manifest
	if b != nil {
		m = checkManifest(b, files, !stopped, lim, &ps, except)
	}
	return m, ps.err(dir)
}

// checkManifest parses manifest.json and compares it with the files found.
// Entries named in except are not compared.
func checkManifest(b []byte, files map[string]found, complete bool, lim limits, ps *problems, except map[string]bool) *Manifest {
	m, entries := parseManifest(b, lim, ps)
	if m != nil {
		for e := range except {
			delete(entries, e)
		}
		compare(entries, files, complete, ps)
	}
	return m
}

// readManifestFile reads a directory's manifest.json; nil without error
// when it is missing or too large (a problem then says so).
func readManifestFile(name string, lim limits, ps *problems) ([]byte, error) {
	fi, err := os.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		ps.add(ManifestName, "missing")
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if !fi.Mode().IsRegular() {
		ps.add(ManifestName, "is a %s, not a regular file", fileKind(fi.Mode()))
		return nil, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, lim.manifest+1))
	if err != nil {
		return nil, fmt.Errorf("verify: reading %s: %w", name, err)
	}
	if int64(len(b)) > lim.manifest {
		ps.add(ManifestName, "larger than the %d-byte limit on a manifest", lim.manifest)
		return nil, nil
	}
	return b, nil
}

// countingReader counts the compressed bytes the gzip reader consumed. It
// is an io.ByteReader, so compress/flate reads through it byte by byte
// rather than buffering ahead, and the count is exact. err keeps the first
// read error of the underlying file, which is an I/O failure, not damage.
type countingReader struct {
	br  *bufio.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.br.Read(p)
	c.n += int64(n)
	c.note(err)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.br.ReadByte()
	if err == nil {
		c.n++
	}
	c.note(err)
	return b, err
}

func (c *countingReader) note(err error) {
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
}

// errTooLarge stops reading a bundle at the total limit.
var errTooLarge = errors.New("uncompressed bundle over the size limit")

// capReader counts the uncompressed bytes and stops at the total limit.
type capReader struct {
	r    io.Reader
	n    int64
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.left -= int64(n)
	return n, err
}

// verifyTarGz verifies a bundle read from r; name is used in problems about
// the bundle as a whole.
func verifyTarGz(r io.Reader, name string, lim limits) (*Manifest, error) {
	var ps problems
	cr := &countingReader{br: bufio.NewReader(r)}
	// RFC 1952 §2.3.1.2: a decompressor must reject reserved FLG bits;
	// compress/gzip ignores them.
	h, err := cr.br.Peek(4)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("verify: reading %s: %w", name, err)
	}
	switch {
	case len(h) >= 2 && (h[0] != 0x1f || h[1] != 0x8b):
		ps.add("", "not a gzip-compressed bundle: it starts with %q, not the gzip magic number", h)
		return nil, ps.err(name)
	case len(h) == 4 && h[3]&gzipFlagReserved != 0:
		ps.add("", "gzip header byte 3: reserved flag bits set (%#02x)", h[3])
	}
	zr, err := gzip.NewReader(cr)
	if err != nil {
		if cr.err != nil {
			return nil, fmt.Errorf("verify: reading %s: %w", name, cr.err)
		}
		if errors.Is(err, io.EOF) {
			ps.add("", "empty file, not a gzip-compressed bundle")
		} else {
			ps.add("", "not a gzip-compressed bundle: %s", damage(err, cr, nil))
		}
		return nil, ps.err(name)
	}
	ur := &capReader{r: zr, left: lim.total}
	tr := tar.NewReader(ur)
	files := map[string]found{}
	seen := map[string]bool{}
	var manifest []byte
	manifestOK := false
	entries := 0
	complete := true
	// start is where the next entry's header begins: past the previous
	// entry's data, padded to the 512-byte tar block.
	var start int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if cr.err != nil {
				return nil, fmt.Errorf("verify: reading %s: %w", name, cr.err)
			}
			if errors.Is(err, tar.ErrHeader) {
				ps.add("", "corrupt tar header in uncompressed bytes %d to %d", start, ur.n)
			} else {
				ps.add("", "%s", damage(err, cr, ur))
			}
			complete = false
			break
		}
		at := start
		start = (ur.n + max(hdr.Size, 0) + 511) / 512 * 512
		if entries++; entries > lim.files {
			ps.add("", "more than %d entries; verification stopped", lim.files)
			complete = false
			break
		}
		p := hdr.Name
		if hdr.Typeflag == tar.TypeDir {
			p = strings.TrimSuffix(p, "/")
		}
		if why := unsafePath(p); why != "" {
			ps.add("", "entry %q at uncompressed byte %d: unsafe path: %s", hdr.Name, at, why)
			continue
		}
		if seen[p] {
			ps.add(p, "duplicate entry in the archive (at uncompressed byte %d)", at)
			continue
		}
		seen[p] = true
		switch hdr.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg:
		default:
			ps.add(p, "archive entry of type %s, not a regular file", tarType(hdr.Typeflag))
			continue
		}
		limit := lim.file
		if p == ManifestName {
			limit = lim.manifest
		}
		if hdr.Size > limit {
			ps.add(p, "archive entry of %d bytes, over the %d-byte limit", hdr.Size, limit)
			continue
		}
		if p == ManifestName {
			manifest, err = io.ReadAll(tr)
			manifestOK = err == nil
		} else {
			var f found
			f.size, f.sum, err = hashReader(tr, limit)
			if err == nil {
				files[p] = f
			}
		}
		if err != nil {
			if cr.err != nil {
				return nil, fmt.Errorf("verify: reading %s: %w", name, cr.err)
			}
			ps.add("", "%s (inside entry %s)", damage(err, cr, ur), p)
			complete = false
			break
		}
	}
	if complete {
		// Read the rest of the gzip stream: only at its end are the CRC-32
		// and size of all the data checked, and nothing may follow the tar
		// archive but zero padding.
		nonzero, err := drainZeros(ur)
		if cr.err != nil {
			return nil, fmt.Errorf("verify: reading %s: %w", name, cr.err)
		}
		if nonzero >= 0 {
			ps.add("", "data after the end of the tar archive, at uncompressed byte %d", nonzero)
		}
		if err != nil {
			ps.add("", "%s", damage(err, cr, ur))
			complete = false
		}
	}
	var m *Manifest
	switch {
	case manifestOK:
		m = checkManifest(manifest, files, complete, lim, &ps, nil)
	case complete:
		ps.add(ManifestName, "missing from the archive")
	}
	return m, ps.err(name)
}

// drainZeros reads r to its end; nonzero is the offset of the first non-zero
// byte, or -1.
func drainZeros(r *capReader) (nonzero int64, err error) {
	nonzero = -1
	buf := make([]byte, 32<<10)
	for {
		off := r.n
		n, err := r.Read(buf)
		if i := slices.IndexFunc(buf[:n], func(b byte) bool { return b != 0 }); i >= 0 && nonzero < 0 {
			nonzero = off + int64(i)
		}
		if err == io.EOF {
			return nonzero, nil
		}
		if err != nil {
			return nonzero, err
		}
	}
}

// damage describes a read error of a damaged bundle with the offsets
// reached: compressed (the bundle file) and, when known, uncompressed.
func damage(err error, cr *countingReader, ur *capReader) string {
	at := fmt.Sprintf("at compressed byte %d", cr.n)
	if ur != nil {
		at += fmt.Sprintf(" (uncompressed byte %d)", ur.n)
	}
	var ce flate.CorruptInputError
	switch {
	case errors.Is(err, errTooLarge):
		return fmt.Sprintf("uncompressed content over the %d-byte limit on a bundle %s; verification stopped", ur.n, at)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated: the data ends " + at
	case errors.Is(err, gzip.ErrChecksum):
		return "gzip checksum mismatch " + at + ": the compressed data is damaged"
	case errors.Is(err, gzip.ErrHeader):
		return "invalid gzip header " + at
	case errors.As(err, &ce):
		return "corrupt deflate data " + at
	case errors.Is(err, tar.ErrHeader):
		return "corrupt tar header " + at
	}
	return fmt.Sprintf("unreadable %s: %v", at, err)
}

func tarType(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "named pipe"
	}
	return fmt.Sprintf("%q", t)
}
