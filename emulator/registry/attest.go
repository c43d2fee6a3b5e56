package registry

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dps-conform/dps-conform/dps"
)

// Credentials are what a device presented on its connection.
type Credentials struct {
	// RegistrationID is the registration id of the CONNECT username.
	RegistrationID string
	// Password is the raw MQTT password; nil means none was sent.
	Password []byte
	// PeerCertificates is the client chain from the TLS handshake, leaf
	// first.
	PeerCertificates []*x509.Certificate
	// APIVersion is the api-version of the CONNECT username, e.g.
	// "2019-03-31". Before 2019-04-15 the service answers initialAssignment
	// where later versions answer reprovisionedToInitialAssignment
	// (reprovisionSubstatus); empty means the later behaviour.
	APIVersion string
}

// AttestOptions relax single checks, for the emulator's fault switches.
type AttestOptions struct {
	// IgnoreSignature accepts a SAS token whatever its signature, and an
	// X.509 client whatever its chain or thumbprint.
	IgnoreSignature bool
	// IgnoreExpiry accepts expired SAS tokens and certificates.
	IgnoreExpiry bool
	// NoSkew refuses a SAS token as soon as its expiry has passed,
	// instead of allowing dps.DefaultSkew (Part A §4).
	NoSkew bool
	// IgnoreResource accepts a SAS token whatever its sr.
	IgnoreResource bool
	// IgnoreKeyName accepts any skn.
	IgnoreKeyName bool
	// AllowNoExpiry accepts a SAS token without se as one that never
	// expires, its signature over sr and a newline (Part A §4 requires
	// se).
	AllowNoExpiry bool
	// IgnoreDisabled makes Assign treat a disabled enrollment as enabled.
	IgnoreDisabled bool
	// PrimaryOnly checks a SAS token against the primary key only (of an
	// individual enrollment, or the key derived from a group's primary
	// key), never the secondary (Part A §4: primary, then secondary).
	PrimaryOnly bool
}

// AttestationKind says how a device proved its identity.
type AttestationKind string

// Attestation kinds.
const (
	SymmetricKey AttestationKind = "symmetricKey"
	X509         AttestationKind = "x509"
)

// Attestation is a device whose credentials matched an enrollment. Pass it to
// Assign.
type Attestation struct {
	// RegistrationID is the registration id, as the device sent it.
	RegistrationID string
	// Kind is the attestation mechanism used.
	Kind AttestationKind
	// EnrollmentGroupID names the group the device attested under; empty
	// for an individual enrollment.
	EnrollmentGroupID string

	individual *IndividualEnrollment
	group      *EnrollmentGroup
	leaf       *x509.Certificate // X.509 only
	signer     *x509.Certificate // the enrollment certificate the chain ended at, if any

	ignoreDisabled bool   // AttestOptions.IgnoreDisabled
	apiVersion     string // Credentials.APIVersion
}

// Error codes of attestation failures (DPS-PROTOCOL.md Part A §3, §4.7).
const (
	errCodeUnauthorized       = 401000
	errCodeInvalidCertificate = 401002
)

// AttestError is a failed attestation. ErrorCode is 401000 for a bad, expired
// or foreign SAS token or an unknown device, 401002 for a bad certificate.
// Message is the text for the device's error body; Err carries the detail for
// logs. Neither holds key material or signatures.
type AttestError struct {
	ErrorCode int
	Message   string
	Err       error
}

// Error returns "registry: attestation failed (401000 Unauthorized): detail".
func (e *AttestError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("registry: attestation failed (%d %s)", e.ErrorCode, e.Message)
	}
	return fmt.Sprintf("registry: attestation failed (%d %s): %v", e.ErrorCode, e.Message, e.Err)
}

// Unwrap returns the underlying cause.
func (e *AttestError) Unwrap() error { return e.Err }

// Status returns the HTTP status in the first three digits of ErrorCode.
func (e *AttestError) Status() int { return e.ErrorCode / 1000 }

var _ error = (*AttestError)(nil)

// errNoEnrollment is the cause for an unknown device.
var errNoEnrollment = errors.New("no enrollment matches the registration id")

