package reports

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/onsi/ginkgo/v2/reporters"
	"github.com/onsi/ginkgo/v2/types"

	"github.com/dps-conform/dps-conform/conformance"
)

// WriteJUnit writes JUnit XML for CI viewers, trimmed the way Kubernetes
// trims its conformance JUnit: no timelines for passed and skipped specs, no
// captured output, labels kept out of test names, and of the evidence only
// the capture's path (a "pcap" property). Ginkgo renders it; the outcome
// of each spec then follows [junitElement], the counts are those of the
// elements, and SAS signatures are redacted ([RedactSAS]).
func WriteJUnit(path string, r types.Report) error {
	// The evidence entries (transcripts, sequences) belong in report.html
	// and results.json; in JUnit they would be properties of every test
	// case. Keep the capture's path only.
	// A spec the label filter or focus left out is not part of the run:
	// Ginkgo would list it as skipped, like one skipped for a reason, and
	// a CI viewer would show dozens of skips nobody asked for. One
	// selected but stopped before it started says so.
	r.SpecReports = slices.DeleteFunc(slices.Clone(r.SpecReports), func(sr types.SpecReport) bool {
		return !conformance.Selected(r, sr)
	})
	cat, err := conformance.LoadCatalog()
	if err != nil {
		return fmt.Errorf("writing JUnit %s: %w", path, err)
	}
	// findings are each spec's own findings, by its index in
	// r.SpecReports, read before the entries are trimmed.
	findings := map[int][]conformance.Finding{}
	for i := range r.SpecReports {
		sr := &r.SpecReports[i]
		for _, e := range sr.ReportEntries {
			var fs []conformance.Finding
			if e.Name == conformance.EntryFindings && json.Unmarshal([]byte(e.StringRepresentation()), &fs) == nil && len(fs) > 0 {
				findings[i] = fs
			}
		}
		if conformance.NotRun(r, *sr) {
			sr.Failure.Message = conformance.NotRunReason
		}
		// A spec the run's stop cut short: the message says by what
		// (a signal, the run's deadline, its context) and that nothing
		// was judged; of Ginkgo's progress reports (every goroutine of
		// the process, and its advice to interrupt again) only the
		// suite's own frames of the spec's goroutine stay, in the text
		// and the timeline, never in the message.
		if why := conformance.InterruptReason(*sr); why != "" {
			sr.State = conformance.State(*sr)
			sr.Failure.Message = why
			sr.Failure.ProgressReport = specFrames(sr.Failure.ProgressReport)
			sr.ProgressReports = slices.Clone(sr.ProgressReports)
			for k := range sr.ProgressReports {
				sr.ProgressReports[k] = specFrames(sr.ProgressReports[k])
			}
		}
		var keep types.ReportEntries
		for _, e := range sr.ReportEntries {
			if e.Name == conformance.EntryPcap {
				keep = append(keep, e)
			}
		}
		sr.ReportEntries = keep
		// panic("") forwards an empty value, and Ginkgo's message
		// attribute of a panic is that value: say what is known.
		if sr.State == types.SpecStatePanicked && sr.Failure.ForwardedPanic == "" {
			sr.Failure.ForwardedPanic = sr.Failure.Message
			if sr.Failure.ForwardedPanic == "" {
				sr.Failure.ForwardedPanic = "panicked"
			}
		}
	}
	err = reporters.GenerateJUnitReportWithConfig(r, path, reporters.JunitReportConfig{
		OmitTimelinesForSpecState: types.SpecStatePassed | types.SpecStateSkipped,
		OmitCapturedStdOutErr:     true,
		OmitSpecLabels:            true,
		OmitLeafNodeType:          true,
		OmitSuiteSetupNodes:       true,
	})
	if err != nil {
		return fmt.Errorf("writing JUnit %s: %w", path, err)
	}
	// Ginkgo writes the file and ignores an encoding error: read it back,
	// which also checks it.
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("writing JUnit %s: %w", path, err)
	}
	var suites reporters.JUnitTestSuites
	if err := xml.Unmarshal(b, &suites); err != nil {
		return fmt.Errorf("writing JUnit %s: Ginkgo's output does not parse: %w", path, err)
	}
	// Ginkgo's test cases, in order: one per It (OmitSuiteSetupNodes),
	// by index in r.SpecReports.
	var its []int
	for i, sr := range r.SpecReports {
		if sr.LeafNodeType == types.NodeTypeIt {
			its = append(its, i)
		}
	}
	for i := range suites.TestSuites {
		st := &suites.TestSuites[i]
		// A CI server knows a test by suite, class and name across
		// runs: Ginkgo names suite and class after the suite's
		// description, which holds the target (a host name whose dots
		// Jenkins reads as packages, a port that changes every run) and
		// the emulator's faults. Name them after the role, as
		// WriteReportJUnit does, and keep the description a property.
		st.Properties.Properties = append([]reporters.JUnitProperty{{Name: "SuiteDescription", Value: st.Name}}, st.Properties.Properties...)
		st.Name = serviceSuiteName
		// Ginkgo's package is the suite's path, the run's working
		// directory: one per machine and checkout.
		st.Package = junitPackage
		for j := range st.TestCases {
			tc := &st.TestCases[j]
			tc.Classname = serviceSuiteName
			var spec *types.SpecReport
			if len(suites.TestSuites) == 1 && j < len(its) {
				spec = &r.SpecReports[its[j]]
				// The requirement ID leads the name and the level is a
				// property, as in a device run's junit.xml.
				if id := conformance.SpecReportID(*spec); id != "" {
					tc.Name = id + " " + tc.Name
				}
				if level := labelValue(spec.Labels(), "level:"); level != "" {
					if tc.Properties == nil {
						tc.Properties = &reporters.JUnitProperties{}
					}
					tc.Properties.Properties = append([]reporters.JUnitProperty{{Name: "level", Value: level}}, tc.Properties.Properties...)
				}
			}
			// Ginkgo writes a property's value as the JSON of the entry
			// (a quoted string); the capture's property is its path
			// relative to junit.xml's directory (the results directory),
			// as WriteReportJUnit writes it, so that it still names the
			// file once the directory is moved or unpacked elsewhere.
			if tc.Properties != nil {
				for k, p := range tc.Properties.Properties {
					var pcap string
					if p.Name == conformance.EntryPcap && json.Unmarshal([]byte(p.Value), &pcap) == nil {
						tc.Properties.Properties[k].Value = capturePath(filepath.Dir(path), pcap)
					}
				}
			}
			msg, desc := "", ""
			switch {
			case tc.Failure != nil:
				msg, desc = tc.Failure.Message, tc.Failure.Description
			case tc.Error != nil:
				msg, desc = tc.Error.Message, tc.Error.Description
			default:
				continue // passed, or skipped with Ginkgo's message
			}
			// Ginkgo gives an aborted spec a <failure>; it is an <error>
			// (junitElement), the run's stop and not the target's
			// failure: its text is Ginkgo's, which says what stopped it,
			// without the requirement a failed spec's text leads with.
			if junitElement(tc.Status) == "failure" && spec != nil {
				// A CI dashboard shows the first line of the message:
				// make it what the target did wrong, as a device run's
				// is, and put the requirement in the text, once.
				id := conformance.SpecReportID(*spec)
				rq, _ := cat.Lookup(id)
				msg = failureLine(findings[its[j]], msg, id)
				desc = requirementText(rq) + withoutStatement(desc, rq)
			}
			setOutcome(tc, tc.Status, msg, desc)
		}
	}
	var buf bytes.Buffer
	if err := encodeJUnit(&buf, &suites); err != nil {
		return fmt.Errorf("writing JUnit %s: %w", path, err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing JUnit %s: %w", path, err)
	}
	return nil
}

