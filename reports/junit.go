package reports

import (
	"fmt"
	"slices"

	"github.com/onsi/ginkgo/v2/reporters"
	"github.com/onsi/ginkgo/v2/types"

	"github.com/dps-conform/dps-conform/conformance"
)

// WriteJUnit writes JUnit XML for CI viewers, trimmed the way Kubernetes
// trims its conformance JUnit: no timelines for passed and skipped specs, no
// captured output, labels kept out of test names, and of the evidence only
// the capture's path (a "pcap" property).
func WriteJUnit(path string, r types.Report) error {
	// The evidence entries (transcripts, sequences) belong in report.html
	// and results.json; in JUnit they would be properties of every test
	// case. Keep the capture's path only.
	r.SpecReports = slices.Clone(r.SpecReports)
	for i := range r.SpecReports {
		var keep types.ReportEntries
		for _, e := range r.SpecReports[i].ReportEntries {
			if e.Name == conformance.EntryPcap {
				keep = append(keep, e)
			}
		}
		r.SpecReports[i].ReportEntries = keep
	}
	err := reporters.GenerateJUnitReportWithConfig(r, path, reporters.JunitReportConfig{
		OmitTimelinesForSpecState: types.SpecStatePassed | types.SpecStateSkipped,
		OmitCapturedStdOutErr:     true,
		OmitSpecLabels:            true,
		OmitLeafNodeType:          true,
		OmitSuiteSetupNodes:       true,
	})
	if err != nil {
		return fmt.Errorf("writing JUnit %s: %w", path, err)
	}
	return nil
}
