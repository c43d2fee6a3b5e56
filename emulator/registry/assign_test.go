package registry

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
)

// register attests id with its key and assigns it.
func register(t *testing.T, r *Registry, id, key string, payload json.RawMessage) dps.DeviceRegistrationResult {
	t.Helper()
	a, err := r.Attest(context.Background(), Credentials{RegistrationID: id, Password: sas(t, r.IDScope(), id, key, testNow.Add(time.Hour))}, AttestOptions{})
	if err != nil {
		t.Fatalf("Attest %s: %v", id, err)
	}
	res, err := r.Assign(context.Background(), a, payload)
	if err != nil {
		t.Fatalf("Assign %s: %v", id, err)
	}
	return res
}

var etagRE = regexp.MustCompile(`^"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"$`)

func TestAssignResult(t *testing.T) {
	en := symEnrollment("dev1", keyA, "")
	en.DeviceID = "device-one"
	r := openTest(t, &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "hub1.example"}}, Enrollments: []IndividualEnrollment{en},
		EnrollmentGroups: []EnrollmentGroup{symGroup("g1", keyG1, "")}})
	res := register(t, r, "dev1", keyA, nil)
	want := dps.DeviceRegistrationResult{
		SymmetricKey:           &dps.SymmetricKeyRegistrationResult{},
		RegistrationID:         "dev1",
		CreatedDateTimeUTC:     "2026-05-01T12:00:00.0000000Z",
		AssignedHub:            "hub1.example",
		DeviceID:               "device-one",
		Status:                 dps.StatusAssigned,
		Substatus:              dps.SubstatusInitialAssignment,
		LastUpdatedDateTimeUTC: "2026-05-01T12:00:00.0000000Z",
		ETag:                   res.ETag,
	}
	if got, w := mustJSON(t, res), mustJSON(t, want); got != w {
		t.Errorf("result\n got %s\nwant %s", got, w)
	}
	raw, err := base64.StdEncoding.DecodeString(res.ETag)
	if err != nil || !etagRE.Match(raw) {
		t.Errorf("etag %q decodes to %q, want base64 of a quoted GUID", res.ETag, raw)
	}
	if b := mustJSON(t, res); !strings.Contains(b, `"symmetricKey":{}`) {
		t.Errorf("individual SAS result lacks \"symmetricKey\":{}: %s", b)
	}
	got, found, err := r.Registration(context.Background(), "DEV1")
	if err != nil || !found || mustJSON(t, got) != mustJSON(t, res) {
		t.Errorf("Registration(DEV1) = %+v, %v, %v", got, found, err)
	}
	// Group device: deviceId is the registration id, group named.
	res = register(t, r, "thermo-1", derive(t, keyG1, "thermo-1"), nil)
	if res.DeviceID != "thermo-1" || res.SymmetricKey == nil || res.SymmetricKey.EnrollmentGroupID != "g1" {
		t.Errorf("group result %s", mustJSON(t, res))
	}
}

