package conformance

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/extensions/globals"
	"github.com/onsi/gomega"
)

// TestRegistrarRecordsBugs: the registration wrapper records a spec citing
// an ID the catalogue lacks, a text with bracket tags, a duplicate text and
// an unknown fault as suite bugs, and registers such a spec as a failing
// one, so that neither Preview nor a run can miss them.
func TestRegistrarRecordsBugs(t *testing.T) {
	runMu.Lock()
	defer runMu.Unlock()
	cat, err := LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Target: Target{Name: "t"}, KnownFaults: []string{"grant-qos2"}}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	globals.Reset()
	defer globals.Reset()
	r := &registrar{cfg: cfg, cat: cat, rules: map[string]*Rule{}, texts: map[string]bool{}, g: gomega.NewGomega(ginkgo.Fail)}
	body := func(ginkgo.SpecContext, *T) {}
	r.Describe("C", func() {
		r.It("DPS-NOPE-001", "cites an unknown id", body, Faults("grant-qos2"))
		r.It("DPS-SUB-002", "has a [bracket] tag", body, Faults("grant-qos2"))
		r.It("DPS-SUB-002", "is twice", body, Faults("grant-qos2"))
		r.It("DPS-SUB-002", "is twice", body, Faults("grant-qos2"))
		r.It("DPS-SUB-002", "names an unknown fault", body, Faults("nosuch"))
		r.It("DPS-SUB-002", "is fine", body, Faults("grant-qos2"))
	})
	rep := ginkgo.PreviewSpecs("bugs")
	want := []string{"cites DPS-NOPE-001, which is not in the catalogue", "embeds bracket tags", `"C is twice" is registered twice`, `names fault "nosuch"`}
	if len(r.bugs) != len(want) {
		t.Fatalf("bugs %q, want %d", r.bugs, len(want))
	}
	for i, w := range want {
		if !strings.Contains(r.bugs[i], w) {
			t.Errorf("bug %d = %q, want %q", i, r.bugs[i], w)
		}
	}
	// Each mistake is also a spec (failing when run) beside the good one.
	if n := len(rep.SpecReports); n != 6 {
		t.Errorf("%d specs in the preview, want 6", n)
	}
	if err := r.bugErr(); !errors.Is(err, ErrSuiteBug) || !strings.Contains(err.Error(), "DPS-NOPE-001") {
		t.Errorf("bugErr() = %v", err)
	}
}

// TestRegistrarReadyAt: a shared device id is handed out once its
// registration is done and at most pollsPerWindow-pollsFree of its polls
// are still in the target's window; a 429's retry-after also holds it.
func TestRegistrarReadyAt(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	for _, tc := range []struct {
		name  string
		busy  time.Time
		polls []time.Time
		free  int
		want  time.Time
	}{
		{"fresh", time.Time{}, nil, pollsFree, time.Time{}},
		{"two polls leave three", time.Time{}, []time.Time{ago(time.Second), ago(0)}, pollsFree, time.Time{}},
		{"three polls: the oldest must leave", time.Time{}, []time.Time{ago(4 * time.Second), ago(2 * time.Second), ago(0)}, pollsFree,
			ago(4 * time.Second).Add(pollWindow + busyMargin)},
		{"five polls: three must leave", time.Time{}, []time.Time{ago(9 * time.Second), ago(8 * time.Second), ago(7 * time.Second), ago(time.Second), ago(0)}, pollsFree,
			ago(7 * time.Second).Add(pollWindow + busyMargin)},
		{"polls out of the window are forgotten", time.Time{}, []time.Time{ago(30 * time.Second), ago(20 * time.Second), ago(11 * time.Second), ago(0)}, pollsFree, time.Time{}},
		{"a registration in progress lasts longer", now.Add(time.Minute), []time.Time{ago(4 * time.Second), ago(2 * time.Second), ago(0)}, pollsFree, now.Add(time.Minute)},
		{"the poll window lasts longer", now.Add(time.Second), []time.Time{ago(4 * time.Second), ago(2 * time.Second), ago(0)}, pollsFree,
			ago(4 * time.Second).Add(pollWindow + busyMargin)},
		{"all five free: every poll must leave", time.Time{}, []time.Time{ago(4 * time.Second), ago(0)}, pollsPerWindow,
			ago(0).Add(pollWindow + busyMargin)},
		{"all five free, none in the window", time.Time{}, []time.Time{ago(12 * time.Second)}, pollsPerWindow, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &registrar{cfg: &Config{}, busy: map[string]time.Time{"d": tc.busy}, polls: map[string][]time.Time{"d": tc.polls}}
			if got := r.readyAt("d", tc.free, now); !got.Equal(tc.want) {
				t.Errorf("readyAt = %v, want %v", got, tc.want)
			}
		})
	}
	// polled records, for a target that is not local only.
	r := &registrar{cfg: &Config{}}
	r.polled("d")
	r.polled("")
	if len(r.polls["d"]) != 1 || len(r.polls) != 1 {
		t.Errorf("polls %v, want one of d", r.polls)
	}
	local := &registrar{cfg: &Config{Target: Target{Local: true}}}
	local.polled("d")
	if local.polls != nil {
		t.Errorf("a local target's polls were recorded: %v", local.polls)
	}
}
