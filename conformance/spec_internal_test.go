package conformance

import (
	"errors"
	"strings"
	"testing"

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
