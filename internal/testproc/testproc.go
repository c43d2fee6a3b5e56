// Package testproc is test support: it runs parts of a test in child
// processes of the test binary, so that work one process can do only one
// at a time (conformance.Run: Ginkgo keeps one suite per process) overlaps.
//
// A child is the same test binary run with -test.run naming one test and
// an environment variable naming that test, the work items it is given and
// the parent's process id; a process is a child only when all three match
// (Items), so no setting left in a shell can turn a plain "go test" into
// one. The parent reads the child's -test.v output: each item is a subtest
// of the child, and its verdict and output become those of the parent's
// subtest of the same name. A child that crashes, hangs or exits without a
// verdict for an item fails that item in the parent, with the child's
// output; every child is bounded by a timeout.
package testproc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// envVar carries a child's spec, as JSON.
const envVar = "DPSCONFORM_TESTPROC"

// spec is what a parent asks of a child.
type spec struct {
	Parent int      `json:"parent"` // the parent's process id
	Test   string   `json:"test"`   // the test to run
	Items  []string `json:"items,omitempty"`
	// Claims, when set, is a directory shared by the children of a Matrix:
	// a child runs an item only if it is the one that creates Claims/item.
	Claims string `json:"claims,omitempty"`
}

// child reads this process's spec for test t: there is one only if the
// variable names t and this process's parent.
func child(t testing.TB) (spec, bool) {
	var sp spec
	v, ok := os.LookupEnv(envVar)
	if !ok || json.Unmarshal([]byte(v), &sp) != nil || sp.Parent != os.Getppid() || sp.Test != t.Name() {
		return spec{}, false
	}
	return sp, true
}

// Items returns the work items this process was given for test t, and
// whether it is a child running t: the variable must name t and this
// process's parent.
func Items(t testing.TB) ([]string, bool) {
	sp, ok := child(t)
	return sp.Items, ok
}

// verdict is a subtest's outcome in a child.
type verdict struct {
	State   string // PASS, FAIL or SKIP
	Elapsed string // as the child printed it: "1.23s"
	Output  string // the lines the child printed while the subtest ran
}

// outcome is what a child did.
type outcome struct {
	Err    error // the child's exit error, a timeout included
	Output string
	// Subtests are keyed by name below the test (the item, for Matrix).
	Subtests map[string]verdict
}

// proc is a running child process.
type proc struct {
	done chan struct{}
	out  outcome
}

// timeout bounds a child: the parent's deadline less a margin to report
// in, else 10 minutes (go test's default).
func timeout(t *testing.T) time.Duration {
	if d, ok := t.Deadline(); ok {
		return max(time.Until(d)-30*time.Second, 10*time.Second)
	}
	return 10 * time.Minute
}

// runPattern is the -test.run pattern of a child running test name:
// exactly name, and below it what the parent's own pattern run selects
// (all of it when run has alternatives at its top level).
func runPattern(name, run string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	if levels, ok := splitLevels(run); ok && len(levels) > len(parts) {
		parts = append(parts, levels[len(parts):]...)
	}
	return strings.Join(parts, "/")
}

// splitLevels splits a -test.run pattern at the slashes that separate its
// levels, as package testing does; false if it has a top-level "|".
func splitLevels(s string) ([]string, bool) {
	var levels []string
	brackets, parens := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			brackets++
		case ']':
			brackets = max(brackets-1, 0)
		case '(':
			if brackets == 0 {
				parens++
			}
		case ')':
			if brackets == 0 {
				parens--
			}
		case '\\':
			i++
		case '/', '|':
			if brackets == 0 && parens == 0 {
				if s[i] == '|' {
					return nil, false
				}
				levels = append(levels, s[:i])
				s, i = s[i+1:], -1
			}
		}
	}
	return append(levels, s), true
}

