package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/reports"
)

// TestWriteVerdictsCountsEverySpec: the "N specs" line of the verdict
// table accounts for every spec of the table. A spec the run's stop
// aborted as it began (state aborted) judged nothing, as an interrupted
// one did (conformance.Verdict.Interrupted): it is shown and counted as
// INTERRUPTED, not left out of the tally.
func TestWriteVerdictsCountsEverySpec(t *testing.T) {
	res := &conformance.Result{Verdicts: []conformance.Verdict{
		{ID: "DPS-CONN-001", Level: conformance.MUST, Text: "a", State: "passed"},
		{ID: "DPS-CONN-002", Level: conformance.MUST, Text: "b", State: "interrupted", Message: "interrupted by a signal"},
		{ID: "DPS-CONN-003", Level: conformance.MUST, Text: "c", State: "aborted", Message: "interrupted: the run was cancelled as this spec began"},
		{ID: "DPS-CONN-004", Level: conformance.MUST, Text: "d", State: "skipped", Message: conformance.NotRunReason},
	}}
	var b bytes.Buffer
	writeVerdicts(&b, res, reports.Summary{Interrupted: 2}, time.Second)
	out := b.String()
	if !strings.Contains(out, "4 specs in 1.0s: 1 passed, 0 failed, 0 skipped, 2 interrupted, 1 not run\n") {
		t.Errorf("the totals do not account for every spec:\n%s", out)
	}
	if strings.Contains(out, "ABORTED") {
		t.Errorf("an aborted spec is shown as ABORTED, not INTERRUPTED:\n%s", out)
	}
}
