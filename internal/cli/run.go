package cli

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/registry"
	"github.com/dps-conform/dps-conform/reports"
	"github.com/dps-conform/dps-conform/tlsprobe"
	"github.com/dps-conform/dps-conform/transport"
)

const runUsage = `Usage:
  dps-conform run [flags]

Runs the service conformance suite against a DPS endpoint and prints a verdict
per documented requirement. With no flags it starts the embedded emulator on
loopback and runs everything against it.

Every spec records its connections as pcapng (with the TLS key log) under
--out/pcaps and judges the decoded capture; --out also receives the Ginkgo
JSON report (ginkgo-report.json) and JUnit XML (junit.xml). Progress goes to
stderr, the verdict table to stdout.

Targets:
  --target emulator                      the embedded emulator (default)
  --target mqtts://HOST:8883             MQTT over TLS
  --target wss://HOST/$iothub/websocket  MQTT over WebSocket (the MQTT-over-TLS
                                         specs then use --mqtt-target, if given)
  --config target.yaml                   everything below in one file

Exit codes: 0 conformant, 1 a MUST requirement failed, 2 usage or input error,
3 target unreachable or environment failure.

`

// runFlags are the flags of "run".
type runFlags struct {
	target, mqttTarget, wsTarget, config string
	budgetTarget                         string
	idScope, ca, serverName              string
	regID, symKey, groupKey, cert, key   string
	slowGroupKey                         string
	secondaryKey, groupSecondaryKey      string
	groupID                              string
	disabledID, disabledKey              string
	budget                               int
	profile, labelFilter, out            string
	focus, faults                        stringsFlag
	allowQuota, verbose                  bool
	bundle                               string
	specTimeout, readTimeout, closeWait  time.Duration
	seed                                 int64
}

func runCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("run", runUsage)
	var f runFlags
	fs.StringVar(&f.target, "target", "", "`URL` of the DPS endpoint: emulator (default), mqtts://host:port or wss://host[:port]/path")
	fs.StringVar(&f.mqttTarget, "mqtt-target", "", "mqtts:// `URL` for the MQTT-over-TLS specs when --target is wss://")
	fs.StringVar(&f.wsTarget, "ws-target", "", "wss:// `URL` for the WebSocket specs when --target is mqtts://")
	fs.StringVar(&f.config, "config", "", "target `FILE` (YAML): "+targetFileFields)
	fs.StringVar(&f.idScope, "id-scope", "", "id `SCOPE` of the DPS instance")
	fs.StringVar(&f.ca, "ca", "", "CA bundle `FILE` (PEM) to trust instead of the system roots")
	fs.StringVar(&f.serverName, "server-name", "", "TLS server `NAME` to verify instead of the target host")
	fs.StringVar(&f.regID, "registration-id", "", "registration `ID` of an individual symmetric key enrollment")
	fs.StringVar(&f.symKey, "symmetric-key", "", "device `KEY` (base64) of --registration-id's individual enrollment (a key derived from a group's belongs to --group-key: DPS-POLL-002 judges the enrollment the answer names)")
	fs.StringVar(&f.groupKey, "group-key", "", "`KEY` (base64) of a symmetric key enrollment group")
	fs.StringVar(&f.groupID, "group-id", "", "enrollment group `ID` of --group-key, or of --group-secondary-key when only that is given (DPS-POLL-002 then wants a group device's registrationState to name no other group)")
	fs.StringVar(&f.secondaryKey, "secondary-key", "", "secondary `KEY` (base64) of --registration-id's enrollment (DPS-AUTH-012 registers with a token signed by it)")
	fs.StringVar(&f.groupSecondaryKey, "group-secondary-key", "", "secondary `KEY` (base64) of the --group-key group (DPS-AUTH-012 registers with a token signed by the key derived from it)")
	fs.StringVar(&f.slowGroupKey, "slow-group-key", "", "`KEY` (base64) of a symmetric key enrollment group whose assignment takes a second or more (DPS-REG-009 registers twice while one is in progress)")
	fs.StringVar(&f.cert, "cert", "", "client certificate `FILE` (PEM) of an X.509 enrollment; its CN is the registration id")
	fs.StringVar(&f.key, "key", "", "private key `FILE` (PEM) of --cert")
	fs.StringVar(&f.disabledID, "disabled-registration-id", "", "registration `ID` of a disabled individual enrollment")
	fs.StringVar(&f.disabledKey, "disabled-key", "", "device `KEY` of --disabled-registration-id")
	fs.IntVar(&f.budget, "registration-budget", 0, "the target's registrations per minute, `N` (DPS-REG-010 sends one more and expects 429; a quota spec)")
	fs.StringVar(&f.budgetTarget, "budget-target", "", "mqtts:// `URL` of an instance with the same enrollments whose registration budget DPS-REG-010 may spend instead of --target's")
	fs.StringVar(&f.profile, "profile", "", "documented behaviour `VERSION`: dps-2019 (default) or dps-2023")
	fs.StringVar(&f.labelFilter, "label-filter", "", "Ginkgo label `QUERY`, e.g. 'area: containsAny subscribe && !quota'")
	fs.Var(&f.focus, "focus", "run only specs whose text matches `REGEXP` (repeatable)")
	fs.StringVar(&f.out, "out", "dps-conform-results", "`DIR` for evidence (pcaps/) and reports")
	fs.Var(&f.faults, "emulator-fault", "switch on an emulator fault `NAME` (repeatable; embedded emulator only; 'help' lists them): the self-test of the suite")
	fs.StringVar(&f.bundle, "bundle", "", "also pack --out into `FILE.tar.gz` (verify it with 'dps-conform report verify FILE.tar.gz')")
	fs.BoolVar(&f.allowQuota, "allow-quota", false, "run specs that trip throttling or spend quotas against any target but the embedded emulator (an emulator of your own included)")
	fs.BoolVar(&f.verbose, "v", false, "print Ginkgo's own report to stderr too")
	fs.Int64Var(&f.seed, "seed", 0, "order the specs with `SEED` (the run prints the one it used; 0: from the clock)")
	f.specTimeout, f.readTimeout, f.closeWait = 30*time.Second, 5*time.Second, 3*time.Second
	fs.Var(durationFlag{p: &f.specTimeout}, "spec-timeout", "`DURATION` bound on each spec")
	fs.Var(durationFlag{p: &f.readTimeout}, "read-timeout", "`DURATION` bound on each wait for a packet (and on the TLS handshake that checks the target before the suite)")
	fs.Var(durationFlag{p: &f.closeWait}, "close-wait", "`DURATION` to wait for the server to close a connection it must close")
	if done, err := parseFlags(env, fs, args); done || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (run takes only flags)", fs.Arg(0))
	}
	if slices.Contains(f.faults, "help") {
		printFaults(env.Stdout)
		return nil
	}
	cfg := conformance.Config{
		Profile: f.profile, LabelFilter: f.labelFilter, Focus: f.focus, OutDir: f.out,
		AllowQuota: f.allowQuota, Progress: env.Stderr, SpecTimeout: f.specTimeout,
		ReadTimeout: f.readTimeout, CloseWait: f.closeWait, Version: versionString(),
	}
	if f.verbose {
		cfg.GinkgoOutput = env.Stderr
	}
	for _, fl := range emulator.Faults() {
		cfg.KnownFaults = append(cfg.KnownFaults, string(fl.Name))
	}
	// Before any target starts or --out is touched: a typo in --focus
	// must not cost the evidence of the last run.
	if err := conformance.CheckMatches(cfg.LabelFilter, cfg.Focus); err != nil {
		var se *conformance.SelectionError
		if errors.As(err, &se) {
			if hint := focusIDHint(cfg.Focus, err); hint != "" {
				err = fmt.Errorf("%w; %s", err, hint)
			}
			return &UsageError{Err: err}
		}
		return &EnvError{Err: err} // a suite bug
	}
	if err := checkOutRole(cfg.OutDir, string(conformance.RoleService)); err != nil {
		return err
	}
	// A --bundle that cannot be written is found now, not after the suite.
	if f.bundle != "" {
		if err := reports.CheckBundlePath(cfg.OutDir, f.bundle); err != nil {
			return usageErrorf("--bundle: %v", err)
		}
	}
	if f.target == "emulator" || f.target == "" && f.config == "" {
		// Every flag that describes a target: silently ignoring one (a
		// --ca, a key) would judge something else than the user meant.
		set := flagsSet(fs)
		for _, name := range []string{"config", "mqtt-target", "ws-target", "id-scope", "ca", "server-name", "registration-id", "symmetric-key",
			"secondary-key", "group-key", "group-secondary-key", "group-id", "slow-group-key", "cert", "key", "disabled-registration-id", "disabled-key", "registration-budget", "budget-target"} {
			if set[name] {
				return usageErrorf("--%s describes a target: it needs a --target other than the embedded emulator (which brings its own endpoints, CA, enrollments and budget instance)", name)
			}
		}
		// Not closed by the interrupt: a spec Ginkgo is interrupting must
		// not see its server go away first (a spurious failure); em.close
		// ends it after the suite.
		em, err := startEmbedded(context.WithoutCancel(ctx), f.faults, f.profile, env.Stderr)
		if err != nil {
			return err
		}
		defer em.close()
		cfg.Target = em.target
		cfg.Profile = cmp.Or(cfg.Profile, string(em.profile))
		// The embedded emulator closes at once; a long wait only slows
		// down the runs where it was told not to (faults).
		if !flagsSet(fs)["close-wait"] {
			cfg.CloseWait = 500 * time.Millisecond
		}
	} else {
		if len(f.faults) > 0 {
			return usageErrorf("--emulator-fault needs the embedded emulator (no --target)")
		}
		t, profile, err := f.remoteTarget()
		if err != nil {
			return err
		}
		cfg.Target = t
		cfg.Profile = cmp.Or(cfg.Profile, profile)
	}
	defaultProfile := cfg.Profile == ""
	cfg.Profile = cmp.Or(cfg.Profile, conformance.ProfileDPS2019)
	if !conformance.KnownProfile(cfg.Profile) {
		// Before the target is dialled: a typo is exit 2, not "unreachable".
		return usageErrorf("profile %q (--profile or profile: in --config) is not %s or %s", cfg.Profile, conformance.ProfileDPS2019, conformance.ProfileDPS2023)
	}
	// A TLS handshake is a wait for packets: --read-timeout bounds it.
	if err := reachable(ctx, cfg.Target, cfg.ReadTimeout); err != nil {
		if ctx.Err() != nil {
			return interrupted(ctx)
		}
		return err
	}
	start := time.Now()
	cfg.Seed = cmp.Or(f.seed, start.Unix())
	fmt.Fprintf(env.Stderr, "dps-conform run: %s, profile %s, seed %d, evidence in %s\n", cfg.Target.Name, cfg.Profile, cfg.Seed, cfg.OutDir)
	res, err := conformance.Run(ctx, cfg)
	if err != nil && ctx.Err() != nil {
		return interrupted(ctx)
	}
	if err != nil {
		var ue *conformance.SelectionError
		if errors.As(err, &ue) || errors.Is(err, conformance.ErrTarget) {
			return &UsageError{Err: err}
		}
		return &EnvError{Err: err}
	}
	rep, err := writeReports(ctx, cfg, res)
	if err != nil {
		return err
	}
	if err := writeConfigUsed(cfg, &f); err != nil {
		return err
	}
	if err := sealResults(cfg.OutDir, f.bundle); err != nil {
		return err
	}
	writeVerdicts(env.Stdout, res, rep.Summary, time.Since(start))
	if hint := rerunHint(res.Failed(), cfg.Seed, cfg.OutDir); hint != "" {
		fmt.Fprintln(env.Stderr, hint)
	}
	if defaultProfile {
		if hint := profileHint(res); hint != "" {
			fmt.Fprintln(env.Stderr, hint)
		}
	}
	// What failed before an interrupt failed: exit 1, as the headline
	// says; otherwise an interrupted run has no verdict (exit 3).
	if n := len(res.Failed(conformance.MUST)); n > 0 {
		return &NonConformantError{MustFindings: n}
	}
	if ctx.Err() != nil {
		return interrupted(ctx)
	}
	return nil
}

