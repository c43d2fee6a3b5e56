package conformance_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/transport"
)

// suiteBudget is the registrations per minute of the budget instance the
// suite's emulators serve for DPS-REG-010.
const suiteBudget = 10

// emulatorTarget describes an emulatortest emulator as a suite target.
func emulatorTarget(t testing.TB, e *emulatortest.Emulator) conformance.Target {
	t.Helper()
	mqtt, err := transport.ParseTarget("mqtts://" + e.MQTTAddr)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := transport.ParseTarget(e.WSURL)
	if err != nil {
		t.Fatal(err)
	}
	cert := e.ClientCert(t, emulatortest.X509DeviceID)
	var budget transport.Target
	n := 0
	if e.BudgetAddr != "" {
		if budget, err = transport.ParseTarget("mqtts://" + e.BudgetAddr); err != nil {
			t.Fatal(err)
		}
		n = suiteBudget
	}
	return conformance.Target{
		BudgetMQTT: budget, RegistrationBudget: n,
		Name: "emulatortest", MQTT: mqtt, WS: ws, RootCAs: e.CAPool, ServerName: "localhost",
		IDScope: e.IDScope, Local: true,
		Credentials: conformance.Credentials{
			RegistrationID: emulatortest.SymDeviceID, SymmetricKey: emulatortest.SymDeviceKey,
			GroupKey: emulatortest.SymGroupKey, SlowGroupKey: emulatortest.SlowGroupKey,
			SecondaryKey: emulatortest.SymDeviceSecondaryKey, GroupSecondaryKey: emulatortest.SymGroupSecondaryKey,
			GroupID: emulatortest.SymGroupID,
			X509:    &cert, X509RegistrationID: emulatortest.X509DeviceID,
			DisabledRegistrationID: emulatortest.DisabledDeviceID, DisabledKey: emulatortest.DisabledDeviceKey,
		},
	}
}

func faultNames() []string {
	var out []string
	for _, f := range emulator.Faults() {
		out = append(out, string(f.Name))
	}
	return out
}

func runSuite(t *testing.T, faults []emulator.Fault, labelFilter string) *conformance.Result {
	t.Helper()
	return runSuiteProfile(t, emulator.ProfileDPS2019, faults, labelFilter)
}

