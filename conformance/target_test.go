package conformance

import (
	"errors"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/transport"
)

// TestTargetValidateCredentials: the pairings of Validate. A group known
// only by its secondary key is a supported configuration (DPS-AUTH-012
// registers a device of it, DPS-POLL-002 judges that device's group
// against --group-id), so --group-id goes with --group-secondary-key as
// well as with --group-key.
func TestTargetValidateCredentials(t *testing.T) {
	base := func(cr Credentials) *Target {
		return &Target{MQTT: transport.Target{Scheme: "mqtts", Host: "127.0.0.1", Port: 1}, IDScope: "0ne00000000", Credentials: cr}
	}
	ind := Credentials{RegistrationID: "dev", SymmetricKey: "AAAA"}
	for _, tc := range []struct {
		name string
		cr   Credentials
		want string // "" valid
	}{
		{"group id with the group key", Credentials{GroupKey: "AAAA", GroupID: "g1"}, ""},
		{"group id with only the group's secondary key", func() Credentials { c := ind; c.GroupSecondaryKey, c.GroupID = "AAAA", "g1"; return c }(), ""},
		{"group id with no group key", func() Credentials { c := ind; c.GroupID = "g1"; return c }(), "--group-id names the group of --group-key or --group-secondary-key"},
		{"secondary key with no registration id", Credentials{GroupKey: "AAAA", SecondaryKey: "AAAA"}, "--secondary-key needs --registration-id"},
		{"symmetric key with no registration id", Credentials{SymmetricKey: "AAAA"}, "--symmetric-key needs --registration-id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := base(tc.cr).Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case tc.want != "" && (!errors.Is(err, ErrTarget) || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate: %v, want ErrTarget saying %q", err, tc.want)
			}
		})
	}
	// ValidateNamed names a setting as the user gave it.
	tg := base(Credentials{GroupKey: "AAAA", SecondaryKey: "AAAA"})
	err := tg.ValidateNamed(func(flag string) string {
		if flag == "--secondary-key" {
			return "individual.secondaryKey in t.yaml"
		}
		return flag
	})
	if err == nil || !strings.Contains(err.Error(), "individual.secondaryKey in t.yaml needs") || strings.Contains(err.Error(), "--secondary-key") {
		t.Errorf("ValidateNamed: %v, want the setting named individual.secondaryKey in t.yaml", err)
	}
}
