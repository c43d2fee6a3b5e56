package reports_test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/reports"
)

const grantQoS2 = "testdata/results-grant-qos2.json"

// readReport reads a results.json from testdata.
func readReport(t testing.TB, path string) *reports.Report {
	t.Helper()
	r, err := reports.ReadJSONFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func renderHTML(t testing.TB, r *reports.Report) string {
	t.Helper()
	var b strings.Builder
	if err := reports.WriteHTML(&b, r); err != nil {
		t.Fatalf("WriteHTML: %v", err)
	}
	return b.String()
}

// detailsOf returns the <details> section of requirement id.
func detailsOf(t testing.TB, page, id string) string {
	t.Helper()
	_, rest, ok := strings.Cut(page, `<details class="req `)
	for ok {
		var sec string
		sec, rest, _ = strings.Cut(rest, "</details>")
		if strings.Contains(sec, ` id="req-`+id+`"`) {
			return sec
		}
		_, rest, ok = strings.Cut(rest, `<details class="req `)
	}
	t.Fatalf("no details section for %s", id)
	return ""
}

var attrURL = regexp.MustCompile(`(?i)\s(src|href|xlink:href|action|formaction|srcset|poster|data|background)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)`)

func TestWriteHTMLSelfContained(t *testing.T) {
	r := readReport(t, grantQoS2)
	page := renderHTML(t, r)
	docs := map[string]bool{}
	for _, q := range r.Requirements {
		docs[q.URL] = true
	}
	for _, m := range attrURL.FindAllStringSubmatch(page, -1) {
		attr, v := strings.ToLower(m[1]), strings.Trim(m[2], `"'`)
		switch {
		case attr == "href" && strings.HasPrefix(v, "#"):
		case attr == "href" && strings.HasPrefix(v, "pcaps/"):
		case attr == "href" && docs[v]:
		default:
			t.Errorf("external or unexpected resource reference %s=%q", attr, v)
		}
	}
	forbidden := []struct {
		name string
		re   string
	}{
		{"link element", `(?i)<link\b`},
		{"script with src", `(?i)<script[^>]*\bsrc\b`},
		{"img element", `(?i)<img\b`},
		{"iframe element", `(?i)<iframe\b`},
		{"object or embed", `(?i)<(object|embed)\b`},
		{"CSS url()", `(?i)url\(`},
		{"CSS @import", `(?i)@import`},
		{"web font", `(?i)@font-face`},
	}
	for _, f := range forbidden {
		t.Run(f.name, func(t *testing.T) {
			if loc := regexp.MustCompile(f.re).FindStringIndex(page); loc != nil {
				t.Errorf("page has a %s: %q", f.name, page[loc[0]:min(loc[1]+60, len(page))])
			}
		})
	}
}

func TestWriteHTMLRequirementDetails(t *testing.T) {
	page := renderHTML(t, readReport(t, grantQoS2))
	tests := []struct {
		id      string
		open    bool
		want    []string
		wantNot []string
		marks   int
	}{
		{
			id:   "DPS-SUB-002",
			open: true,
			want: []string{
				`class="evidence failed"`,
				`<mark>0.001 s&gt;c #21 SUBACK id=1 codes=2</mark>`,
				`<td>DPS-SUB-002</td><td>1</td><td>#21</td><td>SUBACK granting 1</td><td>asked QoS 2, SUBACK id 1 granting [0x02]</td>`,
				`<pre class="message">DPS-SUB-002 (MUST)`,
				`<a href="pcaps/031-DPS-SUB-002.pcapng">`,
				`<a href="https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-dps"`,
				`<svg class="seq"`,
				`<g class="ev red"><title>#21 SUBACK id 1 granting [0x02]`,
				`<g class="ev fin">`,
				`conversation 1</text>`,
			},
			marks: 1, // the SUBSCRIBE line's "res/#:2" is no frame number
		},
		{
			id:      "DPS-AUTH-001",
			want:    []string{`<div class="evidence">`, `<svg class="seq"`, "#21 SUBACK id=1 codes=1"},
			wantNot: []string{"<mark>", `class="evidence failed"`, `class="ev red"`},
		},
		{
			id:      "DPS-SESS-002",
			want:    []string{"holds under dps-2023", `<span class="badge skipped">skipped</span>`},
			wantNot: []string{`<svg`, "<mark>"},
		},
		{
			id:   "DPS-REG-009",
			want: []string{`<span class="badge not-covered">NOT COVERED</span>`, "No spec judged this requirement."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			sec := detailsOf(t, page, tt.id)
			head, _, _ := strings.Cut(sec, ">")
			if got := strings.HasSuffix(head, " open"); got != tt.open {
				t.Errorf("open = %v, want %v: %s", got, tt.open, head)
			}
			for _, w := range tt.want {
				if !strings.Contains(sec, w) {
					t.Errorf("section lacks %q", w)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(sec, w) {
					t.Errorf("section has %q", w)
				}
			}
			if got := strings.Count(sec, "<mark>"); got != tt.marks {
				t.Errorf("%d marked transcript lines, want %d", got, tt.marks)
			}
		})
	}
}

func TestWriteHTMLHeader(t *testing.T) {
	page := renderHTML(t, readReport(t, grantQoS2))
	for _, w := range []string{
		`<span class="verdict" id="verdict">NON-CONFORMANT</span>`,
		"<strong>41 of 44</strong> MUST requirements judged (93.2%), 40 passed, 1 failed",
		"<code>mqtts://127.0.0.1:45885</code>",
		"<code>wss://127.0.0.1:43707/$iothub/websocket</code>",
		"<code>0ne00DC0FFE</code>",
		"TLS 1.2 TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
		"<dt>profile</dt><dd>dps-2019</dd>",
		"dps-conform (devel)",
		"2026-12-06 21:03:38.987 UTC",
		`<span class="badge pass">PASS</span> 41`,
		`<span class="badge fail">FAIL</span> 1`,
		`<span class="badge not-covered">NOT COVERED</span> 2`,
	} {
		if !strings.Contains(page, w) {
			t.Errorf("header lacks %q", w)
		}
	}
}

func TestWriteHTMLMatrix(t *testing.T) {
	r := readReport(t, grantQoS2)
	page := renderHTML(t, r)
	if got := strings.Count(page, `<tr class="req-row `); got != len(r.Requirements) {
		t.Errorf("%d matrix rows, want %d", got, len(r.Requirements))
	}
	for _, q := range r.Requirements {
		row := fmt.Sprintf(`data-verdict=%q data-level=%q data-area=%q`, q.Verdict, q.Level, q.Area)
		link := fmt.Sprintf(`<td class="id"><a href="#req-%s">%s</a></td>`, q.ID, q.ID)
		i := strings.Index(page, link)
		if i < 0 {
			t.Errorf("no matrix row for %s", q.ID)
			continue
		}
		start := strings.LastIndex(page[:i], "<tr ")
		if !strings.Contains(page[start:i], row) {
			t.Errorf("row of %s: %q lacks %q", q.ID, page[start:i], row)
		}
	}
	for _, w := range []string{`<form id="filters" hidden`, `<button type="button" id="fail-only">`, `<option>MUST</option>`, `<option>subscribe</option>`} {
		if !strings.Contains(page, w) {
			t.Errorf("filters lack %q", w)
		}
	}
}

func TestWriteHTMLEscapes(t *testing.T) {
	const hostile = `<script>alert(1)</script>`
	const escaped = `&lt;script&gt;alert(1)&lt;/script&gt;`
	tests := []struct {
		name   string
		mutate func(*reports.Report)
		want   string
	}{
		{"spec text", func(r *reports.Report) { r.Requirements[0].Specs[0].Text = hostile }, escaped},
		{"spec message", func(r *reports.Report) { r.Requirements[0].Specs[0].Message = hostile }, escaped},
		{"transcript", func(r *reports.Report) { r.Requirements[0].Specs[0].Transcript = "0.001 c>s #15 " + hostile }, "#15 " + escaped},
		{"sequence label", func(r *reports.Report) { r.Requirements[0].Specs[0].Sequence[0].Label = hostile }, "#15 " + escaped},
		{"finding", func(r *reports.Report) {
			r.Requirements[0].Specs[0].Findings = []conformance.Finding{{ID: "X", Frame: 15, Expected: []string{hostile}, Actual: hostile}}
		}, "<td>" + escaped + "</td><td>" + escaped + "</td>"},
		{"statement", func(r *reports.Report) { r.Requirements[0].Statement = hostile }, escaped},
		{"title", func(r *reports.Report) { r.Title = hostile }, "<title>" + escaped + "</title>"},
		{"attribute", func(r *reports.Report) { r.Requirements[0].Area = `"><script>alert(1)</script>` }, `data-area="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"`},
		{"javascript URL", func(r *reports.Report) { r.Requirements[0].URL = "javascript:alert(1)" }, `href="#ZgotmplZ"`},
		{"pcap URL", func(r *reports.Report) { r.Requirements[0].Specs[0].Pcap = "javascript:alert(1)" }, "capture: <code>javascript:alert(1)</code>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := readReport(t, grantQoS2)
			tt.mutate(r)
			page := renderHTML(t, r)
			if strings.Contains(page, hostile) {
				t.Errorf("page holds %q unescaped", hostile)
			}
			if got := strings.Count(strings.ToLower(page), "<script"); got != 1 {
				t.Errorf("%d <script elements, want the page's own 1", got)
			}
			if strings.Contains(page, `href="javascript:`) {
				t.Error("page links a javascript: URL")
			}
			if !strings.Contains(page, tt.want) {
				t.Errorf("page lacks %q", tt.want)
			}
		})
	}
}

func TestWriteHTMLSequenceDiagram(t *testing.T) {
	seq := func(n, convs int) []conformance.SequenceEvent {
		var evs []conformance.SequenceEvent
		for i := range n {
			dir := "c2s"
			if i%2 == 1 {
				dir = "s2c"
			}
			evs = append(evs, conformance.SequenceEvent{Conversation: 1 + i*convs/n, Frame: 10 + i, T: float64(i) / 1000, Dir: dir, Label: "PUBLISH"})
		}
		return evs
	}
	tests := []struct {
		name     string
		events   []conformance.SequenceEvent
		findings []conformance.Finding
		arrows   int
		red      int
		seps     int
		note     string
	}{
		{"small", seq(4, 1), nil, 4, 0, 1, ""},
		{"capped", seq(250, 1), nil, 200, 0, 1, "50 more event(s) not drawn"},
		{"conversations", seq(9, 3), nil, 9, 0, 3, ""},
		{"finding frame", seq(4, 1), []conformance.Finding{{Frame: 12}}, 4, 1, 1, ""},
		{"violation and FIN", []conformance.SequenceEvent{
			{Conversation: 2, Frame: 5, T: 0.002, Dir: "s2c", Label: "FIN"},
			{Conversation: 2, Frame: 3, T: 0.001, Dir: "c2s", Label: "CONNECT x", Violation: "MQTT-3.1.2-3"},
		}, nil, 2, 1, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &reports.Report{Title: "t", Tool: reports.Tool{Name: "dps-conform"}, Requirements: []*reports.Requirement{{
				ID: "DPS-X-001", Level: "MUST", Verdict: reports.Fail,
				Specs: []*reports.Spec{{Text: "s", State: "failed", Sequence: tt.events, Findings: tt.findings}},
			}}}
			page := renderHTML(t, r)
			if got := strings.Count(page, `<g class="ev`); got != tt.arrows {
				t.Errorf("%d events drawn, want %d", got, tt.arrows)
			}
			if got := strings.Count(page, `<g class="ev red"`) + strings.Count(page, `<g class="ev fin red"`); got != tt.red {
				t.Errorf("%d red events, want %d", got, tt.red)
			}
			if got := strings.Count(page, `<g class="sep">`); got != tt.seps {
				t.Errorf("%d separators, want %d", got, tt.seps)
			}
			if tt.note != "" && !strings.Contains(page, tt.note) {
				t.Errorf("page lacks the note %q", tt.note)
			}
		})
	}
	t.Run("time order", func(t *testing.T) {
		r := &reports.Report{Title: "t", Tool: reports.Tool{Name: "dps-conform"}, Requirements: []*reports.Requirement{{
			ID: "DPS-X-001", Specs: []*reports.Spec{{State: "passed", Sequence: []conformance.SequenceEvent{
				{Conversation: 1, Frame: 9, T: 0.003, Dir: "s2c", Label: "LATE"},
				{Conversation: 1, Frame: 7, T: 0.001, Dir: "c2s", Label: "EARLY"},
			}}},
		}}}
		page := renderHTML(t, r)
		if e, l := strings.Index(page, "#7 EARLY"), strings.Index(page, "#9 LATE"); e < 0 || l < 0 || e > l {
			t.Errorf("events not in time order: EARLY at %d, LATE at %d", e, l)
		}
	})
}

