package reports_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/reports"
)

// TestBuildDevice: a device requirement is FAIL when its rule found
// something in one scenario (that scenario's spec failed), PASS when it
// applied without findings, NOT COVERED when no scenario gave evidence; the
// MUST summary counts them.
func TestBuildDevice(t *testing.T) {
	cat, err := conformance.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	f := conformance.Finding{ID: "DPS-DEV-014", Conversation: 1, Frame: 20, Expected: []string{"a poll no earlier than 3.00 s"}, Actual: "poll 1.00 s after"}
	rep := reports.BuildDevice(reports.DeviceInput{Catalog: cat, Profile: conformance.ProfileDPS2019, ResultsDir: "/r",
		Target: reports.Target{Name: "dut"},
		Scenarios: []reports.Scenario{
			{Name: "normal", Pcap: "/r/pcaps/01-normal.pcapng", Applied: map[string]int{"DPS-DEV-014": 2, "DPS-DEV-003": 1}, Findings: []conformance.Finding{f}},
			{Name: "poll-429", Pcap: "/r/pcaps/02-poll-429.pcapng", Applied: map[string]int{"DPS-DEV-014": 1, "DPS-DEV-003": 1}},
		}})
	got := map[string]*reports.Requirement{}
	for _, rq := range rep.Requirements {
		got[rq.ID] = rq
		if rq.Role != "device" {
			t.Errorf("%s: role %s in a device report", rq.ID, rq.Role)
		}
	}
	if rq := got["DPS-DEV-014"]; rq == nil || rq.Verdict != reports.Fail || len(rq.Specs) != 2 || rq.Specs[0].State != "failed" ||
		rq.Specs[0].Pcap != "pcaps/01-normal.pcapng" || rq.Specs[1].State != "passed" {
		t.Errorf("DPS-DEV-014: %+v", rq)
	}
	if rq := got["DPS-DEV-003"]; rq == nil || rq.Verdict != reports.Pass {
		t.Errorf("DPS-DEV-003: %+v", rq)
	}
	if rq := got["DPS-DEV-021"]; rq == nil || rq.Verdict != reports.NotCovered {
		t.Errorf("DPS-DEV-021: %+v", rq)
	}
	if rep.Summary.MustFailed != 1 || rep.Summary.MustPassed != 1 || rep.Summary.Conformant || rep.Summary.Specs["failed"] != 1 || rep.Summary.Specs["passed"] != 3 {
		t.Errorf("summary %+v", rep.Summary)
	}
}

// TestBuildDeviceNothingJudged: scenarios in which the device never
// connected judge nothing, and the report says NO VERDICT, not
// CONFORMANT; one passing MUST rule makes it CONFORMANT.
func TestBuildDeviceNothingJudged(t *testing.T) {
	cat, err := conformance.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	build := func(applied map[string]int) reports.Summary {
		return reports.BuildDevice(reports.DeviceInput{Catalog: cat, Profile: conformance.ProfileDPS2019, ResultsDir: "/r",
			Target:    reports.Target{Name: "dut"},
			Scenarios: []reports.Scenario{{Name: "normal", Pcap: "/r/pcaps/01-normal.pcapng", Applied: applied}}}).Summary
	}
	if s := build(nil); s.Conformant || s.Verdict != reports.HeadlineNoVerdict || s.MustJudged != 0 {
		t.Errorf("nothing applied: %+v", s)
	}
	if s := build(map[string]int{"DPS-DEV-003": 1}); !s.Conformant || s.Verdict != reports.HeadlineConformant {
		t.Errorf("one MUST rule passed: %+v", s)
	}
}

// TestBuildDeviceNotRun: scenarios a device run stopped before on its own
// (the device opened no TCP connection in two in a row) are counted and
// named as not run, with why, in results.json, junit.xml, summary.md and
// report.html; the headline is NO VERDICT, even where what ran passed a
// MUST rule, and not INTERRUPTED (no interrupt stopped the run).
func TestBuildDeviceNotRun(t *testing.T) {
	cat, err := conformance.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	why := "the device opened no TCP connection in 2 scenarios in a row (normal, register-429)"
	rep := reports.BuildDevice(reports.DeviceInput{Catalog: cat, Profile: conformance.ProfileDPS2019, ResultsDir: "/r",
		Tool: reports.Tool{Name: "dps-conform"}, Target: reports.Target{Name: "dut"},
		Scenarios: []reports.Scenario{{Name: "normal", Pcap: "/r/pcaps/01-normal.pcapng", Applied: map[string]int{"DPS-DEV-003": 1}}},
		NotRun:    []string{"poll-429", "tls-expired"}, NotRunReason: why})
	s := rep.Summary
	if s.Verdict != reports.HeadlineNoVerdict || s.Conformant || s.Incomplete() || s.NotRun != 2 || s.Interrupted != 0 ||
		!slices.Equal(s.NotRunScenarios, []string{"poll-429", "tls-expired"}) || s.NotRunReason != why {
		t.Errorf("summary %+v", s)
	}
	var js, junit, md, html bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	back, err := reports.ReadJSON(&js)
	if err != nil || back.Summary.Headline() != reports.HeadlineNoVerdict || back.Summary.NotRun != 2 {
		t.Errorf("read back (%v): %+v", err, back)
	}
	if err := reports.WriteReportJUnit(&junit, rep); err != nil {
		t.Fatal(err)
	}
	for _, sc := range s.NotRunScenarios {
		tc := `<testcase name="scenario ` + sc + `" classname="dps-conform device role" status="skipped" time="0">`
		_, after, ok := strings.Cut(junit.String(), tc)
		if want := `<skipped message="skipped - not run: ` + why + `"></skipped>`; !ok || !strings.HasPrefix(strings.TrimSpace(after), want) {
			t.Errorf("junit.xml lacks %s with %s:\n%s", tc, want, junit.String())
		}
	}
	if err := reports.WriteMarkdown(&md, rep); err != nil {
		t.Fatal(err)
	}
	if want := "2 scenario(s) not run (` poll-429, tls-expired `): ` " + why + " `"; !strings.Contains(md.String(), want) {
		t.Errorf("summary.md lacks %q:\n%s", want, md.String())
	}
	if err := reports.WriteHTML(&html, rep); err != nil {
		t.Fatal(err)
	}
	if want := `<span id="not-run-reason">2 scenario(s) not run (poll-429, tls-expired): ` + why + `</span>`; !strings.Contains(html.String(), want) {
		t.Errorf("report.html lacks %q", want)
	}
}

// TestBuildDeviceNotRunNoReason: scenarios not run with no reason given
// get one that reads after junit.xml's "not run: " and summary.md's "not
// run (…): " (it began "not run: " itself: "not run: not run: …").
func TestBuildDeviceNotRunNoReason(t *testing.T) {
	cat, err := conformance.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	rep := reports.BuildDevice(reports.DeviceInput{Catalog: cat, Profile: conformance.ProfileDPS2019, ResultsDir: "/r",
		Tool: reports.Tool{Name: "dps-conform"}, Target: reports.Target{Name: "dut"}, NotRun: []string{"poll-429"}})
	var junit bytes.Buffer
	if err := reports.WriteReportJUnit(&junit, rep); err != nil {
		t.Fatal(err)
	}
	if want := `<skipped message="skipped - not run: the run stopped before these scenarios">`; rep.Summary.NotRunReason == "" ||
		strings.Contains(junit.String(), "not run: not run") || !strings.Contains(junit.String(), want) {
		t.Errorf("reason %q; junit.xml lacks %s:\n%s", rep.Summary.NotRunReason, want, junit.String())
	}
}