// Attest judges the credentials of a device against the enrollments
// (DPS-PROTOCOL.md Part A §3, §4).
//
// A non-empty password is a SAS token, checked with dps.Verifier against
// the individual enrollment's primary then secondary key, or else against the
// keys derived (dps.DeriveDeviceKey) from each symmetric key group's primary
// and secondary key. A nil or empty password means X.509 (the SDKs send
// either, §1.6): the leaf's thumbprint must match the individual enrollment's
// clientCertificates, or else the chain must verify up to a group's signing
// certificate (root or intermediate), with the leaf CN equal to the
// registration id. A non-empty password that is not a SAS token, presented
// with a client certificate, is ignored and the X.509 path is taken. An
// individual enrollment wins over every group, even when it does not match.
// Disabled enrollments still attest: Assign answers them "disabled".
//
// Failures are *AttestError: 401000 for SAS problems and unknown devices,
// 401002 for certificate problems. Other errors are internal (storage).
func (r *Registry) Attest(ctx context.Context, c Credentials, o AttestOptions) (*Attestation, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := dps.ValidateRegistrationID(c.RegistrationID); err != nil {
		return nil, &AttestError{ErrorCode: errCodeUnauthorized, Message: "Unauthorized", Err: err}
	}
	var ind *IndividualEnrollment
	var groups []EnrollmentGroup
	gen := r.gen.Load() // before the transaction: see cachedGroups
	err := r.db.View(func(tx *bolt.Tx) error {
		var en IndividualEnrollment
		found, err := getJSON(tx, bucketEnrollments, idKey(c.RegistrationID), &en)
		if err != nil {
			return err
		}
		if found {
			ind = &en
			return nil
		}
		groups, err = r.cachedGroups(tx, gen)
		return err
	})
	if err != nil {
		return nil, err
	}
	sas := len(c.Password) > 0
	if sas && len(c.PeerCertificates) > 0 && !strings.HasPrefix(string(c.Password), dps.SASPrefix) {
		sas = false
	}
	var a *Attestation
	if sas {
		a, err = r.attestSAS(c, o, ind, groups)
	} else {
		a, err = r.attestX509(c, o, ind, groups)
	}
	if a != nil {
		a.ignoreDisabled = o.IgnoreDisabled
		a.apiVersion = c.APIVersion
	}
	return a, err
}

