package conformance

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/dps-conform/dps-conform/transport"
)

// Target is what the service suite judges: where it listens, how to trust
// it, and the credentials the specs may use. internal/cli builds it for the
// embedded emulator, for --target URLs and from --config target.yaml; the
// suite reaches the target only through it.
type Target struct {
	// Name is how reports and progress lines name the target.
	Name string
	// MQTT is the MQTT-over-TLS endpoint (scheme mqtts). WS is the
	// MQTT-over-WebSocket endpoint (scheme wss); a zero WS skips the
	// WebSocket specs with a reason.
	MQTT transport.Target
	WS   transport.Target
	// RootCAs verifies the server certificate; nil means the system roots.
	// ServerName overrides the name verified (default: the host).
	RootCAs    *x509.CertPool
	ServerName string
	// IDScope is the id scope of the DPS instance.
	IDScope string
	// Local says the target is an emulator on this machine: specs that
	// touch quotas or throttling run without being asked, and fresh
	// registration ids are derived from the group key for every spec.
	Local bool
	// Credentials are the enrollments the specs may use.
	Credentials Credentials
	// RegistrationBudget is the target's per-minute registration budget:
	// DPS-REG-010 sends one register more than it within a minute and
	// expects a 429. Zero (unknown) skips that spec. BudgetMQTT, when set,
	// is the MQTT-over-TLS endpoint of an instance (sharing the
	// enrollments) whose budget the spec may spend without throttling the
	// other specs; the embedded emulator serves one. Zero means MQTT.
	RegistrationBudget int
	BudgetMQTT         transport.Target
}

// Credentials are enrollments of the target. Specs that need a credential
// that is not configured are skipped with the reason.
type Credentials struct {
	// RegistrationID and SymmetricKey are an individual symmetric key
	// enrollment.
	RegistrationID, SymmetricKey string
	// GroupKey is the key of a symmetric key enrollment group: any
	// registration id attests with the key derived from it.
	GroupKey string
	// SecondaryKey is the secondary key of the individual enrollment
	// RegistrationID, GroupSecondaryKey that of the GroupKey group. DPS
	// tries a token against the primary, then the secondary key (Part A
	// §4): DPS-AUTH-012 registers with a token signed by each (the
	// group's through the key derived from it), and skips without them.
	SecondaryKey, GroupSecondaryKey string
	// GroupID is the enrollmentGroupId of the GroupKey group (or of the
	// GroupSecondaryKey group, when only its secondary key is given), when known:
	// DPS-POLL-002 then wants a group device's registrationState to name
	// no other group (Part B §4.5: symmetricKey is {enrollmentGroupId}).
	GroupID string
	// SlowGroupKey is the key of a symmetric key enrollment group whose
	// assignments take a second or more (a custom allocation webhook doing
	// slow work, say). DPS-REG-009 registers its devices, so that a second
	// register finds the first still in progress; without it the spec
	// uses the ordinary credentials and skips when the target assigns too
	// fast to tell. DPS-POLL-001 polls one at once, to judge a poll
	// answered 202.
	SlowGroupKey string
	// X509 is the client certificate of an X.509 enrollment whose
	// registration id is X509RegistrationID (the certificate's CN).
	X509               *tls.Certificate
	X509RegistrationID string
	// DisabledRegistrationID and DisabledKey are an individual symmetric
	// key enrollment whose provisioningStatus is disabled.
	DisabledRegistrationID, DisabledKey string
}

// enrollments describes the symmetric key enrollments of the credentials
// for the rules (RuleEnv.Enrollments): the individual one, and the group
// of GroupKey with its id when known. The slow group's id is not known.
func (c Credentials) enrollments() []KnownEnrollment {
	var out []KnownEnrollment
	if c.RegistrationID != "" && (c.SymmetricKey != "" || c.SecondaryKey != "") {
		out = append(out, KnownEnrollment{RegistrationID: c.RegistrationID, Keys: []string{c.SymmetricKey, c.SecondaryKey}})
	}
	if c.GroupKey != "" || c.GroupSecondaryKey != "" {
		out = append(out, KnownEnrollment{GroupID: c.GroupID, Keys: []string{c.GroupKey, c.GroupSecondaryKey}})
	}
	return out
}

