package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

const (
	vectorKey   = "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg="
	vectorToken = "SharedAccessSignature sr=0neFEEDC0DE%2fregistrations%2fmyRegistrationId&sig=9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s%3D&se=1578941692&skn=registration"
)

func TestExitCode(t *testing.T) {
	usage := &UsageError{Err: errors.New("bad flag")}
	env := &EnvError{Err: errors.New("dial tcp: connection refused")}
	nc := &NonConformantError{MustFindings: 2}
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, ExitConformant},
		{"non-conformant", nc, ExitNonConformant},
		{"usage", usage, ExitUsage},
		{"environment", env, ExitTargetUnreachable},
		{"wrapped usage", fmt.Errorf("parsing config: %w", usage), ExitUsage},
		{"wrapped environment", fmt.Errorf("run: %w", env), ExitTargetUnreachable},
		{"wrapped non-conformant", fmt.Errorf("suite: %w", nc), ExitNonConformant},
		{"joined: a verdict wins over a usage error", errors.Join(usage, nc), ExitNonConformant},
		// Unclassified errors are bugs in a subcommand's error handling; they
		// must never read as a pass or a plain failure verdict.
		{"unclassified", errors.New("boom"), ExitTargetUnreachable},
		{"context canceled", context.Canceled, ExitTargetUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ExitCode(tc.err); got != tc.want {
				t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

// TestSubcommandErrors checks how any subcommand's result becomes an exit code
// and one stderr line.
func TestSubcommandErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		run        subcommand
		wantCode   int
		wantStderr string // regexp
	}{
		{"success", func(context.Context, *Env, []string) error { return nil }, 0, `^$`},
		{"usage", func(context.Context, *Env, []string) error { return usageErrorf("--x is required") }, 2,
			`^dps-conform fake: --x is required\n$`},
		{"environment", func(context.Context, *Env, []string) error { return envErrorf("dial: refused") }, 3,
			`^dps-conform fake: dial: refused\n$`},
		{"non-conformant", func(context.Context, *Env, []string) error { return &NonConformantError{MustFindings: 1} }, 1,
			`^dps-conform fake: non-conformant: 1 MUST-level requirement not met\n$`},
		{"unclassified is printed and exits 3", func(context.Context, *Env, []string) error { return errors.New("boom") }, 3,
			`^dps-conform fake: boom\n$`},
		{"multi-line message folded to one line", func(context.Context, *Env, []string) error {
			return &UsageError{Err: errors.New("first\nsecond\r\nthird\n")}
		}, 2, `^dps-conform fake: first; second; third\n$`},
		{"panic is reported, not propagated", func(context.Context, *Env, []string) error { panic("oops\nbad") }, 3,
			`^dps-conform fake: internal error \(a bug in dps-conform, please report it\): oops; bad\n`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			env := &Env{Stdout: &stdout, Stderr: &stderr, Now: time.Now}
			code := env.runCommand(context.Background(), "dps-conform fake", tc.run, nil)
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d", code, tc.wantCode)
			}
			if !regexp.MustCompile(tc.wantStderr).MatchString(stderr.String()) {
				t.Errorf("stderr = %q, want match for %q", stderr.String(), tc.wantStderr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want empty", stdout.String())
			}
		})
	}
}