// writeVerdicts prints the verdict table, the failures with their
// evidence, the reasons of the skips and the totals.
func writeVerdicts(w io.Writer, res *conformance.Result, sum reports.Summary, elapsed time.Duration) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERDICT\tREQUIREMENT\tLEVEL\tSPEC")
	counts := map[string]int{}
	// Ginkgo shuffles containers; the table is in requirement order.
	vs := slices.Clone(res.Verdicts)
	slices.SortStableFunc(vs, func(a, b conformance.Verdict) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), strings.Compare(a.Text, b.Text))
	})
	for _, v := range vs {
		state := strings.ToUpper(v.State)
		if v.Failed() {
			state = "FAIL"
		} else if v.State == "passed" {
			state = "PASS"
		} else if v.Interrupted() {
			// interrupted, or aborted as it began: the run's stop, not
			// the target; judged nothing (results.json counts both as
			// interrupted)
			state = "INTERRUPTED"
		} else if v.State == "skipped" && v.Message == conformance.NotRunReason {
			state = "NOT RUN" // selected, but the run was stopped first
		} else if v.State == "skipped" {
			state = "SKIP"
		}
		counts[state]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", state, v.ID, v.Level, v.Text)
	}
	tw.Flush()
	for _, v := range vs {
		switch {
		case v.Failed():
			fmt.Fprintf(w, "\nFAIL %s %s\n  %s\n", v.ID, v.Text, strings.ReplaceAll(strings.TrimSpace(v.Message), "\n", "\n  "))
			if v.Pcap != "" && !strings.Contains(v.Message, v.Pcap) {
				fmt.Fprintf(w, "  capture: %s\n", v.Pcap)
			}
		case v.State == "skipped" && v.Message != "" && v.Message != conformance.NotRunReason:
			// Why a spec did not run is part of the verdict: what to give
			// or allow for it to run.
			fmt.Fprintf(w, "\nSKIP %s %s\n  %s\n", v.ID, v.Text, strings.TrimSpace(v.Message))
		}
	}
	fmt.Fprintf(w, "\n%d specs in %.1fs: %d passed, %d failed, %d skipped", len(res.Verdicts), elapsed.Seconds(), counts["PASS"], counts["FAIL"], counts["SKIP"])
	if n := counts["INTERRUPTED"]; n > 0 {
		fmt.Fprintf(w, ", %d interrupted", n)
	}
	if n := counts["NOT RUN"]; n > 0 {
		fmt.Fprintf(w, ", %d not run", n)
	}
	fmt.Fprintln(w)
	// The headline is the reports' (summary.md, report.html, results.json).
	switch sum.Headline() {
	case reports.HeadlineNonConformant:
		must := res.Failed(conformance.MUST)
		fmt.Fprintf(w, "NON-CONFORMANT: %d MUST requirement(s) failed: %s\n", len(must), strings.Join(must, " "))
		if sum.Incomplete() {
			fmt.Fprintln(w, "(the run was interrupted before it finished)")
		}
	case reports.HeadlineConformant:
		fmt.Fprintln(w, "CONFORMANT: every MUST requirement that ran passed")
	case reports.HeadlineInterrupted:
		fmt.Fprintf(w, "INTERRUPTED: the run was stopped before it finished; %d MUST requirement(s) judged, none failed\n", sum.MustJudged)
	default:
		// Nothing failed, and nothing at MUST level was shown to hold.
		fmt.Fprintln(w, "NO VERDICT: no MUST requirement was judged")
	}
}

// focusIDHint says how to select by requirement ID when err is a
// selection that matched nothing and a --focus is such an ID (--focus
// matches the text of the specs, which does not hold it); "" otherwise.
// An ID's specs carry it as a req: label, or, for an MQTT clause that a
// malformed-packet spec checks, as a clause: label; an ID that neither
// selects (a device-role requirement, an MQTT section judged by rules) is
// said to have no spec rather than given a filter that matches nothing.
func focusIDHint(focus []string, err error) string {
	if !errors.Is(err, conformance.ErrNoSpecMatched) {
		return ""
	}
	cat, cerr := conformance.LoadCatalog()
	if cerr != nil {
		return ""
	}
	var req, clause, none []string
	for _, f := range focus {
		if _, ok := cat.Lookup(f); !ok {
			continue
		}
		switch {
		case conformance.CheckMatches("req: containsAny "+f, nil) == nil:
			req = append(req, f)
		case conformance.CheckMatches("clause: containsAny "+f, nil) == nil:
			clause = append(clause, f)
		default:
			none = append(none, f)
		}
	}
	set := func(ids []string) string {
		if len(ids) == 1 {
			return ids[0]
		}
		return "{" + strings.Join(ids, ", ") + "}"
	}
	var filters []string
	if len(req) > 0 {
		filters = append(filters, "req: containsAny "+set(req))
	}
	if len(clause) > 0 {
		filters = append(filters, "clause: containsAny "+set(clause))
	}
	var hints []string
	if len(filters) > 0 {
		hints = append(hints, fmt.Sprintf("--focus matches the text of the specs, not their requirement IDs: select those with --label-filter '%s'", strings.Join(filters, " || ")))
	}
	if len(none) > 0 {
		verb := "has"
		if len(none) > 1 {
			verb = "have"
		}
		hints = append(hints, fmt.Sprintf("%s %s no spec in this suite (dps-conform list gives each requirement's specs)", strings.Join(none, ", "), verb))
	}
	return strings.Join(hints, "; ")
}