type failingWriter struct{}

var errWrite = errors.New("disk full")

func (failingWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestWriteHTMLErrors(t *testing.T) {
	tests := []struct {
		name    string
		w       io.Writer
		r       *reports.Report
		wantErr bool
		wantIs  error
	}{
		{"writer error", failingWriter{}, readReport(t, grantQoS2), true, errWrite},
		{"nil report", &strings.Builder{}, nil, true, nil},
		{"empty report", &strings.Builder{}, &reports.Report{}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := reports.WriteHTML(tt.w, tt.r)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want an error: %v", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want it to wrap %v", err, tt.wantIs)
			}
		})
	}
}

func ExampleWriteHTML() {
	r := &reports.Report{
		Title:   "dps-conform service conformance report: lab DPS",
		Tool:    reports.Tool{Name: "dps-conform", Version: "v0.1.0"},
		Target:  reports.Target{Name: "lab DPS", Endpoint: "mqtts://dps.example:8883"},
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Requirements: []*reports.Requirement{
			{ID: "DPS-SUB-002", Level: "MUST", Area: "subscribe", Verdict: reports.Fail, Statement: "SUBACK grants QoS 1."},
		},
		Summary: reports.Summary{Requirements: map[reports.Verdict]int{reports.Fail: 1}, MustTotal: 1, MustJudged: 1, MustFailed: 1},
	}
	var b strings.Builder
	if err := reports.WriteHTML(&b, r); err != nil {
		fmt.Println(err)
		return
	}
	for line := range strings.Lines(b.String()) {
		if strings.Contains(line, `id="verdict"`) || strings.HasPrefix(line, `<details`) {
			fmt.Print(line)
		}
	}
	// Output:
	// <span class="verdict" id="verdict">NON-CONFORMANT</span>
	// <details class="req fail" id="req-DPS-SUB-002" data-verdict="FAIL" data-level="MUST" data-area="subscribe" data-search="dps-sub-002 must subscribe fail suback grants qos 1." open>
}

