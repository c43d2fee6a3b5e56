package registry

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/dps-conform/dps-conform/dps"
)

// ErrInvalidConfig is the category of every config and enrollment validation
// error; errors.As with *ConfigError gives the location.
var ErrInvalidConfig = errors.New("registry: invalid config")

// ConfigError locates a config or enrollment fault: the file and line (when
// known), the entry ("enrollments[2] (registrationId \"dev1\")") and the
// field path in the service schema ("attestation.symmetricKey.primaryKey").
type ConfigError struct {
	File string
	Line int
	// Column, when not 0, is the character in Line (1-based): a syntax
	// error of a file written as JSON, where encoding/json finds the byte.
	Column int
	Entry  string
	Field  string
	Msg    string

	key string // "enrollments[2]", to find Line
}

// Error formats as "file:line[:column]: entry: field: msg", leaving out empty parts.
func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	}
	if e.Entry != "" {
		b.WriteString(e.Entry)
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns ErrInvalidConfig.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// maxConfigSize bounds a config file (1,000,000 enrollments would not fit,
// but the emulator is not meant to hold that many).
const maxConfigSize = 64 << 20

// LoadConfig reads and parses the config file at path.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("registry: config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("registry: config %s: %w", path, err)
	}
	if len(data) > maxConfigSize {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("file larger than %d bytes", maxConfigSize)}
	}
	return ParseConfig(data, path)
}

var yamlFieldRE = regexp.MustCompile(`line (\d+): field (\S+) not found in type (?:\w+\.)?(\w+)`)
var yamlLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// ParseConfig parses a YAML or JSON config (JSON is YAML) and validates it.
// name is the file name used in error messages. Unknown fields are errors
// naming the line and the field; validation errors name the enrollment and
// the field.
func ParseConfig(data []byte, name string) (*Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			// An empty file is an empty config.
			return &cfg, nil
		}
		return nil, yamlError(err, data, name)
	}
	// A second document is a mistake (a stray "---"), and one that does
	// not parse is one too: what it holds would be dropped unread.
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, &ConfigError{File: name, Line: extra.Line, Msg: "more than one YAML document"}
	case !errors.Is(err, io.EOF):
		return nil, yamlError(err, data, name)
	}
	lines, err := entryLines(data, name)
	if err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.File = name
			if ce.Line == 0 {
				ce.Line = lines[ce.key]
			}
		}
		return nil, err
	}
	return &cfg, nil
}

// goTypeRE matches a Go package qualifier in a type name of a yaml.v3
// type error ("into registry.ProvisioningStatus", "into []registry.X"):
// the schema's name is what the user knows.
var goTypeRE = regexp.MustCompile(`\b(?:registry|dps)\.([A-Z]\w*)`)

// yamlError rewrites yaml.v3 errors as "file:line: ..." errors, and a
// syntax error of a file written as JSON as "file:line:column: ...":
// yaml.v3 gives no column, and no line at all on a file's first line
// (a one-line JSON file).
func yamlError(err error, data []byte, name string) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		first := te.Errors[0]
		if m := yamlFieldRE.FindStringSubmatch(first); m != nil {
			var line int
			fmt.Sscan(m[1], &line)
			return &ConfigError{File: name, Line: line, Field: m[2], Msg: fmt.Sprintf("unknown field %q in %s", m[2], m[3])}
		}
		if m := yamlLineRE.FindStringSubmatch(first); m != nil {
			var line int
			fmt.Sscan(m[1], &line)
			return &ConfigError{File: name, Line: line, Msg: goTypeRE.ReplaceAllString(m[2], "$1")}
		}
		return &ConfigError{File: name, Msg: goTypeRE.ReplaceAllString(first, "$1")}
	}
	if ce := JSONSyntaxError(data, name); ce != nil {
		return ce
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		var line int
		fmt.Sscan(m[1], &line)
		return &ConfigError{File: name, Line: line, Msg: m[2]}
	}
	return &ConfigError{File: name, Msg: msg}
}

