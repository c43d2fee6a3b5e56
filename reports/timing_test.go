package reports_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/reports"
)

// TestTimingChart: device reports draw register, poll and the retry-after
// windows; the poll a finding points at is red and titled with the
// finding's words, one after the window is not, and neither is a request
// of another conversation that merely falls inside a window (the chart
// makes no verdict of its own). Service reports have no timing chart.
func TestTimingChart(t *testing.T) {
	seq := []conformance.SequenceEvent{
		{Conversation: 1, Frame: 10, T: 0.0, Dir: "c2s", Label: "register $rid=1"},
		{Conversation: 1, Frame: 12, T: 0.1, Dir: "s2c", Label: "202 $rid=1 retry-after=3"},
		{Conversation: 1, Frame: 14, T: 1.0, Dir: "c2s", Label: "poll $rid=2"},
		{Conversation: 1, Frame: 16, T: 1.1, Dir: "s2c", Label: "202 $rid=2 retry-after=3"},
		{Conversation: 1, Frame: 18, T: 4.2, Dir: "c2s", Label: "poll $rid=3"},
		{Conversation: 1, Frame: 20, T: 4.3, Dir: "s2c", Label: "200 $rid=3"},
		{Conversation: 2, Frame: 30, T: 2.0, Dir: "c2s", Label: "register $rid=1"},
	}
	early := conformance.Finding{ID: "DPS-DEV-014", Conversation: 1, Frame: 14,
		Actual:   "poll $rid=2 0.90 s after the 202 answer (frame 12) with retry-after=3 s",
		Expected: []string{"a poll no earlier than 3.00 s (tolerance 0.25 s)"}}
	rep := func(role string) *reports.Report {
		return &reports.Report{Title: "t", Role: role, Tool: reports.Tool{Name: "dps-conform"},
			Summary: reports.Summary{Requirements: map[reports.Verdict]int{}},
			Requirements: []*reports.Requirement{{ID: "DPS-DEV-014", Level: "MUST", Verdict: reports.Fail,
				Specs: []*reports.Spec{{Text: "scenario normal", State: "failed", Sequence: seq,
					Findings: []conformance.Finding{early}}}}}}
	}
	var b bytes.Buffer
	if err := reports.WriteHTML(&b, rep("device")); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	for _, want := range []string{`class="timing"`, "202: wait 3 s", "poll at 1.000 s: " + early.Actual} {
		if !strings.Contains(html, want) {
			t.Errorf("device report lacks %q", want)
		}
	}
	if n := strings.Count(html, `class="req red"`); n != 1 {
		t.Errorf("%d red requests, want 1 (the poll at 1.0 s)", n)
	}
	for _, notRed := range []string{"poll at 4.200 s", "register at 2.000 s"} {
		if !strings.Contains(html, "<title>"+notRed+"</title>") {
			t.Errorf("device report lacks the plain title %q", notRed)
		}
	}
	b.Reset()
	if err := reports.WriteHTML(&b, rep("service")); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), `<svg class="timing"`) {
		t.Errorf("a service report has a timing chart")
	}
}