func TestAssignX509Result(t *testing.T) {
	f := newX509Fixture(t)
	leaf := f.leaf("dev-7")
	g := EnrollmentGroup{EnrollmentGroupID: "factory", Attestation: AttestationMechanism{Type: AttestationX509,
		X509: &X509Attestation{SigningCertificates: &X509Certificates{Primary: &X509CertificateWithInfo{Certificate: f.inter.pem()}}}}}
	r := openTest(t, &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "hub1.example"}}, EnrollmentGroups: []EnrollmentGroup{g}})
	a, err := r.Attest(context.Background(), Credentials{RegistrationID: "dev-7", PeerCertificates: []*x509.Certificate{leaf.cert, f.inter.cert}}, AttestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Assign(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	x := res.X509
	if x == nil || x.EnrollmentGroupID != "factory" || x.CertificateInfo == nil || x.SigningCertificateInfo == nil {
		t.Fatalf("x509 %s", mustJSON(t, res))
	}
	ci := x.CertificateInfo
	if ci.SubjectName != "CN=dev-7,O=dps-conform test" || ci.IssuerName != "CN=test intermediate,O=dps-conform test" ||
		len(ci.SHA1Thumbprint) != 40 || len(ci.SHA256Thumbprint) != 64 || ci.SHA256Thumbprint != strings.ToUpper(ci.SHA256Thumbprint) ||
		ci.Version != 3 || ci.SerialNumber != strings.ToUpper(leaf.cert.SerialNumber.Text(16)) ||
		ci.NotBeforeUTC != dps.FormatTimestamp(leaf.cert.NotBefore) {
		t.Errorf("certificateInfo %+v", ci)
	}
	if x.SigningCertificateInfo.SubjectName != "CN=test intermediate,O=dps-conform test" {
		t.Errorf("signingCertificateInfo %+v", x.SigningCertificateInfo)
	}
	if res.DeviceID != "dev-7" || res.AssignedHub != "hub1.example" {
		t.Errorf("result %s", mustJSON(t, res))
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHashedAllocation(t *testing.T) {
	hubs := []LinkedHub{{Name: "a.example", AllocationWeight: 1}, {Name: "b.example", AllocationWeight: 3}, {Name: "c.example"}}
	// Deterministic: the same id gets the same hub, across registries
	// and letter case.
	for i := range 50 {
		id := fmt.Sprintf("device-%d", i)
		h1 := hashHub(id, hubs).Name
		if h2 := hashHub(strings.ToUpper(id), hubs).Name; h1 != h2 {
			t.Fatalf("%s: %s vs %s for upper case", id, h1, h2)
		}
		// Order of the hubs does not matter.
		rev := []LinkedHub{hubs[2], hubs[1], hubs[0]}
		if h3 := hashHub(id, rev).Name; h1 != h3 {
			t.Fatalf("%s: %s vs %s with hubs reversed", id, h1, h3)
		}
	}
	// Weighted: over many ids, shares follow 1:3:1 (weight 0 means 1).
	const n = 20000
	count := map[string]int{}
	for i := range n {
		count[hashHub(fmt.Sprintf("dev-%06d", i), hubs).Name]++
	}
	for name, want := range map[string]float64{"a.example": 0.2, "b.example": 0.6, "c.example": 0.2} {
		got := float64(count[name]) / n
		if got < want-0.02 || got > want+0.02 {
			t.Errorf("%s got %.3f of devices, want %.2f±0.02 (%v)", name, got, want, count)
		}
	}
	// Through Assign, with the hub set from the registry.
	r := openTest(t, &Config{IDScope: scope, LinkedHubs: hubs, EnrollmentGroups: []EnrollmentGroup{symGroup("g", keyG1, "")}})
	for i := range 20 {
		id := fmt.Sprintf("device-%d", i)
		res := register(t, r, id, derive(t, keyG1, id), nil)
		if want := hashHub(id, hubs).Name; res.AssignedHub != want {
			t.Errorf("%s assigned %s, hashHub says %s", id, res.AssignedHub, want)
		}
	}
}

func TestAllocationPolicies(t *testing.T) {
	hubs := []LinkedHub{
		{Name: "west.example", LatencyMs: 40, AllocationWeight: 5},
		{Name: "east.example", LatencyMs: 15},
		{Name: "lab.example", LatencyMs: 5, ApplyAllocationPolicy: true},
	}
	mk := func(id string, mod func(*IndividualEnrollment)) IndividualEnrollment {
		en := symEnrollment(id, keyA, "")
		mod(&en)
		return en
	}
	cfg := &Config{IDScope: scope, LinkedHubs: hubs, Enrollments: []IndividualEnrollment{
		mk("static-name", func(e *IndividualEnrollment) {
			e.AllocationPolicy, e.IoTHubHostName = AllocationStatic, "EAST.example"
		}),
		mk("static-list", func(e *IndividualEnrollment) {
			e.AllocationPolicy, e.IoTHubs = AllocationStatic, []string{"west.example"}
		}),
		mk("geo-all", func(e *IndividualEnrollment) { e.AllocationPolicy = AllocationGeoLatency }),
		mk("geo-list", func(e *IndividualEnrollment) {
			e.AllocationPolicy, e.IoTHubs = AllocationGeoLatency, []string{"west.example", "east.example"}
		}),
		mk("hashed-applied", func(e *IndividualEnrollment) { e.AllocationPolicy = AllocationHashed }),
		mk("default-policy", func(e *IndividualEnrollment) { e.IoTHubs = []string{"west.example", "east.example"} }),
	}}
	r := openTest(t, cfg)
	tests := []struct{ id, want string }{
		{"static-name", "east.example"},
		{"static-list", "west.example"},
		// Only lab.example applies allocation policies to enrollments
		// without iotHubs.
		{"geo-all", "lab.example"},
		{"geo-list", "east.example"},
		{"hashed-applied", "lab.example"},
		{"default-policy", hashHub("default-policy", hubs[:2]).Name},
	}
	for _, tc := range tests {
		if res := register(t, r, tc.id, keyA, nil); res.AssignedHub != tc.want || res.Status != dps.StatusAssigned {
			t.Errorf("%s: %s %s, want %s", tc.id, res.Status, res.AssignedHub, tc.want)
		}
	}
	// geoLatency ties fall back to hashing among the tied hubs.
	tied := []LinkedHub{{Name: "t1", LatencyMs: 7}, {Name: "t2", LatencyMs: 7}, {Name: "slow", LatencyMs: 9}}
	seen := map[string]bool{}
	for i := range 40 {
		id := fmt.Sprintf("d%d", i)
		h, _, _, fail := (&Registry{hubs: tied}).allocate(context.Background(), &Attestation{RegistrationID: id}, common{policy: AllocationGeoLatency}, nil, nil, id, nil, nil)
		if fail != nil {
			t.Fatal(fail.msg)
		}
		if h == "slow" {
			t.Fatalf("%s went to the slow hub", id)
		}
		seen[h] = true
	}
	if !seen["t1"] || !seen["t2"] {
		t.Errorf("ties not spread: %v", seen)
	}
}

func TestAssignNoHub(t *testing.T) {
	r := openTest(t, &Config{IDScope: scope, Enrollments: []IndividualEnrollment{symEnrollment("dev1", keyA, "")}})
	res := register(t, r, "dev1", keyA, nil)
	if res.Status != dps.StatusFailed || res.ErrorCode != 400208 || res.AssignedHub != "" {
		t.Fatalf("result %s, want failed 400208", mustJSON(t, res))
	}
	if _, found, _ := r.Registration(context.Background(), "dev1"); found {
		t.Error("failed registration recorded")
	}
}

// webhook is a test custom allocation function.
type webhook struct {
	mu       sync.Mutex
	requests []AllocationRequest
	status   int
	answer   string
	block    chan struct{} // when non-nil, requests wait on it
}

func (w *webhook) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var ar AllocationRequest
	if err := json.Unmarshal(body, &ar); err != nil {
		http.Error(rw, err.Error(), 500)
		return
	}
	w.mu.Lock()
	w.requests = append(w.requests, ar)
	status, answer, block := w.status, w.answer, w.block
	w.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-req.Context().Done():
		}
	}
	rw.WriteHeader(status)
	io.WriteString(rw, answer)
}

