package registry

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

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

// TestGroupCacheReaderOlderThanWrite interleaves a reader and an admin write
// the way the scheduler may: the reader's transaction begins, the write
// commits and bumps the generation, then the reader decodes the groups of
// its (older) transaction. Those groups must not be cached as current: an
// Attest after the write returned must see the rotated key.
func TestGroupCacheReaderOlderThanWrite(t *testing.T) {
	r := openTest(t, &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "hub1.example"}},
		EnrollmentGroups: []EnrollmentGroup{symGroup("g1", keyG1, "")}})
	// Grow the file and free the space again, so that the write below
	// needs no remap (a remap waits for the open read transaction).
	if err := r.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("scratch"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), make([]byte, 4<<20))
	}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second commit releases the pages the first freed
		if err := r.db.Update(func(tx *bolt.Tx) error {
			if tx.Bucket([]byte("scratch")) == nil {
				return nil
			}
			return tx.DeleteBucket([]byte("scratch"))
		}); err != nil {
			t.Fatal(err)
		}
	}

	gen := r.gen.Load() // as Attest and Assign read it, before their transaction
	tx, err := r.db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan int)
	go func() {
		rr := doAdmin(t, r.AdminHandler(), "PUT", "/enrollmentGroups/g1", `{"attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"`+keyG2+`"}}}`, nil)
		done <- rr.Code
	}()
	var code int
	select {
	case code = <-done:
	case <-time.After(time.Minute):
		_ = tx.Rollback()
		t.Fatal("the admin PUT waited for the read transaction")
	}
	if code != http.StatusOK {
		t.Fatalf("PUT group: %d", code)
	}
	if _, err := r.cachedGroups(tx, gen); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	_, err = r.Attest(context.Background(), Credentials{RegistrationID: "dev-1",
		Password: sas(t, scope, "dev-1", derive(t, keyG2, "dev-1"), testNow.Add(time.Hour))}, AttestOptions{})
	if err != nil {
		t.Fatalf("Attest with the key the returned PUT set: %v", err)
	}
}