func runSuiteProfile(t *testing.T, profile emulator.Profile, faults []emulator.Fault, labelFilter string) *conformance.Result {
	t.Helper()
	e := emulatortest.Start(t, emulatortest.Options{Faults: faults, Profile: profile, Budget: suiteBudget})
	var progress strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := t.TempDir()
	if dir := os.Getenv("DPSCONFORM_SUITE_OUT"); dir != "" {
		// Keep the evidence for a look after the test, a directory per
		// test and profile: TestFaultsExact's child processes run at once.
		out = filepath.Join(dir, filepath.FromSlash(t.Name()), string(profile))
	}
	res, err := conformance.Run(ctx, conformance.Config{
		Target: emulatorTarget(t, e), OutDir: out, LabelFilter: labelFilter, Profile: string(profile),
		Progress: &progress, KnownFaults: faultNames(), CloseWait: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() || os.Getenv("DPSCONFORM_SUITE_LOG") != "" {
		t.Log("\n" + progress.String())
	}
	return res
}

// TestSuite runs the whole service suite against the in-process emulator:
// every spec passes (or is skipped with its reason, for the other profile).
func TestSuite(t *testing.T) {
	res := runSuite(t, nil, "")
	if len(res.Verdicts) < 40 {
		t.Errorf("%d specs ran; the suite has more", len(res.Verdicts))
	}
	for _, v := range res.Verdicts {
		switch {
		case v.Failed():
			t.Errorf("%s %s: %s\n%s", v.State, v.ID, v.Text, v.Message)
		case v.State == "skipped" && holds(res.Catalog, v.ID, conformance.ProfileDPS2019):
			t.Errorf("skipped %s %s: %s", v.ID, v.Text, v.Message)
		}
	}
}

// TestSuiteProfile2023 runs the suite under dps-2023 against an emulator
// serving that profile: CleanSession=0 is accepted there (DPS-SESS-002 runs
// and passes), and the dps-2019-only specs are skipped with the reason;
// under the session-present fault DPS-SESS-002 fails.
func TestSuiteProfile2023(t *testing.T) {
	res := runSuiteProfile(t, emulator.ProfileDPS2023, nil, "")
	skipped := map[string]bool{}
	for _, v := range res.Verdicts {
		switch {
		case v.Failed():
			t.Errorf("%s %s: %s\n%s", v.State, v.ID, v.Text, v.Message)
		case v.State == "skipped":
			skipped[v.ID] = true
			if !strings.Contains(v.Message, "holds under dps-2019") {
				t.Errorf("skipped %s for %q", v.ID, v.Message)
			}
		}
	}
	if !skipped["DPS-SESS-001"] || !skipped["TLS-004"] || skipped["DPS-SESS-002"] {
		t.Errorf("skipped %v, want DPS-SESS-001 and TLS-004 (dps-2019 only) and not DPS-SESS-002", skipped)
	}
	res = runSuiteProfile(t, emulator.ProfileDPS2023, []emulator.Fault{emulator.FaultSessionPresent}, "req: containsAny DPS-SESS-002")
	if len(res.Verdicts) != 1 || !res.Verdicts[0].Failed() {
		t.Errorf("DPS-SESS-002 under fault session-present: %+v, want one failed spec", res.Verdicts)
	}
}

// TestWSEndpointRefused: a WebSocket spec whose dial is refused fails with
// the dial's error, not only "the capture has 0 MQTT conversations".
func TestWSEndpointRefused(t *testing.T) {
	e := emulatortest.Start(t, emulatortest.Options{})
	target := emulatorTarget(t, e)
	target.WS.Port = 1 // nothing listens there
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := conformance.Run(ctx, conformance.Config{Target: target, OutDir: t.TempDir(), LabelFilter: "req: containsAny DPS-WS-001",
		KnownFaults: faultNames(), CloseWait: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Verdicts) != 1 || !res.Verdicts[0].Failed() || !strings.Contains(res.Verdicts[0].Message, "connecting over WSS: ") ||
		!strings.Contains(res.Verdicts[0].Message, "connection refused") {
		t.Fatalf("verdicts %+v", res.Verdicts)
	}
}

// cancelOnWrite cancels a context at its first write (Config.Progress:
// after the first verdict).
type cancelOnWrite struct{ cancel context.CancelFunc }

func (c cancelOnWrite) Write(p []byte) (int, error) { c.cancel(); return len(p), nil }

// TestRunCancelled: a context cancelled before the run is an error before
// any spec; one cancelled during the run (no signal, so Ginkgo does not
// know) aborts the suite before its next spec, and the specs so stopped
// are interrupted, not failed.
func TestRunCancelled(t *testing.T) {
	e := emulatortest.Start(t, emulatortest.Options{})
	cfg := conformance.Config{Target: emulatorTarget(t, e), OutDir: t.TempDir(), KnownFaults: faultNames(),
		LabelFilter: "area: containsAny connect", CloseWait: 500 * time.Millisecond}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := conformance.Run(done, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with a cancelled context: %v, want context.Canceled", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg.Progress = cancelOnWrite{cancel}
	res, err := conformance.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	passed, stopped := 0, 0
	for _, v := range res.Verdicts {
		switch {
		case v.Failed():
			t.Errorf("%s %s after the cancel: %s", v.State, v.ID, v.Message)
		case v.State == "passed":
			passed++
		case v.Interrupted():
			stopped++
		}
	}
	if passed != 1 || stopped == 0 {
		t.Errorf("%d passed (want the 1 before the cancel), %d interrupted (want some): %+v", passed, stopped, res.Verdicts)
	}
}
