package conformance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	"github.com/onsi/gomega"

	"github.com/dps-conform/dps-conform/tracer"
)

// registrar registers the specs of one run into Ginkgo's tree. It is the
// wrapper of STYLE.md guideline 12: a spec cannot be registered without a
// requirement ID, and the ID becomes the spec's labels. Mistakes (an ID
// missing from the catalogue, a duplicate spec text, a text carrying
// bracket tags, an unknown fault name) are recorded as suite bugs while the
// tree is built and registered as failing specs; Run and Preview then
// return ErrSuiteBug.
type registrar struct {
	cfg   *Config
	cat   *Catalog
	rules map[string]*Rule
	// ruleOrder is ServiceRules() that hold under the run's profile, in ID
	// order, for judging.
	ruleOrder []*Rule
	bugs      []string
	texts     map[string]bool
	// specs lists what was registered, for the inventory and the
	// consistency tests.
	specs []SpecInfo
	seq   atomic.Int64
	// devices counts the identities handed out (stable ids for non-local
	// targets).
	devices atomic.Int64
	// busy says until when a device of a target that is not local may
	// still have a registration in progress, by registration id: the
	// specs share those ids, and a register while one is in progress is
	// answered 409 (DPS-PROTOCOL.md Part A §8).
	// polls holds, by the same ids, when the suite polled each in the
	// last pollWindow: DPS throttles a device's polls beyond 5 per 10 s
	// with 429 (Part A §8), and a spec handed a device whose budget an
	// earlier spec spent would see its poll answered 429, not judged.
	busyMu sync.Mutex
	busy   map[string]time.Time
	polls  map[string][]time.Time
	runID  string
	g      gomega.Gomega
	// container is the text of the enclosing Describe, for duplicate checks.
	container []string
	// stop is Run's context's Done channel: a spec that would start after
	// it closed aborts the suite instead (nil: never). Ginkgo interrupts
	// the specs on SIGINT itself; this covers a cancel that is no signal,
	// or a signal before Ginkgo's handler was installed.
	stop <-chan struct{}
}

// SpecInfo describes one registered spec.
type SpecInfo struct {
	ID     string
	Text   string
	Faults []string
	// Profiles are the profiles its requirement holds under; under
	// another the spec skips.
	Profiles []string
	// Extra are the labels given with Labels (clause:… of the malformed
	// packet specs).
	Extra []string
}

// SpecOption decorates a spec at registration.
type SpecOption interface{ apply(*specOpts) }

type specOpts struct {
	faults  []string
	quota   bool
	timeout time.Duration
	extra   []string
}

type optFunc func(*specOpts)

func (f optFunc) apply(o *specOpts) { f(o) }

// Faults names the emulator fault switches (ARCHITECTURE.md §4) under which
// the spec must fail; the self-test of the suite runs each and requires it.
// They become labels "fault:NAME".
func Faults(names ...string) SpecOption {
	return optFunc(func(o *specOpts) { o.faults = append(o.faults, names...) })
}

// Quota marks a spec that trips throttling or spends a service quota: it is
// labelled "quota", runs Serial, and against a non-local target only with
// Config.AllowQuota.
func Quota() SpecOption { return optFunc(func(o *specOpts) { o.quota = true }) }

// Timeout raises Config.SpecTimeout for one spec: the larger of the two
// bounds it.
func Timeout(d time.Duration) SpecOption { return optFunc(func(o *specOpts) { o.timeout = d }) }

// Labels adds labels, for example "clause:MQTT-3.1.2-3" on a malformed
// packet entry.
func Labels(l ...string) SpecOption {
	return optFunc(func(o *specOpts) { o.extra = append(o.extra, l...) })
}

var bracketTag = regexp.MustCompile(`\[[^\]]*\]`)

// Describe is ginkgo.Describe, tracking the container text.
func (r *registrar) Describe(text string, body func()) {
	ginkgo.Describe(text, ginkgo.Offset(1), func() {
		r.container = append(r.container, text)
		defer func() { r.container = r.container[:len(r.container)-1] }()
		body()
	})
}

