package dps

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// SASPrefix starts every SAS token (D-MQTT).
const SASPrefix = "SharedAccessSignature "

// DefaultKeyName is the documented skn value (D-MQTT "skn=registration"; C
// prov_auth_client.c KEY_NAME_VALUE).
const DefaultKeyName = "registration"

// DefaultSkew is the clock skew a Verifier allows by default: the C# service
// SDK's MaxClockSkew (CS provisioning/service/src/Auth/SharedAccessSignature.cs;
// DPS-PROTOCOL.md Part A §4).
const DefaultSkew = 5 * time.Minute

// SREncoding selects how BuildSASToken writes the sr (resource URI) field.
// The signature covers the sr text exactly as written, so every style
// verifies (DPS-PROTOCOL.md §1.3).
type SREncoding int

const (
	// SRLower percent-encodes with lower-case hex ("%2f"), the documented
	// form (D-ACCESS "lower case URL-encoding"; EC, C SDKs). The default.
	SRLower SREncoding = iota
	// SRUpper percent-encodes with upper-case hex ("%2F") like the Python
	// and .NET SDKs and MQTT.fx.
	SRUpper
	// SRRaw writes the resource URI unencoded like the Node and Java SDKs.
	SRRaw
)

// String returns "lower", "upper" or "raw".
func (e SREncoding) String() string {
	switch e {
	case SRLower:
		return "lower"
	case SRUpper:
		return "upper"
	case SRRaw:
		return "raw"
	}
	return "SREncoding(" + strconv.Itoa(int(e)) + ")"
}

// SASOptions are the inputs of BuildSASToken.
type SASOptions struct {
	IDScope, RegistrationID string
	Key                     string    // base64 symmetric key (device key or derived key)
	Expiry                  time.Time // the token's se
	Encoding                SREncoding
	KeyName                 string // skn value; "" means the documented "registration"
	OmitKeyName             bool   // leave skn out (Python SDK / EC sample style)
}

// BuildSASToken builds a DPS SAS token
//
//	SharedAccessSignature sr={resource}&sig={signature}&se={expiry}&skn={keyName}
//
// with resource = {idScope}/registrations/{registrationId} encoded per
// o.Encoding, signature = base64(HMAC-SHA256(base64decode(key), sr + "\n" + se))
// percent-encoded with upper-case hex, and se = o.Expiry in Unix seconds.
//
// D-MQTT; DPS-PROTOCOL.md Part A §4, §1.3; EC az_iot_provisioning_client_sas.c,
// C prov_auth_client.c prov_auth_construct_sas_token.
func BuildSASToken(o SASOptions) (string, error) {
	if o.IDScope == "" {
		return "", newError(ErrInvalidSASToken, "sas.sr", "", -1, "empty id scope")
	}
	if o.RegistrationID == "" {
		return "", newError(ErrInvalidSASToken, "sas.sr", "", -1, "empty registration id")
	}
	if o.Encoding < SRLower || o.Encoding > SRRaw {
		return "", newError(ErrInvalidSASToken, "sas.sr", "", -1, "unknown encoding "+o.Encoding.String())
	}
	if o.Expiry.IsZero() || o.Expiry.Unix() < 0 || o.Expiry.Unix() > MaxExpiryUnix {
		// The range ParseSASToken accepts: a token built is one it parses.
		return "", newError(ErrInvalidSASToken, "sas.se", "", -1, "expiry must be a time from 1970-01-01 to 9999-12-31")
	}
	key, err := decodeKey("sas.key", o.Key)
	if err != nil {
		return "", err
	}
	sr := encodeResource(o.IDScope, o.RegistrationID, o.Encoding)
	se := strconv.FormatInt(o.Expiry.Unix(), 10)
	sig := base64.StdEncoding.EncodeToString(mac(key, stringToSign(sr, se)))
	skn := o.KeyName
	if skn == "" {
		skn = DefaultKeyName
	}
	return formatSASToken(sr, sig, se, skn, !o.OmitKeyName), nil
}

// formatSASToken writes the fields in the documented order sr, sig, se, skn.
// sig and skn are percent-encoded (upper-case hex, as in EC's test vector
// "cS1eHM%2FlDjs…"); sr and se are written as given.
func formatSASToken(sr, sig, se, skn string, withKeyName bool) string {
	s := SASPrefix + "sr=" + sr + "&sig=" + url.QueryEscape(sig) + "&se=" + se
	if withKeyName {
		s += "&skn=" + url.QueryEscape(skn)
	}
	return s
}

