package reports_test

import (
	"strings"
	"testing"

	"github.com/onsi/ginkgo/v2/types"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/reports"
)

// TestWriteJUnitInterrupted: the test case of a spec the run's stop cut
// short is an <error> whose message says plainly that it was interrupted,
// by what (a signal, the run's deadline, the run's context) and that the
// target was not judged; Ginkgo's progress report (every goroutine of the
// process, its advice to interrupt again) is not in the message, and of
// it only the suite's frames of the spec's goroutine stay in the text.
// A spec the run's deadline stopped, which Ginkgo reports timedout, is
// interrupted, not a failure of the target, in junit.xml and the model.
func TestWriteJUnitInterrupted(t *testing.T) {
	progress := types.ProgressReport{
		Message:         "{{bold}}This is the Progress Report generated when the interrupt was received:{{/}}",
		LeafNodeText:    "accepts the documented CONNECT",
		CurrentNodeType: types.NodeTypeIt,
		Goroutines: []types.Goroutine{
			{ID: 75, State: "IO wait", IsSpecGoroutine: true, Stack: []types.FunctionCall{
				{Function: "internal/poll.runtime_pollWait", Filename: "/go/src/runtime/netpoll.go", Line: 351},
				{Function: "github.com/dps-conform/dps-conform/conformance.(*Conn).next", Filename: "/src/conformance/client.go", Line: 547, Highlight: true},
			}},
			{ID: 1, State: "chan receive", Stack: []types.FunctionCall{
				{Function: "testing.(*T).Run", Filename: "/go/src/testing/testing.go", Line: 2109},
			}},
		},
	}
	later := progress
	later.Message = "Interrupted by User\nFirst interrupt received; Ginkgo will run any cleanup and reporting nodes but will skip all remaining specs.  Interrupt again to skip cleanup."
	loc := types.CodeLocation{FileName: "/src/conformance/specs_service.go", LineNumber: 96}
	tests := []struct {
		name     string
		state    types.SpecState
		msg      string
		want     string // a word the message must hold
		wantType string
	}{
		{"SIGINT or SIGTERM", types.SpecStateInterrupted, "Interrupted by User", "signal", "interrupted"},
		{"the run's deadline", types.SpecStateTimedout, "A suite timeout occurred", "deadline", "interrupted"},
		{"the run's context", types.SpecStateAborted, "interrupted before this spec ran", "cancelled", "aborted"},
	}
	g := types.Report{SuiteDescription: "dps-conform service suite"}
	for _, tt := range tests {
		g.SpecReports = append(g.SpecReports, types.SpecReport{
			LeafNodeType: types.NodeTypeIt, ContainerHierarchyTexts: []string{"CONNECT"}, LeafNodeText: "stopped by " + tt.name,
			LeafNodeLabels: []string{"req:DPS-CONN-001"}, State: tt.state,
			Failure:         types.Failure{Message: tt.msg, Location: loc, ProgressReport: progress},
			ProgressReports: []types.ProgressReport{later},
		})
	}
	b := writeJUnit(t, g)
	d := readJUnit(t, b)
	if len(d.Suites) != 1 || len(d.Suites[0].Cases) != len(tests) {
		t.Fatalf("want %d test cases:\n%s", len(tests), b)
	}
	for i, tt := range tests {
		c := d.Suites[0].Cases[i]
		elem, msg, typ := c.outcome()
		if elem != "error" || typ != tt.wantType || !strings.HasPrefix(msg, "interrupted") || !strings.Contains(msg, tt.want) ||
			!strings.HasSuffix(msg, "the target was not judged") || strings.Contains(msg, "\n") {
			t.Errorf("%s: <%s type=%q message=%q>, want <error type=%q> saying plainly it was interrupted, by the %s", tt.name, elem, typ, msg, tt.wantType, tt.want)
		}
	}
	// Nor does its text read as the target's failure: its first line says
	// it was interrupted, and it does not lead with the requirement's
	// statement and source as a failed spec's does.
	cat, err := conformance.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	rq, _ := cat.Lookup("DPS-CONN-001")
	for i, tt := range tests {
		_, msg, _ := d.Suites[0].Cases[i].outcome()
		text := d.Suites[0].Cases[i].Error.Text
		first, _, _ := strings.Cut(text, "\n")
		if !strings.Contains(first, msg) || strings.Contains(text, rq.Statement) || strings.Contains(text, "source: ") {
			t.Errorf("%s: the <error> text does not start by saying %q, or reads as a failure of DPS-CONN-001:\n%s", tt.name, msg, text)
		}
	}
	if d.Suites[0].Errors != len(tests) || d.Suites[0].Failures != 0 {
		t.Errorf("errors=%d failures=%d, want %d and 0", d.Suites[0].Errors, d.Suites[0].Failures, len(tests))
	}
	for _, noise := range []string{"testing.(*T).Run", "goroutine 1 ", "runtime_pollWait", "Interrupt again", "Interrupted by User", "A suite timeout occurred"} {
		if strings.Contains(string(b), noise) {
			t.Errorf("junit.xml carries %q:\n%s", noise, b)
		}
	}
	if !strings.Contains(string(b), "conformance.(*Conn).next") {
		t.Errorf("junit.xml lost the frame where the spec was waiting:\n%s", b)
	}

	r := reports.Build(reports.Input{Ginkgo: g, Catalog: cat, Role: conformance.RoleService, Profile: conformance.ProfileDPS2019})
	if r.Summary.Interrupted != len(tests) || r.Summary.Verdict == reports.HeadlineNonConformant {
		t.Errorf("the model counts %d interrupted (want %d), headline %s", r.Summary.Interrupted, len(tests), r.Summary.Verdict)
	}
}

