// Package reports turns a run of the conformance suite into certification
// reports: a model built from Ginkgo's types.Report, the requirement
// catalogue and the evidence the suite attached to each spec (transcript,
// sequence, findings, pcap path), and renderers for it (self-contained HTML,
// JUnit XML, JSON, Markdown), plus results bundles with a SHA-256 manifest.
package reports

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/onsi/ginkgo/v2/types"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/dps"
)

// Verdict of a requirement.
type Verdict string

// Requirement verdicts.
const (
	Pass       Verdict = "PASS"
	Fail       Verdict = "FAIL"
	Skip       Verdict = "SKIP"
	NotCovered Verdict = "NOT COVERED"
)

// Report is the certification report of one run. It is what results.json
// holds; every renderer reads only this.
type Report struct {
	Title   string    `json:"title"`
	Tool    Tool      `json:"tool"`
	Target  Target    `json:"target"`
	Profile string    `json:"profile"`
	Role    string    `json:"role"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	// Requirements are the catalogue's requirements of the run's role, in
	// ID order, each with its verdict and specs.
	Requirements []*Requirement `json:"requirements"`
	Summary      Summary        `json:"summary"`
}

// Tool identifies the binary that made the report.
type Tool struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
}

// Target identifies what was judged.
type Target struct {
	Name       string `json:"name"`
	Endpoint   string `json:"endpoint"`
	WSEndpoint string `json:"wsEndpoint,omitempty"`
	IDScope    string `json:"idScope,omitempty"`
	// TLS is what the target negotiated (from the captures), e.g.
	// "TLS 1.2 TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".
	TLS []string `json:"tls,omitempty"`
	// TLSProbe summarises what tlsprobe found on the MQTT endpoint:
	// versions and suites accepted, the certificate chain, and the DPS
	// TLS policy verdict, one line each.
	TLSProbe []string `json:"tlsProbe,omitempty"`
	// Product is the device under test (device runs).
	Product *Product `json:"product,omitempty"`
	// Attestation is how the device under test was enrolled (device
	// runs: symmetric-key or x509): which of DPS-DEV-005 (SAS token) and
	// DPS-DEV-006 (certificate) could apply.
	Attestation string `json:"attestation,omitempty"`
}

// Product describes a device under test (--product product.yaml).
type Product struct {
	Vendor   string `json:"vendor" yaml:"vendor"`
	Model    string `json:"model" yaml:"model"`
	Firmware string `json:"firmware" yaml:"firmware"`
}

// Requirement is one catalogue entry with its verdict.
type Requirement struct {
	ID        string  `json:"id"`
	Level     string  `json:"level"`
	Role      string  `json:"role"`
	Area      string  `json:"area"`
	Statement string  `json:"statement"`
	Source    string  `json:"source"`
	URL       string  `json:"url"`
	Verdict   Verdict `json:"verdict"`
	// Reason explains SKIP and NOT COVERED, and summarises FAIL.
	Reason string  `json:"reason,omitempty"`
	Specs  []*Spec `json:"specs,omitempty"`
}

// Spec is one spec of a requirement with its evidence.
type Spec struct {
	Text     string        `json:"text"`
	State    string        `json:"state"`
	Message  string        `json:"message,omitempty"`
	Duration time.Duration `json:"duration"`
	// Pcap is the capture's path relative to the results directory.
	Pcap       string                      `json:"pcap,omitempty"`
	Transcript string                      `json:"transcript,omitempty"`
	Sequence   []conformance.SequenceEvent `json:"sequence,omitempty"`
	Findings   []conformance.Finding       `json:"findings,omitempty"`
	Labels     []string                    `json:"labels,omitempty"`
}

// Failed reports whether the spec failed (failure, panic, timeout, abort),
// by the same mapping of states as [conformance.Verdict.Failed].
func (s *Spec) Failed() bool {
	return conformance.Verdict{State: s.State}.Failed()
}

// Interrupted reports whether an interrupt stopped the spec before it
// judged anything ([conformance.Verdict.Interrupted]).
func (s *Spec) Interrupted() bool {
	return conformance.Verdict{State: s.State}.Interrupted()
}

// Summary counts requirements and specs.
type Summary struct {
	Requirements map[Verdict]int `json:"requirements"`
	Specs        map[string]int  `json:"specs"`
	// MUST coverage: MUST requirements judged (PASS or FAIL) out of all
	// MUST requirements of the role, and those passed.
	MustTotal  int `json:"mustTotal"`
	MustJudged int `json:"mustJudged"`
	MustPassed int `json:"mustPassed"`
	MustFailed int `json:"mustFailed"`
	// Conformant is true when MUST requirements were judged and none
	// failed.
	Conformant bool `json:"conformant"`
	// Interrupted counts the specs an interrupt (Ctrl-C) stopped before
	// they judged anything: the run is incomplete.
	Interrupted int `json:"interrupted,omitempty"`
	// NotRun counts the specs the run selected but never started, because
	// an interrupt stopped it between two specs: the run is incomplete
	// even when no spec was cut short (Interrupted 0).
	NotRun int `json:"notRun,omitempty"`
	// NotRunReason, when not "", says why the NotRun specs were not run
	// when no interrupt stopped the run: a device run that stopped early
	// because the device opened no TCP connection in two scenarios in a
	// row (dps-conform device). Such a run is NO VERDICT, not INTERRUPTED.
	NotRunReason string `json:"notRunReason,omitempty"`
	// NotRunScenarios names the scenarios of a device run counted in
	// NotRun, in their order.
	NotRunScenarios []string `json:"notRunScenarios,omitempty"`
	// NoVerdictReason, when not "", makes the headline NO VERDICT unless
	// a MUST requirement failed: what was judged does not show enough (a
	// device that connected but never sent a CONNECT).
	NoVerdictReason string `json:"noVerdictReason,omitempty"`
	// Verdict is the headline: CONFORMANT, NON-CONFORMANT, INTERRUPTED
	// when the run was stopped before it finished and nothing failed
	// before that, or NO VERDICT when no MUST requirement was judged (a
	// device that never connected, a selection of SHOULD specs only):
	// nothing failed, and nothing was shown to hold either.
	Verdict string `json:"verdict"`
}

// Headlines of Summary.Verdict.
const (
	HeadlineConformant    = "CONFORMANT"
	HeadlineNonConformant = "NON-CONFORMANT"
	HeadlineInterrupted   = "INTERRUPTED"
	HeadlineNoVerdict     = "NO VERDICT"
)

// MustCoverage is the share of MUST requirements judged, in percent.
func (s Summary) MustCoverage() float64 {
	if s.MustTotal == 0 {
		return 0
	}
	return 100 * float64(s.MustJudged) / float64(s.MustTotal)
}

// MustCoverageText is MustCoverage with one decimal ("97.9%"), the same
// in every report; it never reads 100% while a MUST requirement was not
// judged (99.96% is "99.9%").
func (s Summary) MustCoverageText() string {
	c := math.Round(s.MustCoverage()*10) / 10
	if c == 100 && s.MustJudged < s.MustTotal {
		c = 99.9
	}
	return strconv.FormatFloat(c, 'f', 1, 64) + "%"
}

// Input is what Build needs.
type Input struct {
	Ginkgo  types.Report
	Catalog *conformance.Catalog
	Role    conformance.Role
	Profile string
	Tool    Tool
	Target  Target
	// ResultsDir makes pcap paths relative to it ("" keeps them).
	ResultsDir string
}

// Build makes the report: every catalogue requirement of in.Role (and the
// MQTT entries the specs cite) with a verdict aggregated over its specs:
// FAIL when one failed, PASS when one passed and none failed, SKIP (with the
// first reason) when all were skipped, NOT COVERED when no spec judged it.
func Build(in Input) *Report {
	r := &Report{
		Title:   fmt.Sprintf("dps-conform %s conformance report: %s", in.Role, in.Target.Name),
		Tool:    in.Tool,
		Target:  in.Target,
		Profile: in.Profile,
		Role:    string(in.Role),
		Started: in.Ginkgo.StartTime,
		Ended:   in.Ginkgo.EndTime,
		Summary: Summary{Requirements: map[Verdict]int{}, Specs: map[string]int{}},
	}
	specs := map[string][]*Spec{}
	tls := map[string]bool{}
	for _, sr := range in.Ginkgo.SpecReports {
		id := conformance.SpecReportID(sr)
		if id == "" || sr.LeafNodeType != types.NodeTypeIt {
			continue
		}
		if !conformance.Selected(in.Ginkgo, sr) {
			continue // left out by the label filter or focus: not part of the run
		}
		s := specOf(sr, in.ResultsDir, tls)
		if conformance.NotRun(in.Ginkgo, sr) {
			s.Message = conformance.NotRunReason
		}
		specs[id] = append(specs[id], s)
	}
	for t := range tls {
		r.Target.TLS = append(r.Target.TLS, t)
	}
	slices.Sort(r.Target.TLS)
	r.judge(in.Catalog, in.Role, in.Profile, specs)
	return r
}

// judge lists the catalogue's requirements of role (and any other the specs
// cite, but for the MQTT clause dictionary), each with the verdict
// aggregated over its specs, and counts the summary.
func (r *Report) judge(cat *conformance.Catalog, role conformance.Role, profile string, specs map[string][]*Spec) {
	for _, ss := range specs {
		for _, s := range ss {
			r.Summary.Specs[s.State]++
			if s.Interrupted() {
				r.Summary.Interrupted++
			}
			if s.State == "skipped" && s.Message == conformance.NotRunReason {
				r.Summary.NotRun++
			}
		}
	}
	for _, req := range cat.Requirements {
		ss := specs[req.ID]
		if req.Role != role && len(ss) == 0 {
			continue
		}
		if strings.HasPrefix(req.ID, "MQTT-") && len(ss) == 0 {
			continue // clause dictionary entries, not requirements of the run
		}
		rq := &Requirement{ID: req.ID, Level: string(req.Level), Role: string(req.Role), Area: req.Area,
			Statement: req.Statement, Source: req.Source, URL: req.URL, Specs: ss}
		rq.Verdict, rq.Reason = aggregate(req, ss, profile)
		r.Requirements = append(r.Requirements, rq)
		r.Summary.count(rq)
	}
	r.Summary.Verdict = r.Summary.Headline()
	r.Summary.Conformant = r.Summary.Verdict == HeadlineConformant
}

// count adds a requirement's verdict to the counts (every verdict, and the
// MUST coverage).
func (s *Summary) count(rq *Requirement) {
	s.Requirements[rq.Verdict]++
	if rq.Level != string(conformance.MUST) {
		return
	}
	s.MustTotal++
	switch rq.Verdict {
	case Pass:
		s.MustJudged++
		s.MustPassed++
	case Fail:
		s.MustJudged++
		s.MustFailed++
	}
}

// Incomplete reports whether an interrupt stopped the run before it
// finished: a spec was cut short (Interrupted) or never started (NotRun),
// not because the run stopped early on its own (NotRunReason).
func (s Summary) Incomplete() bool {
	return s.Interrupted > 0 || (s.NotRun > 0 && s.NotRunReason == "")
}

// Headline is the verdict the counts give: NON-CONFORMANT when a MUST
// requirement failed (before an interrupt too: what failed failed),
// INTERRUPTED when the run was stopped before it finished, NO VERDICT when
// no MUST requirement was judged, the run saw too little (NoVerdictReason)
// or stopped early on its own (NotRunReason), else CONFORMANT.
func (s Summary) Headline() string {
	switch {
	case s.MustFailed > 0:
		return HeadlineNonConformant
	case s.Incomplete():
		return HeadlineInterrupted
	case s.MustJudged == 0, s.NoVerdictReason != "", s.NotRunReason != "":
		return HeadlineNoVerdict
	default:
		return HeadlineConformant
	}
}

// Scenario is what one scenario of a device run gave: its capture, decoded
// and judged by the device rules.
type Scenario struct {
	Name       string
	Pcap       string
	Transcript string
	Sequence   []conformance.SequenceEvent
	// Applied counts, per requirement ID, how often its rule applied;
	// Findings are the rules' findings.
	Applied  map[string]int
	Findings []conformance.Finding
}

// DeviceInput is what BuildDevice needs.
type DeviceInput struct {
	Catalog   *conformance.Catalog
	Profile   string
	Tool      Tool
	Target    Target
	Started   time.Time
	Ended     time.Time
	Scenarios []Scenario
	// ResultsDir makes pcap paths relative to it ("" keeps them).
	ResultsDir string
	// Interrupted names the scenarios an interrupt (Ctrl-C) cut short:
	// not judged, and counted in Summary.Interrupted.
	Interrupted []string
	// NoVerdict, when not "", says why the run shows too little of the
	// device to call it conformant (Summary.NoVerdictReason).
	NoVerdict string
	// NotRun names the scenarios the run stopped before, on its own (not
	// an interrupt), and NotRunReason says why (Summary.NotRun,
	// NotRunScenarios, NotRunReason): the run is NO VERDICT.
	NotRun       []string
	NotRunReason string
}

// BuildDevice makes the report of a device run (dps-conform device): every
// device requirement, with one spec per scenario in which its rule applied
// (failed when the rule found something there), aggregated as Build does.
func BuildDevice(in DeviceInput) *Report {
	r := &Report{
		Title:   "dps-conform device conformance report: " + in.Target.Name,
		Tool:    in.Tool,
		Target:  in.Target,
		Profile: in.Profile,
		Role:    string(conformance.RoleDevice),
		Started: in.Started,
		Ended:   in.Ended,
		Summary: Summary{Requirements: map[Verdict]int{}, Specs: map[string]int{}},
	}
	specs := map[string][]*Spec{}
	for _, sc := range in.Scenarios {
		for id, n := range sc.Applied {
			if n == 0 {
				continue
			}
			s := &Spec{Text: "scenario " + sc.Name, State: "passed", Pcap: relative(in.ResultsDir, sc.Pcap), Transcript: sc.Transcript, Sequence: sc.Sequence}
			for _, f := range sc.Findings {
				if f.ID == id {
					s.Findings = append(s.Findings, f)
				}
			}
			if len(s.Findings) > 0 {
				s.State = "failed"
				s.Message = "scenario " + sc.Name + ": " + s.Findings[0].Detail()
			}
			specs[id] = append(specs[id], s)
		}
	}
	r.Summary.Interrupted = len(in.Interrupted)
	r.Summary.NoVerdictReason = in.NoVerdict
	if len(in.NotRun) > 0 {
		r.Summary.NotRun = len(in.NotRun)
		r.Summary.NotRunScenarios = slices.Clone(in.NotRun)
		r.Summary.NotRunReason = cmp.Or(in.NotRunReason, "the run stopped before these scenarios")
	}
	r.judge(in.Catalog, conformance.RoleDevice, in.Profile, specs)
	return r
}

func aggregate(req *conformance.Requirement, ss []*Spec, profile string) (Verdict, string) {
	if len(ss) == 0 {
		if profile != "" && !req.HoldsUnder(profile) {
			return Skip, fmt.Sprintf("holds under %s; the profile was %s", strings.Join(req.Profiles, ", "), profile)
		}
		return NotCovered, "no spec or rule of this run judges it"
	}
	var failed, passed int
	reason := ""
	for _, s := range ss {
		switch {
		case s.Failed():
			failed++
			if reason == "" {
				reason = firstLine(s.Message)
				if len(s.Findings) > 0 {
					reason = s.Findings[0].Detail()
				}
			}
		case s.State == "passed":
			passed++
		}
	}
	switch {
	case failed > 0:
		return Fail, fmt.Sprintf("%d of %d specs failed: %s", failed, len(ss), reason)
	case passed > 0:
		return Pass, ""
	}
	for _, s := range ss {
		if s.Interrupted() {
			return Skip, "interrupted before it was judged"
		}
	}
	return Skip, firstLine(ss[0].Message)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func specOf(sr types.SpecReport, dir string, tls map[string]bool) *Spec {
	s := &Spec{Text: sr.FullText(), State: conformance.State(sr).String(), Duration: sr.RunTime, Labels: sr.Labels()}
	switch {
	case conformance.InterruptReason(sr) != "":
		s.Message = conformance.InterruptReason(sr)
	case sr.State == types.SpecStatePanicked:
		s.Message = fmt.Sprintf("panic: %v at %s", sr.Failure.ForwardedPanic, sr.Failure.Location)
	case sr.State != types.SpecStatePassed:
		s.Message = sr.Failure.Message
	}
	// A failure may quote a CONNECT's password (a SAS token): its
	// signature stays out of results.json and the pages, as in junit.xml.
	s.Message = RedactSAS(s.Message)
	for _, e := range sr.ReportEntries {
		v := e.StringRepresentation()
		switch e.Name {
		case conformance.EntryPcap:
			s.Pcap = relative(dir, v)
		case conformance.EntryTranscript:
			s.Transcript = v
		case conformance.EntrySequence:
			json.Unmarshal([]byte(v), &s.Sequence)
		case conformance.EntryFindings:
			json.Unmarshal([]byte(v), &s.Findings)
		case conformance.EntryTLS:
			var facts []conformance.TLSFact
			if json.Unmarshal([]byte(v), &facts) == nil {
				for _, f := range facts {
					tls[f.Version+" "+f.Suite] = true
				}
			}
		}
	}
	return s
}

// relative is path relative to dir, slash-separated, when it lies inside
// dir; otherwise path as it is.
func relative(dir, path string) string {
	if dir == "" {
		return path
	}
	ad, err1 := filepath.Abs(dir)
	ap, err2 := filepath.Abs(path)
	rel, err := filepath.Rel(ad, ap)
	if err1 != nil || err2 != nil || err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return path
	}
	return filepath.ToSlash(rel)
}

// WriteJSON writes the report as results.json.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadJSON reads a report written by WriteJSON. Its errors say where the
// input broke as a 0-based byte offset (the first byte is offset 0) and
// what was expected there in JSON's terms, never in Go's.
func ReadJSON(rd io.Reader) (*Report, error) {
	b, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("reading results.json: %w", err)
	}
	var r Report
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		// Name where: a truncated or hand-edited file is the usual cause.
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF) && len(bytes.TrimSpace(b)) == 0:
			return nil, fmt.Errorf("reading results.json: the file is empty: %w", err)
		case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			return nil, fmt.Errorf("reading results.json: the file ends inside a JSON value (cut off?): %w", err)
		case errors.As(err, &se), errors.As(err, &te):
			return nil, fmt.Errorf("reading results.json %s", DescribeJSONError(b, err, "a dps-conform report (a JSON object, as 'dps-conform run --out' writes it)"))
		}
		// An unknown member ("json: unknown field"): encoding/json says
		// no where, and dec.InputOffset() is the end of the document,
		// not the member.
		return nil, fmt.Errorf("reading results.json: %w (a member dps-conform does not write)", err)
	}
	if r.Tool.Name == "" || r.Summary.Requirements == nil {
		return nil, fmt.Errorf("reading results.json: not a dps-conform report (no tool or summary)")
	}
	if err := r.checkSummary(); err != nil {
		return nil, fmt.Errorf("reading results.json: %w", err)
	}
	return &r, nil
}

// ReadJSONFile reads the results.json at path: the error of opening it
// as os.Open gives it (a *fs.PathError), or ReadJSON's prefixed with path.
func ReadJSONFile(path string) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := ReadJSON(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// checkSummary reports a summary that disagrees with the requirements'
// verdicts (a hand-edited or damaged results.json): the pages render the
// summary's headline, so it must be the one the verdicts give.
func (r *Report) checkSummary() error {
	want := Summary{Requirements: map[Verdict]int{}, Interrupted: r.Summary.Interrupted, NotRun: r.Summary.NotRun, NoVerdictReason: r.Summary.NoVerdictReason}
	var failed []string
	for _, rq := range r.Requirements {
		if rq == nil {
			return errors.New("a requirement is null")
		}
		want.count(rq)
		if rq.Verdict == Fail && rq.Level == string(conformance.MUST) {
			failed = append(failed, rq.ID)
		}
	}
	got := r.Summary
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"mustTotal", got.MustTotal, want.MustTotal}, {"mustJudged", got.MustJudged, want.MustJudged},
		{"mustPassed", got.MustPassed, want.MustPassed}, {"mustFailed", got.MustFailed, want.MustFailed},
	} {
		if c.got != c.want {
			return fmt.Errorf("the summary's %s is %d, but the requirements give %d (MUST requirements failed: %v): the file was edited or damaged", c.name, c.got, c.want, failed)
		}
	}
	for v, n := range want.Requirements {
		if got.Requirements[v] != n {
			return fmt.Errorf("the summary counts %d %s requirements, but %d are listed: the file was edited or damaged", got.Requirements[v], v, n)
		}
	}
	for v, n := range got.Requirements {
		if want.Requirements[v] != n {
			return fmt.Errorf("the summary counts %d %s requirements, but %d are listed: the file was edited or damaged", n, v, want.Requirements[v])
		}
	}
	// A results.json of before the verdict field has none: the pages
	// compute the headline from the counts checked above.
	if h := got.Headline(); got.Verdict != "" && (got.Verdict != h || got.Conformant != (h == HeadlineConformant)) {
		return fmt.Errorf("the summary's verdict is %s (conformant %v), but its counts give %s: the file was edited or damaged", got.Verdict, got.Conformant, h)
	}
	return nil
}

// DescribeJSONError says where and how data, decoded as JSON, broke: "at
// byte offset N: " (0-based: the first byte is offset 0) and, for a
// *json.UnmarshalTypeError, what was found and what was expected in JSON's
// terms (top names the expected document, for a mismatch of the document
// itself), never Go's types; other errors' own text.
func DescribeJSONError(data []byte, err error, top string) string {
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Field == "":
		// No member: the document itself, or an element of a top-level
		// array (a value of a top-level object), which has no name
		// either and is expected to be what its Go type reads.
		off, want := dps.JSONErrorOffset(data, err), top
		if off != len(data)-len(bytes.TrimLeft(data, " \t\r\n")) {
			want = dps.JSONWant(te.Type)
		}
		return fmt.Sprintf("at byte offset %d: %s", off, dps.JSONTypeError(te, want))
	case errors.As(err, &te):
		return fmt.Sprintf("at byte offset %d: %s", dps.JSONErrorOffset(data, err), dps.JSONTypeError(te, top))
	}
	return fmt.Sprintf("at byte offset %d: %v", max(dps.JSONErrorOffset(data, err), 0), err)
}