// stringToSign is the SAS string-to-sign: the sr text exactly as in the
// token, "\n", the se text (§1.3, every SDK; EC comment
// "url-encoded(<resource-string>)\n<expiration-time>").
func stringToSign(sr, se string) string { return sr + "\n" + se }

// resourceURI is the unencoded SAS resource {idScope}/registrations/{registrationId}.
func resourceURI(idScope, registrationID string) string {
	return idScope + registrationsSeg + registrationID
}

// encodeResource writes the resource URI in the given style. Percent-encoding
// escapes every byte outside the RFC 3986 unreserved set, like C's
// URL_EncodeString and Python's quote(uri, safe="").
func encodeResource(idScope, registrationID string, enc SREncoding) string {
	uri := resourceURI(idScope, registrationID)
	if enc == SRRaw {
		return uri
	}
	hex := "0123456789ABCDEF"
	if enc == SRLower {
		hex = "0123456789abcdef"
	}
	var b strings.Builder
	for i := 0; i < len(uri); i++ {
		c := uri[i]
		if isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// decodeKey base64-decodes a symmetric key. The key never appears in the error.
func decodeKey(field, key string) ([]byte, error) {
	if key == "" {
		return nil, newError(ErrInvalidKey, field, "", -1, "empty key")
	}
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		msg := "key is not standard base64"
		if ce, ok := err.(base64.CorruptInputError); ok {
			return nil, newError(ErrInvalidKey, field, redacted, int(ce), msg)
		}
		return nil, newError(ErrInvalidKey, field, redacted, -1, msg)
	}
	return k, nil
}

func mac(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// SignString returns base64(HMAC-SHA256(base64decode(key), msg)), the SAS
// signature primitive (§1.3; D-ACCESS "The key is decoded from base64 and
// used as key to do the HMAC-SHA256 computation"; P signing_mechanism.py).
func SignString(key, msg string) (string, error) {
	k, err := decodeKey("key", key)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(mac(k, msg)), nil
}

// DeriveDeviceKey returns the device key of registrationID under a symmetric
// key enrollment group: base64(HMAC-SHA256(base64decode(groupKey),
// registrationID)). The registration id bytes are hashed as given, so case
// matters here even though DPS compares ids case-insensitively.
//
// DPS-PROTOCOL.md §1.4 (D-ACCESS, D-SYMKEY; N register_symkeygroup.js
// computeDerivedSymmetricKey; CLI azext_iot/common/utility.py compute_device_key).
func DeriveDeviceKey(groupKey, registrationID string) (string, error) {
	if registrationID == "" {
		return "", newError(ErrInvalidRegistrationID, "registration id", "", 0, "empty")
	}
	k, err := decodeKey("group key", groupKey)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(mac(k, registrationID)), nil
}

// SASToken is a parsed SAS token.
type SASToken struct {
	// Resource is the sr value exactly as in the token (not decoded): the
	// signature covers this text, escape casing included.
	Resource string
	// Signature is the URL-decoded sig value, standard base64 text.
	Signature string
	// Expiry is the URL-decoded se value (decimal Unix seconds; the
	// SDKs never escape it, so it is the text as sent). The signature
	// covers this text.
	Expiry string
	// ExpiresAt is Expiry as a time (UTC).
	ExpiresAt time.Time
	// KeyName is the URL-decoded skn value; HasKeyName reports whether an
	// skn field was present at all (Java sends "skn=" empty, Python none).
	KeyName    string
	HasKeyName bool
}

// ParseSASToken parses a SAS token as the reference verifier does (CS
// provisioning/service/src/Auth/SharedAccessSignature.cs; DPS-PROTOCOL.md
// §1.3, Part A §4): the "SharedAccessSignature " prefix is required; fields
// are split on "&" and "=", in any order, with names compared ignoring
// ASCII case only; empty fields are skipped and unknown fields ignored; a
// repeated field is an error; sig, se and sr are required and skn is
// optional; every value except sr is URL-decoded, sr is kept raw. sig must
// be standard base64 and se a decimal number of seconds.
func ParseSASToken(s string) (*SASToken, error) {
	fail := func(field string, off int, value, msg string) (*SASToken, error) {
		return nil, newError(ErrInvalidSASToken, field, value, off, msg)
	}
	if !strings.HasPrefix(s, SASPrefix) {
		return fail("sas", 0, "", `missing "SharedAccessSignature " prefix`)
	}
	var (
		t                    SASToken
		hasSR, hasSig, hasSE bool
	)
	for off := len(SASPrefix); off <= len(s); {
		f, name, raw, hasEq, end := cutParam(s, off)
		start := off
		off = end + 1
		if f == "" {
			continue
		}
		if !hasEq {
			// The text is left out: it may be a signature missing its "sig=".
			return fail("sas", start, "", `field has no "="`)
		}
		valOff := start + len(name) + 1
		// Names compare ASCII-case-insensitively, as the reference's
		// ordinal comparison does: Unicode case mapping would make
		// "s\u0130g" (dotted capital I) a sig field, which the redactors
		// (strings.EqualFold) do not recognise. EqualFold matches every
		// name this takes for sig, and more ("\u017fig"), which is safe.
		key := asciiLower(name)
		var seen *bool
		switch key {
		case "sr":
			seen = &hasSR
		case "sig":
			seen = &hasSig
		case "se":
			seen = &hasSE
		case "skn":
			seen = &t.HasKeyName
		default:
			continue // unknown fields are ignored, as by the reference parser
		}
		// The reference parser adds fields to a case-insensitive dictionary,
		// which throws on a repeated name.
		if *seen {
			return fail("sas."+key, start, "", "duplicate field "+name)
		}
		*seen = true
		if key == "sr" {
			// §1.3: "sr is kept raw ... the casing of escape characters must be preserved".
			t.Resource = raw
			continue
		}
		val, err := url.QueryUnescape(raw)
		if err != nil {
			v := raw
			if key == "sig" {
				v = redacted
			}
			return fail("sas."+key, valOff, v, "bad URL encoding")
		}
		switch key {
		case "sig":
			t.Signature = val
		case "se":
			t.Expiry = val
		case "skn":
			t.KeyName = val
		}
	}
	switch {
	case !hasSR:
		return fail("sas.sr", -1, "", "missing sr")
	case !hasSig:
		return fail("sas.sig", -1, "", "missing sig")
	case !hasSE:
		return fail("sas.se", -1, "", "missing se")
	case t.Resource == "":
		return fail("sas.sr", -1, "", "empty sr")
	case t.Signature == "":
		return fail("sas.sig", -1, "", "empty sig")
	}
	if _, err := base64.StdEncoding.DecodeString(t.Signature); err != nil {
		return fail("sas.sig", -1, redacted, "sig is not standard base64")
	}
	// se is "the decimal se text" (§1.3): digits only, no sign.
	if t.Expiry == "" || strings.TrimLeft(t.Expiry, "0123456789") != "" {
		return fail("sas.se", -1, t.Expiry, "se is not a decimal number of seconds")
	}
	sec, err := strconv.ParseInt(t.Expiry, 10, 64)
	if err != nil || sec > MaxExpiryUnix {
		return fail("sas.se", -1, t.Expiry, "se out of range")
	}
	t.ExpiresAt = time.Unix(sec, 0).UTC()
	return &t, nil
}

// MaxExpiryUnix is the latest se (Unix seconds) BuildSASToken writes and
// ParseSASToken accepts, 9999-12-31T23:59:59Z: it keeps ExpiresAt plus any
// skew inside time.Time's well-behaved range (year 9999).
const MaxExpiryUnix = 253402300799

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// DecodedResource returns the percent-decoded sr value, e.g.
// "0neFEEDC0DE/registrations/myRegistrationId" for raw, "%2f" and "%2F" forms.
func (t *SASToken) DecodedResource() (string, error) {
	r, err := url.PathUnescape(t.Resource)
	if err != nil {
		return "", newError(ErrInvalidSASToken, "sas.sr", t.Resource, -1, "bad percent-encoding in sr")
	}
	return r, nil
}

// Verifier checks SAS tokens presented by devices.
type Verifier struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Skew is how long after se a token is still accepted. Zero means
	// DefaultSkew (5 minutes); a negative value allows no skew.
	Skew time.Duration
}

// CheckKeyName reports (ErrInvalidSASToken) a key name other than absent,
// empty or "registration" (Part A §4). Verify and the device rules judge
// skn with it.
func (t *SASToken) CheckKeyName() error {
	if t.HasKeyName && t.KeyName != "" && t.KeyName != DefaultKeyName {
		return newError(ErrInvalidSASToken, "sas.skn", t.KeyName, -1,
			fmt.Sprintf("skn must be absent, empty or %q", DefaultKeyName))
	}
	return nil
}

// CheckResource reports (ErrResourceMismatch, or the decoding error) a
// decoded sr other than {idScope}/registrations/{registrationID} (Part A
// §4): the id scope compared exactly, the registration id as
// EqualRegistrationID does. Verify and the device rules judge sr with it.
func (t *SASToken) CheckResource(idScope, registrationID string) error {
	res, err := t.DecodedResource()
	if err != nil {
		return err
	}
	prefix := idScope + registrationsSeg
	if !strings.HasPrefix(res, prefix) {
		return newError(ErrResourceMismatch, "sas.sr", t.Resource, -1,
			"resource is not under id scope "+strconv.Quote(idScope))
	}
	if !EqualRegistrationID(res[len(prefix):], registrationID) {
		return newError(ErrResourceMismatch, "sas.sr", t.Resource, -1,
			"resource names another registration than "+strconv.Quote(registrationID))
	}
	return nil
}

// Verify checks t for the device registrationID of idScope against the
// device's symmetric keys (primary, then secondary; for a group enrollment
// pass the derived key). Following DPS-PROTOCOL.md Part A §4 it checks, in
// this order and with a distinct error each:
//
//   - skn is absent, empty or "registration" (ErrInvalidSASToken);
//   - the decoded sr is {idScope}/registrations/{registrationId}, the scope
//     compared exactly and the registration id case-insensitively
//     (ErrResourceMismatch);
//   - se plus the skew is not in the past (ErrTokenExpired); tokens valid far
//     into the future are accepted;
//   - sig equals base64(HMAC-SHA256(key, raw sr + "\n" + se)) for one of
//     keys, compared in constant time (ErrSignatureMismatch), as
//     CheckSignature does.
func (v Verifier) Verify(t *SASToken, idScope, registrationID string, keys ...string) error {
	if t == nil {
		return newError(ErrInvalidSASToken, "sas", "", -1, "no token")
	}
	if err := t.CheckKeyName(); err != nil {
		return err
	}
	if err := t.CheckResource(idScope, registrationID); err != nil {
		return err
	}

	// Part A §4: "allow 5 minutes of clock skew".
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	skew := v.Skew
	if skew == 0 {
		skew = DefaultSkew
	} else if skew < 0 {
		skew = 0
	}
	if at := now(); at.After(t.ExpiresAt.Add(skew)) {
		return newError(ErrTokenExpired, "sas.se", t.Expiry, -1,
			fmt.Sprintf("expired at %s, %s ago (skew allowed %s)",
				t.ExpiresAt.Format(time.RFC3339), at.Sub(t.ExpiresAt).Truncate(time.Second), skew))
	}

	return t.CheckSignature(keys...)
}

// CheckSignature reports whether sig is base64(HMAC-SHA256(key, raw sr +
// "\n" + se)) for one of keys (Part A §4: "compare signatures in constant
// time; try the primary then the secondary key"). Empty keys are skipped
// (an enrollment without a secondary key), and every other key is tried
// before an error is returned. It returns nil when one matches;
// ErrInvalidSASToken for a sig that is not standard base64; ErrInvalidKey
// for the first key that is not base64, or when no key is given; and
// ErrSignatureMismatch when none matches. It judges nothing else: Verify
// does the rest, and the device rules judge the signature of a device
// whose key they were given with it.
func (t *SASToken) CheckSignature(keys ...string) error {
	sig, err := base64.StdEncoding.DecodeString(t.Signature)
	if err != nil {
		return newError(ErrInvalidSASToken, "sas.sig", redacted, -1, "sig is not standard base64")
	}
	msg := stringToSign(t.Resource, t.Expiry)
	var badKey error
	tried := 0
	for i, key := range keys {
		if key == "" {
			continue
		}
		k, err := decodeKey(fmt.Sprintf("key[%d]", i), key)
		if err != nil {
			badKey = cmp.Or(badKey, err)
			continue
		}
		tried++
		if hmac.Equal(mac(k, msg), sig) {
			return nil
		}
	}
	switch {
	case badKey != nil:
		return badKey
	case tried == 0:
		return newError(ErrInvalidKey, "key", "", -1, "no key to verify with")
	}
	return newError(ErrSignatureMismatch, "sas.sig", redacted, -1,
		fmt.Sprintf("signature matches none of %d key(s)", tried))
}

// asciiLower maps A-Z to a-z and leaves every other byte as it is.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lowerASCII(c)
	}
	return string(b)
}