// profileHint names the failed requirements that hold under the default
// profile only (dps-2019, the MQTT page of 2019: CleanSession=0 and TLS
// 1.3 refused), which a service following today's pages fails by design,
// and the flag that judges it by those; "" when none failed.
func profileHint(res *conformance.Result) string {
	var only []string
	for _, id := range res.Failed() {
		if r, ok := res.Catalog.Lookup(id); ok && r.HoldsUnder(conformance.ProfileDPS2019) && !r.HoldsUnder(conformance.ProfileDPS2023) {
			only = append(only, id)
		}
	}
	if len(only) == 0 {
		return ""
	}
	verb, them := "hold", "them"
	if len(only) == 1 {
		verb, them = "holds", "it"
	}
	return fmt.Sprintf("dps-conform run: %s %s under the default profile %s only (the MQTT page of 2019); a service that follows today's pages fails %s by design: to judge it by those, give --profile %s",
		strings.Join(only, " and "), verb, conformance.ProfileDPS2019, them, conformance.ProfileDPS2023)
}

// rerunHint tells how to run again only the specs of the failed
// requirements, with the same seed, without overwriting this run's
// evidence; "" when nothing failed.
func rerunHint(failed []string, seed int64, out string) string {
	if len(failed) == 0 {
		return ""
	}
	return fmt.Sprintf("dps-conform run: to run the specs of the failed requirements again, keep the other flags and give --label-filter 'req: containsAny {%s}' --seed %d --out %s",
		strings.Join(failed, ", "), seed, shellQuote(rerunDir(out)))
}

// rerunDir is an --out beside out: out-rerun, or for "." or "/" a
// directory inside it.
func rerunDir(out string) string {
	out = filepath.Clean(out)
	if out == "." || out == string(filepath.Separator) {
		return filepath.Join(out, "dps-conform-results-rerun")
	}
	return out + "-rerun"
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@%+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// toolInfo names this binary for reports.
func toolInfo() reports.Tool {
	t := reports.Tool{Name: progName, Version: "(devel)"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return t
	}
	if bi.Main.Version != "" {
		t.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			t.Commit = s.Value
		}
	}
	return t
}

// writeReports writes the certification report of a run into --out:
// report.html (self-contained, opens offline), results.json (the report
// model), summary.md (for a CI job summary) and junit.xml (trimmed for CI
// viewers; Ginkgo's own JSON report stays as ginkgo-report.json). ctx bounds
// the TLS probe of the target identity.
func writeReports(ctx context.Context, cfg conformance.Config, res *conformance.Result) (*reports.Report, error) {
	tg := cfg.Target
	target := reports.Target{Name: tg.Name, Endpoint: tg.MQTT.String(), IDScope: tg.IDScope}
	if tg.WS.Scheme != "" {
		target.WSEndpoint = tg.WS.String()
	}
	target.TLSProbe = probeSummary(ctx, tg, cfg.Profile)
	abs, err := filepath.Abs(cfg.OutDir)
	if err != nil {
		return nil, &EnvError{Err: err}
	}
	rep := reports.Build(reports.Input{
		Ginkgo: res.Report, Catalog: res.Catalog, Role: conformance.RoleService, Profile: cfg.Profile,
		Tool: toolInfo(), Target: target, ResultsDir: abs,
	})
	if _, err := writeReportFiles(cfg.OutDir, rep, true); err != nil {
		return nil, err
	}
	if err := reports.WriteJUnit(filepath.Join(cfg.OutDir, "junit.xml"), res.Report); err != nil {
		return nil, &EnvError{Err: err}
	}
	return rep, nil
}

// configUsed is config.yaml in the results: what the run was given, with
// every secret replaced by [redacted] (keys are never written; certificate
// and key files are named, not copied).
type configUsed struct {
	Target      string   `yaml:"target"`
	WSTarget    string   `yaml:"wsTarget,omitempty"`
	IDScope     string   `yaml:"idScope"`
	CAFile      string   `yaml:"caFile,omitempty"`
	ServerName  string   `yaml:"serverName,omitempty"`
	Profile     string   `yaml:"profile"`
	LabelFilter string   `yaml:"labelFilter,omitempty"`
	Focus       []string `yaml:"focus,omitempty"`
	Faults      []string `yaml:"emulatorFaults,omitempty"`
	AllowQuota  bool     `yaml:"allowQuota"`
	Budget      int      `yaml:"registrationBudget,omitempty"`
	BudgetTgt   string   `yaml:"budgetTarget,omitempty"`
	Seed        int64    `yaml:"seed"`
	Credentials struct {
		RegistrationID         string `yaml:"registrationId,omitempty"`
		SymmetricKey           string `yaml:"symmetricKey,omitempty"`
		SecondaryKey           string `yaml:"secondaryKey,omitempty"`
		GroupKey               string `yaml:"groupKey,omitempty"`
		GroupSecondaryKey      string `yaml:"groupSecondaryKey,omitempty"`
		GroupID                string `yaml:"groupId,omitempty"`
		SlowGroupKey           string `yaml:"slowGroupKey,omitempty"`
		X509RegistrationID     string `yaml:"x509RegistrationId,omitempty"`
		X509CertFile           string `yaml:"x509CertFile,omitempty"`
		DisabledRegistrationID string `yaml:"disabledRegistrationId,omitempty"`
	} `yaml:"credentials"`
}

const redacted = "[redacted]"