func TestCustomAllocation(t *testing.T) {
	wh := &webhook{status: 200}
	srv := httptest.NewServer(wh)
	defer srv.Close()
	g := symGroup("g-custom", keyG1, keyG2)
	g.AllocationPolicy = AllocationCustom
	g.CustomAllocationDefinition = &CustomAllocationDefinition{WebhookURL: srv.URL + "/api/alloc?code=secret", APIVersion: "2021-10-01"}
	g.IoTHubs = []string{"a.example", "b.example"}
	r := openTest(t, &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "a.example"}, {Name: "b.example"}, {Name: "c.example"}}, EnrollmentGroups: []EnrollmentGroup{g}},
		func(o *Options) { o.WebhookTimeout = 200 * time.Millisecond })
	key := derive(t, keyG1, "dev-c")

	t.Run("success with payload", func(t *testing.T) {
		wh.answer = `{"iotHubHostName":"B.example","initialTwin":{"tags":{"x":1}},"payload":{"hello":"device"}}`
		res := register(t, r, "dev-c", key, json.RawMessage(`{"modelId":"m1"}`))
		if res.Status != dps.StatusAssigned || res.AssignedHub != "b.example" || string(res.Payload) != `{"hello":"device"}` {
			t.Fatalf("result %s", mustJSON(t, res))
		}
		wh.mu.Lock()
		req := wh.requests[len(wh.requests)-1]
		wh.mu.Unlock()
		if string(req.DeviceRuntimeContext.Payload) != `{"modelId":"m1"}` || req.DeviceRuntimeContext.RegistrationID != "dev-c" {
			t.Errorf("deviceRuntimeContext %+v", req.DeviceRuntimeContext)
		}
		if req.DeviceRuntimeContext.SymmetricKey == nil || req.DeviceRuntimeContext.SymmetricKey.EnrollmentGroupID != "g-custom" {
			t.Errorf("deviceRuntimeContext.symmetricKey %+v", req.DeviceRuntimeContext.SymmetricKey)
		}
		if strings.Join(req.LinkedHubs, ",") != "a.example,b.example" {
			t.Errorf("linkedHubs %v", req.LinkedHubs)
		}
		if req.EnrollmentGroup == nil || req.EnrollmentGroup.EnrollmentGroupID != "g-custom" || req.IndividualEnrollment != nil {
			t.Fatalf("enrollment in request: %+v", req)
		}
		if sk := req.EnrollmentGroup.Attestation.SymmetricKey; sk == nil || sk.PrimaryKey != "" || sk.SecondaryKey != "" {
			t.Errorf("group keys sent to the webhook: %+v", sk)
		}
		// Second registration: the webhook sees the current hub.
		wh.answer = `{"iotHubHostName":"b.example"}`
		res = register(t, r, "dev-c", key, nil)
		wh.mu.Lock()
		req = wh.requests[len(wh.requests)-1]
		wh.mu.Unlock()
		if req.DeviceRuntimeContext.CurrentIoTHubHostName != "b.example" || req.DeviceRuntimeContext.CurrentDeviceID != "dev-c" || req.DeviceRuntimeContext.Payload != nil {
			t.Errorf("second request context %+v", req.DeviceRuntimeContext)
		}
		if res.Payload != nil {
			t.Errorf("payload %s from an answer without payload", res.Payload)
		}
	})
	for _, tc := range []struct {
		name, answer string
		status       int
		wantMsg      string
	}{
		{"status 400", `{}`, 400, "Custom allocation failed with status code: 400"},
		{"status 500", `oops`, 500, "Custom allocation failed with status code: 500"},
		{"not JSON", `<html>`, 200, "not an AllocationResponse: it is not valid JSON"},
		{"an array", `[]`, 200, "not an AllocationResponse: it is a JSON array, not an object"},
		{"hub a number", `{"iotHubHostName":7}`, 200, `not an AllocationResponse: its member "iotHubHostName" is a JSON number`},
		{"no hub", `{"payload":{}}`, 200, "no iotHubHostName"},
		{"hub not a candidate", `{"iotHubHostName":"c.example"}`, 200, `chose "c.example", which is not a linked hub`},
		// Part B §4.5 (SPEC models.tsp): registrationState.payload is "any
		// JSON object"; EC's parser refuses anything but an object or null.
		{"payload a string", `{"iotHubHostName":"a.example","payload":"hello"}`, 200, `its member "payload" is a JSON string, not an object`},
		{"payload an array", `{"iotHubHostName":"a.example","payload":[{"a":1}]}`, 200, `its member "payload" is a JSON array, not an object`},
		{"payload a number", `{"iotHubHostName":"a.example","payload":7}`, 200, `its member "payload" is a JSON number, not an object`},
		{"payload a boolean", `{"iotHubHostName":"a.example","payload":true}`, 200, `its member "payload" is a JSON boolean, not an object`},
		// DPS-PROTOCOL.md Part B: initialTwin is {tags, properties{desired}},
		// an object; a twin that is not one is no usable answer either.
		{"initialTwin a string", `{"iotHubHostName":"a.example","initialTwin":"{\"tags\":{}}"}`, 200, `its member "initialTwin" is a JSON string, not an object`},
		{"initialTwin an array", `{"iotHubHostName":"a.example","initialTwin":[{"tags":{"x":1}}]}`, 200, `its member "initialTwin" is a JSON array, not an object`},
		{"initialTwin a number", `{"iotHubHostName":"a.example","initialTwin":7}`, 200, `its member "initialTwin" is a JSON number, not an object`},
		{"initialTwin a boolean", `{"iotHubHostName":"a.example","initialTwin":false}`, 200, `its member "initialTwin" is a JSON boolean, not an object`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wh.mu.Lock()
			wh.status, wh.answer = tc.status, tc.answer
			wh.mu.Unlock()
			res := register(t, r, "dev-f", derive(t, keyG1, "dev-f"), nil)
			if res.Status != dps.StatusFailed || res.ErrorCode != 400207 || !strings.Contains(res.ErrorMessage, tc.wantMsg) || res.AssignedHub != "" {
				t.Fatalf("result %s, want failed 400207 %q", mustJSON(t, res), tc.wantMsg)
			}
			if strings.Contains(res.ErrorMessage, "secret") {
				t.Errorf("message leaks the function key: %s", res.ErrorMessage)
			}
		})
	}
	// null counts as absent, for initialTwin as for payload.
	t.Run("initialTwin and payload null", func(t *testing.T) {
		wh.mu.Lock()
		wh.status, wh.answer = 200, `{"iotHubHostName":"a.example","initialTwin":null,"payload":null}`
		wh.mu.Unlock()
		res := register(t, r, "dev-n", derive(t, keyG1, "dev-n"), nil)
		if res.Status != dps.StatusAssigned || res.AssignedHub != "a.example" || res.Payload != nil {
			t.Fatalf("result %s, want assigned to a.example with no payload", mustJSON(t, res))
		}
	})
	t.Run("timeout", func(t *testing.T) {
		block := make(chan struct{})
		defer close(block)
		wh.mu.Lock()
		wh.status, wh.answer, wh.block = 200, `{"iotHubHostName":"a.example"}`, block
		wh.mu.Unlock()
		defer func() { wh.mu.Lock(); wh.block = nil; wh.mu.Unlock() }()
		res := register(t, r, "dev-t", derive(t, keyG1, "dev-t"), nil)
		if res.Status != dps.StatusFailed || res.ErrorCode != 400207 || !strings.Contains(res.ErrorMessage, "did not answer within 200ms") {
			t.Fatalf("result %s, want failed 400207 timeout", mustJSON(t, res))
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		url := dead.URL
		dead.Close()
		g2 := g
		g2.EnrollmentGroupID = "g-dead"
		g2.CustomAllocationDefinition = &CustomAllocationDefinition{WebhookURL: url + "/?code=secret"}
		r2 := openTest(t, &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "a.example"}, {Name: "b.example"}}, EnrollmentGroups: []EnrollmentGroup{g2}})
		res := register(t, r2, "dev-u", derive(t, keyG1, "dev-u"), nil)
		if res.Status != dps.StatusFailed || res.ErrorCode != 400207 || strings.Contains(res.ErrorMessage, "secret") {
			t.Fatalf("result %s", mustJSON(t, res))
		}
	})
}