// JSONSyntaxError locates where data, when it is written as JSON (its
// first byte past white space is '{' or '['), breaks JSON's syntax: File
// name, Line and Column (1-based, in characters) and encoding/json's
// message; nil for valid JSON or a file not written as JSON. yaml.v3 gives
// no column, and no line on a file's first line. The other YAML files of
// dps-conform (run --config, device --product) use it too.
func JSONSyntaxError(data []byte, name string) *ConfigError {
	t := bytes.TrimLeft(data, " \t\r\n")
	if len(t) == 0 || t[0] != '{' && t[0] != '[' {
		return nil
	}
	var v any
	var se *json.SyntaxError
	if !errors.As(json.Unmarshal(data, &v), &se) {
		return nil
	}
	// Offset counts the bytes read when the error was found: the bad
	// byte is the last of them, unless the input ran out.
	off, msg := int(se.Offset), se.Error()
	if off >= len(data) && strings.HasPrefix(msg, "unexpected end") {
		off, msg = len(data), "the file ends inside a JSON value"
	} else if off > 0 {
		off--
	}
	before := data[:min(off, len(data))]
	line := 1 + bytes.Count(before, []byte("\n"))
	col := 1 + utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:])
	return &ConfigError{File: name, Line: line, Column: col, Msg: msg}
}

// entryLines maps "enrollments[i]", "enrollmentGroups[i]" and
// "linkedHubs[i]" to the line where each entry starts, and each top-level
// member ("idScope") to its line, for validation messages. An empty entry ("-"
// alone, or null) in a list of the file is an error: the decoder would
// drop it silently, and it is a mistake.
func entryLines(data []byte, name string) (map[string]int, error) {
	lines := map[string]int{}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return lines, nil
	}
	m := root.Content[0]
	if m.Kind != yaml.MappingNode {
		return lines, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i].Value, m.Content[i+1]
		lines[k] = m.Content[i].Line // top-level members: idScope, allocationPolicy
		if v.Kind != yaml.SequenceNode {
			continue
		}
		for j, item := range v.Content {
			if item.Kind == yaml.ScalarNode && item.Tag == "!!null" {
				return nil, &ConfigError{File: name, Line: item.Line, Msg: fmt.Sprintf("%s[%d] is empty", k, j)}
			}
			lines[fmt.Sprintf("%s[%d]", k, j)] = item.Line
		}
	}
	return lines, nil
}

// entryErr is a validation error on one entry; key is the "enrollments[i]"
// form used to find its line.
type entryErr struct {
	key, entry string
}

func (e entryErr) errorf(field, format string, args ...any) *ConfigError {
	return &ConfigError{Entry: e.entry, Field: field, Msg: fmt.Sprintf(format, args...), key: e.key}
}

// validate checks the whole config.
func (c *Config) validate() error {
	if c.IDScope != "" {
		if err := validateIDScope(c.IDScope); err != nil {
			return &ConfigError{Field: "idScope", Msg: err.Error(), key: "idScope"}
		}
	}
	if c.AllocationPolicy != "" && !c.AllocationPolicy.valid() {
		return &ConfigError{Field: "allocationPolicy", Msg: fmt.Sprintf("unknown allocation policy %q (want hashed, geoLatency, static or custom)", c.AllocationPolicy), key: "allocationPolicy"}
	}
	if c.AllocationPolicy == AllocationCustom {
		return &ConfigError{Field: "allocationPolicy", Msg: "custom needs a webhook: set it on each enrollment", key: "allocationPolicy"}
	}
	hubs := map[string]bool{}
	for i, h := range c.LinkedHubs {
		e := entryErr{key: fmt.Sprintf("linkedHubs[%d]", i), entry: fmt.Sprintf("linkedHubs[%d]", i)}
		if err := validateHostName(h.Name); err != nil {
			return e.errorf("name", "%v", err)
		}
		if hubs[strings.ToLower(h.Name)] {
			return e.errorf("name", "duplicate linked hub %q", h.Name)
		}
		hubs[strings.ToLower(h.Name)] = true
		if h.AllocationWeight < 0 {
			return e.errorf("allocationWeight", "negative weight %d", h.AllocationWeight)
		}
		if h.LatencyMs < 0 {
			return e.errorf("latencyMs", "negative latency %d", h.LatencyMs)
		}
	}
	seen := map[string]int{}
	for i := range c.Enrollments {
		en := &c.Enrollments[i]
		e := entryErr{key: fmt.Sprintf("enrollments[%d]", i), entry: fmt.Sprintf("enrollments[%d] (registrationId %q)", i, en.RegistrationID)}
		if err := validateIndividual(en, c.LinkedHubs, c.AllocationPolicy); err != nil {
			err.Entry, err.key = e.entry, e.key
			return err
		}
		k := strings.ToLower(en.RegistrationID)
		if j, dup := seen[k]; dup {
			return e.errorf("registrationId", "duplicate of enrollments[%d]", j)
		}
		seen[k] = i
	}
	seen = map[string]int{}
	for i := range c.EnrollmentGroups {
		g := &c.EnrollmentGroups[i]
		e := entryErr{key: fmt.Sprintf("enrollmentGroups[%d]", i), entry: fmt.Sprintf("enrollmentGroups[%d] (enrollmentGroupId %q)", i, g.EnrollmentGroupID)}
		if err := validateGroup(g, c.LinkedHubs, c.AllocationPolicy); err != nil {
			err.Entry, err.key = e.entry, e.key
			return err
		}
		k := strings.ToLower(g.EnrollmentGroupID)
		if j, dup := seen[k]; dup {
			return e.errorf("enrollmentGroupId", "duplicate of enrollmentGroups[%d]", j)
		}
		seen[k] = i
	}
	return nil
}

