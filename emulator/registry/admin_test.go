package registry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
)

func doAdmin(t testing.TB, h http.Handler, method, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	return rr
}

func decodeBody[T any](t testing.TB, rr *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rr.Body.Bytes(), &v); err != nil {
		t.Fatalf("body %q: %v", rr.Body, err)
	}
	return v
}

func checkError(t *testing.T, rr *httptest.ResponseRecorder, status, code int, msg string) {
	t.Helper()
	if rr.Code != status {
		t.Fatalf("status %d, want %d; body %s", rr.Code, status, rr.Body)
	}
	e := decodeBody[dps.ErrorBody](t, rr)
	if e.ErrorCode != code || !strings.Contains(e.Message, msg) || e.TrackingID == "" || e.TimestampUTC != dps.FormatTimestamp(testNow) {
		t.Fatalf("error body %+v, want code %d message %q", e, code, msg)
	}
	if ct := rr.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
}

func TestAdminEnrollments(t *testing.T) { forStores(t, testAdminEnrollments) }

func testAdminEnrollments(t *testing.T, store func(*Options)) {
	r := openTestIn(t, store, &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "hub1.example"}}})
	h := r.AdminHandler()
	body := `{"registrationId":"dev1","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"` + keyA + `"}},"iotHubHostName":"hub1.example","unknownMember":1}`

	rr := doAdmin(t, h, "PUT", "/enrollments/dev1?api-version=2021-10-01", body, nil)
	if rr.Code != http.StatusOK {
		t.Fatalf("PUT: %d %s", rr.Code, rr.Body)
	}
	en := decodeBody[IndividualEnrollment](t, rr)
	if en.ETag == "" || en.CreatedDateTimeUTC != dps.FormatTimestamp(testNow) || en.LastUpdatedDateTimeUTC != en.CreatedDateTimeUTC || en.Attestation.SymmetricKey.PrimaryKey != keyA {
		t.Fatalf("PUT answer %+v", en)
	}
	if rr.Header().Get("ETag") != `"`+en.ETag+`"` {
		t.Errorf("ETag header %q, body etag %q", rr.Header().Get("ETag"), en.ETag)
	}

	rr = doAdmin(t, h, "GET", "/enrollments/DEV1?api-version=2019-03-31", "", nil)
	if rr.Code != http.StatusOK || decodeBody[IndividualEnrollment](t, rr).ETag != en.ETag {
		t.Fatalf("GET: %d %s", rr.Code, rr.Body)
	}
	// The device can register with it.
	if res := register(t, r, "dev1", keyA, nil); res.AssignedHub != "hub1.example" {
		t.Fatalf("register: %s", mustJSON(t, res))
	}
	rr = doAdmin(t, h, "GET", "/registrations/dev1", "", nil)
	if rr.Code != http.StatusOK || decodeBody[dps.DeviceRegistrationResult](t, rr).Status != dps.StatusAssigned {
		t.Fatalf("GET registration: %d %s", rr.Code, rr.Body)
	}
	// The enrollment now shows the registration, as the service does.
	rr = doAdmin(t, h, "GET", "/enrollments/dev1", "", nil)
	if rs := decodeBody[IndividualEnrollment](t, rr).RegistrationState; rs == nil || rs.AssignedHub != "hub1.example" {
		t.Fatalf("GET enrollment after registration: %s", rr.Body)
	}
	// PUT ignores a registrationState sent back.
	rr = doAdmin(t, h, "PUT", "/enrollments/dev1", rr.Body.String(), nil)
	if rr.Code != http.StatusOK || decodeBody[IndividualEnrollment](t, rr).RegistrationState != nil {
		t.Fatalf("PUT of a GET body: %d %s", rr.Code, rr.Body)
	}
	en = decodeBody[IndividualEnrollment](t, rr)

	// Conditional update.
	checkError(t, doAdmin(t, h, "PUT", "/enrollments/dev1", body, map[string]string{"If-Match": `"nope"`}), 412, 412000, "Precondition failed")
	rr = doAdmin(t, h, "PUT", "/enrollments/dev1", strings.Replace(body, `"iotHubHostName":"hub1.example",`, `"provisioningStatus":"disabled",`, 1), map[string]string{"If-Match": `"` + en.ETag + `"`})
	if rr.Code != http.StatusOK {
		t.Fatalf("conditional PUT: %d %s", rr.Code, rr.Body)
	}
	en2 := decodeBody[IndividualEnrollment](t, rr)
	if en2.ETag == en.ETag || en2.CreatedDateTimeUTC != en.CreatedDateTimeUTC || en2.ProvisioningStatus != ProvisioningDisabled {
		t.Fatalf("updated enrollment %+v", en2)
	}
	if res := register(t, r, "dev1", keyA, nil); res.Status != dps.StatusDisabled {
		t.Fatalf("register after disable: %s", mustJSON(t, res))
	}
	checkError(t, doAdmin(t, h, "PUT", "/enrollments/dev9", strings.Replace(body, "dev1", "dev9", 1), map[string]string{"If-Match": "*"}), 412, 412000, "Precondition failed")

	// Conditional delete.
	checkError(t, doAdmin(t, h, "DELETE", "/enrollments/dev1", "", map[string]string{"If-Match": en.ETag}), 412, 412000, "Precondition failed")
	if rr := doAdmin(t, h, "DELETE", "/enrollments/dev1", "", map[string]string{"If-Match": en2.ETag}); rr.Code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", rr.Code, rr.Body)
	}
	checkError(t, doAdmin(t, h, "GET", "/enrollments/dev1", "", nil), 404, 404201, "Enrollment not found.")
	checkError(t, doAdmin(t, h, "DELETE", "/enrollments/dev1", "", nil), 404, 404201, "Enrollment not found.")
	// A deleted enrollment permanently disallows the device.
	_, err := r.Attest(context.Background(), Credentials{RegistrationID: "dev1", Password: sas(t, scope, "dev1", keyA, testNow.Add(time.Hour))}, AttestOptions{})
	var ae *AttestError
	if !errors.As(err, &ae) || ae.ErrorCode != 401000 {
		t.Fatalf("Attest after delete: %v", err)
	}
}