// ErrTarget is wrapped by Target validation errors.
var ErrTarget = errors.New("invalid target")

// Validate reports what is missing for the suite to run at all. Its
// errors name a setting by its run flag; ValidateNamed names it as the
// user gave it.
func (t *Target) Validate() error { return t.ValidateNamed(nil) }

// ValidateNamed is Validate, naming a setting that is given by
// name(flag): its flag ("--group-id"), or where else it came from
// ("group.enrollmentGroupId in target.yaml"). nil names the flag. A
// setting that is missing is named by its flag and its --config field.
//
// A group known only by its secondary key (--group-secondary-key without
// --group-key) is a configuration the suite supports: DPS-AUTH-012
// registers a device of it and DPS-POLL-002 judges that device's group
// against --group-id. It is not enough alone: every other spec needs
// --group-key or the individual enrollment.
func (t *Target) ValidateNamed(name func(flag string) string) error {
	if name == nil {
		name = func(flag string) string { return flag }
	}
	cr := t.Credentials
	switch {
	case t.MQTT.Scheme != "mqtts":
		return fmt.Errorf("%w: the MQTT endpoint must be mqtts://host:port, got %q", ErrTarget, t.MQTT.String())
	case t.WS.Scheme != "" && t.WS.Scheme != "wss":
		return fmt.Errorf("%w: the WebSocket endpoint must be wss://host:port/path, got %q", ErrTarget, t.WS.String())
	case t.IDScope == "":
		return fmt.Errorf("%w: no id scope (--id-scope or idScope in --config)", ErrTarget)
	case cr.SymmetricKey == "" && cr.GroupKey == "":
		msg := "no symmetric key credentials (--symmetric-key with --registration-id, or --group-key; individual.symmetricKey with individual.registrationId, or group.symmetricKey, in --config)"
		if cr.GroupSecondaryKey != "" || cr.SecondaryKey != "" {
			msg += ": a secondary key alone serves only DPS-AUTH-012"
		}
		return fmt.Errorf("%w: %s", ErrTarget, msg)
	case cr.SymmetricKey != "" && cr.RegistrationID == "":
		return fmt.Errorf("%w: %s needs --registration-id (individual.registrationId in --config)", ErrTarget, name("--symmetric-key"))
	case cr.SecondaryKey != "" && cr.RegistrationID == "":
		return fmt.Errorf("%w: %s needs --registration-id (individual.registrationId in --config)", ErrTarget, name("--secondary-key"))
	case cr.GroupID != "" && cr.GroupKey == "" && cr.GroupSecondaryKey == "":
		return fmt.Errorf("%w: %s names the group of --group-key or --group-secondary-key (group.symmetricKey or group.secondaryKey in --config), and neither is given", ErrTarget, name("--group-id"))
	case t.RegistrationBudget < 0:
		return fmt.Errorf("%w: the registration budget (%s) is a number of registrations per minute, got %d", ErrTarget, name("--registration-budget"), t.RegistrationBudget)
	case t.BudgetMQTT.Scheme != "" && t.BudgetMQTT.Scheme != "mqtts":
		return fmt.Errorf("%w: the budget endpoint must be mqtts://host:port, got %q", ErrTarget, t.BudgetMQTT.String())
	}
	return nil
}

func (t *Target) tlsConfig(cert *tls.Certificate, min, max uint16) *tls.Config {
	// An empty ServerName is the dialled endpoint's host (transport.Dial).
	c := &tls.Config{RootCAs: t.RootCAs, ServerName: t.ServerName, MinVersion: min, MaxVersion: max}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}
