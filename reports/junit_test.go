package reports_test

import (
	"os"
	"path/filepath"
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
	path := filepath.Join(t.TempDir(), "junit.xml")
	if err := reports.WriteJUnit(path, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.Contains(s, "001-DPS-SUB-002.pcapng") || strings.Contains(s, "TRANSCRIPT-TEXT") || strings.Contains(s, "[SEQUENCE]") {
		t.Errorf("junit.xml:\n%s", s)
	}
	if len(r.SpecReports[0].ReportEntries) != 3 {
		t.Errorf("WriteJUnit changed the caller's report")
	}
}