func TestAdminBadRequests(t *testing.T) { forStores(t, testAdminBadRequests) }

func testAdminBadRequests(t *testing.T, store func(*Options)) {
	r := openTestIn(t, store, &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "hub1.example"}}})
	h := r.AdminHandler()
	good := `{"attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"` + keyA + `"}}}`
	tests := []struct {
		name, method, path, body string
		status, code             int
		msg                      string
	}{
		{"bad JSON", "PUT", "/enrollments/d", `{"registrationId":`, 400, 400000, "body is not valid JSON: it ends inside a value (18 bytes)"},
		// Offsets count from 0, as elsewhere in dps-conform: the '"' at
		// offset 18 (it said 19), the 'x' at 1 (it said 2).
		{"syntax offset", "PUT", "/enrollments/d", `{"registrationId" "d"}`, 400, 400000, `body is not valid JSON at byte offset 18 (from 0): invalid character '"' after object key`},
		{"syntax offset 1", "PUT", "/enrollments/d", `{x}`, 400, 400000, "body is not valid JSON at byte offset 1 (from 0): invalid character 'x'"},
		// JSON's types, not Go's (it said "want []string, got JSON string").
		{"wrong type", "PUT", "/enrollments/d", `{"iotHubs":"h"}`, 400, 400000, `body at byte offset 11 (from 0): member "iotHubs" is a JSON string where an array was expected`},
		{"not an object", "PUT", "/enrollments/d", `["d"]`, 400, 400000, `body at byte offset 0 (from 0): a JSON array where a JSON object was expected`},
		{"id mismatch", "PUT", "/enrollments/d", `{"registrationId":"e"}`, 400, 400000, `registrationId "e" in the body differs from "d"`},
		{"group id mismatch", "PUT", "/enrollmentGroups/g", `{"enrollmentGroupId":"e"}`, 400, 400000, `enrollmentGroupId "e" in the body differs`},
		{"bad key", "PUT", "/enrollments/d", strings.Replace(good, keyA, "c2VjcmV0!", 1), 400, 400000, "attestation.symmetricKey.primaryKey: not valid base64"},
		{"tpm", "PUT", "/enrollments/d", `{"attestation":{"type":"tpm","tpm":{"endorsementKey":"AAAA"}}}`, 400, 400000, "TPM attestation is not supported over MQTT"},
		{"hub not linked", "PUT", "/enrollments/d", strings.Replace(good, `}}}`, `}},"iotHubHostName":"other"}`, 1), 400, 400000, `hub "other" is not in linkedHubs`},
		{"bad registration id", "PUT", "/enrollments/d%20x", good, 400, 400000, "registrationId: dps: registration id @1"},
		{"too large", "PUT", "/enrollments/d", strings.Repeat(" ", maxAdminBody+1), 413, 413000, "larger than"},
		{"method", "POST", "/enrollments/d", good, 405, 405000, "allowed: GET, PUT, DELETE"},
		{"registration PUT", "PUT", "/registrations/d", good, 405, 405000, "allowed: GET, DELETE"},
		{"unknown path", "GET", "/devices/d", "", 404, 404201, "No such admin API path"},
		{"unknown group", "GET", "/enrollmentGroups/g", "", 404, 404201, "Enrollment group not found."},
		{"unknown registration", "GET", "/registrations/d", "", 404, 404201, "Registration not found."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rr := doAdmin(t, h, tc.method, tc.path, tc.body, nil)
			checkError(t, rr, tc.status, tc.code, tc.msg)
			if strings.Contains(rr.Body.String(), "c2VjcmV0") {
				t.Errorf("error body echoes the key: %s", rr.Body)
			}
		})
	}
}