func TestReprovisionSubstatus(t *testing.T) { forStores(t, testReprovisionSubstatus) }

func testReprovisionSubstatus(t *testing.T, store func(*Options)) {
	hubs := []LinkedHub{{Name: "h1"}, {Name: "h2"}, {Name: "h3"}}
	type step struct {
		hub           string // static hub for this registration
		wantHub       string
		wantSubstatus dps.Substatus
	}
	tests := []struct {
		name   string
		policy *ReprovisionPolicy
		steps  []step
	}{
		// The same hub again is reprovisionedToInitialAssignment
		// (TestReprovisionSameHubSubstatus).
		{"default policy migrates", nil, []step{
			{"h1", "h1", dps.SubstatusInitialAssignment},
			{"h1", "h1", dps.SubstatusReprovisionedToInitialAssignment},
			{"h2", "h2", dps.SubstatusDeviceDataMigrated},
			{"h3", "h3", dps.SubstatusDeviceDataMigrated},
			{"h1", "h1", dps.SubstatusReprovisionedToInitialAssignment},
		}},
		{"reset", &ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: false}, []step{
			{"h1", "h1", dps.SubstatusInitialAssignment},
			{"h2", "h2", dps.SubstatusDeviceDataReset},
			{"h2", "h2", dps.SubstatusReprovisionedToInitialAssignment},
			{"h1", "h1", dps.SubstatusReprovisionedToInitialAssignment},
		}},
		{"never", &ReprovisionPolicy{}, []step{
			{"h1", "h1", dps.SubstatusInitialAssignment},
			{"h2", "h1", dps.SubstatusReprovisionedToInitialAssignment},
			{"h3", "h1", dps.SubstatusReprovisionedToInitialAssignment},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := testNow
			r := openTestIn(t, store, &Config{IDScope: scope, LinkedHubs: hubs, Enrollments: []IndividualEnrollment{symEnrollment("dev1", keyA, "")}},
				func(o *Options) { o.Now = func() time.Time { return clock } })
			var first dps.DeviceRegistrationResult
			for i, s := range tc.steps {
				en := symEnrollment("dev1", keyA, "")
				en.AllocationPolicy, en.IoTHubHostName, en.ReprovisionPolicy = AllocationStatic, s.hub, tc.policy
				putEnrollment(t, r, en)
				clock = testNow.Add(time.Duration(i) * time.Minute)
				res := register(t, r, "dev1", keyA, nil)
				if res.AssignedHub != s.wantHub || res.Substatus != s.wantSubstatus {
					t.Fatalf("step %d (enrollment hub %s): %s %s, want %s %s", i, s.hub, res.AssignedHub, res.Substatus, s.wantHub, s.wantSubstatus)
				}
				if i == 0 {
					first = res
					continue
				}
				if res.CreatedDateTimeUTC != first.CreatedDateTimeUTC || res.LastUpdatedDateTimeUTC != dps.FormatTimestamp(clock) || res.ETag == first.ETag {
					t.Errorf("step %d timestamps/etag: %s", i, mustJSON(t, res))
				}
			}
		})
	}
	// Deleting the registration makes the next one initial again.
	r := openTestIn(t, store, &Config{IDScope: scope, LinkedHubs: hubs, Enrollments: []IndividualEnrollment{symEnrollment("dev1", keyA, "")}})
	register(t, r, "dev1", keyA, nil)
	rr := doAdmin(t, r.AdminHandler(), "DELETE", "/registrations/dev1", "", nil)
	if rr.Code != http.StatusNoContent {
		t.Fatalf("DELETE registration: %d %s", rr.Code, rr.Body)
	}
	if res := register(t, r, "dev1", keyA, nil); res.Substatus != dps.SubstatusInitialAssignment {
		t.Errorf("after delete: %s", res.Substatus)
	}
}