// TestHeadline: the three verdicts, from Summary.Headline, in the HTML
// banner and the Markdown summary (Summary.Verdict, the JSON field, is
// TestBuildDeviceNothingJudged's and the scripts'). Nothing judged is NO VERDICT, not
// CONFORMANT: a device that never connected broke nothing and showed
// nothing either.
func TestHeadline(t *testing.T) {
	tests := []struct {
		name                        string
		judged, failed, interrupted int
		want, md                    string
		conformant                  bool
	}{
		{"judged, none failed", 3, 0, 0, reports.HeadlineConformant, "✅ **CONFORMANT**", true},
		{"one failed", 3, 1, 0, reports.HeadlineNonConformant, "❌ **NON-CONFORMANT**: 1 MUST requirement(s) failed", false},
		{"nothing judged", 0, 0, 0, reports.HeadlineNoVerdict, "⚠️ **NO VERDICT**: no MUST requirement was judged", false},
		{"interrupted, none failed", 3, 0, 1, reports.HeadlineInterrupted, "⚠️ **INTERRUPTED**: the run was stopped before it finished; 3 MUST requirement(s) judged, none failed", false},
		{"interrupted after a failure", 3, 1, 1, reports.HeadlineNonConformant, "❌ **NON-CONFORMANT**: 1 MUST requirement(s) failed (the run was interrupted before it finished)", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := readReport(t, grantQoS2)
			r.Summary.MustJudged, r.Summary.MustFailed, r.Summary.Interrupted = tt.judged, tt.failed, tt.interrupted
			r.Summary.MustPassed = tt.judged - tt.failed
			if got := r.Summary.Headline(); got != tt.want {
				t.Errorf("Headline() = %q, want %q", got, tt.want)
			}
			if !strings.Contains(renderHTML(t, r), `<span class="verdict" id="verdict">`+tt.want+`</span>`) {
				t.Errorf("the HTML banner does not say %s", tt.want)
			}
			var md strings.Builder
			if err := reports.WriteMarkdown(&md, r); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(md.String(), "\n"+tt.md+"\n") {
				t.Errorf("summary.md lacks %q:\n%s", tt.md, md.String())
			}
		})
	}
}