// It registers a spec that judges requirement id. A registration mistake
// is recorded in r.bugs and becomes a spec that fails. body drives the target
// through t and calls t.Judge to judge the decoded capture.
func (r *registrar) It(id, text string, body func(ctx ginkgo.SpecContext, t *T), opts ...SpecOption) {
	var o specOpts
	for _, op := range opts {
		op.apply(&o)
	}
	full := strings.Join(append(append([]string{}, r.container...), text), " ")
	req, ok := r.cat.Lookup(id)
	bug := ""
	switch {
	case !ok:
		bug = fmt.Sprintf("spec %q cites %s, which is not in the catalogue", full, id)
	case bracketTag.MatchString(text):
		bug = fmt.Sprintf("spec %q embeds bracket tags; the requirement ID is a label", full)
	case r.texts[full]:
		bug = fmt.Sprintf("spec %q is registered twice", full)
	}
	for _, f := range o.faults {
		if bug == "" && r.cfg.knownFaults != nil && !r.cfg.knownFaults[f] {
			bug = fmt.Sprintf("spec %q names fault %q, which the emulator does not have", full, f)
		}
	}
	if bug != "" {
		// Container bodies run while Ginkgo builds the tree (inside
		// RunSpecs or PreviewSpecs), so the bug is both recorded (Run and
		// Preview return ErrSuiteBug) and registered as a failing spec.
		r.bugs = append(r.bugs, bug)
		ginkgo.It(text, ginkgo.Label("suite-bug"), ginkgo.Offset(1), func() { ginkgo.Fail("suite bug: " + bug) })
		return
	}
	r.texts[full] = true
	r.specs = append(r.specs, SpecInfo{ID: id, Text: full, Faults: o.faults, Profiles: slices.Clone(req.Profiles), Extra: o.extra})
	labels := ginkgo.Label(append([]string{
		"req:" + id, "level:" + string(req.Level), "area:" + req.Area, "role:" + string(req.Role),
	}, labelsOf(o)...)...)
	// A spec's own Timeout is the least it needs; a longer --spec-timeout
	// still applies.
	timeout := max(r.cfg.SpecTimeout, o.timeout)
	args := []any{labels, ginkgo.Offset(1), ginkgo.SpecTimeout(timeout)}
	if o.quota {
		args = append(args, ginkgo.Serial)
	}
	args = append(args, func(ctx ginkgo.SpecContext) {
		select {
		case <-r.stop:
			ginkgo.AbortSuite(abortReason)
		default:
		}
		if !req.HoldsUnder(r.cfg.Profile) {
			ginkgo.Skip(fmt.Sprintf("%s holds under %s; the profile is %s", id, strings.Join(req.Profiles, ", "), r.cfg.Profile))
		}
		if o.quota && !r.cfg.Target.Local && !r.cfg.AllowQuota {
			ginkgo.Skip("touches service quotas or throttling; opt in with --allow-quota")
		}
		t := r.newT(req)
		t.deadline = time.Now().Add(timeout)
		ginkgo.DeferCleanup(t.cleanup)
		body(ctx, t)
		if !t.judged {
			ginkgo.Fail(fmt.Sprintf("suite bug: spec for %s ended without judging its capture (t.Judge)", id))
		}
	})
	ginkgo.It(text, args...)
}

func labelsOf(o specOpts) []string {
	var l []string
	for _, f := range o.faults {
		l = append(l, "fault:"+f)
	}
	if o.quota {
		l = append(l, "quota")
	}
	return append(l, o.extra...)
}

// newT opens the spec's capture file.
func (r *registrar) newT(req *Requirement) *T {
	n := r.seq.Add(1)
	dir := filepath.Join(r.cfg.OutDir, "pcaps")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		ginkgo.Fail(fmt.Sprintf("creating the evidence directory: %v", err))
	}
	path := filepath.Join(dir, fmt.Sprintf("%03d-%s.pcapng", n, req.ID))
	rec, err := tracer.CreateRecorder(path, tracer.RecorderOptions{
		Comment:    fmt.Sprintf("dps-conform %s: %s against %s", r.cfg.Version, req.ID, r.cfg.Target.Name),
		KeyLogPath: strings.TrimSuffix(path, ".pcapng") + ".keylog",
		// The suite's plaintext connections (DialOptions.Plain) go to
		// the target's TLS port: show them there, not on 1883.
		PlainPort: tracer.TLS.Port(),
	})
	if err != nil {
		ginkgo.Fail(fmt.Sprintf("creating the capture file: %v", err))
	}
	ginkgo.AddReportEntry(EntryPcap, path, ginkgo.ReportEntryVisibilityNever)
	return &T{r: r, req: req, rec: rec, pcap: path, seq: n}
}

// T is the state of one running spec: its capture and its connections.
type T struct {
	r      *registrar
	req    *Requirement
	rec    *tracer.Recorder
	pcap   string
	seq    int64
	conns  []*Conn
	judged bool
	nDev   int
	// deadline is when the spec's timeout ends it (Ginkgo's SpecContext
	// carries no deadline of its own).
	deadline time.Time
}

// timeLeft is how long the spec has before its timeout.
func (t *T) timeLeft() time.Duration { return time.Until(t.deadline) }

// Expect is gomega.Expect bound to the spec (the suite does not rely on
// Gomega's global fail handler).
func (t *T) Expect(actual any, extra ...any) gomega.Assertion {
	return t.r.g.ExpectWithOffset(1, actual, extra...)
}