func writeConfigUsed(cfg conformance.Config, f *runFlags) error {
	tg := cfg.Target
	c := configUsed{Target: tg.MQTT.String(), IDScope: tg.IDScope, ServerName: tg.ServerName,
		Profile: cfg.Profile, LabelFilter: cfg.LabelFilter,
		Focus: cfg.Focus, Faults: f.faults, AllowQuota: cfg.AllowQuota, CAFile: f.ca, Budget: tg.RegistrationBudget, Seed: cfg.Seed}
	if tg.Local {
		c.Target = "emulator (embedded: " + tg.MQTT.String() + ")"
	}
	if tg.WS.Scheme != "" {
		c.WSTarget = tg.WS.String()
	}
	if tg.BudgetMQTT.Scheme != "" && !tg.Local {
		c.BudgetTgt = tg.BudgetMQTT.String()
	}
	cr := tg.Credentials
	c.Credentials.RegistrationID = cr.RegistrationID
	if cr.SymmetricKey != "" {
		c.Credentials.SymmetricKey = redacted
	}
	if cr.SecondaryKey != "" {
		c.Credentials.SecondaryKey = redacted
	}
	if cr.GroupKey != "" {
		c.Credentials.GroupKey = redacted
	}
	if cr.GroupSecondaryKey != "" {
		c.Credentials.GroupSecondaryKey = redacted
	}
	if cr.SlowGroupKey != "" {
		c.Credentials.SlowGroupKey = redacted
	}
	c.Credentials.GroupID = cr.GroupID
	c.Credentials.X509RegistrationID = cr.X509RegistrationID
	c.Credentials.X509CertFile = f.cert
	c.Credentials.DisabledRegistrationID = cr.DisabledRegistrationID
	b, err := yaml.Marshal(c)
	if err != nil {
		return envErrorf("writing config.yaml: %v", err)
	}
	b = append([]byte("# The configuration of this run, secrets redacted (written by dps-conform run).\n"), b...)
	if err := os.WriteFile(filepath.Join(cfg.OutDir, "config.yaml"), b, 0o644); err != nil {
		return envErrorf("writing config.yaml: %v", err)
	}
	return nil
}

// probeSummary runs tlsprobe against the target's MQTT endpoint for the
// report's target identity (versions, suites, chain, DPS TLS policy); the
// TLS specs of the suite judge the same facts with evidence. A probe that
// fails is reported as such, not as an error of the run.
func probeSummary(ctx context.Context, tg conformance.Target, profile string) []string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := tlsprobe.Probe(ctx, tg.MQTT.Addr(), tlsprobe.Options{RootCAs: tg.RootCAs, ServerName: tg.ServerName, PlaintextPorts: []int{tg.MQTT.Port}, Timeout: 5 * time.Second})
	if err != nil {
		return []string{"probe failed: " + err.Error()}
	}
	var acc []string
	for _, v := range r.Versions {
		if v.Accepted {
			acc = append(acc, v.Version)
		}
	}
	lines := []string{"versions accepted: " + cmp.Or(strings.Join(acc, ", "), "none"), "TLS 1.2 suites accepted: " + suitesAccepted(r)}
	if len(r.Chain) > 0 {
		c := r.Chain[0]
		chain := fmt.Sprintf("certificate: %s, issued by %s, %s, valid to %s", c.Subject, c.Issuer, c.Key, c.NotAfter.UTC().Format("2006-01-02"))
		if r.ChainError != "" {
			chain += "; does not verify: " + r.ChainError
		}
		lines = append(lines, chain)
	}
	if r.Incomplete != "" {
		lines = append(lines, "probe incomplete: "+r.Incomplete+"; not probed: "+strings.Join(r.NotProbed, ", "))
	}
	vs := tlsprobe.PolicyDPS(r, profile)
	switch {
	case len(vs) == 0 && r.Incomplete != "":
		lines = append(lines, "DPS TLS policy: no verdict (the probe was incomplete)")
	case len(vs) == 0:
		lines = append(lines, "DPS TLS policy: conformant")
	}
	for _, v := range vs {
		lines = append(lines, "DPS TLS policy: "+v.ID+" "+v.Msg)
	}
	return lines
}

// writeReportFiles renders rep into dir: report.html and summary.md,
// junit.xml for a device run (a service run's comes from Ginkgo's report,
// reports.WriteJUnit), and results.json (the model itself) when withModel.
// It returns the names written. run, device and report render share it.
func writeReportFiles(dir string, rep *reports.Report, withModel bool) ([]string, error) {
	files := []struct {
		name string
		f    func(io.Writer) error
	}{
		{"report.html", func(w io.Writer) error { return reports.WriteHTML(w, rep) }},
		{"summary.md", func(w io.Writer) error { return reports.WriteMarkdown(w, rep) }},
	}
	if rep.Role == string(conformance.RoleDevice) {
		files = append(files, struct {
			name string
			f    func(io.Writer) error
		}{"junit.xml", func(w io.Writer) error { return reports.WriteReportJUnit(w, rep) }})
	}
	if withModel {
		files = append(files, struct {
			name string
			f    func(io.Writer) error
		}{"results.json", rep.WriteJSON})
	}
	var written []string
	for _, fl := range files {
		var b bytes.Buffer
		if err := fl.f(&b); err != nil {
			return written, envErrorf("rendering %s: %v", fl.name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, fl.name), b.Bytes(), 0o644); err != nil {
			return written, envErrorf("writing %s: %v", fl.name, err)
		}
		written = append(written, fl.name)
	}
	return written, nil
}

// sealResults writes the SHA-256 manifest of the results directory and,
// with --bundle, packs it.
func sealResults(dir, bundle string) error {
	if _, err := reports.WriteManifest(dir, toolString()); err != nil {
		return envErrorf("writing the manifest of %s: %v", dir, err)
	}
	if bundle == "" {
		return nil
	}
	if err := reports.Pack(dir, bundle); err != nil {
		return envErrorf("--bundle %s: %v", bundle, err)
	}
	return nil
}

// checkOutRole refuses an --out directory that holds the results of the
// other command (run judges a service, device a device): writing over
// them would leave one directory mixing both, whose manifest then
// verifies. The results of an earlier run of the same command are
// replaced, as documented.
func checkOutRole(dir, role string) error {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return usageErrorf("--out %s is a file, not a directory", dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return nil // no results there (or none readable: the writes will say)
	}
	var got struct {
		Role string `json:"role"`
	}
	if json.Unmarshal(b, &got) != nil || got.Role == "" || got.Role == role {
		return nil
	}
	cmd := map[string]string{string(conformance.RoleService): "run", string(conformance.RoleDevice): "device"}[got.Role]
	return usageErrorf("--out %s holds the results of 'dps-conform %s' (results.json role %q): give another directory", dir, cmd, got.Role)
}