// TestBuildStoppedBetweenSpecs: an interrupt that lands between two specs
// cuts none short (no spec is interrupted), but leaves the rest of the
// selection never started. The run is incomplete all the same: its
// headline is INTERRUPTED, never CONFORMANT, in the model, summary.md and
// the text the run prints, and a results.json saying so passes the
// summary check. (A Ctrl-C 0.4 s into 'dps-conform run' printed
// "CONFORMANT: every MUST requirement that ran passed" with 70 specs not
// run.)
func TestBuildStoppedBetweenSpecs(t *testing.T) {
	cat, err := conformance.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	spec := func(req string, state types.SpecState) types.SpecReport {
		return types.SpecReport{LeafNodeType: types.NodeTypeIt, ContainerHierarchyTexts: []string{"CONNECT"},
			LeafNodeText: "spec of " + req, LeafNodeLabels: []string{"req:" + req}, State: state}
	}
	g := types.Report{SuiteDescription: "dps-conform service suite", SpecReports: []types.SpecReport{
		spec("DPS-CONN-001", types.SpecStatePassed),
		spec("DPS-SUB-002", types.SpecStateSkipped), // selected, never started
	}}
	r := reports.Build(reports.Input{Ginkgo: g, Catalog: cat, Role: conformance.RoleService, Profile: conformance.ProfileDPS2019,
		Tool: reports.Tool{Name: "dps-conform", Version: "test"}})
	if r.Summary.NotRun != 1 || r.Summary.Interrupted != 0 || !r.Summary.Incomplete() {
		t.Errorf("notRun %d interrupted %d incomplete %v, want 1, 0, true", r.Summary.NotRun, r.Summary.Interrupted, r.Summary.Incomplete())
	}
	if h := r.Summary.Headline(); h != reports.HeadlineInterrupted || r.Summary.Verdict != h || r.Summary.Conformant {
		t.Errorf("headline %s, verdict %s, conformant %v; want INTERRUPTED and not conformant", h, r.Summary.Verdict, r.Summary.Conformant)
	}
	var md strings.Builder
	if err := reports.WriteMarkdown(&md, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "INTERRUPTED") || strings.Contains(md.String(), "✅") {
		t.Errorf("summary.md does not say the run was interrupted:\n%s", md.String())
	}
	var js strings.Builder
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	back, err := reports.ReadJSON(strings.NewReader(js.String()))
	if err != nil {
		t.Fatalf("results.json of the stopped run does not read back: %v", err)
	}
	if back.Summary.NotRun != 1 || back.Summary.Headline() != reports.HeadlineInterrupted {
		t.Errorf("read back: notRun %d, headline %s", back.Summary.NotRun, back.Summary.Headline())
	}
}
