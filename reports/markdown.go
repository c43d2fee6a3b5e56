package reports

import (
	"fmt"
	"io"
	"strings"
)

// WriteMarkdown writes a short summary fit for a CI job summary (GitHub's
// $GITHUB_STEP_SUMMARY): the verdict, the MUST coverage, and a table of the
// requirements that failed, with their first finding.
func WriteMarkdown(w io.Writer, r *Report) error {
	verdict := "✅ **CONFORMANT**"
	switch r.Summary.Headline() {
	case HeadlineNonConformant:
		verdict = fmt.Sprintf("❌ **NON-CONFORMANT**: %d MUST requirement(s) failed", r.Summary.MustFailed)
	case HeadlineInterrupted:
		verdict = fmt.Sprintf("⚠️ **INTERRUPTED**: the run was stopped before it finished; %d MUST requirement(s) judged, none failed", r.Summary.MustJudged)
	case HeadlineNoVerdict:
		verdict = "⚠️ **NO VERDICT**: no MUST requirement was judged"
		if why := r.Summary.NoVerdictReason; why != "" {
			verdict = "⚠️ **NO VERDICT**: " + mdCode(why, false)
		}
	}
	if r.Summary.Incomplete() && r.Summary.Headline() == HeadlineNonConformant {
		verdict += " (the run was interrupted before it finished)"
	}
	if why := r.Summary.NotRunReason; why != "" && r.Summary.NotRun > 0 {
		verdict += fmt.Sprintf("\n\n%d scenario(s) not run (%s): %s", r.Summary.NotRun,
			mdCode(strings.Join(r.Summary.NotRunScenarios, ", "), false), mdCode(why, false))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n%s\n\n", mdEscape(r.Title), verdict)
	fmt.Fprintf(&b, "- target: %s", mdCode(r.Target.Endpoint, false))
	if r.Target.IDScope != "" {
		fmt.Fprintf(&b, ", id scope %s", mdCode(r.Target.IDScope, false))
	}
	if r.Target.Attestation != "" {
		fmt.Fprintf(&b, "; attestation: %s", mdCode(r.Target.Attestation, false))
	}
	fmt.Fprintf(&b, "\n- profile: %s; tool: %s %s\n", r.Profile, r.Tool.Name, r.Tool.Version)
	fmt.Fprintf(&b, "- MUST coverage: %d of %d MUST requirements judged (%s), %d passed, %d failed\n",
		r.Summary.MustJudged, r.Summary.MustTotal, r.Summary.MustCoverageText(), r.Summary.MustPassed, r.Summary.MustFailed)
	fmt.Fprintf(&b, "- requirements: %d PASS, %d FAIL, %d SKIP, %d NOT COVERED\n",
		r.Summary.Requirements[Pass], r.Summary.Requirements[Fail], r.Summary.Requirements[Skip], r.Summary.Requirements[NotCovered])
	var failed []*Requirement
	for _, q := range r.Requirements {
		if q.Verdict == Fail {
			failed = append(failed, q)
		}
	}
	if len(failed) > 0 {
		b.WriteString("\n| requirement | level | why |\n|---|---|---|\n")
		for _, q := range failed {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", q.ID, q.Level, mdCode(q.Reason, true))
		}
	}
	b.WriteString("\nFull report: `report.html` in the results (open it offline); evidence: `pcaps/`.\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// mdEscape makes s plain text in Markdown: the characters of links,
// images, emphasis, code and tables are backslash-escaped, HTML is
// written as entities.
func mdEscape(s string) string {
	return strings.NewReplacer("\\", "\\\\", "|", "\\|", "\n", " ", "<", "&lt;", ">", "&gt;",
		"[", "\\[", "]", "\\]", "(", "\\(", ")", "\\)", "!", "\\!", "*", "\\*", "_", "\\_", "`", "\\`", "~", "\\~").Replace(s)
}

// mdCode writes s, which may come from the device or the target (a
// finding quotes a ClientId, a topic, a payload), as a code span: nothing
// in it renders as a link, an image or HTML, and no bare URL in it is made
// a link. Its fence is longer than any run of backticks in s. In a table
// cell a "|" is escaped, as GFM tables need even inside code.
func mdCode(s string, cell bool) string {
	s = strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
	if cell {
		s = strings.ReplaceAll(s, "|", "\\|")
	}
	longest, run := 0, 0
	for _, c := range s {
		if c == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", longest+1)
	return fence + " " + s + " " + fence
}