func (p AllocationPolicy) valid() bool {
	switch p {
	case AllocationHashed, AllocationGeoLatency, AllocationStatic, AllocationCustom:
		return true
	}
	return false
}

// validateIDScope accepts what the service generates and a little more:
// 1 to 64 ASCII letters and digits.
func validateIDScope(s string) error {
	if len(s) > 64 {
		return fmt.Errorf("longer than 64 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return fmt.Errorf("character %q at offset %d is not a letter or digit", c, i)
		}
	}
	return nil
}

func validateHostName(s string) error {
	if s == "" {
		return errors.New("empty host name")
	}
	if len(s) > 253 {
		return errors.New("host name longer than 253 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '.' || c == ':') {
			return fmt.Errorf("character %q at offset %d is not allowed in a host name", c, i)
		}
	}
	return nil
}

// common is the part of an enrollment shared by individual enrollments and
// groups.
type common struct {
	att        *AttestationMechanism
	status     ProvisioningStatus
	hubName    string
	hubs       []string
	policy     AllocationPolicy
	custom     *CustomAllocationDefinition
	individual bool
}

func (en *IndividualEnrollment) common() common {
	return common{&en.Attestation, en.ProvisioningStatus, en.IoTHubHostName, en.IoTHubs, en.AllocationPolicy, en.CustomAllocationDefinition, true}
}

func (g *EnrollmentGroup) common() common {
	return common{&g.Attestation, g.ProvisioningStatus, g.IoTHubHostName, g.IoTHubs, g.AllocationPolicy, g.CustomAllocationDefinition, false}
}

// validateIndividual checks an individual enrollment; the returned error has
// no entry or file yet. def is the service's default allocation policy.
func validateIndividual(en *IndividualEnrollment, linked []LinkedHub, def AllocationPolicy) *ConfigError {
	if en.RegistrationID == "" {
		return &ConfigError{Field: "registrationId", Msg: "missing"}
	}
	if err := dps.ValidateRegistrationID(en.RegistrationID); err != nil {
		return &ConfigError{Field: "registrationId", Msg: err.Error()}
	}
	if en.DeviceID != "" {
		if err := validateDeviceID(en.DeviceID); err != nil {
			return &ConfigError{Field: "deviceId", Msg: err.Error()}
		}
	}
	if err := validateJSONValue("optionalDeviceInformation", en.OptionalDeviceInformation); err != nil {
		return err
	}
	if err := validateJSONValue("initialTwin", en.InitialTwin); err != nil {
		return err
	}
	return validateCommon(en.common(), linked, def)
}

// validateJSONValue checks that a free-form member (initialTwin,
// optionalDeviceInformation) can be stored and sent as JSON. From YAML it
// may hold what JSON cannot: a nested map with a key that is not a string
// ("2: lab" decodes to map[any]any), or .nan and .inf.
func validateJSONValue(field string, v any) *ConfigError {
	if _, err := json.Marshal(v); err != nil {
		return &ConfigError{Field: field, Msg: "not representable as JSON (a map key that is not a string: quote it; or .nan/.inf)"}
	}
	return nil
}

// validateGroup checks an enrollment group.
func validateGroup(g *EnrollmentGroup, linked []LinkedHub, def AllocationPolicy) *ConfigError {
	if g.EnrollmentGroupID == "" {
		return &ConfigError{Field: "enrollmentGroupId", Msg: "missing"}
	}
	if err := dps.ValidateRegistrationID(g.EnrollmentGroupID); err != nil {
		return &ConfigError{Field: "enrollmentGroupId", Msg: strings.Replace(err.Error(), "registration id", "enrollment group id", 1)}
	}
	if err := validateJSONValue("initialTwin", g.InitialTwin); err != nil {
		return err
	}
	return validateCommon(g.common(), linked, def)
}

