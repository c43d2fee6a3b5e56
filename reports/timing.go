package reports

import (
	"fmt"
	"strings"

	"github.com/dps-conform/dps-conform/conformance"
)

// timing is the timing chart of a device run's spec: the device's register
// and poll requests on a time axis, and after every answer that carried a
// retry-after, the window in which the device had to wait. The chart makes
// no verdict of its own: a request is drawn red when its frame is one the
// spec's findings (or a packet violation) point at, and its title then gives
// the finding's words.
type timing struct {
	Width, Height int
	AxisY         int
	Ticks         []timingTick
	Windows       []timingWindow
	Requests      []timingRequest
	Omitted       bool
}

type timingTick struct {
	X     int
	Label string
}

type timingWindow struct {
	X, W  int
	Label string
	Title string
}

type timingRequest struct {
	X     int
	Label string
	Title string
	Red   bool
}

const (
	timingLeft  = 70
	timingWidth = 760
)

// newTiming builds the chart from a spec's sequence; nil when the sequence
// has no request. marked holds the frames of the spec's findings and
// violations (see newSpecView); findings give the red requests' titles.
func newTiming(seq []conformance.SequenceEvent, marked map[int]bool, findings []conformance.Finding) *timing {
	type win struct {
		from, to float64
		label    string
	}
	var wins []win
	type req struct {
		t     float64
		label string
		frame int
		why   string // the violation clause, when the packet has one
	}
	var reqs []req
	end := 0.0
	for _, e := range seq {
		switch {
		case e.Dir == "c2s" && (strings.HasPrefix(e.Label, "register") || strings.HasPrefix(e.Label, "poll")):
			reqs = append(reqs, req{e.T, strings.Fields(e.Label)[0], e.Frame, e.Violation})
			end = max(end, e.T)
		case e.Dir == "s2c" && strings.Contains(e.Label, "retry-after="):
			var status, ra int
			i := strings.Index(e.Label, "retry-after=")
			fmt.Sscanf(e.Label, "%d", &status)
			fmt.Sscanf(e.Label[i+len("retry-after="):], "%d", &ra)
			wins = append(wins, win{e.T, e.T + float64(ra), fmt.Sprintf("%d: wait %d s", status, ra)})
			end = max(end, e.T+float64(ra))
		}
	}
	if len(reqs) == 0 {
		return nil
	}
	if end <= 0 {
		end = 1
	}
	x := func(t float64) int { return timingLeft + int(t/end*float64(timingWidth-timingLeft-20)) }
	tg := &timing{Width: timingWidth, Height: 96, AxisY: 80}
	step := niceStep(end)
	for t := 0.0; t <= end+1e-9; t += step {
		tg.Ticks = append(tg.Ticks, timingTick{X: x(t), Label: formatSeconds(t)})
	}
	for _, w := range wins {
		tg.Windows = append(tg.Windows, timingWindow{X: x(w.from), W: max(x(w.to)-x(w.from), 1), Label: w.label,
			Title: fmt.Sprintf("%s, from %s to %s", w.label, formatSeconds(w.from), formatSeconds(w.to))})
	}
	why := map[int]string{}
	for _, f := range findings {
		if _, ok := why[f.Frame]; !ok {
			why[f.Frame] = f.Actual
		}
	}
	for _, r := range reqs {
		red := r.frame > 0 && marked[r.frame]
		title := fmt.Sprintf("%s at %s", r.label, formatSeconds(r.t))
		if red {
			switch {
			case why[r.frame] != "":
				title += ": " + why[r.frame]
			case r.why != "":
				title += ": violates " + r.why
			}
		}
		tg.Requests = append(tg.Requests, timingRequest{X: x(r.t), Label: r.label, Title: title, Red: red})
	}
	return tg
}

// niceStep picks an axis step giving at most about ten ticks.
func niceStep(end float64) float64 {
	for _, s := range []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300} {
		if end/s <= 10 {
			return s
		}
	}
	return end / 10
}