// TestMain_ExitCodes pins the exact exit code of whole command lines (the
// testscript files check the same lines as a process).
func TestMain_ExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		wantCode   int
		wantStdout string // regexp
		wantStderr string // regexp
	}{
		// No command is a usage error: the list on stderr, exit 2.
		{nil, ExitUsage, `^$`, `(?s)^dps-conform checks.*\ndps-conform: missing command; run 'dps-conform help' for the command list\n$`},
		{[]string{"help"}, ExitConformant, `(?m)^Commands:$`, `^$`},
		{[]string{"--help"}, ExitConformant, `(?m)^Commands:$`, `^$`},
		{[]string{"help", "sas"}, ExitConformant, `^Usage:\n  dps-conform sas `, `^$`},
		{[]string{"version"}, ExitConformant, `^dps-conform \S+`, `^$`},
		{[]string{"sas", "-h"}, ExitConformant, `^Usage:`, `^$`},
		{[]string{"run", "--help"}, ExitConformant, `^Usage:\n  dps-conform run \[flags\]`, `^$`},
		{[]string{"nosuch"}, ExitUsage, `^$`, `^dps-conform: unknown command "nosuch"; run 'dps-conform help' for the command list\n$`},
		{[]string{"--verbose"}, ExitUsage, `^$`, `^dps-conform: unknown flag "--verbose"`},
		{[]string{"help", "nosuch"}, ExitUsage, `^$`, `^dps-conform help: unknown command "nosuch"`},
		{[]string{"version", "x"}, ExitUsage, `^$`, `^dps-conform version: unexpected argument "x"\n$`},
		{[]string{"sas"}, ExitUsage, `^$`, `^dps-conform sas: --registration-id is required\n$`},
		{[]string{"sas", "--bogus"}, ExitUsage, `^$`, `^dps-conform sas: flag provided but not defined: --bogus\n$`},
		{[]string{"sas", "--expiry", "soon"}, ExitUsage, `^$`, `^dps-conform sas: invalid value "soon" for flag --expiry: `},
		{[]string{"sas", "--sr-encoding", "x"}, ExitUsage, `^$`, `^dps-conform sas: invalid value "x" for flag --sr-encoding: want lower, upper or raw\n$`},
		{[]string{"sas", "--id-scope", "s", "--registration-id", "r", "--key", "%%%"}, ExitUsage, `^$`,
			`^dps-conform sas: --key is not standard base64 \(bad data at byte 0\)\n$`},
		{[]string{"sas", "--id-scope", "s", "--registration-id", "r", "--key", vectorKey, "--group-key", vectorKey}, ExitUsage, `^$`,
			`^dps-conform sas: --key and --group-key are mutually exclusive\n$`},
		{[]string{"sas", "--id-scope", "0neFEEDC0DE", "--registration-id", "myRegistrationId", "--key", vectorKey, "--expiry", "1578941692"},
			ExitConformant, `^` + regexp.QuoteMeta(vectorToken) + `\n$`, `^$`},
		{[]string{"run", "--target", "emulator", "--label-filter", "req: containsAny DPS-SUB-002", "--out", t.TempDir()}, ExitConformant,
			`(?m)^PASS +DPS-SUB-002 .*\n\n1 specs in .*: 1 passed, 0 failed, 0 skipped\nCONFORMANT`, `(?m)^PASSED +DPS-SUB-002`},
		{[]string{"run", "--target", "mqtts://127.0.0.1:1", "--id-scope", "s", "--group-key", vectorKey}, ExitTargetUnreachable, `^$`,
			`(?m)^dps-conform run: target mqtts://127.0.0.1:1 unreachable: `},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tc.wantCode, stderr.String())
			}
			if !regexp.MustCompile(tc.wantStdout).MatchString(stdout.String()) {
				t.Errorf("stdout = %q, want match for %q", stdout.String(), tc.wantStdout)
			}
			if !regexp.MustCompile(tc.wantStderr).MatchString(stderr.String()) {
				t.Errorf("stderr = %q, want match for %q", stderr.String(), tc.wantStderr)
			}
		})
	}
}

// TestSAS_TTLUsesEnvNow: --ttl (default 1h) counts from Env.Now, so a fixed
// clock one hour before the vector's se reproduces the vector token.
func TestSAS_TTLUsesEnvNow(t *testing.T) {
	now := time.Unix(1578941692, 0).Add(-time.Hour)
	for _, extra := range [][]string{nil, {"--ttl", "1h"}, {"--ttl=60m"}} {
		var stdout, stderr bytes.Buffer
		env := &Env{Stdout: &stdout, Stderr: &stderr, Now: func() time.Time { return now }}
		args := append([]string{"sas", "--id-scope", "0neFEEDC0DE", "--registration-id", "myRegistrationId", "--key", vectorKey}, extra...)
		if code := env.main(context.Background(), args); code != ExitConformant {
			t.Fatalf("%v: exit code %d, stderr %q", extra, code, stderr.String())
		}
		if got := strings.TrimSuffix(stdout.String(), "\n"); got != vectorToken {
			t.Errorf("%v: got %q, want %q", extra, got, vectorToken)
		}
	}
}

