package dps

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// Bodies quoted in DPS-PROTOCOL.md §4.4–4.6, byte for byte from EC
// sdk/tests/iot/provisioning/test_az_iot_provisioning_client_parser.c.
const (
	bodyAssigning = `{"operationId":"4.d0a671905ea5b2c8.42d78160-4c78-479e-8be7-61d5e55dac0d","status":"assigning"}`

	bodyAssigningState = `{"operationId":"4.d0a671905ea5b2c8.42d78160-4c78-479e-8be7-61d5e55dac0d","status":"assigning",` +
		`"registrationState":{"registrationId":"myRegistrationId","status":"assigning"}}`

	bodyAssigned = `{"operationId":"4.d0a671905ea5b2c8.42d78160-4c78-479e-8be7-61d5e55dac0d","status":"assigned",` +
		`"registrationState":{"x509":{},"registrationId":"myRegistrationId","createdDateTimeUtc":"2020-04-10T03:11:13.0276997Z",` +
		`"assignedHub":"contoso.azure-devices.net","deviceId":"my-device-id1","status":"assigned","substatus":"initialAssignment",` +
		`"lastUpdatedDateTimeUtc":"2020-04-10T03:11:13.2096201Z","etag":"IjYxMDA4ZDQ2LTAwMDAtMDEwMC0wMDAwLTVlOGZlM2QxMDAwMCI="}}`

	bodyFailed = `{"operationId":"4.d0a671905ea5b2c8.42d78160-4c78-479e-8be7-61d5e55dac0d","status":"failed",` +
		`"registrationState":{"registrationId":"myRegistrationId","createdDateTimeUtc":"2020-04-10T03:11:13.0276997Z",` +
		`"status":"failed","errorCode":400207,"errorMessage":"Custom allocation failed with status code: 400",` +
		`"lastUpdatedDateTimeUtc":"2020-04-10T05:24:22.4718526Z","etag":"IjYxMDA4ZDQ2LTAwMDAtMDEwMC0wMDAwLTVlOGZlM2QxMDAwMCI="}}`

	bodyDisabled = `{"operationId":"","status":"disabled","registrationState":{"registrationId":"myRegistrationId","status":"disabled"}}`

	bodyError401002 = `{"errorCode":401002,"trackingId":"8ad0463c-6427-4479-9dfa-3e8bb7003e9b","message":"Invalid certificate.","timestampUtc":"2020-04-10T05:24:22.4718526Z"}`
)

func TestOperationStatusRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		check func(*testing.T, RegistrationOperationStatus)
	}{
		{"202 assigning", bodyAssigning, func(t *testing.T, s RegistrationOperationStatus) {
			if s.Status != StatusAssigning || s.RegistrationState != nil {
				t.Errorf("got %+v", s)
			}
		}},
		{"202 assigning with state", bodyAssigningState, func(t *testing.T, s RegistrationOperationStatus) {
			if rs := s.RegistrationState; rs == nil || rs.RegistrationID != "myRegistrationId" || rs.Status != StatusAssigning {
				t.Errorf("got %+v", s.RegistrationState)
			}
		}},
		{"200 assigned with x509:{}", bodyAssigned, func(t *testing.T, s RegistrationOperationStatus) {
			rs := s.RegistrationState
			if rs == nil || rs.X509 == nil || *rs.X509 != (X509RegistrationResult{}) {
				t.Fatalf("x509 = %+v, want an empty object", rs)
			}
			if rs.AssignedHub != "contoso.azure-devices.net" || rs.DeviceID != "my-device-id1" ||
				rs.Substatus != SubstatusInitialAssignment || rs.CreatedDateTimeUTC != "2020-04-10T03:11:13.0276997Z" {
				t.Errorf("got %+v", rs)
			}
		}},
		{"200 failed 400207", bodyFailed, func(t *testing.T, s RegistrationOperationStatus) {
			rs := s.RegistrationState
			if s.Status != StatusFailed || rs.ErrorCode != ErrorCodeCustomAllocationFailed || rs.ErrorMessage != "Custom allocation failed with status code: 400" {
				t.Errorf("got %+v", rs)
			}
		}},
		{"200 disabled, empty operationId", bodyDisabled, func(t *testing.T, s RegistrationOperationStatus) {
			if s.OperationID != "" || s.Status != StatusDisabled || s.RegistrationState.Status != StatusDisabled {
				t.Errorf("got %+v", s)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s RegistrationOperationStatus
			if err := json.Unmarshal([]byte(tt.body), &s); err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
			out, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tt.body {
				t.Errorf("round trip\n got %s\nwant %s", out, tt.body)
			}
		})
	}
}

