package conformance_test

import (
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/emulator"
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

// profileFor is the profile TestSelfTest runs s under.
func profileFor(s conformance.SpecInfo) string {
	for _, p := range selfTestProfiles {
		if slices.Contains(s.Profiles, p) {
			return p
		}
	}
	return ""
}

// TestSelfTest is the self-test of the suite: for every fault a spec names,
// the specs naming it run against an emulator with that fault switched on,
// each under a profile its requirement holds under, and every one of them
// must fail. (TestSuite shows they pass without it.)
func TestSelfTest(t *testing.T) {
	by, specs := specsByFault(t)
	info := map[string]conformance.SpecInfo{}
	for _, s := range specs {
		info[s.Text] = s
		if profileFor(s) == "" {
			t.Errorf("spec %q holds under %v, none of %v", s.Text, s.Profiles, selfTestProfiles)
		}
	}
	faults := slices.Sorted(maps.Keys(by))
	for _, f := range faults {
		t.Run(f, func(t *testing.T) {
			ran := map[string]bool{}
			for _, p := range selfTestProfiles {
				var ids []string
				for _, text := range by[f] {
					if s := info[text]; profileFor(s) == p && !slices.Contains(ids, s.ID) {
						ids = append(ids, s.ID)
					}
				}
				if len(ids) == 0 {
					continue
				}
				filter := "fault: containsAny " + f
				if p != conformance.ProfileDPS2019 {
					filter += " && req: containsAny " + strings.Join(ids, ", ")
				}
				res := runSuiteProfile(t, emulator.Profile(p), []emulator.Fault{emulator.Fault(f)}, filter)
				for _, v := range res.Verdicts {
					switch {
					case v.State == "skipped" && !holds(res.Catalog, v.ID, p):
						// judged under its own profile
					case !v.Failed():
						t.Errorf("%s %s %q under fault %s (%s): it must fail", v.State, v.ID, v.Text, f, p)
					default:
						ran[v.Text] = true
						if why := wrongReason(v); why != "" {
							t.Errorf("%s %q under fault %s (%s) failed, but %s: %s", v.ID, v.Text, f, p, why, v.Message)
						}
					}
				}
			}
			for _, text := range by[f] {
				if !ran[text] {
					t.Errorf("spec %q names fault %s but did not run and fail", text, f)
				}
			}
		})
	}
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

// TestFaultsExact runs the whole suite once per fault and requires that
// exactly the specs naming the fault fail: a fault that also breaks other
// specs, or a spec that fails for a fault it does not name, is a finding
// about the emulator or the suite. It is the "exactly its specs" promise of
// `dps-conform run --emulator-fault NAME`. Under -race it checks a sample.
func TestFaultsExact(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	by, specs := specsByFault(t)
	// The runs are dps-2019: the specs of requirements that hold only
	// under dps-2023 skip there (TestSelfTest runs them under theirs).
	under2019 := map[string]bool{}
	for _, s := range specs {
		under2019[s.Text] = slices.Contains(s.Profiles, conformance.ProfileDPS2019)
	}
	faults := slices.Sorted(maps.Keys(by))
	if raceEnabled {
		faults = []string{"grant-qos2", "accept-tls13", "no-close-after-401", "strict-sas"}
	}
	for _, f := range faults {
		t.Run(f, func(t *testing.T) {
			res := runSuite(t, []emulator.Fault{emulator.Fault(f)}, "")
			var failed []string
			for _, v := range res.Verdicts {
				if v.Failed() {
					failed = append(failed, v.Text)
				}
			}
			want := slices.DeleteFunc(slices.Clone(by[f]), func(s string) bool { return !under2019[s] })
			sort.Strings(failed)
			sort.Strings(want)
			if why, ok := broadFaults[f]; ok {
				for _, w := range want {
					if !slices.Contains(failed, w) {
						t.Errorf("under fault %s (%s) spec %q passed", f, why, w)
					}
				}
				return
			}
			if !slices.Equal(failed, want) {
				t.Errorf("under fault %s\nfailed: %q\nwant:   %q", f, failed, want)
			}
		})
	}
}