// TestReprovisionSameHubSubstatus: a device that registers again and ends
// on the hub it is already on gets reprovisionedToInitialAssignment under
// every reprovision policy, whether that hub is the first one or one it
// moved to; deviceDataMigrated and deviceDataReset are for a device
// "assigned to a different IoT hub" (SPEC models.tsp, DPS-PROTOCOL.md
// Part B §4.5, §9). A device whose username names an api-version before
// 2019-04-15 gets initialAssignment instead (reprovisionSubstatus).
func TestReprovisionSameHubSubstatus(t *testing.T) { forStores(t, testReprovisionSameHubSubstatus) }

func testReprovisionSameHubSubstatus(t *testing.T, store func(*Options)) {
	hubs := []LinkedHub{{Name: "h1"}, {Name: "h2"}}
	policies := []struct {
		name   string
		policy ReprovisionPolicy
	}{
		{"migrate", ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: true}},
		{"reset", ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: false}},
		{"never", ReprovisionPolicy{UpdateHubAssignment: false, MigrateDeviceData: false}},
		{"never, migrate set", ReprovisionPolicy{UpdateHubAssignment: false, MigrateDeviceData: true}},
	}
	versions := []struct {
		apiVersion string
		want       dps.Substatus
	}{
		{"", dps.SubstatusReprovisionedToInitialAssignment},
		{"2021-06-01", dps.SubstatusReprovisionedToInitialAssignment},
		{"2019-04-15", dps.SubstatusReprovisionedToInitialAssignment},
		{"2019-03-31", dps.SubstatusInitialAssignment},
	}
	for _, p := range policies {
		for _, moved := range []bool{false, true} {
			for _, v := range versions {
				name := p.name + "/first hub/" + v.apiVersion
				if moved {
					name = p.name + "/hub moved to/" + v.apiVersion
				}
				t.Run(name, func(t *testing.T) {
					r := openTestIn(t, store, &Config{IDScope: scope, LinkedHubs: hubs, Enrollments: []IndividualEnrollment{symEnrollment("dev1", keyA, "")}})
					put := func(hub string, rp *ReprovisionPolicy) {
						en := symEnrollment("dev1", keyA, "")
						en.AllocationPolicy, en.IoTHubHostName, en.ReprovisionPolicy = AllocationStatic, hub, rp
						putEnrollment(t, r, en)
					}
					reg := func() dps.DeviceRegistrationResult {
						t.Helper()
						a, err := r.Attest(context.Background(), Credentials{RegistrationID: "dev1", Password: sas(t, scope, "dev1", keyA, testNow.Add(time.Hour)), APIVersion: v.apiVersion}, AttestOptions{})
						if err != nil {
							t.Fatal(err)
						}
						res, err := r.Assign(context.Background(), a, nil)
						if err != nil {
							t.Fatal(err)
						}
						return res
					}
					put("h1", nil)
					if res := reg(); res.Substatus != dps.SubstatusInitialAssignment {
						t.Fatalf("first registration: %s", res.Substatus)
					}
					hub := "h1"
					if moved {
						put("h2", nil)
						if res := reg(); res.AssignedHub != "h2" || res.Substatus != dps.SubstatusDeviceDataMigrated {
							t.Fatalf("move to h2: %s %s", res.AssignedHub, res.Substatus)
						}
						hub = "h2"
					}
					policy := p.policy
					put(hub, &policy)
					res := reg()
					if res.AssignedHub != hub || res.Substatus != v.want {
						t.Fatalf("registered again on %s: %s %s, want %s %s", hub, res.AssignedHub, res.Substatus, hub, v.want)
					}
					if !moved || p.policy != (ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: true}) {
						return
					}
					// Back to the hub of the first assignment: the same
					// substatus, by api-version.
					put("h1", &policy)
					if res := reg(); res.AssignedHub != "h1" || res.Substatus != v.want {
						t.Fatalf("back on h1: %s %s, want h1 %s", res.AssignedHub, res.Substatus, v.want)
					}
				})
			}
		}
	}
}