// capturePath is the path of a spec's capture, as the run recorded it,
// relative to the results directory dir. A run writes its captures in
// the pcaps directory of its results directory (conformance's Judge), and
// Ginkgo's report keeps the path the run used: absolute, or relative to
// the run's working directory. report render writes junit.xml again from
// that report, possibly in a results directory moved or unpacked
// elsewhere since, where that path names nothing: the capture is then
// pcaps/NAME in dir.
func capturePath(dir, pcap string) string {
	rel := relative(dir, pcap) // pcap itself when it is not in dir
	if rel != pcap || filepath.Base(filepath.Dir(pcap)) != "pcaps" {
		return rel // in dir, or not a capture of a run
	}
	return "pcaps/" + filepath.Base(pcap)
}

// serviceSuiteName names the <testsuite> and the classname of every test
// case of a service run's junit.xml ([WriteJUnit]).
const serviceSuiteName = "dps-conform service role"

// maxMessage is the most characters of a <failure> message that
// [failureLine] writes: a line of a dashboard, not the failure.
const maxMessage = 240

// failureLine is the message of a failed spec's <failure>: one line
// saying what the target did wrong. It is the detail of the spec's first
// finding (as in a device run's junit.xml) when its rule found something;
// otherwise the first meaningful line of the failure message, which
// skips the "ID (LEVEL): statement" line that leads a rule's failure
// (conformance's formatFindings) and joins a Gomega failure's annotation
// and its Expected block ("Expected\n    <int>: 202\nto equal\n …") on
// one line. At most maxMessage characters.
func failureLine(fs []conformance.Finding, msg, id string) string {
	if len(fs) > 0 {
		return clip(oneLine(fs[0].Detail()))
	}
	var lines []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > 1 && id != "" && strings.HasPrefix(lines[0], id+" (") && strings.Contains(lines[0], "): ") {
		lines = lines[1:]
	}
	if len(lines) == 0 {
		return ""
	}
	if i := slices.Index(lines, "Expected"); i >= 0 {
		line := oneLine(strings.Join(lines[i:], " "))
		if i > 0 {
			line = oneLine(strings.Join(lines[:i], " ")) + ": " + line
		}
		return clip(line)
	}
	return clip(lines[0])
}

