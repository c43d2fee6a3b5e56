package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/onsi/ginkgo/v2/types"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/reports"
)

const reportUsage = `Usage:
  dps-conform report verify BUNDLE|DIR
  dps-conform report render RESULTS_DIR

Works on the results of 'dps-conform run --out DIR': the directory, or a
bundle of it (a .tar.gz of the directory). The directory's manifest.json
lists every file with its size and SHA-256.

  verify  checks a bundle or results directory against its manifest.json:
          every listed file present with its size and SHA-256, no file
          unlisted, manifest.json itself undamaged, and for a bundle an
          intact gzip stream and a tar archive of regular files with safe,
          unique paths. Prints "bundle OK: N files, sha256 verified", or
          every problem on stderr and exits 1.
  render  re-renders the reports of a results directory from its
          results.json (report.html, summary.md, and junit.xml: from
          ginkgo-report.json when that exists, from results.json for the
          results of 'dps-conform device'), then rewrites manifest.json.

Run 'dps-conform report verify -h' or 'dps-conform report render -h' for
the details. Exit codes: 0 verified or rendered; 1 verification failed;
2 usage error or a missing or unreadable argument; 3 the environment failed
(e.g. the results directory is not writable).
`

const reportVerifyUsage = `Usage:
  dps-conform report verify BUNDLE|DIR

Checks a results bundle (a .tar.gz) or a results directory against its
manifest.json and reports every problem, each naming the file: a SHA-256 or
size mismatch, a file listed but missing or present but not listed, a
damaged, missing or hand-edited manifest.json, a symlink or other
non-regular file; for a bundle also a corrupt or truncated gzip stream or
tar archive (with the byte offset), and absolute, ".." or duplicate paths.
Files are read up to 1 GiB each and 4 GiB in all.

Prints "bundle OK: N files, sha256 verified" and exits 0, or prints the
problems on stderr and exits 1. A missing or unreadable BUNDLE|DIR exits 2.
`

const reportRenderUsage = `Usage:
  dps-conform report render RESULTS_DIR

Re-renders the reports of a results directory from its results.json (the
report model 'dps-conform run --out' wrote), with this binary's renderers:
report.html, summary.md, and junit.xml (from ginkgo-report.json when that
exists; from results.json for the results of 'dps-conform device'). Then
rewrites manifest.json over every file of the directory, so the
directory (or a bundle of it) verifies again with 'dps-conform report verify'.

When the directory has a manifest.json, every file but the rendered pages
must first match it (exit 1 otherwise, naming each file): rendering must not
seal a results.json edited since the run. A results.json whose summary
disagrees with its requirements' verdicts is refused too (exit 2).
`

// VerifyFailedError is a results bundle or directory that failed
// verification; its problems have been printed. It maps to
// [ExitNonConformant]: the bundle's reports must not be trusted.
type VerifyFailedError struct {
	Path     string
	Problems int
}

func (e *VerifyFailedError) Error() string {
	if e.Problems == 1 {
		return fmt.Sprintf("%s failed verification: 1 problem", e.Path)
	}
	return fmt.Sprintf("%s failed verification: %d problems", e.Path, e.Problems)
}

var _ error = (*VerifyFailedError)(nil)

func reportCmd(_ context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		io.WriteString(env.Stderr, reportUsage)
		return usageErrorf("missing subcommand: verify or render")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "-h", "-help", "--help":
		io.WriteString(env.Stdout, reportUsage)
		return nil
	case "verify":
		return reportVerify(env, rest)
	case "render":
		return reportRender(env, rest)
	default:
		if strings.HasPrefix(sub, "-") {
			return usageErrorf("unknown flag %q (the subcommand comes first: verify or render)", sub)
		}
		return usageErrorf("unknown subcommand %q: want verify or render", sub)
	}
}

func reportVerify(env *Env, args []string) error {
	fs := newFlagSet("report verify", reportVerifyUsage)
	if done, err := parseFlags(env, fs, args); done || err != nil {
		return err
	}
	switch fs.NArg() {
	case 0:
		return usageErrorf("missing BUNDLE or DIR to verify")
	case 1:
	default:
		return usageErrorf("want one BUNDLE or DIR, got %d arguments", fs.NArg())
	}
	path := fs.Arg(0)
	fi, err := os.Stat(path)
	if err != nil {
		return inputError("", err)
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() {
		return usageErrorf("%s: not a results directory or bundle", path)
	}
	m, err := reports.Verify(path)
	var ve *reports.VerifyError
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			fmt.Fprintf(env.Stderr, "%s report verify: %s\n", progName, p)
		}
		return &VerifyFailedError{Path: path, Problems: len(ve.Problems)}
	}
	if err != nil {
		return inputError("", err)
	}
	fmt.Fprintf(env.Stdout, "bundle OK: %d files, sha256 verified\n", len(m.Files))
	return nil
}

