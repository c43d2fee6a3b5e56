package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/internal/cli"
	"github.com/dps-conform/dps-conform/reports"
)

// TestDeviceNeverConnectsStopsEarly: a device that keeps running but opens
// no TCP connection (a wrong host, retried forever) is given two scenarios,
// not every scenario's --scenario-timeout: the other 11 are reported not
// run (text, results.json, junit.xml, summary.md), and the run is NO
// VERDICT, exit 3, with the never-connected reason and a line saying how
// many scenarios were not run and why. Without --exec (stdin closed, so
// each scenario ends at its timeout) the same.
func TestDeviceNeverConnectsStopsEarly(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"exec", []string{"--exec", "sleep 30"}},
		{"operator, stdin closed", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "d")
			code, stdout, stderr := runCLI(t, append([]string{"device", "--out", out, "--scenario-timeout", "300ms"}, tc.args...)...)
			if code != cli.ExitTargetUnreachable {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, cli.ExitTargetUnreachable, stdout, stderr)
			}
			notRun := "poll-429, unauthorized-401, transient-500, poll-no-operation-id, disconnect-mid-poll, connack-withheld, enrollment-disabled, enrollment-failed, tls-untrusted-ca, tls-wrong-host, tls-expired"
			line := "11 scenarios not run (" + notRun + "): the device opened no TCP connection in 2 scenarios in a row (normal, register-429), and every scenario expects at least one (the tls-* ones too)"
			for _, w := range []string{"NO VERDICT: the device never connected in any scenario", "\n" + line + "\n",
				"scenario normal                 0 connections, ", "scenario register-429           0 connections, ",
				"scenario poll-429               not run\n", "scenario tls-expired            not run\n"} {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			if !strings.Contains(stderr, "no verdict: the device never connected in any scenario") || !strings.Contains(stderr, line) ||
				strings.Contains(stderr, "scenario poll-429:") {
				t.Errorf("stderr:\n%s", stderr)
			}
			rep, err := reports.ReadJSONFile(filepath.Join(out, "results.json"))
			if err != nil {
				t.Fatal(err)
			}
			s := rep.Summary
			if s.Verdict != reports.HeadlineNoVerdict || s.NotRun != 11 || strings.Join(s.NotRunScenarios, ", ") != notRun || s.Interrupted != 0 ||
				!strings.HasPrefix(s.NotRunReason, "the device opened no TCP connection in 2 scenarios in a row") {
				t.Errorf("summary: %+v", s)
			}
			junit, _ := os.ReadFile(filepath.Join(out, "junit.xml"))
			if !strings.Contains(string(junit), `<testcase name="scenario tls-expired" classname="dps-conform device role" status="skipped"`) ||
				!strings.Contains(string(junit), `message="skipped - not run: the device opened no TCP connection`) {
				t.Errorf("junit.xml lacks the not-run scenarios:\n%s", junit)
			}
			md, _ := os.ReadFile(filepath.Join(out, "summary.md"))
			if !strings.Contains(string(md), "11 scenario(s) not run (` "+notRun+" `)") {
				t.Errorf("summary.md lacks the not-run scenarios:\n%s", md)
			}
			for _, p := range []string{"01-normal.pcapng", "02-register-429.pcapng"} {
				if _, err := os.Stat(filepath.Join(out, "pcaps", p)); err != nil {
					t.Error(err)
				}
			}
			if _, err := os.Stat(filepath.Join(out, "pcaps", "03-poll-429.pcapng")); err == nil {
				t.Error("scenario poll-429 ran")
			}
			if code, stdout, stderr := runCLI(t, "report", "verify", out); code != 0 {
				t.Errorf("report verify: exit %d\n%s\n%s", code, stdout, stderr)
			}
		})
	}
}

// TestDeviceConnectedOnceRunsAll: a device that opened a TCP connection in
// a scenario is never cut short, however many scenarios after it it
// opens none in.
func TestDeviceConnectedOnceRunsAll(t *testing.T) {
	out := filepath.Join(t.TempDir(), "d")
	// A TCP connection in normal only (no ClientHello), then nothing.
	exec := `if [ "$DPS_SCENARIO" = normal ]; then bash -c 'exec 3<>/dev/tcp/$DPS_HOST/$DPS_PORT; sleep 0.1'; fi; sleep 30`
	code, stdout, stderr := runCLI(t, "device", "--out", out, "--scenario-timeout", "300ms",
		"--scenario", "normal", "--scenario", "register-429", "--scenario", "poll-429", "--scenario", "tls-expired", "--exec", exec)
	if code != cli.ExitTargetUnreachable {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, cli.ExitTargetUnreachable, stdout, stderr)
	}
	for _, w := range []string{"scenario normal                 1 connection, ", "scenario register-429           0 connections, ",
		"scenario poll-429               0 connections, ", "scenario tls-expired            0 connections, ",
		"NO VERDICT: the device opened 1 TCP connection(s) but sent no TLS ClientHello in any scenario"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, stdout)
		}
	}
	if strings.Contains(stdout+stderr, "not run") {
		t.Errorf("a scenario was not run:\n%s\n%s", stdout, stderr)
	}
}