// oneLine is s with every run of white space (newlines included) one
// space.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// clip cuts s to maxMessage characters, the last an ellipsis.
func clip(s string) string {
	if r := []rune(s); len(r) > maxMessage {
		return string(r[:maxMessage-1]) + "…"
	}
	return s
}

// requirementText leads the text of a failed spec's <failure>: the
// requirement's ID, level and statement, and its source (the documents
// and sections that state it); "" for a spec of no requirement.
func requirementText(rq *conformance.Requirement) string {
	if rq == nil {
		return ""
	}
	src := rq.Source
	if rq.URL != "" {
		src += " <" + rq.URL + ">"
	}
	return fmt.Sprintf("%s (%s): %s\nsource: %s\n\n", rq.ID, rq.Level, rq.Statement, src)
}

// withoutStatement is a failed spec's text (Ginkgo's) without the
// "ID (LEVEL): statement" line that leads a rule's failure message
// (conformance's formatFindings), which [requirementText] already puts
// first: "[FAILED] ID (LEVEL): statement\n  finding" becomes "[FAILED]
// finding". Only the first such line goes, and only a whole one.
func withoutStatement(desc string, rq *conformance.Requirement) string {
	if rq == nil {
		return desc
	}
	line := fmt.Sprintf("%s (%s): %s\n", rq.ID, rq.Level, rq.Statement)
	i := strings.Index(desc, line)
	if i < 0 || (i > 0 && desc[i-1] != '\n' && desc[i-1] != ' ') {
		return desc
	}
	return desc[:i] + strings.TrimLeft(desc[i+len(line):], " \t")
}

// junitPackage is the package attribute of every <testsuite> of
// junit.xml, service or device run: the tool, the same on every machine
// and for every target (the target is a property of the suite).
const junitPackage = "dps-conform"

// labelValue is the value of the first label with prefix, or "".
func labelValue(labels []string, prefix string) string {
	for _, l := range labels {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return v
		}
	}
	return ""
}

// specFrames is pr with only the spec's goroutine, cut to the frames
// Ginkgo highlights (the suite's own code: where the spec was waiting),
// and a plain heading.
func specFrames(pr types.ProgressReport) types.ProgressReport {
	if pr.IsZero() {
		return pr
	}
	pr.Message = "Where the spec was when the run stopped it:"
	pr.CapturedGinkgoWriterOutput = ""
	pr.AdditionalReports = nil
	var gs []types.Goroutine
	for _, g := range pr.Goroutines {
		if !g.IsSpecGoroutine {
			continue
		}
		g.Stack = slices.DeleteFunc(slices.Clone(g.Stack), func(f types.FunctionCall) bool { return !f.Highlight })
		gs = append(gs, g)
	}
	pr.Goroutines = gs
	return pr
}

