package registry

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
)

// TestGroupCacheFollowsAdminWrites checks that the decoded-group cache of
// Attest and Assign never serves a group older than an admin write that has
// returned: each step warms the cache, changes the group through the admin
// API, and expects the next Attest or Assign to see the change.
func TestGroupCacheFollowsAdminWrites(t *testing.T) {
	r := openTest(t, &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "hub1.example"}},
		EnrollmentGroups: []EnrollmentGroup{symGroup("g1", keyG1, "")}})
	h := r.AdminHandler()
	ctx := context.Background()
	attest := func(key string) (*Attestation, error) {
		return r.Attest(ctx, Credentials{RegistrationID: "dev-1", Password: sas(t, scope, "dev-1", derive(t, key, "dev-1"), testNow.Add(time.Hour))}, AttestOptions{})
	}
	put := func(body string) {
		t.Helper()
		if rr := doAdmin(t, h, "PUT", "/enrollmentGroups/g1", body, map[string]string{"If-Match": "*"}); rr.Code != http.StatusOK {
			t.Fatalf("PUT group: %d %s", rr.Code, rr.Body)
		}
	}

	// Key rotation: the old key stops attesting at once.
	if _, err := attest(keyG1); err != nil {
		t.Fatalf("attest with keyG1: %v", err)
	}
	put(`{"attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"` + keyG2 + `"}}}`)
	if _, err := attest(keyG1); !errors.Is(err, dps.ErrSignatureMismatch) {
		t.Fatalf("attest with the rotated-out key: %v, want %v", err, dps.ErrSignatureMismatch)
	}
	a, err := attest(keyG2)
	if err != nil {
		t.Fatalf("attest with keyG2: %v", err)
	}

	// Disabling between Attest and Assign: Assign sees it.
	put(`{"attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"` + keyG2 + `"}},"provisioningStatus":"disabled"}`)
	res, err := r.Assign(ctx, a, nil)
	if err != nil || res.Status != dps.StatusDisabled {
		t.Fatalf("Assign after disabling: %+v, %v; want status disabled", res, err)
	}

	// Deleting between Attest and Assign: enrollment not found.
	put(`{"attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"` + keyG2 + `"}}}`)
	if a, err = attest(keyG2); err != nil {
		t.Fatalf("attest after re-enabling: %v", err)
	}
	if rr := doAdmin(t, h, "DELETE", "/enrollmentGroups/g1", "", map[string]string{"If-Match": "*"}); rr.Code != http.StatusNoContent {
		t.Fatalf("DELETE group: %d %s", rr.Code, rr.Body)
	}
	res, err = r.Assign(ctx, a, nil)
	if err != nil || res.Status != dps.StatusFailed || res.ErrorCode != errCodeEnrollmentNotFound {
		t.Fatalf("Assign after delete: %+v, %v; want failed %d", res, err, errCodeEnrollmentNotFound)
	}
}