// start runs test t again in a child process, with sp's items and claims.
func start(t *testing.T, sp spec) *proc {
	t.Helper()
	sp.Parent, sp.Test = os.Getpid(), t.Name()
	env, err := json.Marshal(sp)
	if err != nil {
		t.Fatal(err)
	}
	d := timeout(t)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	run := ""
	if f := flag.Lookup("test.run"); f != nil {
		run = f.Value.String()
	}
	args := []string{"-test.run", runPattern(t.Name(), run), "-test.v", "-test.count=1",
		// The child's own timeout comes first: it panics with every
		// goroutine's stack, which says where it hung.
		"-test.timeout", (d - 5*time.Second).String()}
	if f := flag.Lookup("test.skip"); f != nil && f.Value.String() != "" {
		args = append(args, "-test.skip", f.Value.String())
	}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	// Under go test -cover the child's counters go where the parent's do,
	// which the parent merges into its coverage when it exits (an
	// offloaded test covered nothing: 0.0% of statements).
	if f := flag.Lookup("test.gocoverdir"); f != nil && f.Value.String() != "" {
		args = append(args, "-test.gocoverdir="+f.Value.String())
	}
	// The package's own flags given to the parent ("go test -run
	// TestScripts -update"): the child runs the test, so they are its.
	flag.Visit(func(f *flag.Flag) {
		if !strings.HasPrefix(f.Name, "test.") {
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), envVar+"="+string(env))
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.WaitDelay = 5 * time.Second
	c := &proc{done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		cancel()
		c.out.Err = err
		close(c.done)
		return c
	}
	go func() {
		defer close(c.done)
		defer cancel()
		err := cmd.Wait()
		if ctx.Err() != nil {
			err = fmt.Errorf("killed after %v (hung?): %w", d, err)
		}
		c.out.Err = err
		c.out.Output = buf.String()
		c.out.Subtests = parse(t.Name(), c.out.Output)
	}()
	return c
}

// wait waits for the child to end.
func (c *proc) wait() *outcome {
	<-c.done
	return &c.out
}

var resultLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([^)]*)\)`)

// parse reads the -test.v output of a child that ran test: it gives the
// verdicts of test ("") and of its subtests (by name below test, as
// "item" or "item/sub"), and the output of test's own lines ("") and of
// each of its direct subtests with theirs (by item): every line from a
// test's "=== RUN" (or "=== NAME"/"=== CONT") to the next such line.
func parse(test, out string) map[string]verdict {
	prefix := test + "/"
	lines := map[string]*strings.Builder{}
	states := map[string][]string{}
	cur := ""
	// Lines of any length: a line beyond a bufio.Scanner's limit would
	// end the reading there, and every verdict after it would be lost.
	for l := range strings.Lines(out) {
		l = strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r")
		if m := resultLine.FindStringSubmatch(l); m != nil {
			if m[2] == test {
				states[""] = m[1:]
			} else if name, ok := strings.CutPrefix(m[2], prefix); ok {
				states[name] = m[1:]
			}
			continue
		}
		if rest, ok := strings.CutPrefix(l, "=== "); ok {
			if f := strings.Fields(rest); len(f) == 2 {
				// Deeper subtests' lines belong to their item.
				name, _ := strings.CutPrefix(f[1], prefix)
				cur, _, _ = strings.Cut(name, "/")
				if f[1] == test {
					cur = ""
				}
				continue
			}
		}
		if lines[cur] == nil {
			lines[cur] = &strings.Builder{}
		}
		lines[cur].WriteString(l + "\n")
	}
	vs := map[string]verdict{}
	for name, st := range states {
		var o string
		if b := lines[name]; b != nil {
			o = b.String()
		}
		vs[name] = verdict{State: st[0], Elapsed: st[2], Output: o}
	}
	return vs
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// Matrix runs body(t, item) as subtest item of t for every item, in
// children child processes that run at the same time and share the items
// as they go: each child takes the next item nobody took, in the order
// given (put the slowest first). In the parent each subtest (they respect
// -run) waits for the children and takes on the verdict and output of the
// one that ran it. In a child (see Items) Matrix runs the subtests of the
// items it takes, one after another. Item names must be valid subtest
// names that Go does not rewrite, with no "/". The children are running
// when Matrix returns: a caller that then calls t.Parallel lets the other
// tests of its process run meanwhile.
func Matrix(t *testing.T, items []string, children int, body func(t *testing.T, item string)) {
	t.Helper()
	if sp, ok := child(t); ok {
		for _, it := range sp.Items {
			switch err := os.Mkdir(filepath.Join(sp.Claims, it), 0o755); {
			case errors.Is(err, fs.ErrExist):
				continue // another child has it
			case err != nil:
				t.Fatalf("testproc: claiming %s: %v", it, err)
			}
			t.Run(it, func(t *testing.T) { body(t, it) })
		}
		return
	}
	var (
		selected []string
		outs     []*outcome
		done     = make(chan struct{})
	)
	for _, it := range items {
		t.Run(it, func(t *testing.T) {
			if it == "" || strings.ContainsAny(it, "/\\") || it == "." || it == ".." || t.Name() != runName(t, it) {
				t.Fatalf("testproc: item %q is no subtest name Matrix can use (it became %q)", it, t.Name())
			}
			selected = append(selected, it)
			t.Parallel() // returns once the children have started (below)
			<-done
			report(t, it, selected, outs)
		})
	}
	if len(selected) == 0 {
		close(done)
		return
	}
	claims := t.TempDir()
	cs := make([]*proc, max(1, min(children, len(selected))))
	for i := range cs {
		cs[i] = start(t, spec{Items: selected, Claims: claims})
	}
	go func() {
		for _, c := range cs {
			outs = append(outs, c.wait())
		}
		close(done)
	}()
}

// runName is the name subtest item of t gets when Go keeps it as given.
func runName(t *testing.T, item string) string {
	name := t.Name()
	return name[:strings.LastIndex(name, "/")+1] + item
}

// began reports whether the child began subtest item of test and gave
// no verdict on it.
func (out *outcome) began(test, item string) bool {
	_, ok := out.Subtests[item]
	return !ok && strings.Contains(out.Output, "=== RUN   "+test+"/"+item+"\n")
}

// report makes the verdict on item of the child that ran it t's; the first
// of the selected items also reports children that failed outside every
// item.
func report(t *testing.T, item string, selected []string, outs []*outcome) {
	t.Helper()
	test := strings.TrimSuffix(t.Name(), "/"+item)
	for i, out := range outs {
		if item != selected[0] || out.Err == nil {
			continue
		}
		inside := false
		for _, it := range selected {
			inside = inside || out.Subtests[it].State == "FAIL" || out.began(test, it)
		}
		if !inside {
			t.Errorf("child process %d of %d failed outside its subtests (%v); its output:\n%s", i+1, len(outs), out.Err, tail(out.Output, 200))
		}
	}
	for i, out := range outs {
		v, ok := out.Subtests[item]
		switch {
		case out.began(test, item):
			t.Fatalf("child process %d of %d began %s but gave no verdict (%v); its output:\n%s", i+1, len(outs), item, out.Err, tail(out.Output, 200))
		case !ok:
			continue
		case v.State == "FAIL":
			t.Fatalf("failed in child process %d of %d (%s):\n%s", i+1, len(outs), v.Elapsed, v.Output)
		case v.State == "SKIP":
			t.Skipf("in child process %d of %d:\n%s", i+1, len(outs), v.Output)
		case testing.Verbose():
			t.Logf("in child process %d of %d (%s):\n%s", i+1, len(outs), v.Elapsed, v.Output)
		}
		return
	}
	var errs []string
	for i, out := range outs {
		errs = append(errs, fmt.Sprintf("child %d: %v", i+1, out.Err))
	}
	t.Fatalf("no child process ran %s (%s)", item, strings.Join(errs, "; "))
}

// Offload runs test t in a child process and makes the child's verdict and
// output t's (of a failure without -v, the output of t and of its failed
// subtests, as go test shows it), unless this process is that child (Items): then it returns
// false, and the caller goes on to run the test's body. In the parent it
// returns true once the child is done, and the caller returns. Call it
// first in the test: the child starts at once, then t is made parallel,
// so the child runs alongside the process's other tests and children.
func Offload(t *testing.T) bool {
	t.Helper()
	if _, ok := Items(t); ok {
		return false
	}
	c := start(t, spec{})
	t.Parallel()
	out := c.wait()
	v, ok := out.Subtests[""]
	switch {
	case !ok:
		t.Fatalf("the child process running %s gave no verdict (%v); its output:\n%s", t.Name(), out.Err, out.Output)
	case v.State == "FAIL" && testing.Verbose():
		t.Fatalf("failed in a child process:\n%s", out.Output)
	case v.State == "FAIL":
		t.Fatalf("failed in a child process:\n%s", failedOutput(t.Name(), out.Subtests))
	case out.Err != nil:
		t.Fatalf("the child process running %s passed it but then failed (%v); its output:\n%s", t.Name(), out.Err, out.Output)
	case v.State == "SKIP":
		t.Skipf("in a child process:\n%s", out.Output)
	}
	if testing.Verbose() {
		t.Logf("in a child process (%s):\n%s", v.Elapsed, out.Output)
	}
	return true
}

// failedOutput is what the child printed of test: its own lines and those
// of its failed subtests. The child runs with -test.v, and the subtests
// that passed would bury the failure (TestScripts prints 350 kB for its
// scripts); without -v, go test shows only the failures too.
func failedOutput(test string, vs map[string]verdict) string {
	var b strings.Builder
	b.WriteString(vs[""].Output)
	left := 0
	for _, name := range slices.Sorted(maps.Keys(vs)) {
		switch v := vs[name]; {
		case name == "" || strings.Contains(name, "/"):
			// its own lines, above; deeper subtests' are their item's
		case v.State == "FAIL":
			fmt.Fprintf(&b, "--- FAIL: %s/%s (%s)\n%s", test, name, v.Elapsed, v.Output)
		default:
			left++
		}
	}
	if left > 0 {
		fmt.Fprintf(&b, "[the output of the %d subtests that passed or skipped is left out; -v shows it]\n", left)
	}
	return b.String()
}