// putEnrollment stores en through the admin API.
func putEnrollment(t *testing.T, r *Registry, en IndividualEnrollment) {
	t.Helper()
	rr := doAdmin(t, r.AdminHandler(), "PUT", "/enrollments/"+en.RegistrationID, mustJSON(t, en), nil)
	if rr.Code != http.StatusOK {
		t.Fatalf("PUT enrollment: %d %s", rr.Code, rr.Body)
	}
}

func TestAssignAfterEnrollmentChanges(t *testing.T) {
	r := openTest(t, &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "h1"}}, Enrollments: []IndividualEnrollment{symEnrollment("dev1", keyA, "")}})
	a, err := r.Attest(context.Background(), Credentials{RegistrationID: "dev1", Password: sas(t, scope, "dev1", keyA, testNow.Add(time.Hour))}, AttestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Disabled between Attest and Assign.
	en := symEnrollment("dev1", keyA, "")
	en.ProvisioningStatus = ProvisioningDisabled
	putEnrollment(t, r, en)
	if res, err := r.Assign(context.Background(), a, nil); err != nil || res.Status != dps.StatusDisabled {
		t.Fatalf("disabled: %+v %v", res, err)
	}
	// Deleted between Attest and Assign.
	doAdmin(t, r.AdminHandler(), "DELETE", "/enrollments/dev1", "", nil)
	if res, err := r.Assign(context.Background(), a, nil); err != nil || res.Status != dps.StatusFailed || res.ErrorCode != 404201 {
		t.Fatalf("deleted: %+v %v", res, err)
	}
	// Attestation not from Attest.
	if _, err := r.Assign(context.Background(), &Attestation{RegistrationID: "x"}, nil); err == nil {
		t.Error("Assign accepted a hand-made Attestation")
	}
	// Cancelled context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Assign(ctx, a, nil); err == nil {
		t.Error("Assign ignored a cancelled context")
	}
}