// validateDeviceID applies the IoT Hub device id rules: up to 128 ASCII
// letters, digits and - . + % _ # * ? ! ( ) , : = @ $ '.
func validateDeviceID(s string) error {
	if len(s) > 128 {
		return errors.New("longer than 128 characters")
	}
	for i, r := range s {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune("-.+%_#*?!(),:=@$'", r) {
			continue
		}
		return fmt.Errorf("character %q (U+%04X) at offset %d is not allowed in a device id (allowed: ASCII letters, digits and - . + %% _ # * ? ! ( ) , : = @ $ ')", r, r, i)
	}
	return nil
}

func validateCommon(c common, linked []LinkedHub, def AllocationPolicy) *ConfigError {
	if err := validateAttestation(c.att, c.individual); err != nil {
		return err
	}
	switch c.status {
	case "", ProvisioningEnabled, ProvisioningDisabled:
	default:
		return &ConfigError{Field: "provisioningStatus", Msg: fmt.Sprintf("unknown status %q (want enabled or disabled)", c.status)}
	}
	if c.policy != "" && !c.policy.valid() {
		return &ConfigError{Field: "allocationPolicy", Msg: fmt.Sprintf("unknown allocation policy %q (want hashed, geoLatency, static or custom)", c.policy)}
	}
	if c.hubName != "" && !isLinked(linked, c.hubName) {
		return &ConfigError{Field: "iotHubHostName", Msg: fmt.Sprintf("hub %q is not in linkedHubs", c.hubName)}
	}
	for i, h := range c.hubs {
		if !isLinked(linked, h) {
			return &ConfigError{Field: fmt.Sprintf("iotHubs[%d]", i), Msg: fmt.Sprintf("hub %q is not in linkedHubs", h)}
		}
	}
	if c.hubName == "" && len(c.hubs) != 1 && len(linked) != 1 {
		switch {
		case c.policy == AllocationStatic:
			return &ConfigError{Field: "iotHubHostName", Msg: "static allocation needs iotHubHostName or exactly one of iotHubs"}
		case c.policy == "" && def == AllocationStatic:
			return &ConfigError{Field: "iotHubHostName", Msg: "static allocation (the service default) needs iotHubHostName or exactly one of iotHubs"}
		}
	}
	if c.policy == AllocationCustom {
		if c.custom == nil || c.custom.WebhookURL == "" {
			return &ConfigError{Field: "customAllocationDefinition.webhookUrl", Msg: "custom allocation needs a webhook URL"}
		}
	}
	if c.custom != nil && c.custom.WebhookURL != "" {
		u, err := url.Parse(c.custom.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return &ConfigError{Field: "customAllocationDefinition.webhookUrl", Msg: "not an http or https URL"}
		}
	}
	return nil
}

func isLinked(linked []LinkedHub, name string) bool {
	for _, h := range linked {
		if strings.EqualFold(h.Name, name) {
			return true
		}
	}
	return false
}

func validateAttestation(a *AttestationMechanism, individual bool) *ConfigError {
	switch a.Type {
	case "":
		return &ConfigError{Field: "attestation.type", Msg: "missing (want symmetricKey or x509)"}
	case AttestationTPM:
		return &ConfigError{Field: "attestation.type", Msg: "tpm: TPM attestation is not supported over MQTT"}
	case AttestationNone:
		return &ConfigError{Field: "attestation.type", Msg: "none: not supported (want symmetricKey or x509)"}
	case AttestationSymmetricKey:
		sk := a.SymmetricKey
		if sk == nil || sk.PrimaryKey == "" {
			return &ConfigError{Field: "attestation.symmetricKey.primaryKey", Msg: "missing"}
		}
		if err := validateKey(sk.PrimaryKey); err != nil {
			return &ConfigError{Field: "attestation.symmetricKey.primaryKey", Msg: err.Error()}
		}
		if sk.SecondaryKey != "" {
			if err := validateKey(sk.SecondaryKey); err != nil {
				return &ConfigError{Field: "attestation.symmetricKey.secondaryKey", Msg: err.Error()}
			}
		}
		if a.X509 != nil || a.TPM != nil {
			return &ConfigError{Field: "attestation", Msg: "symmetricKey attestation with x509 or tpm members"}
		}
	case AttestationX509:
		x := a.X509
		if x == nil {
			return &ConfigError{Field: "attestation.x509", Msg: "missing"}
		}
		if x.CAReferences != nil {
			return &ConfigError{Field: "attestation.x509.caReferences", Msg: "not supported: put the CA certificate in signingCertificates"}
		}
		if a.SymmetricKey != nil || a.TPM != nil {
			return &ConfigError{Field: "attestation", Msg: "x509 attestation with symmetricKey or tpm members"}
		}
		switch {
		case x.ClientCertificates != nil && x.SigningCertificates != nil:
			return &ConfigError{Field: "attestation.x509", Msg: "both clientCertificates and signingCertificates"}
		case x.ClientCertificates != nil:
			if !individual {
				return &ConfigError{Field: "attestation.x509.clientCertificates", Msg: "not allowed in an enrollment group (use signingCertificates)"}
			}
			return validateCerts(x.ClientCertificates, "attestation.x509.clientCertificates", true)
		case x.SigningCertificates != nil:
			return validateCerts(x.SigningCertificates, "attestation.x509.signingCertificates", false)
		default:
			return &ConfigError{Field: "attestation.x509", Msg: "needs clientCertificates or signingCertificates"}
		}
	default:
		return &ConfigError{Field: "attestation.type", Msg: fmt.Sprintf("unknown attestation type %q (want symmetricKey or x509)", a.Type)}
	}
	return nil
}

