package testproc

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fixtureVar runs the fixture tests below, which fail on purpose: only
// TestMatrixReports and TestOffloadReports set it, for their child.
const fixtureVar = "DPSCONFORM_TESTPROC_FIXTURE"

// fixtureFlag is a flag of the package's own, as -update is of others:
// TestOffloadReports gives it to the parent, and its child must have it.
var fixtureFlag = flag.String("fixture-flag", "", "a flag TestOffloadReports gives its fixture")

func fixture(t *testing.T) {
	if os.Getenv(fixtureVar) != t.Name() {
		t.Skip("a fixture of TestMatrixReports and TestOffloadReports")
	}
}

// TestFixtureMatrix has items that pass, fail, skip, crash their child
// and hang it, and one that prints a line longer than 1 MiB.
func TestFixtureMatrix(t *testing.T) {
	fixture(t)
	Matrix(t, []string{"hang", "crash", "long", "good", "bad", "skipped", "late"}, 3, func(t *testing.T, item string) {
		t.Logf("item %s in process %d", item, os.Getpid())
		switch item {
		case "bad":
			t.Error("bad is bad")
		case "skipped":
			t.Skip("skipped is skipped")
		case "crash":
			os.Exit(7)
		case "hang":
			select {} // until the child's -test.timeout
		case "long":
			fmt.Println(strings.Repeat("x", 2<<20))
		case "late":
			time.Sleep(200 * time.Millisecond) // the other children take the rest
		}
	})
}

// TestFixtureOffload fails in its child, with a subtest that fails and
// one that passes and talks.
func TestFixtureOffload(t *testing.T) {
	fixture(t)
	if Offload(t) {
		return
	}
	t.Run("chatty", func(t *testing.T) { t.Log("chatty talks") })
	t.Run("broken", func(t *testing.T) { t.Error("broken is broken") })
	t.Errorf("offloaded and failed in process %d with -fixture-flag %q and -test.gocoverdir %q", os.Getpid(), *fixtureFlag, flag.Lookup("test.gocoverdir").Value)
}

// runFixture runs fixture test name in a process of its own, as a parent,
// with go test's -timeout set to timeout and args.
func runFixture(t *testing.T, name string, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"-test.run", "^" + name + "$", "-test.timeout", timeout.String()}, args...)...)
	cmd.Env = append(os.Environ(), fixtureVar+"="+name)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("%s: %v, want exit status 1\n%s", name, err, out)
	}
	return string(out)
}

// TestMatrixReports: each item's verdict in the parent is the one of the
// child that ran it, with its output; a child that crashes or hangs fails
// the item it was running, and the other children run the rest.
func TestMatrixReports(t *testing.T) {
	if _, ok := Items(t); ok {
		t.Fatal("the test of the helper runs as a child")
	}
	// The children's deadline is 10 s (the least), so their own
	// -test.timeout is 5 s: the hang ends there.
	out := runFixture(t, "TestFixtureMatrix", 20*time.Second, "-test.v")
	for _, want := range []string{
		`(?m)^    --- FAIL: TestFixtureMatrix/hang \(`,
		`began hang but gave no verdict \(exit status 2\)`,
		`panic: test timed out after 5s`,
		`(?m)^    --- FAIL: TestFixtureMatrix/crash \(`,
		`began crash but gave no verdict \(exit status 7\)`,
		`(?m)^    --- PASS: TestFixtureMatrix/good \(`,
		`(?m)^    --- FAIL: TestFixtureMatrix/bad \(`,
		`failed in child process \d of 3 \([0-9.]+s\):\n\s+testproc_test.go:\d+: item bad in process \d+\n\s+testproc_test.go:\d+: bad is bad`,
		`(?m)^    --- SKIP: TestFixtureMatrix/skipped \(`,
		`skipped is skipped`,
		`(?m)^    --- PASS: TestFixtureMatrix/late \(`,
		// The verdicts after a line longer than 1 MiB are read too.
		`(?m)^    --- PASS: TestFixtureMatrix/long \(`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("no %q in the output:\n%s", want, out)
		}
	}
	// The crash and the hang are theirs, not of the first item.
	if n := strings.Count(out, "outside its subtests"); n != 0 {
		t.Errorf("%d children failed outside their subtests:\n%s", n, out)
	}
	if n := strings.Count(out, "item good in process"); n != 1 {
		t.Errorf("good ran %d times:\n%s", n, out)
	}
}

// TestOffloadReports: an offloaded test's failure in the child fails it
// in the parent, with the child's output of the test and its failed
// subtests (not of those that passed: -test.v prints them all); the child
// has the package's own flags the parent was given (go test -run
// TestScripts -update), and go test -cover's directory for its counters
// (checked under -cover only: a binary built without it refuses the flag).
func TestOffloadReports(t *testing.T) {
	// -test.gocoverdir only where go test -cover built the binary.
	args, cover := []string{"-fixture-flag", "given"}, ""
	if testing.CoverMode() != "" {
		cover = t.TempDir()
		args = append(args, "-test.gocoverdir", cover)
	}
	out := runFixture(t, "TestFixtureOffload", time.Minute, args...)
	for _, want := range []string{
		`(?m)^--- FAIL: TestFixtureOffload \(`,
		`failed in a child process:\n(.*\n)*\s+testproc_test.go:\d+: offloaded and failed in process \d+ with -fixture-flag "given" and -test.gocoverdir "` + regexp.QuoteMeta(cover) + `"`,
		`--- FAIL: TestFixtureOffload/broken \([0-9.]+s\)\n\s+testproc_test.go:\d+: broken is broken`,
		`\[the output of the 1 subtests that passed or skipped is left out; -v shows it\]`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("no %q in the output:\n%s", want, out)
		}
	}
	if strings.Contains(out, "chatty talks") {
		t.Errorf("the output of a subtest that passed is in the failure:\n%s", out)
	}
}

func TestRunPattern(t *testing.T) {
	for _, tc := range []struct{ name, run, want string }{
		{"TestA", "", "^TestA$"},
		{"TestA", "TestA", "^TestA$"},
		{"TestA", "A/device", "^TestA$/device"},
		{"TestA", "A/(x/y|z)/[/]w", "^TestA$/(x/y|z)/[/]w"},
		{"TestA", `A/a\/b`, `^TestA$/a\/b`},
		{"TestA", "A/x|B/y", "^TestA$"},
		{"TestA/sub.1", "A/sub/deep", `^TestA$/^sub\.1$/deep`},
	} {
		if got := runPattern(tc.name, tc.run); got != tc.want {
			t.Errorf("runPattern(%q, %q) = %q, want %q", tc.name, tc.run, got, tc.want)
		}
	}
}