// NoError fails the spec when err is not nil, with what (a description of
// the step) and the error's text: not Gomega's dump of the error's structs,
// which names pointers and syscalls instead of what went wrong.
func (t *T) NoError(err error, what string) {
	ginkgo.GinkgoHelper()
	if err != nil {
		ginkgo.Fail(fmt.Sprintf("%s: %v", what, err))
	}
}

func (t *T) cleanup() {
	for _, c := range t.conns {
		c.raw.Close()
	}
	t.rec.Close()
}

// Judge closes the spec's connections and capture, decodes the capture
// with the tracer (the same decoder that reads field captures), and applies
// the rules of the spec's requirement to every conversation. The spec fails
// when a rule finds a violation, and when the rule never applied: a spec
// whose capture holds no evidence for its requirement proves nothing.
// Findings of other rules are attached to the report as "observed".
// Judge returns the decoded capture for further assertions.
func (t *T) Judge(ctx context.Context) *Evidence {
	ginkgo.GinkgoHelper()
	t.judged = true
	for _, c := range t.conns {
		c.raw.Close()
	}
	if err := t.rec.Close(); err != nil {
		ginkgo.Fail(fmt.Sprintf("recording the capture: %v", err))
	}
	capt, err := tracer.DecodeFile(t.pcap, tracer.Options{})
	if err != nil {
		ginkgo.Fail(fmt.Sprintf("decoding the spec's own capture %s: %v", t.pcap, err))
	}
	ev := &Evidence{Capture: capt, Path: t.pcap}
	// The spec waited CloseWait for closes it expects; a little less is
	// the grace the rules give the server.
	env := RuleEnv{Profile: t.r.cfg.Profile, CloseGrace: t.r.cfg.CloseWait * 9 / 10, Live: true,
		Enrollments: t.r.cfg.Target.Credentials.enrollments()}
	all, counts := CheckCapture(capt, t.r.ruleOrder, env)
	var mine []Finding
	for _, f := range all {
		if f.ID == t.req.ID {
			mine = append(mine, f)
		} else {
			ev.Observed = append(ev.Observed, f)
		}
	}
	applied := counts[t.req.ID]
	for _, f := range ev.Observed {
		ginkgo.AddReportEntry("observed", f.String(), ginkgo.ReportEntryVisibilityFailureOrVerbose)
	}
	ev.Findings = mine
	addEvidenceEntries(capt, mine)
	if rule, ok := t.r.rules[t.req.ID]; ok {
		if len(mine) > 0 {
			ginkgo.Fail(formatFindings(t.req, mine, t.pcap))
		}
		if applied == 0 {
			ginkgo.Fail(fmt.Sprintf("%s: the capture holds no evidence to judge: %s\n  capture: %s", t.req.ID, rule.Evidence, t.pcap))
		}
	}
	return ev
}

// Evidence is a spec's decoded capture and what the rules found in it.
type Evidence struct {
	Capture *tracer.Capture
	Path    string
	// Findings are those of the spec's own requirement; Observed those of
	// other requirements.
	Findings, Observed []Finding
}

// Conversation returns the i-th (from 0) decoded conversation, failing the
// spec when the capture has fewer.
func (e *Evidence) Conversation(i int) *tracer.Conversation {
	ginkgo.GinkgoHelper()
	if i >= len(e.Capture.Conversations) {
		ginkgo.Fail(fmt.Sprintf("the capture %s has %d MQTT conversations; the spec needs conversation %d", e.Path, len(e.Capture.Conversations), i+1))
	}
	return e.Capture.Conversations[i]
}

// notByRule starts the failure message of a spec whose rule found
// nothing in a capture that should have shown the failure: the failure is
// real, but it is not the rule's verdict.
const notByRule = "the capture shows no refusal for the rule to judge"

func formatFindings(req *Requirement, fs []Finding, path string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %s\n", req.ID, req.Level, req.Statement)
	for _, f := range fs {
		fmt.Fprintf(&b, "  %s\n", f.Detail())
	}
	fmt.Fprintf(&b, "  capture: %s", path)
	return b.String()
}

// failT is the GinkgoTestingT of an in-process run.
type failT struct{ failed bool }

func (f *failT) Fail() { f.failed = true }

var _ ginkgo.GinkgoTestingT = (*failT)(nil)

// specID returns the requirement ID of a spec report from its labels.
func specID(labels []string) string {
	for _, l := range labels {
		if id, ok := strings.CutPrefix(l, "req:"); ok {
			return id
		}
	}
	return ""
}

// SpecReportID returns the requirement ID a spec report judges ("" for
// Ginkgo's own nodes such as ReportAfterSuite).
func SpecReportID(s types.SpecReport) string { return specID(s.Labels()) }