// validateKey checks a base64 symmetric key without echoing it.
func validateKey(k string) error {
	b, err := base64.StdEncoding.DecodeString(k)
	if err != nil {
		return errors.New("not valid base64")
	}
	if len(b) < 16 || len(b) > 64 {
		return fmt.Errorf("decodes to %d bytes (want 16 to 64)", len(b))
	}
	return nil
}

func validateCerts(cs *X509Certificates, field string, thumbprintOK bool) *ConfigError {
	if cs.Primary == nil {
		return &ConfigError{Field: field + ".primary", Msg: "missing"}
	}
	for _, e := range []struct {
		name string
		c    *X509CertificateWithInfo
	}{{"primary", cs.Primary}, {"secondary", cs.Secondary}} {
		if e.c == nil {
			continue
		}
		f := field + "." + e.name
		if e.c.Certificate == "" {
			if thumbprintOK && e.c.Info != nil && (e.c.Info.SHA1Thumbprint != "" || e.c.Info.SHA256Thumbprint != "") {
				if _, err := thumbprints(e.c); err != nil {
					return &ConfigError{Field: f + ".info", Msg: err.Error()}
				}
				continue
			}
			if thumbprintOK {
				return &ConfigError{Field: f + ".certificate", Msg: "missing (give a certificate or info.sha256Thumbprint)"}
			}
			return &ConfigError{Field: f + ".certificate", Msg: "missing"}
		}
		cert, err := parseCertificate(e.c.Certificate)
		if err != nil {
			return &ConfigError{Field: f + ".certificate", Msg: err.Error()}
		}
		if !thumbprintOK && !cert.IsCA {
			return &ConfigError{Field: f + ".certificate", Msg: fmt.Sprintf("certificate %q is not a CA (basicConstraints cA false)", cert.Subject.CommonName)}
		}
	}
	return nil
}

// parseCertificate accepts PEM text, base64 of DER, or base64 of PEM.
func parseCertificate(s string) (*x509.Certificate, error) {
	s = strings.TrimSpace(s)
	var der []byte
	if strings.HasPrefix(s, "-----BEGIN") {
		blk, _ := pem.Decode([]byte(s))
		if blk == nil {
			return nil, errors.New("bad PEM")
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q, want CERTIFICATE", blk.Type)
		}
		der = blk.Bytes
	} else {
		b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
		if err != nil {
			return nil, errors.New("neither PEM nor base64")
		}
		if bytes.HasPrefix(b, []byte("-----BEGIN")) {
			return parseCertificate(string(b))
		}
		der = b
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("bad certificate: %v", err)
	}
	return c, nil
}

// thumbprint is one acceptable client certificate fingerprint.
type thumbprint struct {
	sha1   []byte
	sha256 []byte
}

// thumbprints returns the fingerprints a clientCertificates entry accepts.
func thumbprints(c *X509CertificateWithInfo) (thumbprint, error) {
	if c.Certificate != "" {
		cert, err := parseCertificate(c.Certificate)
		if err != nil {
			return thumbprint{}, err
		}
		s1 := sha1.Sum(cert.Raw)
		s256 := sha256.Sum256(cert.Raw)
		return thumbprint{s1[:], s256[:]}, nil
	}
	var t thumbprint
	if c.Info == nil {
		return t, errors.New("no certificate and no thumbprint")
	}
	if s := c.Info.SHA1Thumbprint; s != "" {
		b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
		if err != nil || len(b) != sha1.Size {
			return t, errors.New("sha1Thumbprint is not 40 hex digits")
		}
		t.sha1 = b
	}
	if s := c.Info.SHA256Thumbprint; s != "" {
		b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
		if err != nil || len(b) != sha256.Size {
			return t, errors.New("sha256Thumbprint is not 64 hex digits")
		}
		t.sha256 = b
	}
	return t, nil
}