// TestAssignIgnoreDisabled: a disabled enrollment is answered "disabled",
// unless AttestOptions.IgnoreDisabled (the emulator's assign-disabled fault).
func TestAssignIgnoreDisabled(t *testing.T) {
	tests := []struct {
		opts AttestOptions
		want dps.Status
	}{
		{AttestOptions{}, dps.StatusDisabled},
		{AttestOptions{IgnoreDisabled: true}, dps.StatusAssigned},
	}
	for _, tt := range tests {
		r := openTest(t, sasConfig())
		a, err := r.Attest(context.Background(), Credentials{RegistrationID: "dev-disabled", Password: sas(t, scope, "dev-disabled", keyB, testNow.Add(time.Hour))}, tt.opts)
		if err != nil {
			t.Fatal(err)
		}
		res, err := r.Assign(context.Background(), a, nil)
		if err != nil || res.Status != tt.want {
			t.Errorf("%+v: Assign %+v, %v; want status %s", tt.opts, res, err, tt.want)
		}
	}
}

// TestSlowAllocationWebhook: the webhook assigns the first linked hub,
// refuses a body that is not an allocation request, and gives up (without
// an answer) when the caller does before its delay (an hour here: only the
// caller's cancellation can end that call).
func TestSlowAllocationWebhook(t *testing.T) {
	const delay = 50 * time.Millisecond
	srv := httptest.NewServer(SlowAllocationWebhook(delay))
	defer srv.Close()
	g := symGroup("g-slow", keyG1, keyG2)
	g.AllocationPolicy = AllocationCustom
	g.CustomAllocationDefinition = &CustomAllocationDefinition{WebhookURL: srv.URL}
	g.IoTHubs = []string{"b.example", "a.example"}
	r := openTest(t, &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "a.example"}, {Name: "b.example"}}, EnrollmentGroups: []EnrollmentGroup{g}})

	res := register(t, r, "dev-slow", derive(t, keyG1, "dev-slow"), nil)
	if res.Status != dps.StatusAssigned || res.AssignedHub != "b.example" {
		t.Fatalf("result %s, want assigned to b.example (the first of the group's hubs)", mustJSON(t, res))
	}

	for _, body := range []string{`not json`, `{"linkedHubs":[]}`} {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("body %q: status %d, want 400", body, resp.StatusCode)
		}
	}

	slow := httptest.NewServer(SlowAllocationWebhook(time.Hour))
	defer slow.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, slow.URL, strings.NewReader(`{"linkedHubs":["a.example"]}`))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a cancelled request got status %d", resp.StatusCode)
	}
}

