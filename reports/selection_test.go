package reports_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/onsi/ginkgo/v2/types"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/reports"
)

// TestReportsOmitUnselected: a spec the label filter or focus left out is
// not part of the run. Ginkgo's report lists it as skipped with no
// message; junit.xml and the model (results.json, report.html,
// summary.md) omit it, so a CI viewer shows no skip nobody asked for. A
// spec that was selected but never started (the run was stopped first),
// also skipped with no message in Ginkgo's report, stays in both and says
// so; one skipped for a reason keeps its reason. Both formats list the
// same specs.
func TestReportsOmitUnselected(t *testing.T) {
	spec := func(text, id string, state types.SpecState, msg string, labels ...string) types.SpecReport {
		return types.SpecReport{LeafNodeType: types.NodeTypeIt, ContainerHierarchyTexts: []string{strings.Fields(text)[0]},
			LeafNodeText: strings.SplitN(text, " ", 2)[1], LeafNodeLabels: append([]string{"req:" + id}, labels...),
			State: state, Failure: types.Failure{Message: msg}}
	}
	g := types.Report{
		SuiteDescription: "dps-conform service suite against emulator",
		SuiteConfig:      types.SuiteConfig{LabelFilter: "!quota", FocusStrings: []string{"CONNECT", "TLS"}},
		SpecReports: types.SpecReports{
			spec("CONNECT accepts the documented CONNECT", "DPS-CONN-001", types.SpecStatePassed, ""),
			spec("CONNECT closes the connection after a second CONNECT", "DPS-CONN-002", types.SpecStateSkipped, ""),
			spec("CONNECT spends the quota", "DPS-REG-010", types.SpecStateSkipped, "", "quota"),
			spec("SUBSCRIBE grants QoS 1", "DPS-SUB-002", types.SpecStateSkipped, ""),
			spec("TLS refuses a TLS 1.0 handshake", "TLS-002", types.SpecStateSkipped, "the target config gives no TLS 1.0 port"),
		},
	}
	want := map[string]string{ // test case → its <skipped message>, "" passed
		"DPS-CONN-001 CONNECT accepts the documented CONNECT":               "",
		"DPS-CONN-002 CONNECT closes the connection after a second CONNECT": "skipped - " + conformance.NotRunReason,
		"TLS-002 TLS refuses a TLS 1.0 handshake":                           "skipped - the target config gives no TLS 1.0 port",
	}
	d := readJUnit(t, writeJUnit(t, g))
	if len(d.Suites) != 1 {
		t.Fatalf("%d suites, want 1", len(d.Suites))
	}
	var cases []string
	for _, c := range d.Suites[0].Cases {
		cases = append(cases, c.Name)
		_, msg, _ := c.outcome()
		if w, ok := want[c.Name]; !ok {
			t.Errorf("junit.xml lists %q, which the selection left out (%q)", c.Name, msg)
		} else if msg != w {
			t.Errorf("%q: message %q, want %q", c.Name, msg, w)
		}
	}
	if s := d.Suites[0]; s.Tests != len(want) || s.Skipped != 2 || d.Tests != len(want) || d.Disabled != 2 {
		t.Errorf("counts tests=%d skipped=%d (testsuites tests=%d disabled=%d), want %d and 2", s.Tests, s.Skipped, d.Tests, d.Disabled, len(want))
	}

	cat, err := conformance.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	r := reports.Build(reports.Input{Ginkgo: g, Catalog: cat, Role: conformance.RoleService, Profile: conformance.ProfileDPS2019})
	var model []string
	for _, rq := range r.Requirements {
		for _, s := range rq.Specs {
			model = append(model, rq.ID+" "+s.Text)
			if s.State == "skipped" && s.Message == conformance.NotRunReason && rq.Reason != conformance.NotRunReason {
				t.Errorf("%s: reason %q, want %q", rq.ID, rq.Reason, conformance.NotRunReason)
			}
		}
	}
	slices.Sort(cases)
	slices.Sort(model)
	if !slices.Equal(cases, model) {
		t.Errorf("junit.xml lists %q, the model %q", cases, model)
	}
	if n := r.Summary.Specs["skipped"]; n != 2 {
		t.Errorf("the model counts %d skipped specs, want 2 (%v)", n, r.Summary.Specs)
	}
}
