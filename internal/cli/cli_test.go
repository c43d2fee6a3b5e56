package cli_test

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/dps-conform/dps-conform/internal/cli"
	"github.com/dps-conform/dps-conform/internal/testproc"
)

var update = flag.Bool("update", false, "rewrite the scripts' cmp files from the actual output")

// TestMain lets testscript run this test binary as "dps-conform" (bound to
// cli.Run, exactly like cmd/dps-conform) inside the scripts.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"dps-conform": func() { os.Exit(cli.Run()) },
	})
}

// TestScripts runs testdata/script/*.txtar. Besides the standard commands
// the scripts have
//
//	exitcode N PROG [ARGS...]
//
// which runs PROG like exec and fails unless it exits with status N, because
// "! exec" accepts any non-zero status and 2 (usage) vs 3 (no verdict) matters.
func TestScripts(t *testing.T) {
	if testproc.Offload(t) {
		return
	}
	testscript.Run(t, testscript.Params{
		Dir:           "testdata/script",
		UpdateScripts: *update,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode": cmdExitcode,
		},
	})
}

func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! exitcode")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: exitcode N PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: bad status %q", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exitcode: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

// fullWriter fails every write, as stdout on a full disk does.
type fullWriter struct{}

func (fullWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// TestStdoutWriteError: output that cannot be written is never a silent
// success: exit 3 and one line naming standard output; a command that
// fails for its own reason reports that reason.
func TestStdoutWriteError(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"version"}, cli.ExitTargetUnreachable, "dps-conform version: writing standard output: no space left on device\n"},
		{[]string{"list"}, cli.ExitTargetUnreachable, "dps-conform list: writing standard output: no space left on device\n"},
		{[]string{"sas", "--id-scope", "x", "--registration-id", "r", "--key", "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg="}, cli.ExitTargetUnreachable,
			"dps-conform sas: writing standard output: no space left on device\n"},
		{[]string{"sas", "--id-scope", "x"}, cli.ExitUsage, "dps-conform sas: "},
		{[]string{"trace", "../../testdata/pcaps/violations.pcapng"}, cli.ExitTargetUnreachable, "dps-conform trace: writing the transcript: no space left on device\n"},
	} {
		var stderr strings.Builder
		code := cli.Main(context.Background(), tc.args, fullWriter{}, &stderr)
		if code != tc.code || !strings.HasPrefix(stderr.String(), tc.want) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v: exit %d (want %d), stderr %q (want one line starting %q)", tc.args, code, tc.code, stderr.String(), tc.want)
		}
	}
}
