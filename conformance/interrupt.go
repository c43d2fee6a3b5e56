package conformance

import (
	"strings"

	"github.com/onsi/ginkgo/v2/types"
)

// ginkgoSignal and ginkgoSuiteTimeout are Ginkgo's failure messages of a
// spec stopped by SIGINT or SIGTERM (its interrupt handler cannot tell the
// two apart) and of one stopped by the suite's timeout, which Run sets
// from its context's deadline; abortReason is the one of a spec that
// began after Run's context was cancelled.
const (
	ginkgoSignal       = "Interrupted by User"
	ginkgoSuiteTimeout = "A suite timeout occurred"
	abortReason        = "interrupted before this spec ran"
)

// State is the state of sr as the reports give it: Ginkgo's, but
// interrupted for a spec the run's deadline stopped, which Ginkgo reports
// timedout like one that waited out its own SpecTimeout on a silent
// target. The deadline is the run's, not the target's: such a spec judged
// nothing ([Verdict.Interrupted]).
func State(sr types.SpecReport) types.SpecState {
	if sr.State == types.SpecStateTimedout && sr.Failure.Message == ginkgoSuiteTimeout {
		return types.SpecStateInterrupted
	}
	return sr.State
}

// InterruptReason says plainly what stopped sr when the run was stopped
// while it ran or as it began ([State] interrupted or aborted), and that
// the target was not judged; "" for any other spec. It names the cause
// Ginkgo recorded (a signal, the run's deadline, Run's context) in place
// of Ginkgo's "Interrupted by User" or "A suite timeout occurred".
func InterruptReason(sr types.SpecReport) string {
	const notJudged = "; the target was not judged"
	msg := strings.TrimSpace(sr.Failure.Message)
	switch State(sr) {
	case types.SpecStateInterrupted:
		switch msg {
		case ginkgoSignal:
			return "interrupted by a signal (SIGINT or SIGTERM: Ctrl-C, or the CI job stopped) while the spec ran" + notJudged
		case ginkgoSuiteTimeout:
			return "interrupted by the run's deadline while the spec ran" + notJudged
		case "":
			return "interrupted while the spec ran" + notJudged
		}
		return "interrupted while the spec ran (" + msg + ")" + notJudged
	case types.SpecStateAborted:
		switch msg {
		case abortReason:
			return "interrupted: the run was cancelled as this spec began" + notJudged
		case "":
			return "aborted: the run was stopped" + notJudged
		}
		return "aborted (" + msg + ")" + notJudged
	}
	return ""
}