// TestReadJSONErrors: a damaged results.json is reported with where it
// broke.
func TestReadJSONErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"title": "x", "requirements": [`, "the file ends inside a JSON value (cut off?)"},
		{"{\"title\": \"x\", \"requirem\n", "at byte offset 24: invalid character"},
		// Offsets count from 0 and point at the value, and the types
		// are JSON's, not Go's (it said "byte offset 11: json: cannot
		// unmarshal number into Go struct field Report.title of type string").
		{`{"title": 5}`, `at byte offset 10: member "title" is a JSON number where a string was expected`},
		{`{"title": "x", "summary": {"requirements": [1]}}`, `at byte offset 43: member "summary.requirements" is a JSON array where an object was expected`},
		{`{"title": "x", "requirements": {"a": 1}}`, `at byte offset 31: member "requirements" is a JSON object where an array was expected`},
		{`{"title": "x", "tool": "dps-conform"}`, `at byte offset 23: member "tool" is a JSON string where an object was expected`},
		{`[{"title": "x"}]`, "at byte offset 0: a JSON array where a dps-conform report (a JSON object, as 'dps-conform run --out' writes it) was expected"},
		{`  "report"`, "at byte offset 2: a JSON string where a dps-conform report"},
		{`{"title": "x"}`, "not a dps-conform report"},
		// An empty file is not one cut off inside a value, and an
		// unknown member is named without the end of the document as
		// its offset (it said "at byte offset 34" for a member at 15).
		{"", "reading results.json: the file is empty"},
		{" \n", "reading results.json: the file is empty"},
		{`{"title": "x", "bogus": 1, "summary": {}}`, `reading results.json: json: unknown field "bogus" (a member dps-conform does not write)`},
	} {
		if _, err := reports.ReadJSON(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadJSON(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

// TestWriteMarkdownHostileText: a finding quotes what the device sent (a
// ClientId, a topic); in summary.md, which CI shows rendered, it must stay
// text: no link, no image, no HTML, no broken table, whatever backticks
// it holds.
func TestWriteMarkdownHostileText(t *testing.T) {
	for _, tc := range []struct{ reason, cell string }{
		{`ClientId "[firmware](https://evil.example/fw.bin) ![x](https://evil.example/p.png)"`,
			"` ClientId \"[firmware](https://evil.example/fw.bin) ![x](https://evil.example/p.png)\" `"},
		{"a `code` span, a | pipe and <b>html</b>", "`` a `code` span, a \\| pipe and <b>html</b> ``"},
		{"runs ``` of backticks\nand a newline", "```` runs ``` of backticks and a newline ````"},
	} {
		r := readReport(t, grantQoS2)
		for _, q := range r.Requirements {
			if q.Verdict == reports.Fail {
				q.Reason = tc.reason
			}
		}
		var md strings.Builder
		if err := reports.WriteMarkdown(&md, r); err != nil {
			t.Fatal(err)
		}
		if want := "| DPS-SUB-002 | MUST | " + tc.cell + " |\n"; !strings.Contains(md.String(), want) {
			t.Errorf("summary.md lacks the row %q:\n%s", want, md.String())
		}
	}
}

