package conformance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/extensions/globals"
	"github.com/onsi/ginkgo/v2/formatter"
	"github.com/onsi/ginkgo/v2/types"
	"github.com/onsi/gomega"
)

// Config configures a run of the service suite.
type Config struct {
	Target Target
	// Profile is dps-2019 (default) or dps-2023.
	Profile string
	// LabelFilter and Focus select specs as Ginkgo's --label-filter and
	// --focus do.
	LabelFilter string
	Focus       []string
	// OutDir receives the evidence (pcaps/) and Ginkgo's JSON report
	// (ginkgo-report.json); the caller renders JUnit and the other reports
	// from Result.Report.
	OutDir string
	// AllowQuota runs quota-touching specs against a non-local target.
	AllowQuota bool
	// Progress receives one line per finished spec; nil discards.
	Progress io.Writer
	// GinkgoOutput receives Ginkgo's own console report; nil discards.
	GinkgoOutput io.Writer
	// SpecTimeout bounds each spec (default 30 s); ReadTimeout each wait for
	// a packet (default 5 s); CloseWait the wait for the server to close a
	// connection it must close (default 3 s).
	SpecTimeout, ReadTimeout, CloseWait time.Duration
	// Version is the tool version written into captures.
	Version string
	// KnownFaults, when set, are the emulator fault names specs may cite
	// (a spec naming another is a suite bug).
	KnownFaults []string
	// Seed orders the spec containers (Ginkgo shuffles them with it); the
	// same seed and selection give the same order. Zero means a seed from
	// the clock; Result.Report.SuiteConfig.RandomSeed holds the one used.
	Seed int64

	knownFaults map[string]bool
}

// Result is the outcome of a run.
type Result struct {
	Report types.Report
	// Catalog is the requirement catalogue the run used.
	Catalog *Catalog
	// Verdicts are per spec, in run order.
	Verdicts []Verdict
}

// Verdict is the outcome of one spec.
type Verdict struct {
	ID      string        `json:"id"`
	Level   Level         `json:"level"`
	Text    string        `json:"text"`
	State   string        `json:"state"` // passed, failed, skipped, pending, ...
	Message string        `json:"message,omitempty"`
	Pcap    string        `json:"pcap,omitempty"`
	Elapsed time.Duration `json:"elapsed"`
}

// Failed reports whether a verdict is a failure (a failure, a panic or a
// timeout). An interrupted or aborted spec is not: the target was not
// judged, see Interrupted.
func (v Verdict) Failed() bool {
	return v.State != "passed" && v.State != "skipped" && v.State != "pending" && !v.Interrupted()
}

// Interrupted reports whether the spec was stopped by an interrupt (Ctrl-C:
// Ginkgo's state interrupted) or by the run's context ending before it
// started (aborted) without judging its requirement. The suite aborts for
// no other reason.
func (v Verdict) Interrupted() bool { return v.State == "interrupted" || v.State == "aborted" }