func TestErrorBody(t *testing.T) {
	var e ErrorBody
	if err := json.Unmarshal([]byte(bodyError401002), &e); err != nil {
		t.Fatal(err)
	}
	want := ErrorBody{ErrorCode: ErrorCodeInvalidCertificate, TrackingID: "8ad0463c-6427-4479-9dfa-3e8bb7003e9b",
		Message: "Invalid certificate.", TimestampUTC: "2020-04-10T05:24:22.4718526Z"}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("got %+v, want %+v", e, want)
	}
	out, _ := json.Marshal(e)
	if string(out) != bodyError401002 {
		t.Errorf("round trip\n got %s\nwant %s", out, bodyError401002)
	}
	withInfo := ErrorBody{ErrorCode: 429001, Info: map[string]string{"retryAfter": "3"}}
	out, _ = json.Marshal(withInfo)
	if want := `{"errorCode":429001,"trackingId":"","message":"","timestampUtc":"","info":{"retryAfter":"3"}}`; string(out) != want {
		t.Errorf("Marshal = %s, want %s", out, want)
	}
}

func TestErrorBodyHTTPStatus(t *testing.T) {
	tests := []struct{ code, want int }{
		{401002, 401}, {401000, 401}, {400207, 400}, {404201, 404}, {409203, 409},
		{429, 429}, {5000000, 500}, {99, 0}, {0, 0}, {-401002, 0},
	}
	for _, tt := range tests {
		if got := (ErrorBody{ErrorCode: tt.code}).HTTPStatus(); got != tt.want {
			t.Errorf("HTTPStatus(%d) = %d, want %d", tt.code, got, tt.want)
		}
	}
}

func TestDeviceRegistrationResultAllFields(t *testing.T) {
	info := &X509CertificateInfo{SubjectName: "CN=dev", SHA1Thumbprint: "A", SHA256Thumbprint: "B", IssuerName: "CN=ca",
		NotBeforeUTC: "2019-08-24T14:15:22Z", NotAfterUTC: "2029-08-24T14:15:22Z", SerialNumber: "01", Version: 3}
	r := DeviceRegistrationResult{
		X509:                   &X509RegistrationResult{CertificateInfo: info, EnrollmentGroupID: "g", SigningCertificateInfo: info},
		SymmetricKey:           &SymmetricKeyRegistrationResult{EnrollmentGroupID: "sg"},
		TPM:                    &TPMRegistrationResult{AuthenticationKey: "ak"},
		RegistrationID:         "dev",
		CreatedDateTimeUTC:     "c",
		AssignedHub:            "h",
		DeviceID:               "d",
		Status:                 StatusAssigned,
		Substatus:              SubstatusDeviceDataMigrated,
		ErrorCode:              1,
		ErrorMessage:           "m",
		LastUpdatedDateTimeUTC: "u",
		ETag:                   "e",
		Payload:                json.RawMessage(`{"a":1}`),
		IssuedCertificateChain: []string{"leaf", "root"},
		GenerationID:           "gen",
	}
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"registrationId", "createdDateTimeUtc", "assignedHub", "deviceId", "status", "substatus",
		"errorCode", "errorMessage", "lastUpdatedDateTimeUtc", "etag", "payload", "tpm", "x509", "symmetricKey",
		"issuedCertificateChain", "generationId"} {
		if _, ok := m[k]; !ok {
			t.Errorf("member %q missing from %s", k, out)
		}
	}
	if len(m) != 16 {
		t.Errorf("%d members, want 16", len(m))
	}
	for _, k := range []string{`"certificateInfo"`, `"enrollmentGroupId":"g"`, `"signingCertificateInfo"`, `"subjectName"`,
		`"sha1Thumbprint"`, `"sha256Thumbprint"`, `"issuerName"`, `"notBeforeUtc"`, `"notAfterUtc"`, `"serialNumber"`,
		`"version":3`, `"authenticationKey":"ak"`, `"enrollmentGroupId":"sg"`} {
		if !bytes.Contains(out, []byte(k)) {
			t.Errorf("%s missing from %s", k, out)
		}
	}
	var back DeviceRegistrationResult
	if err := json.Unmarshal(out, &back); err != nil || !reflect.DeepEqual(back, r) {
		t.Errorf("round trip = %+v, %v", back, err)
	}
	// Empty certificate info still writes every member (the Java SDK needs them).
	out, _ = json.Marshal(X509CertificateInfo{})
	if want := `{"subjectName":"","sha1Thumbprint":"","sha256Thumbprint":"","issuerName":"","notBeforeUtc":"","notAfterUtc":"","serialNumber":"","version":0}`; string(out) != want {
		t.Errorf("Marshal(X509CertificateInfo{}) = %s", out)
	}
}

