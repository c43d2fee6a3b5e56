package dps

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// DeviceRegistration is the register request body (SPEC models.tsp
// DeviceRegistration; DPS-PROTOCOL.md §3.4).
type DeviceRegistration struct {
	RegistrationID string `json:"registrationId,omitempty"`
	// Payload is custom allocation data; D-PAYLOAD says it "must be a JSON
	// object". The Python SDK sends null, which is kept as "null".
	Payload json.RawMessage `json:"payload,omitempty"`
	TPM     *TPMAttestation `json:"tpm,omitempty"`
	// CSR is a base64 DER PKCS#10 request (api-version 2025-07-01-preview).
	CSR string `json:"csr,omitempty"`
}

// TPMAttestation is the tpm member of a DeviceRegistration. TPM attestation
// is not supported over MQTT (D-MQTT); the type exists so bodies that carry it
// still parse.
type TPMAttestation struct {
	EndorsementKey string `json:"endorsementKey"`
	StorageRootKey string `json:"storageRootKey,omitempty"`
}

// ParseDeviceRegistration parses a register request body. Following
// DPS-PROTOCOL.md Part A §7 it accepts an empty body (CS v1 without payload),
// {"registrationId":…} (EC, C, N, J), {"payload":…} (CS v1) and
// {"payload": null, "registrationId": …} with spaces (Python). Unknown
// members (e.g. the preview "clientCertificateCsr") are ignored. A payload
// that is neither a JSON object nor null is rejected (D-PAYLOAD).
func ParseDeviceRegistration(b []byte) (DeviceRegistration, error) {
	var r DeviceRegistration
	if len(bytes.TrimSpace(b)) == 0 {
		return r, nil
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return DeviceRegistration{}, jsonError(b, err)
	}
	if len(r.Payload) > 0 && r.Payload[0] != '{' && string(r.Payload) != "null" {
		return DeviceRegistration{}, newError(ErrInvalidPayload, "body.payload", string(r.Payload), -1,
			"payload must be a JSON object or null")
	}
	return r, nil
}

// jsonError wraps an encoding/json error from decoding b; the offset
// counts from 0, as every Error.Offset (JSONErrorOffset), or is -1.
func jsonError(b []byte, err error) *Error {
	msg := err.Error()
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		msg = JSONTypeError(te, "a JSON object")
	}
	return newError(ErrInvalidPayload, "body", "", JSONErrorOffset(b, err), msg)
}

// Status is a registration or operation status (SPEC models.tsp; §4.4).
type Status string

// Status values.
const (
	StatusUnassigned Status = "unassigned"
	StatusAssigning  Status = "assigning"
	StatusAssigned   Status = "assigned"
	StatusFailed     Status = "failed"
	StatusDisabled   Status = "disabled"
)

// Final reports whether s ends an operation: assigned, or failed or
// disabled (Part A §6, §8); unassigned and assigning ask for more polls.
func (s Status) Final() bool {
	return s == StatusAssigned || s == StatusFailed || s == StatusDisabled
}

// Substatus qualifies an assigned registration (SPEC models.tsp; §4.5, §9).
type Substatus string

// Substatus values.
const (
	SubstatusInitialAssignment                Substatus = "initialAssignment"
	SubstatusDeviceDataMigrated               Substatus = "deviceDataMigrated"
	SubstatusDeviceDataReset                  Substatus = "deviceDataReset"
	SubstatusReprovisionedToInitialAssignment Substatus = "reprovisionedToInitialAssignment"
)

// RegistrationOperationStatus is the body of 200 and 202 answers (SPEC
// models.tsp; §4.4). operationId and status are always written: the EC parser
// test's disabled body carries "operationId":"".
type RegistrationOperationStatus struct {
	OperationID       string                    `json:"operationId"`
	Status            Status                    `json:"status"`
	RegistrationState *DeviceRegistrationResult `json:"registrationState,omitempty"`
}

// DeviceRegistrationResult is registrationState (SPEC models.tsp; §4.5).
//
// The member order follows the bodies in EC
// sdk/tests/iot/provisioning/test_az_iot_provisioning_client_parser.c (the
// attestation object first), so those bodies marshal back byte for byte.
// Timestamps stay strings: the service writes 7 fractional digits, which
// time.Time would reformat (see FormatTimestamp).
type DeviceRegistrationResult struct {
	X509                   *X509RegistrationResult         `json:"x509,omitempty"`
	SymmetricKey           *SymmetricKeyRegistrationResult `json:"symmetricKey,omitempty"`
	TPM                    *TPMRegistrationResult          `json:"tpm,omitempty"`
	RegistrationID         string                          `json:"registrationId,omitempty"`
	CreatedDateTimeUTC     string                          `json:"createdDateTimeUtc,omitempty"`
	AssignedHub            string                          `json:"assignedHub,omitempty"`
	DeviceID               string                          `json:"deviceId,omitempty"`
	Status                 Status                          `json:"status,omitempty"`
	Substatus              Substatus                       `json:"substatus,omitempty"`
	ErrorCode              int                             `json:"errorCode,omitempty"`
	ErrorMessage           string                          `json:"errorMessage,omitempty"`
	LastUpdatedDateTimeUTC string                          `json:"lastUpdatedDateTimeUtc,omitempty"`
	ETag                   string                          `json:"etag,omitempty"`
	Payload                json.RawMessage                 `json:"payload,omitempty"`
	// IssuedCertificateChain is base64 certificates, leaf first
	// (2025-07-01-preview).
	IssuedCertificateChain []string `json:"issuedCertificateChain,omitempty"`
	// GenerationID is carried by older C# models (CS DeviceRegistrationResult.cs).
	GenerationID string `json:"generationId,omitempty"`
}

