package conformance_test

import (
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/internal/testproc"
)

// notJudgedByServiceSpecs are the emulator faults no service spec names,
// each with the reason. Every other fault must be named by a spec.
var notJudgedByServiceSpecs = map[string]string{
	"assign-before-retry-after": "a device-role scenario (does the device poll before retry-after); the service suite runs with retry-after 0",
	"accept-qos2-publish":       "no documented DPS behaviour for QoS 2 requests (Part A §9 is silent); kept for device-role scenarios",
}

// broadFaults break a step every flow needs: under them the specs naming
// them must fail, and others may fail too.
var broadFaults = map[string]string{
	"close-after-connack": "every session ends after CONNACK",
	"never-assign":        "no registration is ever assigned",
}

func specsByFault(t *testing.T) (map[string][]string, []conformance.SpecInfo) {
	t.Helper()
	_, specs, err := conformance.Preview(conformance.Config{Target: conformance.Target{Name: "preview"}, KnownFaults: faultNames()})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string][]string{}
	for _, s := range specs {
		if len(s.Faults) == 0 {
			t.Errorf("spec %q (%s) names no emulator fault: nothing proves it can fail", s.Text, s.ID)
		}
		for _, f := range s.Faults {
			by[f] = append(by[f], s.Text)
		}
	}
	for excused := range notJudgedByServiceSpecs {
		if _, err := emulator.ParseFault(excused); err != nil {
			t.Errorf("notJudgedByServiceSpecs excuses %s: %v", excused, err)
		}
	}
	for _, f := range emulator.Faults() {
		name := string(f.Name)
		_, named := by[name]
		reason, excused := notJudgedByServiceSpecs[name]
		switch {
		case named && excused:
			t.Errorf("fault %s is named by specs and excused (%s): drop the excuse", name, reason)
		case !named && !excused:
			t.Errorf("fault %s is named by no service spec and not excused", name)
		}
	}
	return by, specs
}

// holds reports whether requirement id holds under profile.
func holds(cat *conformance.Catalog, id, profile string) bool {
	req, ok := cat.Lookup(id)
	return ok && req.HoldsUnder(profile)
}

// selfTestProfiles are the profiles the self-test runs a fault's specs
// under: each spec under the default profile if it holds there, else under
// the first of its own.
var selfTestProfiles = []string{conformance.ProfileDPS2019, conformance.ProfileDPS2023}

// profileFor is the profile TestFaultsExact runs s under when it judges
// the specs of a fault.
func profileFor(s conformance.SpecInfo) string {
	for _, p := range selfTestProfiles {
		if slices.Contains(s.Profiles, p) {
			return p
		}
	}
	return ""
}

// wrongReason says why a failed verdict proves nothing about a fault: the
// suite's own mistake, a capture with no evidence to judge, a panic or a
// timeout; "" for a failure the spec's checks reported.
func wrongReason(v conformance.Verdict) string {
	switch {
	case v.State != "failed":
		return "it " + v.State
	case strings.HasPrefix(v.Message, "suite bug"):
		return "from a suite bug"
	case strings.Contains(v.Message, "holds no evidence to judge"):
		return "for want of evidence"
	case strings.HasPrefix(v.Message, conformance.NotByRule):
		return "with no finding of its rule"
	}
	return ""
}

// faultSample are the faults TestFaultsExact runs the whole suite for
// under -race and -short (it runs the specs naming each other fault).
var faultSample = []string{"grant-qos2", "accept-tls13", "no-close-after-401", "strict-sas"}

// faultChildren is how many child processes of the test binary share the
// matrix: a suite run waits on the network most of the time, and one
// process can run only one at a time (conformance.Run).
const faultChildren = 4

// slowFaults take the longest (the whole suite, 5-15 s each, against 1 s
// for most): the children start with them, so that none is left to the
// end. Only the order depends on this list.
var slowFaults = []string{"ignore-malformed", "accept-invalid-connect", "no-pingresp", "ignore-qos0-requests", "no-close-after-refusal"}

