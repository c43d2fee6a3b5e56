package conformance

import (
	"regexp"
	"strings"

	"github.com/onsi/ginkgo/v2/types"
)

// NotRunReason is the message of a spec the run selected but never
// started: an interrupt, the run's deadline or its cancelled context came
// first. Ginkgo reports such a spec as skipped with no message, as it
// reports one the label filter or focus left out; [Selected] tells the two
// apart.
const NotRunReason = "not run: the run was stopped before this spec started"

// Selected reports whether the label filter, focus and skip expressions
// of a run's suite config (rep.SuiteConfig, as Ginkgo's report keeps it)
// selected sr, by Ginkgo's own focus policy: the label filter matched the
// suite's and the spec's labels, a focus expression matched
// "DESCRIPTION TEXT" and no skip expression did. A spec left out is not
// part of the run: the reports omit it (Ginkgo lists it as skipped, with
// no message). Pending specs are selected (they are reported as pending).
// An expression that does not compile selects nothing; the run refuses
// one before it starts ([CheckSelection]).
func Selected(rep types.Report, sr types.SpecReport) bool {
	return selected(rep.SuiteConfig, rep.SuiteDescription, rep.SuiteLabels, sr)
}

func selected(sc types.SuiteConfig, description string, suiteLabels []string, sr types.SpecReport) bool {
	if sr.State != types.SpecStateSkipped {
		return true // only a skipped spec can have been left out
	}
	if sc.LabelFilter != "" {
		match, err := types.ParseLabelFilter(sc.LabelFilter)
		if err != nil || !match(append(append([]string{}, suiteLabels...), sr.Labels()...)) {
			return false
		}
	}
	text := description + " " + sr.FullText()
	if len(sc.FocusStrings) > 0 {
		re, err := regexp.Compile(strings.Join(sc.FocusStrings, "|"))
		if err != nil || !re.MatchString(text) {
			return false
		}
	}
	if len(sc.SkipStrings) > 0 {
		re, err := regexp.Compile(strings.Join(sc.SkipStrings, "|"))
		if err != nil || re.MatchString(text) {
			return false
		}
	}
	return true
}

// NotRun reports whether sr was selected ([Selected]) but never started:
// skipped with no reason, because the run was stopped first. Its reports
// give it [NotRunReason].
func NotRun(rep types.Report, sr types.SpecReport) bool {
	return sr.State == types.SpecStateSkipped && sr.Failure.Message == "" && Selected(rep, sr)
}