// Failed lists the IDs of failed specs, sorted, without duplicates; with
// levels, only those of these levels (Failed(MUST) is the non-conformance).
func (r *Result) Failed(levels ...Level) []string {
	var ids []string
	for _, v := range r.Verdicts {
		if v.Failed() && !slices.Contains(ids, v.ID) && (len(levels) == 0 || slices.Contains(levels, v.Level)) {
			ids = append(ids, v.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// runMu serialises runs: Ginkgo keeps one suite per process.
var runMu sync.Mutex

func (cfg *Config) defaults() error {
	if cfg.Profile == "" {
		cfg.Profile = ProfileDPS2019
	}
	if err := CheckSelection(cfg.LabelFilter, cfg.Focus); err != nil {
		return err
	}
	if !KnownProfile(cfg.Profile) {
		return fmt.Errorf("%w: profile %q is not %s or %s", ErrTarget, cfg.Profile, ProfileDPS2019, ProfileDPS2023)
	}
	if cfg.SpecTimeout <= 0 {
		cfg.SpecTimeout = 30 * time.Second
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 5 * time.Second
	}
	if cfg.CloseWait <= 0 {
		cfg.CloseWait = 3 * time.Second
	}
	if cfg.OutDir == "" {
		cfg.OutDir = "dps-conform-results"
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.KnownFaults != nil {
		cfg.knownFaults = map[string]bool{}
		for _, f := range cfg.KnownFaults {
			cfg.knownFaults[f] = true
		}
	}
	return nil
}

// ErrSuiteBug is returned when the spec tree has registration mistakes.
var ErrSuiteBug = errors.New("conformance suite bug")

// build resets Ginkgo's global suite and registers the specs of cfg.
func build(cfg *Config) (*registrar, error) {
	cat, err := LoadCatalog()
	if err != nil {
		return nil, err
	}
	globals.Reset()
	r := &registrar{cfg: cfg, cat: cat, rules: map[string]*Rule{}, texts: map[string]bool{}, g: gomega.NewGomega(ginkgo.Fail)}
	all := ServiceRules()
	for _, rule := range all {
		r.rules[rule.ID] = rule
	}
	r.ruleOrder = cat.RulesUnder(all, cfg.Profile)
	var id [4]byte
	rand.Read(id[:])
	r.runID = hex.EncodeToString(id[:])
	registerServiceSpecs(r)
	return r, nil
}

// bugErr is ErrSuiteBug with the bugs recorded while the tree was built,
// or nil.
func (r *registrar) bugErr() error {
	if len(r.bugs) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n  %s", ErrSuiteBug, strings.Join(r.bugs, "\n  "))
}

// RemoveEvidence removes the files of outDir/pcaps whose names match one
// of patterns (filepath.Match syntax): the evidence an earlier run left
// there, which would otherwise mix with the new run's and be vouched for
// by its manifest. Files matching no pattern are left alone.
func RemoveEvidence(outDir string, patterns ...string) error {
	for _, pat := range patterns {
		old, err := filepath.Glob(filepath.Join(outDir, "pcaps", pat))
		if err != nil {
			return fmt.Errorf("removing the evidence of an earlier run: %w", err)
		}
		for _, f := range old {
			if err := os.Remove(f); err != nil {
				return fmt.Errorf("removing the evidence of an earlier run: %w", err)
			}
		}
	}
	return nil
}

// Run runs the service suite in this process with Ginkgo's RunSpecs and
// returns the report and per-spec verdicts. Runs are serialised (Ginkgo
// keeps one suite per process); Ginkgo's console reporter writes to
// cfg.GinkgoOutput while the run lasts. ctx's deadline bounds the suite; an
// interrupt (SIGINT) is handled by Ginkgo, which interrupts the running
// spec; a ctx cancelled otherwise aborts the suite before its next spec.
// Specs so stopped are [Verdict.Interrupted], not failed.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := cfg.Target.Validate(); err != nil {
		return nil, err
	}
	// A selection that matches nothing is a usage error, found before
	// anything in OutDir is touched: the evidence of an earlier run there
	// must survive a typo in --focus.
	if err := cfg.checkMatches(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating --out %s: %w", cfg.OutDir, err)
	}
	// Captures of an earlier run in the same directory would mix with
	// this run's evidence: remove the suite's own files (NNN-ID.pcapng,
	// NNN-ID.keylog), nothing else.
	if err := RemoveEvidence(cfg.OutDir, "[0-9][0-9][0-9]-*.pcapng", "[0-9][0-9][0-9]-*.keylog"); err != nil {
		return nil, err
	}
	runMu.Lock()
	defer runMu.Unlock()
	r, err := build(&cfg)
	if err != nil {
		return nil, err
	}
	res := &Result{Catalog: r.cat}
	description := "dps-conform service suite against " + cfg.Target.Name
	var sc types.SuiteConfig
	ginkgo.ReportAfterEach(func(s types.SpecReport) {
		if !selected(sc, description, nil, s) {
			return // left out by the label filter or focus: not part of the run
		}
		v := verdictOf(r.cat, s)
		res.Verdicts = append(res.Verdicts, v)
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "%-7s %-14s %s (%.2fs)\n", strings.ToUpper(v.State), v.ID, v.Text, v.Elapsed.Seconds())
		}
	})
	ginkgo.ReportAfterSuite("dps-conform", func(rep types.Report) { res.Report = rep })

	var rc types.ReporterConfig
	sc, rc = ginkgo.GinkgoConfiguration()
	sc.LabelFilter = cfg.LabelFilter
	sc.FocusStrings = cfg.Focus
	sc.RandomizeAllSpecs = false
	if cfg.Seed != 0 {
		sc.RandomSeed = cfg.Seed
	}
	if dl, ok := ctx.Deadline(); ok {
		sc.Timeout = time.Until(dl)
	}
	rc.NoColor = true
	abs, err := filepath.Abs(cfg.OutDir)
	if err != nil {
		return nil, err
	}
	rc.JSONReport = filepath.Join(abs, "ginkgo-report.json")
	out := cfg.GinkgoOutput
	if out == nil {
		out = io.Discard
	}
	saved := formatter.ColorableStdOut
	formatter.ColorableStdOut = out
	defer func() { formatter.ColorableStdOut = saved }()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("conformance: interrupted before the suite started: %w", err)
	}
	r.stop = ctx.Done()
	t := &failT{}
	ginkgo.RunSpecs(t, description, sc, rc)
	globals.Reset()
	if err := r.bugErr(); err != nil {
		return res, err
	}
	return res, nil
}

