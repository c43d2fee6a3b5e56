package reports

import (
	"fmt"
	"strings"

	"github.com/dps-conform/dps-conform/conformance"
)

// timing is the timing chart of a device run's spec: the device's register
// and poll requests on a time axis, and after every answer that carried a
// retry-after, the window in which the device had to wait. A request inside
// a window (earlier than retry-after allows, minus 250 ms) is drawn red.
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
	timingTol   = 0.25 // seconds; the device rules' default tolerance
)

// newTiming builds the chart from a spec's sequence; nil when the sequence
// has no request.
func newTiming(seq []conformance.SequenceEvent) *timing {
	type win struct {
		from, to float64
		label    string
	}
	var wins []win
	type req struct {
		t     float64
		label string
	}
	var reqs []req
	end := 0.0
	for _, e := range seq {
		switch {
		case e.Dir == "c2s" && (strings.HasPrefix(e.Label, "register") || strings.HasPrefix(e.Label, "poll")):
			reqs = append(reqs, req{e.T, strings.Fields(e.Label)[0]})
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
	for _, r := range reqs {
		red := false
		for _, w := range wins {
			if r.t > w.from && r.t < w.to-timingTol {
				red = true
			}
		}
		title := fmt.Sprintf("%s at %s", r.label, formatSeconds(r.t))
		if red {
			title += ": earlier than the retry-after allows"
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
