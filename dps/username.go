package dps

import (
	"fmt"
	"net/url"
	"strings"
)

// DefaultAPIVersion is the api-version of the documented MQTT username
// (D-MQTT, all versions 2019–2023; DPS-PROTOCOL.md §1.2).
const DefaultAPIVersion = "2019-03-31"

const (
	registrationsSeg  = "/registrations/"
	apiVersionKey     = "api-version="
	clientVersionName = "ClientVersion"
)

// Username is the MQTT CONNECT username of a DPS device:
//
//	{idScope}/registrations/{registrationId}/api-version={ver}[&ClientVersion={userAgent}]
//
// DPS-PROTOCOL.md §1.2 (D-MQTT; EC az_iot_provisioning_client.c; C
// prov_transport_mqtt_common.c "%s/registrations/%s/api-version=%s&ClientVersion=%s").
type Username struct {
	IDScope        string
	RegistrationID string
	// APIVersion is the api-version value, e.g. "2019-03-31",
	// "2021-06-01" (C SDK) or "2025-07-01-preview" (EC/CS CSR branches).
	APIVersion string
	// ClientVersion is the ClientVersion value exactly as on the wire: raw
	// (EC "c/1.2.3"), percent-encoded (Node "azure-iot-provisioning-device%2F1.9.2",
	// Python "%28", "%3B", "%20") or even an api-version (Java's bug). Empty
	// means the suffix is absent. See DecodedClientVersion.
	ClientVersion string
}

// String builds the username. An empty APIVersion is written as
// DefaultAPIVersion; an empty ClientVersion leaves the "&ClientVersion=" suffix
// out. Fields are written as given: no SDK percent-encodes the scope or the
// registration id (§1.2).
func (u Username) String() string {
	ver := u.APIVersion
	if ver == "" {
		ver = DefaultAPIVersion
	}
	s := u.IDScope + registrationsSeg + u.RegistrationID + "/" + apiVersionKey + ver
	if u.ClientVersion != "" {
		s += "&" + clientVersionName + "=" + u.ClientVersion
	}
	return s
}

// DecodedClientVersion returns ClientVersion with percent-escapes decoded
// ("+" is kept: the SDKs' encoders, JavaScript encodeURIComponent, Python
// quote and .NET Uri.EscapeDataString, never produce it for a space).
func (u Username) DecodedClientVersion() (string, error) {
	v, err := url.PathUnescape(u.ClientVersion)
	if err != nil {
		return "", newError(ErrInvalidUsername, "username.ClientVersion", u.ClientVersion, -1,
			"bad percent-encoding: "+err.Error())
	}
	return v, nil
}

// ParseUsername parses a DPS MQTT username.
//
// It accepts every form the SDKs send (DPS-PROTOCOL.md §1.2): any api-version
// made of letters, digits, "-" and ".", with or without a ClientVersion
// parameter whose value is kept raw. It rejects, with the byte offset of the
// fault: an empty id scope, a missing "/registrations/", an invalid
// registration id, a missing or empty "api-version=", and parameters other
// than one ClientVersion.
func ParseUsername(s string) (Username, error) {
	const field = "username"
	fail := func(off int, msg string) (Username, error) {
		return Username{}, newError(ErrInvalidUsername, field, s, off, msg)
	}
	if s == "" {
		return fail(0, "empty")
	}

	// D-MQTT: Username = {idScope}/registrations/{registration_id}/api-version=2019-03-31
	slash := strings.IndexByte(s, '/')
	switch {
	case slash < 0:
		return fail(len(s), `missing "/registrations/"`)
	case slash == 0:
		return fail(0, "empty id scope")
	case !strings.HasPrefix(s[slash:], registrationsSeg):
		return fail(slash, `expected "/registrations/" after the id scope`)
	}
	u := Username{IDScope: s[:slash]}

	idStart := slash + len(registrationsSeg)
	idLen := strings.IndexByte(s[idStart:], '/')
	if idLen < 0 {
		if err := ValidateRegistrationID(s[idStart:]); err != nil {
			return Username{}, shift(err, field, s, ErrInvalidUsername, idStart)
		}
		return fail(len(s), `missing "/api-version="`)
	}
	u.RegistrationID = s[idStart : idStart+idLen]
	// §1.1: the registration id is sent unmodified (never URL-encoded).
	if err := ValidateRegistrationID(u.RegistrationID); err != nil {
		return Username{}, shift(err, field, s, ErrInvalidUsername, idStart)
	}

	verKey := idStart + idLen + 1
	if !strings.HasPrefix(s[verKey:], apiVersionKey) {
		return fail(verKey, "api-version missing")
	}
	verStart := verKey + len(apiVersionKey)
	verEnd := len(s)
	if amp := strings.IndexByte(s[verStart:], '&'); amp >= 0 {
		verEnd = verStart + amp
	}
	u.APIVersion = s[verStart:verEnd]
	if u.APIVersion == "" {
		return fail(verStart, "empty api-version")
	}
	for i := verStart; i < verEnd; i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '.' {
			return fail(i, "invalid character "+describeChar(s[i:])+" in api-version")
		}
	}

	// §1.2: an optional "&ClientVersion={userAgent}" follows; its value is
	// raw (EC), percent-encoded (N, P, CS) or an api-version (J).
	seen := false
	for off := verEnd; off < len(s); {
		off++ // skip '&'
		param, key, value, hasEq, end := cutParam(s, off)
		if problem := paramProblem("parameter", param, key, hasEq); problem != "" {
			return fail(off, problem)
		}
		switch {
		case !strings.EqualFold(key, clientVersionName):
			return fail(off, fmt.Sprintf("unknown parameter %q", key))
		case seen:
			return fail(off, "duplicate ClientVersion")
		}
		seen = true
		u.ClientVersion = value
		off = end
	}
	return u, nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