// X509RegistrationResult is registrationState.x509. An empty object is
// meaningful: the service sends "x509":{} (§4.5).
type X509RegistrationResult struct {
	CertificateInfo        *X509CertificateInfo `json:"certificateInfo,omitempty"`
	EnrollmentGroupID      string               `json:"enrollmentGroupId,omitempty"`
	SigningCertificateInfo *X509CertificateInfo `json:"signingCertificateInfo,omitempty"`
}

// X509CertificateInfo describes a certificate. All members are always
// written: the Java SDK requires every one of them (§4.4).
type X509CertificateInfo struct {
	SubjectName      string `json:"subjectName"`
	SHA1Thumbprint   string `json:"sha1Thumbprint"`
	SHA256Thumbprint string `json:"sha256Thumbprint"`
	IssuerName       string `json:"issuerName"`
	NotBeforeUTC     string `json:"notBeforeUtc"`
	NotAfterUTC      string `json:"notAfterUtc"`
	SerialNumber     string `json:"serialNumber"`
	Version          int    `json:"version"`
}

// SymmetricKeyRegistrationResult is registrationState.symmetricKey.
type SymmetricKeyRegistrationResult struct {
	EnrollmentGroupID string `json:"enrollmentGroupId,omitempty"`
}

// TPMRegistrationResult is registrationState.tpm.
type TPMRegistrationResult struct {
	AuthenticationKey string `json:"authenticationKey,omitempty"`
}

// ErrorBody is the body of an error answer (§4.6; CS ProvisioningErrorDetails,
// SPEC ProvisioningServiceErrorDetails), e.g.
// {"errorCode":401002,"trackingId":"…","message":"Invalid certificate.","timestampUtc":"…"}.
type ErrorBody struct {
	ErrorCode    int               `json:"errorCode"`
	TrackingID   string            `json:"trackingId"`
	Message      string            `json:"message"`
	TimestampUTC string            `json:"timestampUtc"`
	Info         map[string]string `json:"info,omitempty"`
}

// HTTPStatus returns the HTTP status in the first three digits of ErrorCode
// (401002 → 401; EC _az_iot_status_from_extended_status), or 0 when
// ErrorCode has fewer than three digits.
func (e ErrorBody) HTTPStatus() int {
	c := e.ErrorCode
	if c < 100 {
		return 0
	}
	for c >= 1000 {
		c /= 10
	}
	return c
}

// DPS error codes seen in public sources (DPS-PROTOCOL.md §4.7; no official
// catalogue exists).
const (
	ErrorCodeCustomAllocationFailed = 400207 // EC parser test
	ErrorCodeHubNotSpecified        = 400208 // C DPS_HUB_ERROR_NO_HUB
	ErrorCodeHubUnauthorized        = 400209 // C DPS_HUB_ERROR_UNAUTH
	ErrorCodeUnauthorized           = 401000 // I-43157 "Unauthorized"
	ErrorCodeInvalidCertificate     = 401002 // EC test "Invalid certificate."
	ErrorCodeEnrollmentNotFound     = 404201 // CS ProvisioningE2ETests.cs
	ErrorCodePreconditionFailed     = 409203 // C common_prov_e2e.c, concurrent registration
)

// NewOperationID returns an operation id of the observed form
// "4.<16 hex>.<uuid v4>" (§4.4: "4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d"),
// reading 24 bytes from r (pass crypto/rand.Reader, or a fixed reader in
// tests).
func NewOperationID(r io.Reader) (string, error) {
	var b [24]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("dps: operation id: %w", err)
	}
	u := b[8:]
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("4.%x.%x-%x-%x-%x-%x", b[:8], u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]), nil
}

// ValidOperationIDFormat reports whether s looks like a DPS operation id:
// one digit, ".", 16 lower-case hex digits, ".", and a lower-case UUID
// (8-4-4-4-12 hex digits) — the form of every id in §4.4.
func ValidOperationIDFormat(s string) bool {
	if len(s) != 1+1+16+1+36 || s[0] < '0' || s[0] > '9' || s[1] != '.' || s[18] != '.' {
		return false
	}
	if !isLowerHex(s[2:18]) {
		return false
	}
	uuid := s[19:]
	for i, part := range [...][2]int{{0, 8}, {9, 13}, {14, 18}, {19, 23}, {24, 36}} {
		if !isLowerHex(uuid[part[0]:part[1]]) {
			return false
		}
		if i < 4 && uuid[part[1]] != '-' {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s != ""
}

// FormatTimestamp formats t in UTC the way the service writes timestamps:
// seven fractional digits and "Z", e.g. "2020-04-10T03:11:13.0276997Z" (§4.5).
func FormatTimestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.0000000Z")
}