// junitElement is the one mapping of a spec state (Ginkgo's, as
// types.SpecState.String gives it, and so the model's Spec.State) to the
// element of its JUnit test case: "failure" when the target failed the
// spec (failed, timedout: no answer in time is the target's), "error" when
// the spec judged nothing because the run broke (panicked: a bug of the
// suite; interrupted, aborted: the run was stopped, see
// conformance.Verdict.Interrupted), "skipped" when it did not run, and ""
// when it passed.
func junitElement(state string) string {
	switch state {
	case "failed", "timedout":
		return "failure"
	case "panicked", "interrupted", "aborted":
		return "error"
	case "skipped", "pending":
		return "skipped"
	}
	return ""
}

// setOutcome gives tc the element of state ([junitElement]) with message
// and description, replacing any other.
func setOutcome(tc *reporters.JUnitTestCase, state, message, description string) {
	tc.Failure, tc.Error, tc.Skipped = nil, nil, nil
	switch junitElement(state) {
	case "failure":
		tc.Failure = &reporters.JUnitFailure{Message: message, Type: state, Description: description}
	case "error":
		if message == "" {
			message = state
		}
		tc.Error = &reporters.JUnitError{Message: message, Type: state, Description: description}
	case "skipped":
		switch {
		case state == "pending":
			message = "pending"
		case message == "":
			message = "skipped"
		default:
			message = "skipped - " + message
		}
		tc.Skipped = &reporters.JUnitSkipped{Message: message}
	}
}