func TestParseDeviceRegistration(t *testing.T) {
	tests := []struct {
		name string
		body string
		want DeviceRegistration
	}{
		{"empty (CS v1)", "", DeviceRegistration{}},
		{"whitespace (N/P poll style)", " ", DeviceRegistration{}},
		{"EC/N/J registrationId", `{"registrationId":"myRegistrationId"}`, DeviceRegistration{RegistrationID: "myRegistrationId"}},
		{"Python sort_keys with null payload", `{"payload": null, "registrationId": "myRegistrationId"}`,
			DeviceRegistration{RegistrationID: "myRegistrationId", Payload: json.RawMessage("null")}},
		{"CS v1 payload only", `{"payload":{"modelId":"dtmi:com:example:Thermostat;1"}}`,
			DeviceRegistration{Payload: json.RawMessage(`{"modelId":"dtmi:com:example:Thermostat;1"}`)}},
		{"EC with payload", `{"registrationId":"d","payload":{"a":[1,2]}}`,
			DeviceRegistration{RegistrationID: "d", Payload: json.RawMessage(`{"a":[1,2]}`)}},
		{"CSR preview", `{"registrationId":"d","csr":"MIIB"}`, DeviceRegistration{RegistrationID: "d", CSR: "MIIB"}},
		{"TPM", `{"registrationId":"d","tpm":{"endorsementKey":"ek","storageRootKey":"srk"}}`,
			DeviceRegistration{RegistrationID: "d", TPM: &TPMAttestation{EndorsementKey: "ek", StorageRootKey: "srk"}}},
		{"unknown member ignored", `{"registrationId":"d","clientCertificateCsr":"x"}`, DeviceRegistration{RegistrationID: "d"}},
		{"JSON null", `null`, DeviceRegistration{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDeviceRegistration([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}

	// EC's exact request body marshals byte for byte
	// (test_az_iot_provisioning_client_register_get_request_payload.c).
	out, _ := json.Marshal(DeviceRegistration{RegistrationID: "myRegistrationId"})
	if string(out) != `{"registrationId":"myRegistrationId"}` {
		t.Errorf("Marshal = %s", out)
	}
	// Python's body keeps its null payload.
	py, _ := ParseDeviceRegistration([]byte(`{"payload": null, "registrationId": "x"}`))
	out, _ = json.Marshal(py)
	if string(out) != `{"registrationId":"x","payload":null}` {
		t.Errorf("Marshal(python body) = %s", out)
	}
}

func TestParseDeviceRegistrationErrors(t *testing.T) {
	tests := []struct {
		name, body string
		off        int
	}{
		// Offsets count from 0 and point at the bad byte or value, as
		// dps.Error offsets elsewhere (they were one past it).
		{"truncated", `{"registrationId":`, 18},
		{"syntax", `{"registrationId" "x"}`, 18},
		{"array", `[]`, 0},
		{"wrong type", `{"registrationId":1}`, 18},
		{"trailing garbage", `{} x`, 3},
		{"payload string", `{"payload":"text"}`, -1},
		{"payload array", `{"payload":[1]}`, -1},
		{"payload number", `{"payload":1}`, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDeviceRegistration([]byte(tt.body))
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalidPayload) {
				t.Fatalf("err = %v, want ErrInvalidPayload", err)
			}
			if e.Offset != tt.off {
				t.Errorf("offset = %d, want %d (%v)", e.Offset, tt.off, err)
			}
		})
	}
}

func TestNewOperationID(t *testing.T) {
	seed := make([]byte, 24)
	for i := range seed {
		seed[i] = byte(i * 17)
	}
	id, err := NewOperationID(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	if want := "4.0011223344556677.8899aabb-ccdd-4eff-9021-324354657687"; id != want {
		t.Errorf("NewOperationID = %q, want %q", id, want)
	}
	if !ValidOperationIDFormat(id) {
		t.Errorf("ValidOperationIDFormat(%q) = false", id)
	}
	if _, err := NewOperationID(bytes.NewReader(seed[:23])); err == nil {
		t.Error("NewOperationID(short reader) succeeded")
	}
	if _, err := NewOperationID(iotest.ErrReader(errors.New("boom"))); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("NewOperationID(failing reader) = %v", err)
	}
}

func TestValidOperationIDFormat(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d", true}, // EC comment
		{"5.71cf7e385566aa10.4469ed4c-dc19-4af8-8b36-9ef6396ac1b3", true}, // I-393
		{"4.5cda764d087b4e5a.6c6a7983-b979-44eb-8611-7f08bf1fc331", true}, // azure-iot-sdk-c #1789
		{"4.d0a671905ea5b2c8.42d78160-4c78-479e-8be7-61d5e55dac0d", true},
		{"", false},
		{"4.D0A671905EA5B2C8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d", false},
		{"x.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d", false},
		{"4-d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d", false},
		{"4.d0a671905ea5b2c8-e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d", false},
		{"4.d0a671905ea5b2cg.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d", false},
		{"4.d0a671905ea5b2c8.e7173b7b_0e54-4aa0-9d20-aeb1b89e6c7d", false},
		{"4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7", false},
		{"4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7dd", false},
		{"4.d0a671905ea5b2c8.e7173b7be0e54-4aa0-9d20-aeb1b89e6c7d", false},
	}
	for _, tt := range tests {
		if got := ValidOperationIDFormat(tt.id); got != tt.want {
			t.Errorf("ValidOperationIDFormat(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestFormatTimestamp(t *testing.T) {
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Date(2020, 4, 10, 3, 11, 13, 27699700, time.UTC), "2020-04-10T03:11:13.0276997Z"},
		{time.Date(2020, 4, 10, 3, 11, 13, 0, time.UTC), "2020-04-10T03:11:13.0000000Z"},
		{time.Date(2020, 4, 10, 3, 11, 13, 123456789, time.UTC), "2020-04-10T03:11:13.1234567Z"},
		{time.Date(2020, 4, 10, 5, 11, 13, 0, time.FixedZone("CEST", 2*3600)), "2020-04-10T03:11:13.0000000Z"},
	}
	for _, tt := range tests {
		if got := FormatTimestamp(tt.t); got != tt.want {
			t.Errorf("FormatTimestamp(%v) = %q, want %q", tt.t, got, tt.want)
		}
		if _, err := time.Parse(time.RFC3339Nano, tt.want); err != nil {
			t.Errorf("%q is not RFC 3339: %v", tt.want, err)
		}
	}
}

func TestStatusFinal(t *testing.T) {
	for s, want := range map[Status]bool{
		StatusAssigned: true, StatusFailed: true, StatusDisabled: true,
		StatusAssigning: false, StatusUnassigned: false, "": false, "Assigned": false,
	} {
		if got := s.Final(); got != want {
			t.Errorf("Status(%q).Final() = %v, want %v", s, got, want)
		}
	}
}

// FuzzParseDeviceRegistration: no body panics; a refusal is an
// ErrInvalidPayload *Error with an offset inside the body (or -1); an
// accepted payload is absent, null or an object; and what is accepted
// marshals to a body that parses to the same registration.
func FuzzParseDeviceRegistration(f *testing.F) {
	for _, s := range []string{
		"", " ", "null",
		`{"registrationId":"myRegistrationId"}`,
		`{"payload": null, "registrationId": "myRegistrationId"}`,
		`{"payload":{"modelId":"dtmi:com:example:Thermostat;1"}}`,
		`{"registrationId":"d","tpm":{"endorsementKey":"ek"},"csr":"MIIB"}`,
		`{"payload":"text"}`,
		`{"registrationId":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseDeviceRegistration(b)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalidPayload) || e.Offset < -1 || e.Offset > len(b) {
				t.Fatalf("ParseDeviceRegistration(%q): %v is not a body *Error within the input", b, err)
			}
			return
		}
		if p := r.Payload; len(p) > 0 && p[0] != '{' && string(p) != "null" {
			t.Fatalf("ParseDeviceRegistration(%q) accepted payload %s", b, p)
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", r, err)
		}
		r2, err := ParseDeviceRegistration(out)
		if err != nil {
			t.Fatalf("%s (marshalled from %q) does not parse: %v", out, b, err)
		}
		var p1, p2 any
		_ = json.Unmarshal(r.Payload, &p1)
		_ = json.Unmarshal(r2.Payload, &p2)
		r.Payload, r2.Payload = nil, nil // compared as values: Marshal compacts and escapes
		if !reflect.DeepEqual(r, r2) || !reflect.DeepEqual(p1, p2) {
			t.Fatalf("round trip of %q via %s: %+v %v, want %+v %v", b, out, r2, p2, r, p1)
		}
	})
}