// TestMustCoverageText: the MUST coverage reads the same in every report
// and never rounds up to 100% while a MUST requirement was not judged.
func TestMustCoverageText(t *testing.T) {
	for _, tc := range []struct {
		judged, total int
		want          string
	}{
		{0, 0, "0.0%"},
		{46, 47, "97.9%"},
		{1999, 2000, "99.9%"},
		{19999, 20000, "99.9%"},
		{47, 47, "100.0%"},
	} {
		s := reports.Summary{MustJudged: tc.judged, MustTotal: tc.total}
		if got := s.MustCoverageText(); got != tc.want {
			t.Errorf("%d of %d: %q, want %q", tc.judged, tc.total, got, tc.want)
		}
	}
}

// TestReadJSONFile: a file that cannot be opened is os.Open's
// *fs.PathError (the CLI's input error); one that does not parse names
// its path.
func TestReadJSONFile(t *testing.T) {
	dir := t.TempDir()
	_, err := reports.ReadJSONFile(filepath.Join(dir, "missing.json"))
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		t.Errorf("missing file: %v, want an *fs.PathError", err)
	}
	bad := filepath.Join(dir, "results.json")
	if err := os.WriteFile(bad, []byte(`{"tool":`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = reports.ReadJSONFile(bad)
	if err == nil || errors.As(err, &pe) || !strings.HasPrefix(err.Error(), bad+": reading results.json") {
		t.Errorf("cut-off file: %v, want an error naming %s", err, bad)
	}
}