func verdictOf(cat *Catalog, s types.SpecReport) Verdict {
	v := Verdict{ID: SpecReportID(s), Text: s.FullText(), State: State(s).String(), Elapsed: s.RunTime}
	if req, ok := cat.Lookup(v.ID); ok {
		v.Level = req.Level
	}
	switch {
	case InterruptReason(s) != "":
		v.Message = InterruptReason(s)
	case s.State == types.SpecStatePanicked:
		v.Message = fmt.Sprintf("panic: %s at %s\n%s", s.Failure.ForwardedPanic, s.Failure.Location, s.Failure.Location.FullStackTrace)
	case s.State.Is(types.SpecStateFailureStates), s.State == types.SpecStateSkipped:
		v.Message = s.Failure.Message
		if s.State == types.SpecStateSkipped && v.Message == "" {
			v.Message = NotRunReason // selected (see Run), never started
		}
	}
	for _, e := range s.ReportEntries {
		if e.Name == "pcap" {
			v.Pcap = e.StringRepresentation()
		}
	}
	return v
}

// Preview lists the specs of cfg without running them, and what was
// registered (the spec inventory).
func Preview(cfg Config) (types.Report, []SpecInfo, error) {
	if err := cfg.defaults(); err != nil {
		return types.Report{}, nil, err
	}
	runMu.Lock()
	defer runMu.Unlock()
	r, err := build(&cfg)
	if err != nil {
		return types.Report{}, nil, err
	}
	saved := formatter.ColorableStdOut
	formatter.ColorableStdOut = io.Discard
	defer func() { formatter.ColorableStdOut = saved }()
	sc, _ := ginkgo.GinkgoConfiguration()
	sc.LabelFilter = cfg.LabelFilter
	sc.FocusStrings = cfg.Focus
	rep := ginkgo.PreviewSpecs("dps-conform service suite", sc)
	globals.Reset()
	if err := r.bugErr(); err != nil {
		return rep, r.specs, err
	}
	return rep, r.specs, nil
}

// ErrNoSpecMatched is wrapped by the SelectionError of a run whose label
// filter and focus select no spec.
var ErrNoSpecMatched = errors.New("no spec matched")

// CheckMatches is CheckSelection, and a SelectionError wrapping
// ErrNoSpecMatched when the label filter and focus select no spec: a
// caller checks it before it starts a target or touches an output
// directory.
func CheckMatches(labelFilter string, focus []string) error {
	cfg := Config{Target: Target{Name: "selection"}, LabelFilter: labelFilter, Focus: focus}
	return cfg.checkMatches()
}

// checkMatches previews the specs of cfg and reports a SelectionError
// when none would run.
func (cfg Config) checkMatches() error {
	rep, _, err := Preview(cfg)
	if err != nil {
		return err
	}
	for _, s := range rep.SpecReports {
		if s.LeafNodeType == types.NodeTypeIt && s.State != types.SpecStateSkipped {
			return nil
		}
	}
	return &SelectionError{Err: fmt.Errorf("%w --label-filter %q / --focus %q", ErrNoSpecMatched, cfg.LabelFilter, strings.Join(cfg.Focus, " "))}
}

// SelectionError is an invalid --label-filter or --focus, or one that
// selects no spec.
type SelectionError struct{ Err error }

func (e *SelectionError) Error() string { return e.Err.Error() }
func (e *SelectionError) Unwrap() error { return e.Err }

// ansiEscape matches the terminal colour sequences of Ginkgo's errors.
var ansiEscape = regexp.MustCompile("\x1b\\[[0-9;]*m")

// CheckSelection validates a label filter and focus expressions before a
// run: Ginkgo would otherwise exit the process on them.
func CheckSelection(labelFilter string, focus []string) error {
	if _, err := types.ParseLabelFilter(labelFilter); err != nil {
		// Ginkgo colours its message for a terminal: one plain line here.
		return &SelectionError{Err: fmt.Errorf("--label-filter %q: %s", labelFilter, ansiEscape.ReplaceAllString(err.Error(), ""))}
	}
	for _, f := range focus {
		if _, err := regexp.Compile(f); err != nil {
			return &SelectionError{Err: fmt.Errorf("--focus %q: %v", f, err)}
		}
	}
	return nil
}
