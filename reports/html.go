package reports

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dps-conform/dps-conform/conformance"
)

// The page is one file with its CSS, JS and SVG inline, so that it opens
// offline from a results bundle; its only links are the requirements'
// documentation pages and the captures (relative to the results directory).
//
// Specs of device runs also get a timing chart (timing.go): register and
// poll requests against the retry-after windows, with the requests the
// spec's findings point at in red.
//
//go:embed html.tmpl
var htmlTemplate string

var htmlPage = template.Must(template.New("report.html").Funcs(template.FuncMap{
	"join":     strings.Join,
	"duration": formatDuration,
	"stamp":    formatStamp,
}).Parse(htmlTemplate))

// Sequence diagram geometry, in SVG user units.
const (
	maxArrows      = 200
	diagramWidth   = 760
	diagramTop     = 44
	rowHeight      = 30
	sepGap         = 14 // from the row above to a conversation separator
	deviceX        = 170
	serviceX       = 700
	finStub        = 44
	maxLabelRunes  = 76
	arrowHeadLen   = 9
	arrowHeadHalfW = 4
)

// WriteHTML writes the report as one self-contained HTML page: a header with
// the verdict and MUST coverage, a filterable requirement matrix, and per
// requirement its specs with their evidence (failure message, findings,
// capture link, transcript, sequence diagram).
func WriteHTML(w io.Writer, r *Report) error {
	if r == nil {
		return fmt.Errorf("writing report.html: no report")
	}
	if err := htmlPage.Execute(w, newHTMLView(r)); err != nil {
		return fmt.Errorf("writing report.html: %w", err)
	}
	return nil
}

// htmlView is what the template renders: the report plus what is derived
// from it for display.
type htmlView struct {
	*Report
	Counts   []verdictCount
	Coverage string
	Duration string
	Levels   []string
	Areas    []string
	Reqs     []reqView
}

type verdictCount struct {
	Verdict Verdict
	Class   string
	Count   int
}

type reqView struct {
	*Requirement
	Class  string // verdict class: pass, fail, skip, not-covered
	Search string // lower-case text the search box matches
	Open   bool
	Specs  []specView
}

type specView struct {
	*Spec
	Failed  bool
	Lines   []transcriptLine
	Diagram *diagram
	// Timing is the register/poll/retry-after chart of device runs.
	Timing  *timing
	PcapURL string // "" when the path is not a relative one
}

type transcriptLine struct {
	Text string
	Mark bool
}

type diagram struct {
	Width, Height int
	DeviceX       int
	ServiceX      int
	LifelineEnd   int
	Rows          []diagramRow
	Omitted       int
}

// diagramRow is one arrow, FIN marker or conversation separator.
type diagramRow struct {
	Kind   string // "arrow", "fin", "sep"
	Y      int
	X1, X2 int
	Head   string // arrow head polygon points
	TextX  int
	Anchor string
	Label  string
	Title  string
	Time   string
	Red    bool
}

func newHTMLView(r *Report) *htmlView {
	v := &htmlView{Report: r}
	for _, vd := range []Verdict{Pass, Fail, Skip, NotCovered} {
		v.Counts = append(v.Counts, verdictCount{Verdict: vd, Class: verdictClass(vd), Count: r.Summary.Requirements[vd]})
	}
	v.Coverage = r.Summary.MustCoverageText()
	if !r.Started.IsZero() && !r.Ended.IsZero() {
		v.Duration = formatDuration(r.Ended.Sub(r.Started))
	}
	levels, areas := map[string]bool{}, map[string]bool{}
	for _, q := range r.Requirements {
		if q == nil {
			continue
		}
		levels[q.Level], areas[q.Area] = true, true
		rv := reqView{Requirement: q, Class: verdictClass(q.Verdict), Open: q.Verdict == Fail,
			Search: strings.ToLower(strings.Join([]string{q.ID, q.Level, q.Area, string(q.Verdict), q.Statement}, " "))}
		for _, s := range q.Specs {
			if s != nil {
				rv.Specs = append(rv.Specs, newSpecView(s, r.Role == string(conformance.RoleDevice)))
			}
		}
		v.Reqs = append(v.Reqs, rv)
	}
	v.Levels = sortedKeys(levels)
	v.Areas = sortedKeys(areas)
	return v
}

func sortedKeys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		if k != "" {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks
}

func verdictClass(v Verdict) string {
	return strings.ReplaceAll(strings.ToLower(string(v)), " ", "-")
}