func TestAdminGroups(t *testing.T) { forStores(t, testAdminGroups) }

func testAdminGroups(t *testing.T, store func(*Options)) {
	r := openTestIn(t, store, &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "hub1.example"}}})
	h := r.AdminHandler()
	rr := doAdmin(t, h, "PUT", "/enrollmentGroups/g1", `{"attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"`+keyG1+`"}}}`, nil)
	if rr.Code != http.StatusOK {
		t.Fatalf("PUT group: %d %s", rr.Code, rr.Body)
	}
	g := decodeBody[EnrollmentGroup](t, rr)
	if g.EnrollmentGroupID != "g1" || g.ETag == "" {
		t.Fatalf("group %+v", g)
	}
	if res := register(t, r, "thermo-1", derive(t, keyG1, "thermo-1"), nil); res.Status != dps.StatusAssigned || res.SymmetricKey.EnrollmentGroupID != "g1" {
		t.Fatalf("register: %s", mustJSON(t, res))
	}
	rr = doAdmin(t, h, "GET", "/enrollmentGroups/G1", "", nil)
	if rr.Code != http.StatusOK || decodeBody[EnrollmentGroup](t, rr).ETag != g.ETag {
		t.Fatalf("GET group: %d %s", rr.Code, rr.Body)
	}
	if rr := doAdmin(t, h, "DELETE", "/enrollmentGroups/g1", "", map[string]string{"If-Match": "*"}); rr.Code != http.StatusNoContent {
		t.Fatalf("DELETE group: %d %s", rr.Code, rr.Body)
	}
	// The registration stays (deprovisioning is a separate step) but
	// the device no longer attests.
	if _, found, _ := r.Registration(context.Background(), "thermo-1"); !found {
		t.Error("registration removed with its group")
	}
	if _, err := r.Attest(context.Background(), Credentials{RegistrationID: "thermo-1", Password: sas(t, scope, "thermo-1", derive(t, keyG1, "thermo-1"), testNow.Add(time.Hour))}, AttestOptions{}); err == nil {
		t.Error("device of a deleted group attested")
	}
	rr = doAdmin(t, h, "GET", "/registrations/thermo-1", "", nil)
	reg := decodeBody[dps.DeviceRegistrationResult](t, rr)
	if got := rr.Header().Get("ETag"); reg.ETag == "" || got != `"`+reg.ETag+`"` {
		t.Errorf("GET registration: ETag header %q, body etag %q", got, reg.ETag)
	}
	checkError(t, doAdmin(t, h, "DELETE", "/registrations/thermo-1", "", map[string]string{"If-Match": "x"}), 412, 412000, "Precondition")
	if rr := doAdmin(t, h, "DELETE", "/registrations/thermo-1", "", map[string]string{"If-Match": reg.ETag}); rr.Code != http.StatusNoContent {
		t.Fatalf("DELETE registration: %d %s", rr.Code, rr.Body)
	}
}