// encodeJUnit writes suites as JUnit XML (indented as Ginkgo indents it)
// after redacting SAS signatures in every text and counting the outcomes
// from the test cases' elements: <testsuite> counts failures, errors,
// skipped and disabled (pending); <testsuites>, which has no skipped
// attribute in the JUnit schema, counts skipped and pending as disabled,
// so that tests − failures − errors − disabled is the number passed.
func encodeJUnit(w io.Writer, suites *reporters.JUnitTestSuites) error {
	suites.Tests, suites.Failures, suites.Errors, suites.Disabled = 0, 0, 0, 0
	for i := range suites.TestSuites {
		s := &suites.TestSuites[i]
		s.Tests, s.Failures, s.Errors, s.Skipped, s.Disabled = len(s.TestCases), 0, 0, 0, 0
		redactProperties(&s.Properties)
		for j := range s.TestCases {
			tc := &s.TestCases[j]
			tc.Name = RedactSAS(tc.Name)
			tc.SystemOut, tc.SystemErr = RedactSAS(tc.SystemOut), RedactSAS(tc.SystemErr)
			if tc.Properties != nil {
				redactProperties(tc.Properties)
			}
			switch {
			case tc.Failure != nil:
				tc.Failure.Message, tc.Failure.Description = RedactSAS(tc.Failure.Message), RedactSAS(tc.Failure.Description)
				s.Failures++
			case tc.Error != nil:
				tc.Error.Message, tc.Error.Description = RedactSAS(tc.Error.Message), RedactSAS(tc.Error.Description)
				s.Errors++
			case tc.Skipped != nil:
				tc.Skipped.Message = RedactSAS(tc.Skipped.Message)
				if tc.Status == "pending" {
					s.Disabled++
				} else {
					s.Skipped++
				}
			}
		}
		suites.Tests += s.Tests
		suites.Failures += s.Failures
		suites.Errors += s.Errors
		suites.Disabled += s.Disabled + s.Skipped
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("  ", "    ")
	if err := enc.Encode(suites); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func redactProperties(ps *reporters.JUnitProperties) {
	for i := range ps.Properties {
		ps.Properties[i].Value = RedactSAS(ps.Properties[i].Value)
	}
}

// sasSig is the signature field of a SAS token in any text: the name in
// any ASCII case, the value up to the next field, space or quote.
var sasSig = regexp.MustCompile(`(?i)\b(sig)=[^&\s"'<>]*`)

// RedactSAS replaces the value of every sig= field in s by [redacted], as
// the transcripts and the emulator's logs show a SAS token. What a spec
// fails with may quote a CONNECT password, and a report must not carry a
// signature a reader could replay until the token expires.
func RedactSAS(s string) string {
	return sasSig.ReplaceAllString(s, "${1}=[redacted]")
}

// WriteReportJUnit writes the JUnit XML of a report model, for runs with
// no Ginkgo report (dps-conform device): one <testsuite> for the role, one
// <testcase> per requirement and spec (for a device run, per scenario in
// which its rule applied) with the outcome of the spec's state
// ([junitElement]; a failed one carries its first finding's detail, every
// finding in the text), and one skipped <testcase> per SKIP or NOT COVERED
// requirement with no spec, its reason in the message. Counts and
// redaction are those of [WriteJUnit].
func WriteReportJUnit(w io.Writer, r *Report) error {
	name := "dps-conform " + r.Role + " role"
	suite := reporters.JUnitTestSuite{
		Name:    name,
		Package: junitPackage,
		// Wall clock (Round(0)) as results.json keeps it, so that report
		// render writes the same file again.
		Time:      r.Ended.Round(0).Sub(r.Started.Round(0)).Seconds(),
		Timestamp: r.Started.Format("2006-01-02T15:04:05"),
		Properties: reporters.JUnitProperties{Properties: []reporters.JUnitProperty{
			{Name: "Verdict", Value: r.Summary.Verdict},
			{Name: "NoVerdictReason", Value: r.Summary.NoVerdictReason},
			{Name: "MustCoverage", Value: fmt.Sprintf("%d of %d MUST requirements judged, %d failed", r.Summary.MustJudged, r.Summary.MustTotal, r.Summary.MustFailed)},
			{Name: "Interrupted", Value: fmt.Sprint(r.Summary.Interrupted)},
			{Name: "NotRun", Value: fmt.Sprint(r.Summary.NotRun)},
			{Name: "Target", Value: r.Target.Name},
			{Name: "Endpoint", Value: r.Target.Endpoint},
			{Name: "Profile", Value: r.Profile},
			{Name: "Tool", Value: r.Tool.Name + " " + r.Tool.Version},
		}},
	}
	for _, rq := range r.Requirements {
		level := reporters.JUnitProperty{Name: "level", Value: rq.Level}
		if len(rq.Specs) == 0 {
			tc := reporters.JUnitTestCase{Name: rq.ID, Classname: name, Status: "skipped",
				Properties: &reporters.JUnitProperties{Properties: []reporters.JUnitProperty{level}}}
			tc.Skipped = &reporters.JUnitSkipped{Message: string(rq.Verdict) + " - " + rq.Reason}
			suite.TestCases = append(suite.TestCases, tc)
			continue
		}
		for _, s := range rq.Specs {
			tc := reporters.JUnitTestCase{Name: rq.ID + " " + s.Text, Classname: name, Status: s.State, Time: s.Duration.Seconds(),
				Properties: &reporters.JUnitProperties{Properties: []reporters.JUnitProperty{level}}}
			if s.Pcap != "" {
				tc.Properties.Properties = append(tc.Properties.Properties, reporters.JUnitProperty{Name: conformance.EntryPcap, Value: s.Pcap})
			}
			msg, desc := clip(firstLine(s.Message)), s.Message
			if len(s.Findings) > 0 {
				msg = clip(oneLine(s.Findings[0].Detail()))
				var b bytes.Buffer
				for _, f := range s.Findings {
					fmt.Fprintln(&b, f.String())
				}
				if s.Pcap != "" {
					fmt.Fprintln(&b, "capture:", s.Pcap)
				}
				desc = b.String()
			}
			setOutcome(&tc, s.State, msg, desc)
			suite.TestCases = append(suite.TestCases, tc)
		}
	}
	// A scenario the run stopped before (Summary.NotRunScenarios) judged
	// nothing: a skipped test case of its own says so and why.
	for _, sc := range r.Summary.NotRunScenarios {
		tc := reporters.JUnitTestCase{Name: "scenario " + sc, Classname: name, Status: "skipped"}
		setOutcome(&tc, "skipped", "not run: "+clip(oneLine(r.Summary.NotRunReason)), "")
		suite.TestCases = append(suite.TestCases, tc)
	}
	return encodeJUnit(w, &reporters.JUnitTestSuites{Time: suite.Time, TestSuites: []reporters.JUnitTestSuite{suite}})
}
