package conformance_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/packets/packettest"
)

func TestCatalogLoads(t *testing.T) {
	cat, err := conformance.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	roles := map[conformance.Role]int{}
	for _, r := range cat.Requirements {
		roles[r.Role]++
	}
	if roles[conformance.RoleService] < 40 || roles[conformance.RoleDevice] < 20 {
		t.Errorf("catalogue roles %v: the service and device entries of DPS-PROTOCOL.md are missing", roles)
	}
}

// TestParseCatalogRejects: every validation of ParseCatalog, each with the
// file and entry named in the error.
func TestParseCatalogRejects(t *testing.T) {
	const good = "- {id: DPS-CONN-001, level: MUST, role: service, area: connect, profiles: [dps-2019], source: x, url: 'https://x', statement: s}\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "- {id: DPS-CONN-001, level: MUST, role: service, area: connect, profiles: [dps-2019], source: x, url: 'https://x', statement: s, extra: 1}\n", "field extra not found"},
		{"duplicate", good + good, "duplicate id"},
		{"bad id", strings.Replace(good, "DPS-CONN-001", "DPS-CONN-1", 1), "does not follow"},
		{"label-unsafe id", strings.Replace(good, "DPS-CONN-001", "pod/basic", 1), "does not follow"},
		{"level", strings.Replace(good, "MUST", "MAY", 1), `level "MAY"`},
		{"role", strings.Replace(good, "role: service", "role: broker", 1), `role "broker"`},
		{"area", strings.Replace(good, "area: connect", "area: misc", 1), `area "misc"`},
		{"profile", strings.Replace(good, "dps-2019", "dps-2030", 1), `profile "dps-2030"`},
		{"url", strings.Replace(good, "'https://x'", "x", 1), `url "x"`},
		{"statement", strings.Replace(good, "statement: s", "statement: ''", 1), "no statement"},
		{"not yaml", "- {id: [", "f.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := conformance.ParseCatalog(map[string][]byte{"f.yaml": []byte(tt.yaml)})
			if !errors.Is(err, conformance.ErrCatalog) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "f.yaml") {
				t.Errorf("error %v, want ErrCatalog naming f.yaml and %q", err, tt.want)
			}
		})
	}
	if _, err := conformance.ParseCatalog(map[string][]byte{"f.yaml": []byte(good)}); err != nil {
		t.Errorf("a good entry: %v", err)
	}
}

// notCoveredOnPurpose are service MUST requirements with no spec and no
// rule yet, each with the reason; every other one must be judged.
var notCoveredOnPurpose = map[string]string{}

// TestCatalogConsistent keeps catalogue, specs, rules and codec in step:
// every ID cited by a spec, a rule, a packettest vector or a decode error of
// the codec is in the catalogue, and every DPS and TLS requirement at MUST
// level, of either role, is judged by a spec or a rule.
func TestCatalogConsistent(t *testing.T) {
	inv, cat, err := conformance.BuildInventory()
	if err != nil {
		t.Fatal(err)
	}
	cited := map[string]string{}
	for _, s := range inv.Specs {
		cited[s.ID] = "spec " + s.Codename
	}
	for _, r := range append(conformance.ServiceRules(), conformance.DeviceRules()...) {
		cited[r.ID] = "rule"
	}
	for _, v := range packettest.Vectors {
		if v.Clause != "" {
			cited[v.Clause] = "packettest vector " + v.Name
		}
		if v.Kind == packettest.Malformed || v.Kind == packettest.Invalid {
			_, _, err := packets.Decode(v.Raw, packets.DecodeOptions{})
			var pe *packets.ProtocolError
			if errors.As(err, &pe) {
				cited[pe.Clause] = "decode error of vector " + v.Name
			}
		}
	}
	for id, where := range cited {
		if _, ok := cat.Lookup(id); !ok {
			t.Errorf("%s cites %s, which is not in the catalogue", where, id)
		}
	}
	for _, id := range inv.NotCovered {
		req, _ := cat.Lookup(id)
		if req.Level != conformance.MUST || strings.HasPrefix(id, "MQTT-") {
			continue
		}
		if _, ok := notCoveredOnPurpose[id]; !ok {
			t.Errorf("%s (%s, %s) is judged by no spec and no rule", id, req.Level, req.Statement)
		}
	}
	for id := range notCoveredOnPurpose {
		if !slices.Contains(inv.NotCovered, id) {
			t.Errorf("%s is covered now: drop it from notCoveredOnPurpose", id)
		}
	}
}

// TestCitedIDsExist: every DPS requirement ID the project cites outside
// its tests (code comments, messages, README.md and docs/, the CLI
// scripts) is in the catalogue, so that a renumbered or dropped entry
// cannot leave a citation pointing nowhere.
func TestCitedIDsExist(t *testing.T) {
	cat, err := conformance.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	idRE := regexp.MustCompile(`\bDPS-[A-Z]+-[0-9]{3}\b`)
	skipDirs := map[string]bool{".git": true, "node_modules": true, "fuzz": true, "dps-conform-results": true}
	files := 0
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skipDirs[d.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		name := d.Name()
		if strings.HasSuffix(name, "_test.go") || !slices.Contains([]string{".go", ".md", ".txtar"}, filepath.Ext(name)) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for i, line := range strings.Split(string(b), "\n") {
			for _, id := range idRE.FindAllString(line, -1) {
				if _, ok := cat.Lookup(id); !ok {
					t.Errorf("%s:%d cites %s, which is not in the catalogue", path, i+1, id)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("read %d files: the walk from the package directory missed the repository", files)
	}
}