// TestSAS_ExpiryOutOfRangeNamesFlag: an --expiry past 9999-12-31 (which
// no token can carry) is a usage error naming the flag, like every other
// sas input error, not the dps package's "sas.se: …".
func TestSAS_ExpiryOutOfRangeNamesFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"sas", "--id-scope", "0neFEEDC0DE", "--registration-id", "r1", "--key", vectorKey, "--expiry", "253402300800"}
	if code := Main(context.Background(), args, &stdout, &stderr); code != ExitUsage {
		t.Errorf("exit code = %d, want %d", code, ExitUsage)
	}
	want := `^dps-conform sas: invalid value "253402300800" for flag --expiry: want Unix seconds, a non-negative integer such as 1578941692, at most 253402300799 \(9999-12-31T23:59:59Z\)\n$`
	if !regexp.MustCompile(want).MatchString(stderr.String()) || stdout.Len() != 0 {
		t.Errorf("stdout %q, stderr %q; want stderr matching %s", stdout.String(), stderr.String(), want)
	}
	// The last second a token can carry is accepted.
	stdout.Reset()
	stderr.Reset()
	args[len(args)-1] = "253402300799"
	if code := Main(context.Background(), args, &stdout, &stderr); code != ExitConformant || !strings.Contains(stdout.String(), "&se=253402300799&") {
		t.Errorf("--expiry 253402300799: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

func TestMain_NilWritersAndGlobalFlags(t *testing.T) {
	if code := Main(context.Background(), []string{"sas", "--bogus"}, nil, nil); code != ExitUsage {
		t.Errorf("exit code = %d, want %d", code, ExitUsage)
	}
	// Subcommands use their own flag sets; the global one belongs to Ginkgo.
	for _, name := range []string{"id-scope", "key", "expiry", "ttl"} {
		if flag.CommandLine.Lookup(name) != nil {
			t.Errorf("flag %q was registered on flag.CommandLine", name)
		}
	}
}

func TestVersionLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"no build info", nil, false, "dps-conform (devel)"},
		{"empty version", &debug.BuildInfo{GoVersion: "go1.26.0"}, true, "dps-conform (devel) go1.26.0"},
		{"release", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.3.1"}}, true, "dps-conform v0.3.1 go1.26.0"},
		{"vcs", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"},
		}}, true, "dps-conform (devel) (rev 0123456789ab, modified) go1.26.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionLine(tc.bi, tc.ok); got != tc.want {
				t.Errorf("versionLine = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestNonConformantMessage: the one stderr line counts MUST findings and
// decode violations each under its own name.
func TestNonConformantMessage(t *testing.T) {
	tests := []struct {
		must, decode int
		want         string
	}{
		{1, 0, "non-conformant: 1 MUST-level requirement not met"},
		{3, 0, "non-conformant: 3 MUST-level requirements not met"},
		{0, 1, "non-conformant: 1 decode violation (a protocol error in the capture)"},
		{2, 5, "non-conformant: 2 MUST-level requirements not met, 5 decode violations (protocol errors in the capture)"},
	}
	for _, tt := range tests {
		if got := (&NonConformantError{MustFindings: tt.must, DecodeViolations: tt.decode}).Error(); got != tt.want {
			t.Errorf("%d MUST, %d decode: %q, want %q", tt.must, tt.decode, got, tt.want)
		}
	}
}

// TestHelpFlagsOnce: every subcommand with flags has one "Flags:" heading
// in its help (four printed their own as well), with no blank line pair
// before it.
func TestHelpFlagsOnce(t *testing.T) {
	for _, args := range [][]string{{"run"}, {"device"}, {"list"}, {"tlsprobe"}, {"emulator"}, {"provision"}, {"sas"}, {"trace"},
		{"bench", "provision"}, {"bench", "trace"}} {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), append(args, "--help"), &stdout, &stderr); code != ExitConformant {
			t.Errorf("%v --help: exit %d: %s", args, code, stderr.String())
			continue
		}
		out := stdout.String()
		if n := strings.Count(out, "\nFlags:\n"); n != 1 {
			t.Errorf("%v --help: %d Flags: headings\n%s", args, n, out)
		}
		if strings.Contains(out, "\n\n\nFlags:") {
			t.Errorf("%v --help: two blank lines before Flags:", args)
		}
	}
}