// TestAssignMayWait checks which assignments may wait on I/O: all of them
// with a state dir (the fdatasync of an assigned registration), and in
// memory only those of a custom-allocation enrollment (the webhook).
func TestAssignMayWait(t *testing.T) {
	hubs := []LinkedHub{{Name: "a.example"}}
	custom := func(g EnrollmentGroup) EnrollmentGroup {
		g.AllocationPolicy = AllocationCustom
		g.CustomAllocationDefinition = &CustomAllocationDefinition{WebhookURL: "http://127.0.0.1:1/alloc", APIVersion: "2021-10-01"}
		return g
	}
	for _, tc := range []struct {
		name     string
		stateDir bool
		cfg      Config
		id, key  string
		want     bool
	}{
		{"memory, individual, hashed", false, Config{IDScope: scope, LinkedHubs: hubs, Enrollments: []IndividualEnrollment{symEnrollment("dev-i", keyA, keyB)}}, "dev-i", keyA, false},
		{"memory, group, hashed", false, Config{IDScope: scope, LinkedHubs: hubs, EnrollmentGroups: []EnrollmentGroup{symGroup("g", keyG1, keyG2)}}, "dev-g", derive(t, keyG1, "dev-g"), false},
		{"memory, group, custom", false, Config{IDScope: scope, LinkedHubs: hubs, EnrollmentGroups: []EnrollmentGroup{custom(symGroup("g", keyG1, keyG2))}}, "dev-g", derive(t, keyG1, "dev-g"), true},
		{"state dir, individual, hashed", true, Config{IDScope: scope, LinkedHubs: hubs, Enrollments: []IndividualEnrollment{symEnrollment("dev-i", keyA, keyB)}}, "dev-i", keyA, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			r := openTest(t, &cfg, func(o *Options) {
				if !tc.stateDir {
					o.StateDir = ""
				}
			})
			a, err := r.Attest(context.Background(), Credentials{RegistrationID: tc.id, Password: sas(t, scope, tc.id, tc.key, testNow.Add(time.Hour))}, AttestOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := r.AssignMayWait(a); got != tc.want {
				t.Errorf("AssignMayWait = %v, want %v", got, tc.want)
			}
			if !r.AssignMayWait(nil) {
				t.Error("AssignMayWait(nil) = false, want true")
			}
		})
	}
}

// TestAssignCancelledDuringWebhook: a ctx cancelled while the custom
// allocation webhook is being called is an error of Assign (as its doc
// says), not a "failed" registration with 400207.
func TestAssignCancelledDuringWebhook(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body) // then a closed connection cancels req's context
		arrived <- struct{}{}
		<-req.Context().Done()
	}))
	defer srv.Close()
	g := symGroup("g-custom", keyG1, "")
	g.AllocationPolicy = AllocationCustom
	g.CustomAllocationDefinition = &CustomAllocationDefinition{WebhookURL: srv.URL}
	r := openTest(t, &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "a.example"}}, EnrollmentGroups: []EnrollmentGroup{g}},
		func(o *Options) { o.WebhookTimeout = time.Minute })
	a, err := r.Attest(context.Background(), Credentials{RegistrationID: "dev-c",
		Password: sas(t, scope, "dev-c", derive(t, keyG1, "dev-c"), testNow.Add(time.Hour))}, AttestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
	}()
	res, err := r.Assign(ctx, a, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Assign = %s, %v; want error %v", mustJSON(t, res), err, context.Canceled)
	}
}
