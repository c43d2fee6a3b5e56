package reports_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/onsi/ginkgo/v2/types"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/reports"
)

// TestWriteJUnitIdentity: a CI server knows a test by suite, classname
// and name across runs, so none of them may hold what changes from run to
// run (the target's port, the emulator's faults) or dots a Jenkins reads
// as packages; the requirement ID leads the name and the level is a
// property, as in a device run's junit.xml; the capture's property is its
// path relative to the results directory that holds junit.xml.
func TestWriteJUnitIdentity(t *testing.T) {
	write := func(description string) junitDoc {
		dir := t.TempDir()
		g := types.Report{SuiteDescription: description, SuitePath: dir, SpecReports: types.SpecReports{{
			LeafNodeType: types.NodeTypeIt, ContainerHierarchyTexts: []string{"SUBSCRIBE"}, LeafNodeText: "grants QoS 1 to a SUBSCRIBE asking for QoS 2",
			LeafNodeLabels: []string{"req:DPS-SUB-002", "level:MUST", "area:subscribe"}, State: types.SpecStatePassed,
			ReportEntries: types.ReportEntries{{Name: conformance.EntryPcap, Value: types.WrapEntryValue(filepath.Join(dir, "pcaps", "003-DPS-SUB-002.pcapng"))}},
		}}}
		path := filepath.Join(dir, "junit.xml")
		if err := reports.WriteJUnit(path, g); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return readJUnit(t, b)
	}
	a := write("dps-conform service suite against mqtts://127.0.0.1:40233")
	b := write("dps-conform service suite against embedded emulator (faults: grant-qos2)")
	for _, d := range []junitDoc{a, b} {
		if len(d.Suites) != 1 || len(d.Suites[0].Cases) != 1 {
			t.Fatalf("want 1 suite of 1 case: %+v", d)
		}
		s, c := d.Suites[0], d.Suites[0].Cases[0]
		// Ginkgo's package is the suite's path, the working directory
		// of the run: one per machine and checkout.
		if s.Package != "dps-conform" {
			t.Errorf("<testsuite package=%q>, want \"dps-conform\"", s.Package)
		}
		if s.Name != "dps-conform service role" || c.Classname != "dps-conform service role" ||
			c.Name != "DPS-SUB-002 SUBSCRIBE grants QoS 1 to a SUBSCRIBE asking for QoS 2" {
			t.Errorf("<testsuite name=%q> <testcase classname=%q name=%q>: want the role and the ID-led spec text", s.Name, c.Classname, c.Name)
		}
		props := map[string]string{}
		for _, p := range c.Props {
			props[p.Name] = p.Value
		}
		if props["level"] != "MUST" || props["pcap"] != "pcaps/003-DPS-SUB-002.pcapng" {
			t.Errorf("properties %v: want level MUST and pcap relative to the results directory", props)
		}
	}
	if a.Suites[0].Props["SuiteDescription"] != "dps-conform service suite against mqtts://127.0.0.1:40233" {
		t.Errorf("the suite's description is not kept as a property: %v", a.Suites[0].Props)
	}
}

// TestWriteJUnitCaptureOfMovedResults: report render writes junit.xml
// again from ginkgo-report.json, whose capture paths are those of the run
// (absolute, or relative to the run's working directory). In a results
// directory that was moved or unpacked elsewhere since, the capture's
// property still names the file in it, pcaps/NNN-ID.pcapng, never the
// run's old path.
func TestWriteJUnitCaptureOfMovedResults(t *testing.T) {
	for _, old := range []string{
		filepath.Join(t.TempDir(), "gone", "pcaps", "003-DPS-SUB-002.pcapng"),   // --out given as an absolute path
		filepath.Join("dps-conform-results", "pcaps", "003-DPS-SUB-002.pcapng"), // the default --out, relative
	} {
		dir := t.TempDir()
		g := types.Report{SuiteDescription: "dps-conform service suite against embedded emulator", SpecReports: types.SpecReports{{
			LeafNodeType: types.NodeTypeIt, ContainerHierarchyTexts: []string{"SUBSCRIBE"}, LeafNodeText: "grants QoS 1 to a SUBSCRIBE asking for QoS 2",
			LeafNodeLabels: []string{"req:DPS-SUB-002", "level:MUST"}, State: types.SpecStatePassed,
			ReportEntries: types.ReportEntries{{Name: conformance.EntryPcap, Value: types.WrapEntryValue(old)}},
		}}}
		path := filepath.Join(dir, "junit.xml")
		if err := reports.WriteJUnit(path, g); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		d := readJUnit(t, b)
		found := false
		for _, p := range d.Suites[0].Cases[0].Props {
			if p.Name != "pcap" {
				continue
			}
			found = true
			if p.Value != "pcaps/003-DPS-SUB-002.pcapng" {
				t.Errorf("capture %s written into %s: property %q, want \"pcaps/003-DPS-SUB-002.pcapng\"", old, dir, p.Value)
			}
		}
		if !found {
			t.Errorf("capture %s: no pcap property:\n%s", old, b)
		}
	}
}