func reportRender(env *Env, args []string) error {
	fs := newFlagSet("report render", reportRenderUsage)
	if done, err := parseFlags(env, fs, args); done || err != nil {
		return err
	}
	switch fs.NArg() {
	case 0:
		return usageErrorf("missing RESULTS_DIR")
	case 1:
	default:
		return usageErrorf("want one RESULTS_DIR, got %d arguments", fs.NArg())
	}
	dir := fs.Arg(0)
	if fi, err := os.Stat(dir); err != nil {
		return inputError("", err)
	} else if !fi.IsDir() {
		return usageErrorf("%s: not a results directory", dir)
	}
	// The pages are rendered again; everything else must be as sealed.
	if _, err := os.Lstat(filepath.Join(dir, reports.ManifestName)); err == nil {
		_, err := reports.VerifyExcept(dir, "report.html", "summary.md", "junit.xml")
		var ve *reports.VerifyError
		if errors.As(err, &ve) {
			for _, p := range ve.Problems {
				fmt.Fprintf(env.Stderr, "%s report render: %s\n", progName, p)
			}
			fmt.Fprintf(env.Stderr, "%s report render: %s no longer matches its %s; rendering would seal the change, so nothing was written\n", progName, dir, reports.ManifestName)
			return &VerifyFailedError{Path: dir, Problems: len(ve.Problems)}
		}
		if err != nil {
			return inputError("", err)
		}
	}
	rep, err := readResults(filepath.Join(dir, "results.json"))
	if err != nil {
		return err
	}
	written, err := writeReportFiles(dir, rep, false)
	if err != nil {
		return err
	}
	// A service run's junit.xml comes from Ginkgo's report; a device
	// run's was written from the model above.
	var gr *types.Report
	if rep.Role != string(conformance.RoleDevice) {
		if gr, err = readGinkgoReport(filepath.Join(dir, "ginkgo-report.json")); err != nil {
			return err
		}
	}
	if gr != nil {
		if err := reports.WriteJUnit(filepath.Join(dir, "junit.xml"), *gr); err != nil {
			return &EnvError{Err: err}
		}
		written = append(written, "junit.xml")
	}
	m, err := reports.WriteManifest(dir, toolString())
	if errors.Is(err, reports.ErrNotRegular) {
		return &UsageError{Err: err}
	}
	if err != nil {
		return &EnvError{Err: err}
	}
	fmt.Fprintf(env.Stdout, "rendered %s in %s; manifest.json lists %d files\n", strings.Join(written, ", "), dir, len(m.Files))
	return nil
}

// readResults reads results.json; a missing or malformed one is the user's
// input error.
func readResults(name string) (*reports.Report, error) {
	rep, err := reports.ReadJSONFile(name)
	var pe *fs.PathError
	switch {
	case errors.As(err, &pe):
		return nil, inputError("", err)
	case err != nil:
		return nil, &UsageError{Err: err}
	}
	return rep, nil
}

// readGinkgoReport reads the first report of ginkgo-report.json (Ginkgo
// writes a JSON array of reports), or nil when the file does not exist.
func readGinkgoReport(name string) (*types.Report, error) {
	b, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, inputError("", err)
	}
	var rs []types.Report
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, usageErrorf("%s: not a Ginkgo JSON report: %s", name, reports.DescribeJSONError(b, err, "an array of Ginkgo reports (as --json-report writes it)"))
	}
	if len(rs) == 0 {
		return nil, usageErrorf("%s: holds no report", name)
	}
	return &rs[0], nil
}

// toolString names this binary in a manifest: "dps-conform VERSION
// (COMMIT)".
func toolString() string {
	t := toolInfo()
	s := t.Name + " " + t.Version
	if t.Commit != "" {
		s += " (" + t.Commit[:min(12, len(t.Commit))] + ")"
	}
	return s
}