// TestFaultsExact is the self-test of the suite, one subtest per emulator
// fault that specs name. It runs the whole suite (dps-2019) against an
// emulator with the fault switched on and requires that exactly the specs
// naming the fault fail, each for a reason of its own checks: a fault that
// also breaks other specs, or a spec that fails for a fault it does not
// name, is a finding about the emulator or the suite; it is the "exactly
// its specs" promise of `dps-conform run --emulator-fault NAME`. The specs
// naming the fault whose requirements hold only under dps-2023 run under
// that profile, and must fail too. Under -race and -short the whole suite
// runs for faultSample only, and for each other fault the specs naming it
// (under dps-2019, or dps-2023 for theirs), which must all fail. (TestSuite
// shows every spec passes without faults.) The faults are shared among
// faultChildren child processes (internal/testproc).
func TestFaultsExact(t *testing.T) {
	by, specs := specsByFault(t)
	info := map[string]conformance.SpecInfo{}
	for _, s := range specs {
		info[s.Text] = s
		if profileFor(s) == "" {
			t.Errorf("spec %q holds under %v, none of %v", s.Text, s.Profiles, selfTestProfiles)
		}
	}
	faults := slices.Sorted(maps.Keys(by))
	for i, f := range slowFaults {
		if j := slices.Index(faults, f); j >= 0 {
			faults = slices.Insert(slices.Delete(faults, j, j+1), i, f)
		}
	}
	testproc.Matrix(t, faults, faultChildren, func(t *testing.T, f string) {
		whole := !raceEnabled && !testing.Short() || slices.Contains(faultSample, f)
		checkFault(t, f, by[f], info, whole)
	})
	t.Parallel() // the children run on while this process runs the other tests
}

// checkFault is TestFaultsExact for fault f, which specs named: with
// whole, the whole suite runs under dps-2019, else only the specs naming
// f; the specs of named whose requirements hold only under dps-2023 run
// under dps-2023.
func checkFault(t *testing.T, f string, named []string, info map[string]conformance.SpecInfo, whole bool) {
	ran := map[string]bool{}
	for _, p := range selfTestProfiles {
		var ids, want []string
		for _, text := range named {
			if s := info[text]; profileFor(s) == p {
				want = append(want, text)
				if !slices.Contains(ids, s.ID) {
					ids = append(ids, s.ID)
				}
			}
		}
		wholeRun := whole && p == conformance.ProfileDPS2019
		if len(ids) == 0 && !wholeRun {
			continue
		}
		filter := "fault: containsAny " + f
		switch {
		case wholeRun:
			filter = "" // with no spec naming f: f must break nothing here
		case p != conformance.ProfileDPS2019:
			filter += " && req: containsAny " + strings.Join(ids, ", ")
		}
		res := runSuiteProfile(t, emulator.Profile(p), []emulator.Fault{emulator.Fault(f)}, filter)
		var failed []string
		for _, v := range res.Verdicts {
			// A focused run ran only specs naming f: all are judged.
			judged := filter != "" || slices.Contains(want, v.Text)
			switch {
			case v.Failed():
				failed = append(failed, v.Text)
				if !judged {
					break
				}
				ran[v.Text] = true
				if why := wrongReason(v); why != "" {
					t.Errorf("%s %q under fault %s (%s) failed, but %s: %s", v.ID, v.Text, f, p, why, v.Message)
				}
			case !judged:
			case v.State == "skipped" && !holds(res.Catalog, v.ID, p):
				// judged under its own profile
			default:
				t.Errorf("%s %s %q under fault %s (%s): it must fail", v.State, v.ID, v.Text, f, p)
			}
		}
		if _, broad := broadFaults[f]; broad || filter != "" {
			continue // the specs naming f must fail; others may too
		}
		sort.Strings(failed)
		sort.Strings(want)
		if !slices.Equal(failed, want) {
			t.Errorf("under fault %s\nfailed: %q\nwant:   %q", f, failed, want)
		}
	}
	for _, text := range named {
		if !ran[text] {
			t.Errorf("spec %q names fault %s but did not run and fail", text, f)
		}
	}
}