// attestSAS is the symmetric key path.
func (r *Registry) attestSAS(c Credentials, o AttestOptions, ind *IndividualEnrollment, groups []EnrollmentGroup) (*Attestation, error) {
	fail := func(err error) error {
		return &AttestError{ErrorCode: errCodeUnauthorized, Message: "Unauthorized", Err: err}
	}
	tok, err := dps.ParseSASToken(string(c.Password))
	if err != nil && o.AllowNoExpiry {
		if t, ok := ParseSASTokenWithoutExpiry(string(c.Password)); ok {
			tok, err = t, nil
		}
	}
	if err != nil {
		return nil, fail(err)
	}
	a := &Attestation{RegistrationID: c.RegistrationID, Kind: SymmetricKey}
	if ind != nil {
		if ind.Attestation.Type != AttestationSymmetricKey || ind.Attestation.SymmetricKey == nil {
			return nil, fail(fmt.Errorf("individual enrollment %q uses %s attestation, not symmetricKey", ind.RegistrationID, ind.Attestation.Type))
		}
		sk := ind.Attestation.SymmetricKey
		if err := r.verify(tok, c.RegistrationID, o, enrolledKeys(sk, o)...); err != nil {
			return nil, fail(err)
		}
		a.individual = ind
		return a, nil
	}
	if o.IgnoreSignature {
		// A token that a group's key signs is that group's, relaxed or
		// not: the relaxation only admits tokens no key signs (to the
		// first group that takes them).
		strict := o
		strict.IgnoreSignature = false
		if a, err := r.attestSAS(c, strict, nil, groups); err == nil {
			return a, nil
		}
	}
	var firstErr error
	for i := range groups {
		g := &groups[i]
		if g.Attestation.Type != AttestationSymmetricKey || g.Attestation.SymmetricKey == nil {
			continue
		}
		var keys []string
		for _, k := range enrolledKeys(g.Attestation.SymmetricKey, o) {
			if k == "" {
				continue
			}
			dk, err := dps.DeriveDeviceKey(k, c.RegistrationID)
			if err != nil {
				// A stored key that is not base64 cannot match; the
				// admin API and the config loader refuse such keys.
				continue
			}
			keys = append(keys, dk)
		}
		err := r.verify(tok, c.RegistrationID, o, keys...)
		if err == nil {
			a.group = g
			a.EnrollmentGroupID = g.EnrollmentGroupID
			return a, nil
		}
		if !errors.Is(err, dps.ErrSignatureMismatch) {
			// Scope, expiry and key name do not depend on the key.
			return nil, fail(err)
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = errNoEnrollment
	}
	return nil, fail(firstErr)
}

// enrolledKeys are the keys a SAS token is checked against, primary
// first (Part A §4); only the primary under o.PrimaryOnly.
func enrolledKeys(sk *SymmetricKeyAttestation, o AttestOptions) []string {
	if o.PrimaryOnly {
		return []string{sk.PrimaryKey}
	}
	return []string{sk.PrimaryKey, sk.SecondaryKey}
}

// ParseSASTokenWithoutExpiry parses a SAS token that has no se field, and
// only such a token, as one that never expires: its Expiry text is empty
// (the signature is then over sr and a newline) and its ExpiresAt the
// latest dps.ParseSASToken accepts. Only the fault accept-token-without-se
// (AttestOptions.AllowNoExpiry) uses it; Part A §4 requires se.
func ParseSASTokenWithoutExpiry(s string) (*dps.SASToken, bool) {
	// A token that had an se field now has two, which is an error.
	t, err := dps.ParseSASToken(s + "&se=" + strconv.FormatInt(dps.MaxExpiryUnix, 10))
	if err != nil {
		return nil, false
	}
	t.Expiry = ""
	return t, true
}

// verify checks tok with dps.Verifier, or check by check when o relaxes one
// of them.
func (r *Registry) verify(tok *dps.SASToken, regID string, o AttestOptions, keys ...string) error {
	v := dps.Verifier{Now: r.now, Skew: dps.DefaultSkew}
	if o.NoSkew {
		v.Skew = -1 // a negative Skew allows none
	}
	if o == (AttestOptions{}) {
		return v.Verify(tok, r.idScope, regID, keys...)
	}
	t := *tok
	if o.IgnoreKeyName {
		t.KeyName, t.HasKeyName = "", false
	}
	scope, id := r.idScope, regID
	if o.IgnoreResource {
		// Verify against whatever the token names, so only the
		// resource check is skipped.
		if res, err := t.DecodedResource(); err == nil {
			if s, rest, ok := strings.Cut(res, "/registrations/"); ok && dps.ValidateRegistrationID(rest) == nil {
				scope, id = s, rest
			}
		}
	}
	if o.IgnoreExpiry {
		exp := t.ExpiresAt
		v.Now = func() time.Time { return exp }
	}
	err := v.Verify(&t, scope, id, keys...)
	if o.IgnoreSignature && errors.Is(err, dps.ErrSignatureMismatch) {
		return nil
	}
	if o.IgnoreResource && errors.Is(err, dps.ErrResourceMismatch) {
		// The sr is not of the documented shape; only the signature
		// over it is left to check.
		if o.IgnoreSignature {
			return nil
		}
		return t.CheckSignature(keys...)
	}
	return err
}

// attestX509 is the certificate path.
func (r *Registry) attestX509(c Credentials, o AttestOptions, ind *IndividualEnrollment, groups []EnrollmentGroup) (*Attestation, error) {
	bad := func(msg string, err error) error {
		return &AttestError{ErrorCode: errCodeInvalidCertificate, Message: msg, Err: err}
	}
	if len(c.PeerCertificates) == 0 {
		if ind == nil && !hasGroup(groups, "") {
			return nil, &AttestError{ErrorCode: errCodeUnauthorized, Message: "Unauthorized", Err: errNoEnrollment}
		}
		return nil, &AttestError{ErrorCode: errCodeUnauthorized, Message: "Unauthorized", Err: errors.New("no SAS token and no client certificate")}
	}
	leaf := c.PeerCertificates[0]
	if !strings.EqualFold(leaf.Subject.CommonName, c.RegistrationID) {
		return nil, bad("Invalid certificate.", fmt.Errorf("certificate CN %q is not the registration id %q", leaf.Subject.CommonName, c.RegistrationID))
	}
	now := r.now()
	if !o.IgnoreExpiry && (now.Before(leaf.NotBefore) || now.After(leaf.NotAfter)) {
		return nil, bad("Invalid certificate.", fmt.Errorf("certificate %q is not valid at %s (valid %s to %s)", leaf.Subject.CommonName, dps.FormatTimestamp(now), dps.FormatTimestamp(leaf.NotBefore), dps.FormatTimestamp(leaf.NotAfter)))
	}
	a := &Attestation{RegistrationID: c.RegistrationID, Kind: X509, leaf: leaf}
	if ind != nil {
		x := ind.Attestation.X509
		if ind.Attestation.Type != AttestationX509 || x == nil {
			return nil, bad("Invalid certificate.", fmt.Errorf("individual enrollment %q uses %s attestation, not x509", ind.RegistrationID, ind.Attestation.Type))
		}
		a.individual = ind
		if o.IgnoreSignature {
			return a, nil
		}
		if x.ClientCertificates != nil {
			if matchThumbprint(leaf, x.ClientCertificates) {
				return a, nil
			}
			return nil, bad("Invalid certificate.", fmt.Errorf("certificate thumbprint does not match individual enrollment %q", ind.RegistrationID))
		}
		signer, err := verifyChain(c.PeerCertificates, x.SigningCertificates, now, o.IgnoreExpiry)
		if err != nil {
			return nil, bad("CA certificate not found.", err)
		}
		a.signer = signer
		return a, nil
	}
	var firstErr error
	for i := range groups {
		g := &groups[i]
		x := g.Attestation.X509
		if g.Attestation.Type != AttestationX509 || x == nil || x.SigningCertificates == nil {
			continue
		}
		if o.IgnoreSignature {
			a.group, a.EnrollmentGroupID = g, g.EnrollmentGroupID
			return a, nil
		}
		signer, err := verifyChain(c.PeerCertificates, x.SigningCertificates, now, o.IgnoreExpiry)
		if err == nil {
			a.group, a.EnrollmentGroupID, a.signer = g, g.EnrollmentGroupID, signer
			return a, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		return nil, &AttestError{ErrorCode: errCodeInvalidCertificate, Message: "CA certificate not found.", Err: errNoEnrollment}
	}
	return nil, bad("CA certificate not found.", firstErr)
}

// hasGroup reports whether a group of type t exists ("" = any).
func hasGroup(groups []EnrollmentGroup, t AttestationType) bool {
	for _, g := range groups {
		if t == "" || g.Attestation.Type == t {
			return true
		}
	}
	return false
}

// matchThumbprint compares the leaf's SHA-256 and SHA-1 fingerprints with
// the enrolled certificates.
func matchThumbprint(leaf *x509.Certificate, cs *X509Certificates) bool {
	s256 := sha256.Sum256(leaf.Raw)
	s1 := sha1.Sum(leaf.Raw)
	for _, c := range []*X509CertificateWithInfo{cs.Primary, cs.Secondary} {
		if c == nil {
			continue
		}
		t, err := thumbprints(c)
		if err != nil {
			continue
		}
		if t.sha256 != nil && subtle.ConstantTimeCompare(t.sha256, s256[:]) == 1 {
			return true
		}
		if t.sha256 == nil && t.sha1 != nil && subtle.ConstantTimeCompare(t.sha1, s1[:]) == 1 {
			return true
		}
	}
	return false
}

// verifyChain verifies chain (leaf first) up to one of the signing
// certificates, which may be a root or an intermediate CA: each is used as a
// trust anchor. It returns the anchor the chain ended at.
func verifyChain(chain []*x509.Certificate, cs *X509Certificates, now time.Time, ignoreExpiry bool) (*x509.Certificate, error) {
	if cs == nil {
		return nil, errors.New("enrollment has no signing certificate")
	}
	roots := x509.NewCertPool()
	var anchors []*x509.Certificate
	for _, c := range []*X509CertificateWithInfo{cs.Primary, cs.Secondary} {
		if c == nil || c.Certificate == "" {
			continue
		}
		cert, err := parseCertificate(c.Certificate)
		if err != nil {
			continue
		}
		roots.AddCert(cert)
		anchors = append(anchors, cert)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// With ignoreExpiry, try the instants at which each certificate starts
	// to be valid: one of them is inside every validity window if any is.
	times := []time.Time{now}
	if ignoreExpiry {
		for _, c := range append(append([]*x509.Certificate{}, chain...), anchors...) {
			times = append(times, c.NotBefore)
		}
	}
	var chains [][]*x509.Certificate
	var err error
	for _, t := range times {
		chains, err = chain[0].Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: inter,
			CurrentTime:   t,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		if err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	last := chains[0][len(chains[0])-1]
	for _, a := range anchors {
		if a.Equal(last) {
			return a, nil
		}
	}
	return last, nil
}
