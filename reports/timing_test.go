package reports_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/reports"
)

// TestTimingChart: device reports draw register, poll and the retry-after
// windows; a poll inside a window is red, one after it is not. Service
// reports have no timing chart.
func TestTimingChart(t *testing.T) {
	seq := []conformance.SequenceEvent{
		{Conversation: 1, Frame: 10, T: 0.0, Dir: "c2s", Label: "register $rid=1"},
		{Conversation: 1, Frame: 12, T: 0.1, Dir: "s2c", Label: "202 $rid=1 retry-after=3"},
		{Conversation: 1, Frame: 14, T: 1.0, Dir: "c2s", Label: "poll $rid=2"},
		{Conversation: 1, Frame: 16, T: 1.1, Dir: "s2c", Label: "202 $rid=2 retry-after=3"},
		{Conversation: 1, Frame: 18, T: 4.2, Dir: "c2s", Label: "poll $rid=3"},
		{Conversation: 1, Frame: 20, T: 4.3, Dir: "s2c", Label: "200 $rid=3"},
	}
	rep := func(role string) *reports.Report {
		return &reports.Report{Title: "t", Role: role, Tool: reports.Tool{Name: "dps-conform"},
			Summary: reports.Summary{Requirements: map[reports.Verdict]int{}},
			Requirements: []*reports.Requirement{{ID: "DPS-DEV-014", Level: "MUST", Verdict: reports.Fail,
				Specs: []*reports.Spec{{Text: "scenario normal", State: "failed", Sequence: seq}}}}}
	}
	var b bytes.Buffer
	if err := reports.WriteHTML(&b, rep("device")); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	for _, want := range []string{`class="timing"`, "202: wait 3 s", "poll at 1.000 s: earlier than the retry-after allows"} {
		if !strings.Contains(html, want) {
			t.Errorf("device report lacks %q", want)
		}
	}
	if n := strings.Count(html, `class="req red"`); n != 1 {
		t.Errorf("%d red requests, want 1 (the poll at 1.0 s)", n)
	}
	b.Reset()
	if err := reports.WriteHTML(&b, rep("service")); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), `<svg class="timing"`) {
		t.Errorf("a service report has a timing chart")
	}
}