// reachable connects to each endpoint of the target once before the suite
// (TCP and a TLS handshake, each within timeout), so that an endpoint that
// does not answer, does not speak TLS, or whose certificate does not verify
// is exit code 3 with one clear message, not a table of failures (or a
// spec timeout per spec).
func reachable(ctx context.Context, t conformance.Target, timeout time.Duration) error {
	err := t.CheckReachable(ctx, timeout)
	var ue *conformance.UnreachableError
	if !errors.As(err, &ue) {
		return err
	}
	// Name the endpoint as the user gave it.
	label := "target " + ue.Target.String()
	main, _ := transport.ParseTarget(t.Name) // t.Name is --target as given ("embedded emulator" parses to nothing)
	wssTarget := main.Scheme == transport.SchemeWSS
	switch ue.Endpoint {
	case "MQTT":
		if wssTarget {
			label = fmt.Sprintf("target %s: its MQTT endpoint %s (the target's host on 8883 unless --mqtt-target names it)", t.Name, ue.Target)
		}
	case "WebSocket":
		if !wssTarget {
			label = "--ws-target " + ue.Target.String()
		}
	case "budget":
		label = "--budget-target " + ue.Target.String()
	}
	return envErrorf("%s", ue.Describe(label))
}

// versionString is the version written into captures.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	return versionLine(bi, ok)
}

// ---- the embedded emulator ----

type embedded struct {
	srv     *emulator.Server
	budget  *emulator.Server // the instance DPS-REG-010 spends the budget of
	reg     *registry.Registry
	webhook *http.Server // the slow group's custom allocation webhook
	dir     string
	target  conformance.Target
	profile emulator.Profile
}

func (e *embedded) close() {
	e.srv.Close() // cancels the webhook calls still waiting
	e.budget.Close()
	e.webhook.Close()
	e.reg.Close()
	os.RemoveAll(e.dir)
}

// Registration ids of the embedded emulator's enrollments.
const (
	embeddedScope      = "0ne00DC0FFE"
	embeddedDevice     = "dps-conform-device"
	embeddedX509Device = "dps-conform-x509"
	embeddedDisabled   = "dps-conform-disabled"
	embeddedGroup      = "dps-conform-group"
	// embeddedSlowDelay is how long the slow group's allocation webhook
	// takes (DPS-REG-009 needs a registration in progress).
	embeddedSlowDelay = 2 * time.Second
	// embeddedBudget is the registrations per minute of the budget
	// instance (DPS-REG-010 sends one more).
	embeddedBudget = 10
	embeddedHub    = "hub1.azure-devices.net"
)

// startEmbedded starts the reference emulator on loopback ephemeral ports
// with fresh keys, a fresh PKI and retry-after 0 (ARCHITECTURE.md §3: no
// set-up), and describes it as a suite target.
func startEmbedded(ctx context.Context, faultNames []string, profile string, logTo io.Writer) (*embedded, error) {
	p, faults, err := parseProfileAndFaults(profile, "--emulator-fault", faultNames)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "dps-conform-emulator-")
	if err != nil {
		return nil, envErrorf("embedded emulator: %v", err)
	}
	e := &embedded{dir: dir, profile: p}
	fail := func(err error) (*embedded, error) {
		os.RemoveAll(dir)
		return nil, envErrorf("embedded emulator: %v", err)
	}
	now := time.Now()
	pki, err := transport.LoadOrCreateServerPKI(dir, nil, transport.ECDSAP256, now)
	if err != nil {
		return fail(err)
	}
	devCert, err := pki.Authority.IssueClient(embeddedX509Device, transport.ECDSAP256, now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		return fail(err)
	}
	// The individual device and the group, keys[0] and keys[2], also
	// have secondary keys, keys[4] and keys[5] (DPS-AUTH-012).
	keys := []string{randomKey(), randomKey(), randomKey(), randomKey(), randomKey(), randomKey()}
	hook, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	e.webhook = &http.Server{Handler: registry.SlowAllocationWebhook(embeddedSlowDelay), ReadHeaderTimeout: 5 * time.Second}
	go e.webhook.Serve(hook)
	fail = func(err error) (*embedded, error) {
		e.webhook.Close()
		os.RemoveAll(dir)
		return nil, envErrorf("embedded emulator: %v", err)
	}
	sym := func(k string) registry.AttestationMechanism {
		return registry.AttestationMechanism{Type: registry.AttestationSymmetricKey, SymmetricKey: &registry.SymmetricKeyAttestation{PrimaryKey: k}}
	}
	symPair := func(primary, secondary string) registry.AttestationMechanism {
		m := sym(primary)
		m.SymmetricKey.SecondaryKey = secondary
		return m
	}
	cfg := &registry.Config{
		IDScope:    embeddedScope,
		LinkedHubs: []registry.LinkedHub{{Name: embeddedHub}},
		Enrollments: []registry.IndividualEnrollment{
			{RegistrationID: embeddedDevice, Attestation: symPair(keys[0], keys[4])},
			{RegistrationID: embeddedDisabled, Attestation: sym(keys[1]), ProvisioningStatus: registry.ProvisioningDisabled},
			{RegistrationID: embeddedX509Device, Attestation: registry.AttestationMechanism{
				Type: registry.AttestationX509,
				X509: &registry.X509Attestation{ClientCertificates: &registry.X509Certificates{
					Primary: &registry.X509CertificateWithInfo{Certificate: string(transport.EncodeCertPEM(devCert.Certificate[0]))},
				}},
			}},
		},
		EnrollmentGroups: []registry.EnrollmentGroup{
			{EnrollmentGroupID: embeddedGroup, Attestation: symPair(keys[2], keys[5])},
			registry.SlowGroup("dps-conform-slow", keys[3], "http://"+hook.Addr().String()+"/allocate"),
		},
	}
	e.reg, err = registry.Open(ctx, registry.Options{Config: cfg})
	if err != nil {
		return fail(err)
	}
	srvCfg := emulator.Config{
		MQTTAddr: "127.0.0.1:0", WSAddr: "127.0.0.1:0",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pki.Certificate}},
		CAFile:    pki.CAFile, Registry: e.reg, Profile: p, RetryAfter: 0, Faults: faults,
		Limits: emulator.DefaultLimits(),
	}
	e.srv, err = emulator.New(srvCfg)
	if err == nil {
		err = e.srv.Start(ctx)
	}
	if err != nil {
		e.reg.Close()
		return fail(err)
	}
	// The budget instance: the same enrollments and faults, MQTT over TLS
	// only, with a registration budget DPS-REG-010 may spend.
	e.budget, err = emulator.New(srvCfg.BudgetInstance(embeddedBudget))
	if err == nil {
		err = e.budget.Start(ctx)
	}
	if err != nil {
		e.srv.Close()
		e.reg.Close()
		return fail(err)
	}
	budget, _ := transport.ParseTarget("mqtts://" + e.budget.Ready().MQTT)
	ready := e.srv.Ready()
	mqtt, _ := transport.ParseTarget("mqtts://" + ready.MQTT)
	ws, _ := transport.ParseTarget("wss://" + ready.WSS + transport.DefaultWSPath)
	pool := x509.NewCertPool()
	pool.AddCert(pki.CA)
	name := "embedded emulator"
	if len(faults) > 0 {
		name += " (faults: " + strings.Join(faultNames, ", ") + ")"
	}
	e.target = conformance.Target{
		Name: name, MQTT: mqtt, WS: ws, RootCAs: pool, IDScope: ready.IDScope, Local: true,
		BudgetMQTT: budget, RegistrationBudget: embeddedBudget,
		Credentials: conformance.Credentials{
			RegistrationID: embeddedDevice, SymmetricKey: keys[0], GroupKey: keys[2], SlowGroupKey: keys[3],
			SecondaryKey: keys[4], GroupSecondaryKey: keys[5], GroupID: embeddedGroup,
			X509: &devCert, X509RegistrationID: embeddedX509Device,
			DisabledRegistrationID: embeddedDisabled, DisabledKey: keys[1],
		},
	}
	fmt.Fprintf(logTo, "dps-conform run: embedded emulator on mqtts://%s and wss://%s (id scope %s, retry-after 0)\n", ready.MQTT, ready.WSS, ready.IDScope)
	return e, nil
}

