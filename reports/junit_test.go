package reports_test

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/onsi/ginkgo/v2/types"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/reports"
)

// TestWriteJUnitTrims: of the suite's evidence entries only the capture's
// path reaches JUnit; transcripts and sequences stay in report.html.
func TestWriteJUnitTrims(t *testing.T) {
	entry := func(name, v string) types.ReportEntry {
		return types.ReportEntry{Name: name, Value: types.WrapEntryValue(v)}
	}
	r := types.Report{SuiteDescription: "s", SuiteSucceeded: true, SpecReports: types.SpecReports{{
		LeafNodeType: types.NodeTypeIt, LeafNodeText: "grants QoS 1", State: types.SpecStatePassed,
		ReportEntries: types.ReportEntries{
			entry(conformance.EntryPcap, "pcaps/001-DPS-SUB-002.pcapng"),
			entry(conformance.EntryTranscript, "TRANSCRIPT-TEXT"),
			entry(conformance.EntrySequence, "[SEQUENCE]"),
		},
	}}}
	b := writeJUnit(t, r)
	s := string(b)
	if !strings.Contains(s, "001-DPS-SUB-002.pcapng") || strings.Contains(s, "TRANSCRIPT-TEXT") || strings.Contains(s, "[SEQUENCE]") {
		t.Errorf("junit.xml:\n%s", s)
	}
	// The property's value is the path, as in the device role's JUnit,
	// not Ginkgo's JSON dump of it ("\"pcaps/…\"").
	if !strings.Contains(s, `<property name="pcap" value="pcaps/001-DPS-SUB-002.pcapng">`) {
		t.Errorf("the pcap property is not the bare path:\n%s", s)
	}
	if len(r.SpecReports[0].ReportEntries) != 3 {
		t.Errorf("WriteJUnit changed the caller's report")
	}
}

// junitDoc is what a CI consumer reads of junit.xml, decoded with types of
// our own (not Ginkgo's) so the test pins the XML, not a struct.
type junitDoc struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Errors   int `xml:"errors,attr"`
	Disabled int `xml:"disabled,attr"`
	Suites   []struct {
		Name     string      `xml:"name,attr"`
		Package  string      `xml:"package,attr"`
		Props    props       `xml:"properties"`
		Tests    int         `xml:"tests,attr"`
		Failures int         `xml:"failures,attr"`
		Errors   int         `xml:"errors,attr"`
		Skipped  int         `xml:"skipped,attr"`
		Disabled int         `xml:"disabled,attr"`
		Cases    []junitCase `xml:"testcase"`
	} `xml:"testsuite"`
}

// props are the <property> elements of a <properties>, by name.
type props map[string]string