func TestConfigUpsertKeepsETag(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	clock := testNow
	open := func(cfg *Config) *Registry {
		r, err := Open(ctx, Options{StateDir: dir, Config: cfg, Now: func() time.Time { return clock }})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	getEn := func(r *Registry) IndividualEnrollment {
		return decodeBody[IndividualEnrollment](t, doAdmin(t, r.AdminHandler(), "GET", "/enrollments/dev1", "", nil))
	}
	r := open(durableConfig())
	e1 := getEn(r)
	r.Close()
	clock = clock.Add(time.Hour)
	r = open(durableConfig())
	e2 := getEn(r)
	r.Close()
	if e2.ETag != e1.ETag || e2.LastUpdatedDateTimeUTC != e1.LastUpdatedDateTimeUTC {
		t.Errorf("unchanged config rewrote the enrollment: %+v vs %+v", e1, e2)
	}
	cfg := durableConfig()
	cfg.Enrollments[0].DeviceID = "renamed"
	r = open(cfg)
	defer r.Close()
	e3 := getEn(r)
	if e3.ETag == e1.ETag || e3.CreatedDateTimeUTC != e1.CreatedDateTimeUTC || e3.LastUpdatedDateTimeUTC != dps.FormatTimestamp(clock) || e3.DeviceID != "renamed" {
		t.Errorf("changed config: %+v (was %+v)", e3, e1)
	}
}

// FuzzAdminPut sends arbitrary bodies to the enrollment and group PUT
// handlers: every answer is 200 or a 4xx error body, never a 5xx or a panic.
func FuzzAdminPut(f *testing.F) {
	f.Add([]byte(`{"attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"`+keyA+`"}}}`), false)
	f.Add([]byte(`{"enrollmentGroupId":"g","attestation":{"type":"x509","x509":{"signingCertificates":{"primary":{"certificate":"AAAA"}}}}}`), true)
	f.Add([]byte(`{"attestation":{"type":"tpm"}}`), false)
	f.Add([]byte(`{"registrationId":"fuzz","allocationPolicy":"custom","customAllocationDefinition":{"webhookUrl":"http://127.0.0.1:1/"}}`), false)
	f.Add([]byte(`[`), true)
	r := openTest(f, &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "hub1.example"}}})
	h := r.AdminHandler()
	f.Fuzz(func(t *testing.T, body []byte, group bool) {
		path := "/enrollments/fuzz"
		if group {
			path = "/enrollmentGroups/g"
		}
		rr := doAdmin(t, h, "PUT", path, string(body), nil)
		switch {
		case rr.Code == http.StatusOK:
		case rr.Code >= 400 && rr.Code < 500:
			e := decodeBody[dps.ErrorBody](t, rr)
			if e.ErrorCode/1000 != rr.Code {
				t.Fatalf("errorCode %d with status %d", e.ErrorCode, rr.Code)
			}
		default:
			t.Fatalf("status %d: %s", rr.Code, rr.Body)
		}
	})
}