// newSpecView derives a spec's evidence for display; for a spec of a device
// run (device), the timing chart too.
func newSpecView(s *Spec, device bool) specView {
	sv := specView{Spec: s, Failed: s.Failed(), PcapURL: relativeURL(s.Pcap)}
	marked := map[int]bool{}
	for _, f := range s.Findings {
		marked[f.Frame] = true
	}
	for _, e := range s.Sequence {
		if e.Violation != "" {
			marked[e.Frame] = true
		}
	}
	if s.Transcript != "" {
		for line := range strings.Lines(strings.TrimRight(s.Transcript, "\n")) {
			line = strings.TrimRight(line, "\r\n")
			sv.Lines = append(sv.Lines, transcriptLine{Text: line, Mark: carriesFrame(line, marked)})
		}
	}
	if len(s.Sequence) > 0 {
		sv.Diagram = newDiagram(s.Sequence, marked)
	}
	if device {
		sv.Timing = newTiming(s.Sequence, marked, s.Findings)
	}
	return sv
}

// frameRef matches a transcript's frame number, "#21"; a topic's "res/#"
// is not one.
var frameRef = regexp.MustCompile(`(?:^|\s)#(\d+)\b`)

func carriesFrame(line string, frames map[int]bool) bool {
	if len(frames) == 0 {
		return false
	}
	for _, m := range frameRef.FindAllStringSubmatch(line, -1) {
		if n, err := strconv.Atoi(m[1]); err == nil && frames[n] {
			return true
		}
	}
	return false
}

// relativeURL returns p when it is a relative path fit for a link (no
// scheme, not absolute), else "".
func relativeURL(p string) string {
	if p == "" || strings.HasPrefix(p, "/") || strings.HasPrefix(p, "\\") || strings.Contains(p, ":") {
		return ""
	}
	return p
}

// newDiagram draws a spec's sequence; marked holds the frames of its
// findings and violations (see newSpecView), drawn red.
func newDiagram(seq []conformance.SequenceEvent, marked map[int]bool) *diagram {
	evs := slices.Clone(seq)
	slices.SortStableFunc(evs, func(a, b conformance.SequenceEvent) int {
		switch {
		case a.T < b.T:
			return -1
		case a.T > b.T:
			return 1
		}
		return 0
	})
	d := &diagram{Width: diagramWidth, DeviceX: deviceX, ServiceX: serviceX}
	y := diagramTop
	conv, drawn := -1, 0
	for i, e := range evs {
		if drawn == maxArrows {
			d.Omitted = len(evs) - i
			break
		}
		if e.Conversation != conv {
			conv = e.Conversation
			y += sepGap
			d.Rows = append(d.Rows, diagramRow{Kind: "sep", Y: y, X1: 4, X2: diagramWidth - 4, TextX: diagramWidth / 2,
				Label: fmt.Sprintf("conversation %d", conv)})
		}
		y += rowHeight
		drawn++
		row := diagramRow{Kind: "arrow", Y: y, Time: formatSeconds(e.T), Red: e.Violation != "" || marked[e.Frame]}
		label := e.Label
		if e.Frame > 0 {
			label = fmt.Sprintf("#%d %s", e.Frame, label)
		}
		if e.Violation != "" {
			label += " [" + e.Violation + "]"
		}
		row.Title = fmt.Sprintf("%s (conversation %d, t=%s)", label, e.Conversation, row.Time)
		row.Label = truncate(label, maxLabelRunes)
		s2c := e.Dir == "s2c"
		if e.Label == "FIN" {
			row.Kind = "fin"
			if s2c {
				row.X1, row.X2 = serviceX, serviceX-finStub
				row.TextX, row.Anchor = row.X2-6, "end"
			} else {
				row.X1, row.X2 = deviceX, deviceX+finStub
				row.TextX, row.Anchor = row.X2+6, "start"
			}
			row.Y -= rowHeight / 3
			d.Rows = append(d.Rows, row)
			continue
		}
		row.X1, row.X2, row.TextX, row.Anchor = deviceX, serviceX, (deviceX+serviceX)/2, "middle"
		tip, back := serviceX, serviceX-arrowHeadLen
		if s2c {
			row.X1, row.X2 = serviceX, deviceX
			tip, back = deviceX, deviceX+arrowHeadLen
		}
		row.Head = fmt.Sprintf("%d,%d %d,%d %d,%d", tip, y, back, y-arrowHeadHalfW, back, y+arrowHeadHalfW)
		d.Rows = append(d.Rows, row)
	}
	d.LifelineEnd = y + rowHeight/2
	d.Height = d.LifelineEnd + 8
	return d
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// formatSeconds writes a time from a capture's start: "0 s" at the start
// (an axis that starts at "0.000 ms" and goes on in seconds reads oddly),
// milliseconds below a second, else seconds.
func formatSeconds(t float64) string {
	if t == 0 {
		return "0 s"
	}
	if t < 1 {
		return fmt.Sprintf("%.3f ms", t*1000)
	}
	return fmt.Sprintf("%.3f s", t)
}

func formatDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.String()
}

func formatStamp(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
}