func (p *props) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	var v struct {
		P []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"property"`
	}
	if err := d.DecodeElement(&v, &start); err != nil {
		return err
	}
	*p = props{}
	for _, e := range v.P {
		(*p)[e.Name] = e.Value
	}
	return nil
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Props     []junitProp   `xml:"properties>property"`
	Status    string        `xml:"status,attr"`
	Failure   *junitOutcome `xml:"failure"`
	Error     *junitOutcome `xml:"error"`
	Skipped   *junitOutcome `xml:"skipped"`
}

type junitOutcome struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

type junitProp struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// outcome names the element a test case carries ("" when it passed) and
// its message and type.
func (c junitCase) outcome() (string, string, string) {
	switch {
	case c.Failure != nil:
		return "failure", c.Failure.Message, c.Failure.Type
	case c.Error != nil:
		return "error", c.Error.Message, c.Error.Type
	case c.Skipped != nil:
		return "skipped", c.Skipped.Message, ""
	}
	return "", "", ""
}

// readJUnit parses junit.xml strictly: a document a CI consumer cannot
// read fails the test.
func readJUnit(t *testing.T, b []byte) junitDoc {
	t.Helper()
	var d junitDoc
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("junit.xml is not XML a CI consumer can read: %v\n%s", err, b)
	}
	return d
}

// TestWriteJUnitStates pins how each Ginkgo spec state of a run reaches
// junit.xml: a <failure> is the target failing a requirement (failed,
// timedout), an <error> a spec that judged nothing because the run broke
// (panicked: a bug of the suite; interrupted, aborted: the run was
// stopped), <skipped> a spec not run; the counts of <testsuite> and
// <testsuites> agree with the elements; control bytes become U+FFFD and a
// SAS signature is redacted wherever it appears.
func TestWriteJUnitStates(t *testing.T) {
	const secret = "c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"
	token := "SharedAccessSignature sr=0ne00000001%2fregistrations%2freg-1&sig=" + secret + "&se=1700000000&skn=registration"
	loc := types.CodeLocation{FileName: "specs_service.go", LineNumber: 42}
	tests := []struct {
		name    string
		state   types.SpecState
		failure types.Failure
		writer  string // GinkgoWriter output (the timeline of a failed spec)
		// want: the element, its message and type.
		elem, msg, typ string
	}{
		{"passed", types.SpecStatePassed, types.Failure{}, "", "", "", ""},
		{"failed", types.SpecStateFailed, types.Failure{Message: "expected CONNACK rc=0", Location: loc}, "", "failure", "expected CONNACK rc=0", "failed"},
		{"timedout", types.SpecStateTimedout, types.Failure{Message: "A spec timeout occurred", Location: loc}, "", "failure", "A spec timeout occurred", "timedout"},
		// aborted: the run's context ended before the spec judged
		// anything (conformance.Verdict.Interrupted), as interrupted.
		// The message says what stopped it (TestWriteJUnitInterrupted).
		{"aborted", types.SpecStateAborted, types.Failure{Message: "interrupted before this spec ran", Location: loc}, "", "error",
			"interrupted: the run was cancelled as this spec began; the target was not judged", "aborted"},
		{"interrupted", types.SpecStateInterrupted, types.Failure{Message: "Interrupted by User", Location: loc}, "", "error",
			"interrupted by a signal (SIGINT or SIGTERM: Ctrl-C, or the CI job stopped) while the spec ran; the target was not judged", "interrupted"},
		{"panicked", types.SpecStatePanicked, types.Failure{Message: "Test Panicked", ForwardedPanic: "boom", Location: loc}, "", "error", "boom", "panicked"},
		// panic("") forwards an empty value: the message must still say
		// something.
		{"panicked, empty value", types.SpecStatePanicked, types.Failure{Message: "Test Panicked", Location: loc}, "", "error", "Test Panicked", "panicked"},
		{"skipped with a reason", types.SpecStateSkipped, types.Failure{Message: "the profile excludes it", Location: loc}, "", "skipped", "skipped - the profile excludes it", ""},
		// No message and no filter: selected, but the run was stopped
		// before it started (TestReportsOmitUnselected has the specs a
		// filter left out, which junit.xml omits).
		{"skipped, not run", types.SpecStateSkipped, types.Failure{}, "", "skipped", "skipped - " + conformance.NotRunReason, ""},
		{"pending", types.SpecStatePending, types.Failure{}, "", "skipped", "pending", ""},
		{"control bytes", types.SpecStateFailed, types.Failure{Message: "client id \"a\x00b\x1b[31m\x7f\"", Location: loc}, "", "failure", "client id \"a\uFFFDb\uFFFD[31m\x7f\"", "failed"},
		{"SAS signature", types.SpecStateFailed, types.Failure{Message: "CONNECT password " + token, Location: loc}, "sent " + token + "\n",
			"failure", "CONNECT password SharedAccessSignature sr=0ne00000001%2fregistrations%2freg-1&sig=[redacted]&se=1700000000&skn=registration", "failed"},
		{"SAS signature, upper case", types.SpecStatePanicked, types.Failure{Message: "Test Panicked", ForwardedPanic: "bad token SIG=" + secret, Location: loc}, "",
			"error", "bad token SIG=[redacted]", "panicked"},
	}
	r := types.Report{SuiteDescription: "dps-conform service suite", SuitePath: "/x"}
	for i, tt := range tests {
		r.SpecReports = append(r.SpecReports, types.SpecReport{
			LeafNodeType: types.NodeTypeIt, LeafNodeText: fmt.Sprintf("spec %02d %s", i, tt.name),
			State: tt.state, Failure: tt.failure, CapturedGinkgoWriterOutput: tt.writer,
		})
	}
	b := writeJUnit(t, r)
	if strings.Contains(string(b), "c2VjcmV0") {
		t.Errorf("junit.xml carries the SAS signature:\n%s", b)
	}
	d := readJUnit(t, b)
	if len(d.Suites) != 1 || len(d.Suites[0].Cases) != len(tests) {
		t.Fatalf("want 1 suite of %d cases:\n%s", len(tests), b)
	}
	var failures, errs, skipped, pending int
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := d.Suites[0].Cases[i]
			if c.Status != tt.state.String() {
				t.Errorf("status %q, want %q", c.Status, tt.state)
			}
			elem, msg, typ := c.outcome()
			if elem != tt.elem || msg != tt.msg || typ != tt.typ {
				t.Errorf("<%s message=%q type=%q>, want <%s message=%q type=%q>", elem, msg, typ, tt.elem, tt.msg, tt.typ)
			}
			n := 0
			for _, e := range []any{c.Failure, c.Error, c.Skipped} {
				if !reflect.ValueOf(e).IsNil() {
					n++
				}
			}
			if n > 1 {
				t.Errorf("%d outcome elements, want at most 1", n)
			}
		})
		switch {
		case tt.elem == "failure":
			failures++
		case tt.elem == "error":
			errs++
		case tt.state == types.SpecStatePending:
			pending++
		case tt.elem == "skipped":
			skipped++
		}
	}
	s := d.Suites[0]
	if s.Tests != len(tests) || s.Failures != failures || s.Errors != errs || s.Skipped != skipped || s.Disabled != pending {
		t.Errorf("<testsuite tests=%d failures=%d errors=%d skipped=%d disabled=%d>, want %d %d %d %d %d",
			s.Tests, s.Failures, s.Errors, s.Skipped, s.Disabled, len(tests), failures, errs, skipped, pending)
	}
	// <testsuites> has no skipped attribute in the JUnit schema: disabled
	// counts skipped and pending, so tests − failures − errors − disabled
	// is the number passed.
	if d.Tests != len(tests) || d.Failures != failures || d.Errors != errs || d.Disabled != skipped+pending {
		t.Errorf("<testsuites tests=%d failures=%d errors=%d disabled=%d>, want %d %d %d %d",
			d.Tests, d.Failures, d.Errors, d.Disabled, len(tests), failures, errs, skipped+pending)
	}
}

// TestWriteJUnitFailureMessage: a CI dashboard shows the first line of a
// <failure>'s message, so a service run's message is one line saying what
// the target did wrong, as a device run's is: the first finding's detail
// when the spec's rule found something, else the failure's first
// meaningful line (a Gomega failure's annotation and its Expected block
// joined on one line), at most 240 characters; the requirement's ID,
// level, statement and source and the full failure text are the
// element's text.
func TestWriteJUnitFailureMessage(t *testing.T) {
	cat, err := conformance.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	rq, ok := cat.Lookup("DPS-SUB-002")
	if !ok {
		t.Fatal("DPS-SUB-002 is not in the catalogue")
	}
	header := "DPS-SUB-002 (MUST): " + rq.Statement
	detail := "conversation 1, frame 21: expected SUBACK granting 1; actual: asked QoS 2, SUBACK id 1 granting [0x02]"
	findings := `[{"id":"DPS-SUB-002","conversation":1,"frame":21,"expected":["SUBACK granting 1"],"actual":"asked QoS 2, SUBACK id 1 granting [0x02]"}]`
	long := strings.Repeat("x", 300)
	tests := []struct {
		name    string
		state   types.SpecState
		msg     string
		entries types.ReportEntries
		want    string
	}{
		{"rule finding", types.SpecStateFailed, header + "\n  " + detail + "\n  capture: /r/pcaps/002-DPS-SUB-002.pcapng",
			types.ReportEntries{{Name: conformance.EntryFindings, Value: types.WrapEntryValue(findings)}}, detail},
		// A ginkgo-report.json of an older run has no findings entry:
		// the statement line is still not the message.
		{"rule finding, no entry", types.SpecStateFailed, header + "\n  " + detail + "\n  capture: /r/pcaps/002-DPS-SUB-002.pcapng", nil, detail},
		{"gomega, annotated", types.SpecStateFailed, "the last answer \"$dps/registrations/res/202/?$rid=1\": {}\nExpected\n    <int>: 202\nto equal\n    <int>: 200", nil,
			"the last answer \"$dps/registrations/res/202/?$rid=1\": {}: Expected <int>: 202 to equal <int>: 200"},
		{"gomega, bare", types.SpecStateFailed, "Expected\n    <[]int | len:1, cap:1>: [200]\nto equal\n    <[]int | len:1, cap:1>: [401]", nil,
			"Expected <[]int | len:1, cap:1>: [200] to equal <[]int | len:1, cap:1>: [401]"},
		{"no evidence", types.SpecStateFailed, "DPS-SUB-002: the capture holds no evidence to judge: a SUBACK\n  capture: /r/p.pcapng", nil,
			"DPS-SUB-002: the capture holds no evidence to judge: a SUBACK"},
		{"long", types.SpecStateFailed, long + "\nmore", nil, strings.Repeat("x", 239) + "…"},
		{"timedout", types.SpecStateTimedout, "A spec timeout occurred", nil, "A spec timeout occurred"},
	}
	r := types.Report{SuiteDescription: "dps-conform service suite"}
	for i, tt := range tests {
		r.SpecReports = append(r.SpecReports, types.SpecReport{
			LeafNodeType: types.NodeTypeIt, LeafNodeText: fmt.Sprintf("spec %02d %s", i, tt.name),
			LeafNodeLabels: []string{"req:DPS-SUB-002", "level:MUST"}, State: tt.state, ReportEntries: tt.entries,
			Failure: types.Failure{Message: tt.msg, Location: types.CodeLocation{FileName: "specs_service.go", LineNumber: 630}},
		})
	}
	d := readJUnit(t, writeJUnit(t, r))
	if len(d.Suites) != 1 || len(d.Suites[0].Cases) != len(tests) {
		t.Fatalf("want 1 suite of %d cases: %+v", len(tests), d)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := d.Suites[0].Cases[i]
			if c.Failure == nil {
				t.Fatalf("no <failure>")
			}
			if c.Failure.Message != tt.want {
				t.Errorf("<failure message=%q>, want %q", c.Failure.Message, tt.want)
			}
			// The failure's text carries the statement line of a rule's
			// failure once: the requirement's, leading the text.
			wants := []string{header, "source: " + rq.Source}
			for _, l := range strings.Split(strings.TrimPrefix(tt.msg, header+"\n"), "\n") {
				wants = append(wants, strings.TrimSpace(l))
			}
			for _, want := range wants {
				if !strings.Contains(c.Failure.Text, want) {
					t.Errorf("the <failure> text does not hold %q:\n%s", want, c.Failure.Text)
				}
			}
			if n := strings.Count(c.Failure.Text, header); n != 1 || !strings.HasPrefix(c.Failure.Text, header+"\n") {
				t.Errorf("the <failure> text holds %q %d times, want once, leading it:\n%s", header, n, c.Failure.Text)
			}
		})
	}
}

// TestWriteReportJUnitDevice: the junit.xml of a device run, from the
// report model: a test case per requirement and scenario in which its
// rule applied (a <failure> with the finding's detail for the scenario
// where it found something), a skipped one per SKIP or NOT COVERED
// requirement with the reason, and counts that agree.
func TestWriteReportJUnitDevice(t *testing.T) {
	cat, err := conformance.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	f := conformance.Finding{ID: "DPS-DEV-014", Conversation: 1, Frame: 20, Expected: []string{"a poll no earlier than 3.00 s"},
		Actual: "poll \x00 1.00 s after, password SharedAccessSignature sr=x&sig=c2VjcmV0&se=1"}
	rep := reports.BuildDevice(reports.DeviceInput{Catalog: cat, Profile: conformance.ProfileDPS2019, ResultsDir: "/r",
		Target: reports.Target{Name: "dut"},
		Scenarios: []reports.Scenario{
			{Name: "normal", Pcap: "/r/pcaps/01-normal.pcapng", Applied: map[string]int{"DPS-DEV-014": 2, "DPS-DEV-003": 1}, Findings: []conformance.Finding{f}},
			{Name: "poll-429", Pcap: "/r/pcaps/02-poll-429.pcapng", Applied: map[string]int{"DPS-DEV-014": 1, "DPS-DEV-003": 1}},
		}})
	var b bytes.Buffer
	if err := reports.WriteReportJUnit(&b, rep); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "c2VjcmV0") {
		t.Errorf("junit.xml carries the SAS signature:\n%s", b.String())
	}
	d := readJUnit(t, b.Bytes())
	if len(d.Suites) != 1 || d.Suites[0].Name != "dps-conform device role" {
		t.Fatalf("want one suite for the device role:\n%s", b.String())
	}
	if d.Suites[0].Package != "dps-conform" {
		t.Errorf("<testsuite package=%q>, want \"dps-conform\" (the target is the Target property)", d.Suites[0].Package)
	}
	cases := map[string]junitCase{}
	for _, c := range d.Suites[0].Cases {
		cases[c.Name] = c
	}
	want := 0
	for _, rq := range rep.Requirements {
		want += max(1, len(rq.Specs))
		if len(rq.Specs) == 0 {
			elem, msg, _ := cases[rq.ID].outcome()
			if elem != "skipped" || msg != string(rq.Verdict)+" - "+rq.Reason {
				t.Errorf("%s (%s): <%s message=%q>", rq.ID, rq.Verdict, elem, msg)
			}
		}
	}
	for name, want := range map[string][3]string{
		"DPS-DEV-014 scenario normal":   {"failure", "conversation 1, frame 20: expected a poll no earlier than 3.00 s; actual: poll \uFFFD 1.00 s after, password SharedAccessSignature sr=x&sig=[redacted]&se=1", "failed"},
		"DPS-DEV-014 scenario poll-429": {"", "", ""},
		"DPS-DEV-003 scenario normal":   {"", "", ""},
	} {
		c, ok := cases[name]
		elem, msg, typ := c.outcome()
		if !ok || elem != want[0] || msg != want[1] || typ != want[2] {
			t.Errorf("%s: present %v, <%s message=%q type=%q>, want <%s message=%q type=%q>", name, ok, elem, msg, typ, want[0], want[1], want[2])
		}
	}
	s := d.Suites[0]
	notJudged := rep.Summary.Requirements[reports.Skip] + rep.Summary.Requirements[reports.NotCovered]
	if len(s.Cases) != want || s.Tests != want || s.Failures != 1 || s.Errors != 0 || s.Skipped != notJudged || s.Disabled != 0 {
		t.Errorf("<testsuite tests=%d failures=%d errors=%d skipped=%d disabled=%d> of %d cases, want %d 1 0 %d 0",
			s.Tests, s.Failures, s.Errors, s.Skipped, s.Disabled, len(s.Cases), want, notJudged)
	}
	if d.Tests != want || d.Failures != 1 || d.Errors != 0 || d.Disabled != notJudged {
		t.Errorf("<testsuites tests=%d failures=%d errors=%d disabled=%d>, want %d 1 0 %d", d.Tests, d.Failures, d.Errors, d.Disabled, want, notJudged)
	}
}

// TestBuildRedactsSAS: a failure message may quote a CONNECT's password;
// the report model (results.json, report.html, summary.md) keeps its
// signature out, as junit.xml does.
func TestBuildRedactsSAS(t *testing.T) {
	cat, err := conformance.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	const token = "SharedAccessSignature sr=0ne00000001%2fregistrations%2freg-1&sig=c2VjcmV0c2lnbmF0dXJl&se=1700000000&skn=registration"
	g := types.Report{SuiteDescription: "dps-conform service suite", SpecReports: []types.SpecReport{{
		LeafNodeType: types.NodeTypeIt, LeafNodeText: "accepts a SAS token", LeafNodeLabels: []string{"req:DPS-AUTH-001"},
		State: types.SpecStateFailed, Failure: types.Failure{Message: "the CONNECT with password " + token + " was refused"},
	}}}
	r := reports.Build(reports.Input{Ginkgo: g, Catalog: cat, Role: conformance.RoleService, Profile: "dps-2019"})
	var buf strings.Builder
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "c2VjcmV0") || !strings.Contains(buf.String(), "sig=[redacted]") {
		t.Errorf("results.json carries the signature or no redaction:\n%s", buf.String())
	}
}

// writeJUnit writes r with WriteJUnit to a temporary file and returns the
// file's bytes.
func writeJUnit(t *testing.T, r types.Report) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "junit.xml")
	if err := reports.WriteJUnit(path, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