// ---- remote targets ----

// targetFileFields are the top-level fields of a target file, for errors.
const targetFileFields = "target, mqttTarget, wsTarget, budgetTarget, idScope, caFile, serverName, profile, registrationBudget, individual, group, slowGroup, x509, disabled"

// targetFile is the --config file of "run".
type targetFile struct {
	Target     string `yaml:"target"`
	MQTTTarget string `yaml:"mqttTarget"`
	WSTarget   string `yaml:"wsTarget"`
	// BudgetTarget is Target.BudgetMQTT: where DPS-REG-010 spends a budget.
	BudgetTarget string `yaml:"budgetTarget"`
	IDScope      string `yaml:"idScope"`
	CAFile       string `yaml:"caFile"`
	ServerName   string `yaml:"serverName"`
	Profile      string `yaml:"profile"`
	Budget       int    `yaml:"registrationBudget"`
	Individual   struct {
		RegistrationID string `yaml:"registrationId"`
		SymmetricKey   string `yaml:"symmetricKey"`
		SecondaryKey   string `yaml:"secondaryKey"`
	} `yaml:"individual"`
	Group struct {
		EnrollmentGroupID string `yaml:"enrollmentGroupId"`
		SymmetricKey      string `yaml:"symmetricKey"`
		SecondaryKey      string `yaml:"secondaryKey"`
	} `yaml:"group"`
	SlowGroup struct {
		SymmetricKey string `yaml:"symmetricKey"`
	} `yaml:"slowGroup"`
	X509 struct {
		CertFile string `yaml:"certFile"`
		KeyFile  string `yaml:"keyFile"`
	} `yaml:"x509"`
	Disabled struct {
		RegistrationID string `yaml:"registrationId"`
		SymmetricKey   string `yaml:"symmetricKey"`
	} `yaml:"disabled"`
}

