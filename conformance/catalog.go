package conformance

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/onsi/ginkgo/v2/types"
	"gopkg.in/yaml.v3"
)

// Level is how strongly a requirement binds: MUST findings make a target
// non-conformant (exit code 1), SHOULD and INFO findings are reported only.
type Level string

// The requirement levels of the catalogue.
const (
	MUST   Level = "MUST"
	SHOULD Level = "SHOULD"
	INFO   Level = "INFO"
)

// Role is who a requirement judges (ARCHITECTURE.md §1).
type Role string

// The roles of the catalogue.
const (
	RoleService Role = "service"
	RoleDevice  Role = "device"
)

// The profiles a requirement can hold under (DPS-PROTOCOL.md Part A §1).
const (
	ProfileDPS2019 = "dps-2019"
	ProfileDPS2023 = "dps-2023"
)

// KnownProfile reports whether p is one of the profiles.
func KnownProfile(p string) bool { return p == ProfileDPS2019 || p == ProfileDPS2023 }

// Requirement is one entry of the catalogue: a documented DPS behaviour, a
// device obligation or an MQTT 3.1.1 normative statement.
type Requirement struct {
	// ID is DPS-<AREA>-<NNN>, TLS-<NNN> or MQTT-x.y.z-n (OASIS numbering);
	// it is a valid Ginkgo label.
	ID    string `yaml:"id" json:"id"`
	Level Level  `yaml:"level" json:"level"`
	Role  Role   `yaml:"role" json:"role"`
	// Area groups requirements for label filters: tls, connect, auth,
	// session, subscribe, register, poll, error, websocket, device, mqtt.
	Area     string   `yaml:"area" json:"area"`
	Profiles []string `yaml:"profiles" json:"profiles"`
	// Source names the document and section (DPS-PROTOCOL.md Part A/B
	// sections and their source keys); URL is the primary public document.
	Source    string `yaml:"source" json:"source"`
	URL       string `yaml:"url" json:"url"`
	Statement string `yaml:"statement" json:"statement"`
}

// HoldsUnder reports whether the requirement applies under profile.
func (r *Requirement) HoldsUnder(profile string) bool {
	return slices.Contains(r.Profiles, profile)
}

// Catalog is the requirement catalogue, in ID order.
type Catalog struct {
	Requirements []*Requirement
	byID         map[string]*Requirement
}

//go:embed behaviors/*.yaml
var behaviorFiles embed.FS

// Areas are the valid values of Requirement.Area.
var areas = []string{"tls", "connect", "auth", "session", "subscribe", "register", "poll", "error", "websocket", "device", "mqtt"}

var idPattern = regexp.MustCompile(`^(DPS-(TLS|CONN|AUTH|SESS|SUB|REG|POLL|ERR|WS|DEV)-[0-9]{3}|TLS-[0-9]{3}|MQTT-[0-9]+(\.[0-9]+)*(-[0-9]+)?)$`)

// LoadCatalog reads the catalogue embedded in the binary
// (conformance/behaviors/*.yaml) and validates it: see ParseCatalog.
func LoadCatalog() (*Catalog, error) {
	names, err := behaviorFiles.ReadDir("behaviors")
	if err != nil {
		return nil, fmt.Errorf("conformance: reading the embedded catalogue: %w", err)
	}
	files := map[string][]byte{}
	for _, n := range names {
		b, err := behaviorFiles.ReadFile(path.Join("behaviors", n.Name()))
		if err != nil {
			return nil, fmt.Errorf("conformance: reading the embedded catalogue: %w", err)
		}
		files[n.Name()] = b
	}
	return ParseCatalog(files)
}

// ErrCatalog is wrapped by every catalogue validation error.
var ErrCatalog = errors.New("invalid requirement catalogue")

// ParseCatalog parses catalogue files (file name → YAML list of
// requirements) strictly, unknown keys being errors, and checks every entry:
// the ID is unique, follows ARCHITECTURE.md §5 and is a valid Ginkgo label;
// level, role, area and profiles are known; source, URL and statement are
// set. Errors name the file and the entry.
func ParseCatalog(files map[string][]byte) (*Catalog, error) {
	c := &Catalog{byID: map[string]*Requirement{}}
	var errs []error
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		dec := yaml.NewDecoder(bytes.NewReader(files[name]))
		dec.KnownFields(true)
		var reqs []*Requirement
		if err := dec.Decode(&reqs); err != nil && !errors.Is(err, io.EOF) {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		for i, r := range reqs {
			where := fmt.Sprintf("%s: entry %d (%s)", name, i+1, r.ID)
			if err := r.validate(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				continue
			}
			if _, dup := c.byID[r.ID]; dup {
				errs = append(errs, fmt.Errorf("%s: duplicate id", where))
				continue
			}
			c.byID[r.ID] = r
			c.Requirements = append(c.Requirements, r)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrCatalog, errors.Join(errs...))
	}
	slices.SortFunc(c.Requirements, func(a, b *Requirement) int { return strings.Compare(a.ID, b.ID) })
	return c, nil
}

func (r *Requirement) validate() error {
	if !idPattern.MatchString(r.ID) {
		return fmt.Errorf("id %q does not follow ARCHITECTURE.md §5", r.ID)
	}
	if _, err := types.ValidateAndCleanupLabel(r.ID, types.CodeLocation{}); err != nil {
		return fmt.Errorf("id %q is not a valid Ginkgo label", r.ID)
	}
	switch r.Level {
	case MUST, SHOULD, INFO:
	default:
		return fmt.Errorf("level %q is not MUST, SHOULD or INFO", r.Level)
	}
	switch r.Role {
	case RoleService, RoleDevice:
	default:
		return fmt.Errorf("role %q is not service or device", r.Role)
	}
	if !slices.Contains(areas, r.Area) {
		return fmt.Errorf("area %q is not one of %s", r.Area, strings.Join(areas, " "))
	}
	if len(r.Profiles) == 0 {
		return errors.New("no profiles")
	}
	for _, p := range r.Profiles {
		if !KnownProfile(p) {
			return fmt.Errorf("profile %q is not %s or %s", p, ProfileDPS2019, ProfileDPS2023)
		}
	}
	switch {
	case strings.TrimSpace(r.Source) == "":
		return errors.New("no source")
	case !strings.HasPrefix(r.URL, "https://") && !strings.HasPrefix(r.URL, "http://"):
		return fmt.Errorf("url %q is not an http(s) URL", r.URL)
	case strings.TrimSpace(r.Statement) == "":
		return errors.New("no statement")
	}
	return nil
}

// RulesUnder returns the rules, in their order, whose requirement holds
// under profile; a rule whose ID the catalogue lacks is left out.
func (c *Catalog) RulesUnder(rules []*Rule, profile string) []*Rule {
	var out []*Rule
	for _, r := range rules {
		if req, ok := c.Lookup(r.ID); ok && req.HoldsUnder(profile) {
			out = append(out, r)
		}
	}
	return out
}

// Lookup returns the requirement with the given ID.
func (c *Catalog) Lookup(id string) (*Requirement, bool) {
	r, ok := c.byID[id]
	return r, ok
}
