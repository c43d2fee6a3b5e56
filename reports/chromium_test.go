package reports_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath finds the browser, or skips (fails under
// DPSCONFORM_REQUIRE_PEERS=1) when there is none.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	const reason = "chromium not installed (apt-get install chromium)"
	if os.Getenv("DPSCONFORM_REQUIRE_PEERS") == "1" {
		t.Fatal(reason)
	}
	t.Skip(reason)
	return ""
}

// pageErrors collects what the page reports as errors: console.error
// calls, uncaught exceptions and error log entries (CSP violations, failed
// loads).
type pageErrors struct {
	mu   sync.Mutex
	msgs []string
}

func (p *pageErrors) add(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, fmt.Sprintf(format, args...))
}

func (p *pageErrors) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.msgs...)
}

func (p *pageErrors) listen(ev any) {
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError {
			return
		}
		var args []string
		for _, a := range ev.Args {
			var str string
			switch {
			case json.Unmarshal(a.Value, &str) == nil:
				args = append(args, str)
			case a.Value != nil:
				args = append(args, string(a.Value))
			default:
				args = append(args, a.Description)
			}
		}
		p.add("console.error: %s", strings.Join(args, " "))
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		p.add("exception at %d:%d: %s", d.LineNumber, d.ColumnNumber, msg)
	case *cdplog.EventEntryAdded:
		if ev.Entry.Level == cdplog.EntryLevelError {
			p.add("log %s: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
		}
	}
}

func TestHTMLInChromium(t *testing.T) {
	exe := chromiumPath(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, []byte(renderHTML(t, readReport(t, grantQoS2))), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(filepath.Join(dir, "chromium-profile")),
		chromedp.WindowSize(1280, 900),
	)
	defer cancelAlloc()
	// The listener sees the tab from its start (chromedp enables the
	// runtime and log domains), so an error while loading is not lost.
	var errs pageErrors
	tabCtx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithListener(errs.listen))
	defer cancelTab()
	// The first Run starts the browser with tabCtx's lifetime: no timeout
	// of its own, only the test's.
	if err := chromedp.Do(tabCtx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, done := context.WithTimeout(tabCtx, 20*time.Second)
		defer done()
		if err := chromedp.Do(c, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	get := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		c, done := context.WithTimeout(tabCtx, 20*time.Second)
		defer done()
		v, err := chromedp.Run(c, a)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}

	const failed = chromedp.CSS(`#req-DPS-SUB-002 .evidence.failed`)
	u := url.URL{Scheme: "file", Path: page}
	do("loading the report", chromedp.Navigate(u.String()), chromedp.WaitVisible(failed))
	evidence := get("reading the failed evidence", chromedp.Text(failed))
	for _, w := range []string{"SUBACK", "DPS-SUB-002", "asked QoS 2, SUBACK id 1 granting [0x02]"} {
		if !strings.Contains(evidence, w) {
			t.Errorf("failed evidence lacks %q; text:\n%s", w, evidence)
		}
	}

	if path := os.Getenv("DPSCONFORM_SCREENSHOT"); path != "" {
		c, done := context.WithTimeout(tabCtx, 20*time.Second)
		png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
		done()
		if err != nil {
			t.Fatalf("taking the screenshot: %v", err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}

	// shown counts the matrix rows of a verdict that are displayed.
	shown := func(verdict string) int {
		t.Helper()
		c, done := context.WithTimeout(tabCtx, 20*time.Second)
		defer done()
		n, err := chromedp.Run(c, chromedp.Evaluate[int](fmt.Sprintf(
			`Array.prototype.filter.call(document.querySelectorAll('#matrix-table tr.req-row[data-verdict=%q]'), function (r) { return r.offsetParent !== null; }).length`,
			verdict)))
		if err != nil {
			t.Fatalf("counting %s rows: %v", verdict, err)
		}
		return n
	}
	const passRow = chromedp.CSS(`#matrix-table tr.req-row.pass`)
	tests := []struct {
		name  string
		steps []chromedp.Action[chromedp.Void]
		pass  int // PASS rows shown; -1: some
		fail  int
	}{
		{"no filter", nil, -1, 1},
		{"failures only", []chromedp.Action[chromedp.Void]{
			chromedp.Click(chromedp.ID("fail-only")),
			chromedp.WaitNotVisible(passRow),
		}, 0, 1},
		{"reset", []chromedp.Action[chromedp.Void]{
			chromedp.Click(chromedp.ID("f-reset")),
			chromedp.WaitVisible(passRow),
		}, -1, 1},
		{"search", []chromedp.Action[chromedp.Void]{
			chromedp.SendKeys(chromedp.ID("f-text"), "sub-002"),
			chromedp.WaitNotVisible(passRow),
		}, 0, 1},
		{"search misses", []chromedp.Action[chromedp.Void]{
			chromedp.SendKeys(chromedp.ID("f-text"), " nothing"),
		}, 0, 0},
	}
	for _, tt := range tests {
		if len(tt.steps) > 0 {
			do(tt.name, tt.steps...)
		}
		pass, fail := shown("PASS"), shown("FAIL")
		if (tt.pass < 0 && pass == 0) || (tt.pass >= 0 && pass != tt.pass) || fail != tt.fail {
			t.Errorf("%s: %d PASS and %d FAIL rows shown, want %d and %d (-1: some)", tt.name, pass, fail, tt.pass, tt.fail)
		}
	}

	// A matrix link opens its requirement's details.
	do("following a matrix link",
		chromedp.Click(chromedp.ID("f-reset")),
		chromedp.Click(chromedp.CSS(`#matrix-table a[href="#req-DPS-AUTH-001"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#req-DPS-AUTH-001 .evidence svg.seq`)),
	)

	for _, e := range errs.list() {
		t.Errorf("page error: %s", e)
	}
}