// remoteTarget builds the target of --target/--config; flags override the
// file.
func (f *runFlags) remoteTarget() (conformance.Target, string, error) {
	var tf targetFile
	if f.config != "" {
		b, err := readInputFile("--config", f.config)
		if err != nil {
			return conformance.Target{}, "", err
		}
		if err := decodeYAMLFile("--config", f.config, b, &tf, "a target file", targetFileFields); err != nil && !errors.Is(err, io.EOF) {
			return conformance.Target{}, "", err
		}
		// Relative file names in the config are relative to it.
		base := filepath.Dir(f.config)
		for _, p := range []*string{&tf.CAFile, &tf.X509.CertFile, &tf.X509.KeyFile} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(base, *p)
			}
		}
	}
	over := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	over(&tf.Target, f.target)
	over(&tf.MQTTTarget, f.mqttTarget)
	over(&tf.WSTarget, f.wsTarget)
	over(&tf.BudgetTarget, f.budgetTarget)
	over(&tf.IDScope, f.idScope)
	over(&tf.CAFile, f.ca)
	over(&tf.ServerName, f.serverName)
	over(&tf.Individual.RegistrationID, f.regID)
	over(&tf.Individual.SymmetricKey, f.symKey)
	over(&tf.Individual.SecondaryKey, f.secondaryKey)
	over(&tf.Group.SymmetricKey, f.groupKey)
	over(&tf.Group.SecondaryKey, f.groupSecondaryKey)
	over(&tf.Group.EnrollmentGroupID, f.groupID)
	over(&tf.SlowGroup.SymmetricKey, f.slowGroupKey)
	over(&tf.X509.CertFile, f.cert)
	over(&tf.X509.KeyFile, f.key)
	over(&tf.Disabled.RegistrationID, f.disabledID)
	over(&tf.Disabled.SymmetricKey, f.disabledKey)
	if f.budget != 0 {
		tf.Budget = f.budget
	}

	// from names a value as the user gave it: its flag, or its field in
	// the --config file.
	from := func(flagName, field, flagValue string) string {
		if flagValue != "" || f.config == "" {
			return flagName
		}
		return fmt.Sprintf("%s in %s", field, f.config)
	}
	if tf.Target == "" {
		return conformance.Target{}, "", usageErrorf("--config %s: no target (target: mqtts://host:8883 or wss://host/$iothub/websocket)", f.config)
	}
	t := conformance.Target{Name: tf.Target, IDScope: tf.IDScope, ServerName: tf.ServerName, RegistrationBudget: tf.Budget}
	main, err := transport.ParseTarget(tf.Target)
	if err != nil {
		return t, "", &UsageError{Err: fmt.Errorf("%s: %w", from("--target", "target", f.target), err)}
	}
	parseInto := func(flagName, url, scheme string, dst *transport.Target) error {
		if url == "" {
			return nil
		}
		tg, err := transport.ParseTarget(url)
		if err != nil {
			return &UsageError{Err: fmt.Errorf("%s: %w", flagName, err)}
		}
		if tg.Scheme != scheme {
			return usageErrorf("%s %q: want a %s:// URL", flagName, url, scheme)
		}
		*dst = tg
		return nil
	}
	if err := parseInto(from("--budget-target", "budgetTarget", f.budgetTarget), tf.BudgetTarget, "mqtts", &t.BudgetMQTT); err != nil {
		return t, "", err
	}
	switch main.Scheme {
	case "mqtts":
		t.MQTT = main
		if err := parseInto(from("--ws-target", "wsTarget", f.wsTarget), tf.WSTarget, "wss", &t.WS); err != nil {
			return t, "", err
		}
	case "wss":
		t.WS = main
		if err := parseInto(from("--mqtt-target", "mqttTarget", f.mqttTarget), tf.MQTTTarget, "mqtts", &t.MQTT); err != nil {
			return t, "", err
		}
		if t.MQTT.Scheme == "" {
			// DPS serves both on one host: MQTT over TLS on 8883.
			t.MQTT = transport.Target{Scheme: "mqtts", Host: main.Host, Port: transport.DefaultPort("mqtts")}
		}
	default:
		return t, "", usageErrorf("--target %q: DPS serves only mqtts:// and wss:// (a plaintext target cannot be conformant)", tf.Target)
	}
	if tf.CAFile != "" {
		pool, err := loadCAPool(from("--ca", "caFile", f.ca), tf.CAFile)
		if err != nil {
			return t, "", err
		}
		t.RootCAs = pool
	}
	cr := &t.Credentials
	cr.RegistrationID, cr.SymmetricKey = tf.Individual.RegistrationID, tf.Individual.SymmetricKey
	cr.GroupKey, cr.SlowGroupKey = tf.Group.SymmetricKey, tf.SlowGroup.SymmetricKey
	cr.SecondaryKey, cr.GroupSecondaryKey = tf.Individual.SecondaryKey, tf.Group.SecondaryKey
	cr.GroupID = tf.Group.EnrollmentGroupID
	cr.DisabledRegistrationID, cr.DisabledKey = tf.Disabled.RegistrationID, tf.Disabled.SymmetricKey
	for _, k := range []struct{ name, v string }{{from("--symmetric-key", "individual.symmetricKey", f.symKey), cr.SymmetricKey},
		{from("--group-key", "group.symmetricKey", f.groupKey), cr.GroupKey}, {from("--slow-group-key", "slowGroup.symmetricKey", f.slowGroupKey), cr.SlowGroupKey},
		{from("--secondary-key", "individual.secondaryKey", f.secondaryKey), cr.SecondaryKey},
		{from("--group-secondary-key", "group.secondaryKey", f.groupSecondaryKey), cr.GroupSecondaryKey},
		{from("--disabled-key", "disabled.symmetricKey", f.disabledKey), cr.DisabledKey}} {
		if k.v != "" {
			if _, err := base64.StdEncoding.DecodeString(k.v); err != nil {
				return t, "", usageErrorf("%s: not base64: %v", k.name, err)
			}
		}
	}
	// The id scope and the registration ids go into every username and
	// topic; one that breaks their form would be refused by the target,
	// and every spec would fail: a verdict on the user's typo.
	if i := strings.IndexByte(t.IDScope, '/'); i >= 0 {
		return t, "", usageErrorf("%s %q: '/' at byte %d: the username {idScope}/registrations/{registrationId}/… would not be of the DPS form", from("--id-scope", "idScope", f.idScope), t.IDScope, i)
	}
	for _, id := range []struct{ name, v string }{{from("--registration-id", "individual.registrationId", f.regID), cr.RegistrationID},
		{from("--disabled-registration-id", "disabled.registrationId", f.disabledID), cr.DisabledRegistrationID}} {
		if id.v == "" {
			continue
		}
		if err := dps.ValidateRegistrationID(id.v); err != nil {
			return t, "", usageErrorf("%s: %v", id.name, err)
		}
	}
	if tf.X509.CertFile != "" || tf.X509.KeyFile != "" {
		if tf.X509.CertFile == "" || tf.X509.KeyFile == "" {
			return t, "", usageErrorf("--cert and --key go together")
		}
		cert, err := loadKeyPair(from("--cert", "x509.certFile", f.cert), tf.X509.CertFile, from("--key", "x509.keyFile", f.key), tf.X509.KeyFile)
		if err != nil {
			return t, "", err
		}
		id, err := certRegistrationID(from("--cert", "x509.certFile", f.cert), cert)
		if err != nil {
			return t, "", err
		}
		cr.X509, cr.X509RegistrationID = &cert, id
	}
	// The pairings of the credentials name a value as the user gave it.
	budgetFlag := ""
	if f.budget != 0 {
		budgetFlag = fmt.Sprint(f.budget)
	}
	settings := map[string]struct{ field, flagValue string }{
		"--symmetric-key": {"individual.symmetricKey", f.symKey}, "--secondary-key": {"individual.secondaryKey", f.secondaryKey},
		"--group-id": {"group.enrollmentGroupId", f.groupID}, "--registration-budget": {"registrationBudget", budgetFlag},
	}
	if err := t.ValidateNamed(func(flag string) string {
		if s, ok := settings[flag]; ok {
			return from(flag, s.field, s.flagValue)
		}
		return flag
	}); err != nil {
		return t, "", &UsageError{Err: err}
	}
	return t, tf.Profile, nil
}
