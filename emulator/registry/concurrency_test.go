package registry

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
)

// TestConcurrentRegistrations runs attest+assign from many goroutines while
// the admin API writes, under -race.
func TestConcurrentRegistrations(t *testing.T) { forStores(t, testConcurrentRegistrations) }

func testConcurrentRegistrations(t *testing.T, store func(*Options)) {
	r := openTestIn(t, store, &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "a"}, {Name: "b"}}, EnrollmentGroups: []EnrollmentGroup{symGroup("g", keyG1, "")}})
	const workers, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each+each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("w%d-d%d", w, i)
				key, _ := dps.DeriveDeviceKey(keyG1, id)
				tok, _ := dps.BuildSASToken(dps.SASOptions{IDScope: scope, RegistrationID: id, Key: key, Expiry: testNow.Add(time.Hour)})
				a, err := r.Attest(context.Background(), Credentials{RegistrationID: id, Password: []byte(tok)}, AttestOptions{})
				if err != nil {
					errs <- err
					continue
				}
				res, err := r.Assign(context.Background(), a, nil)
				if err != nil || res.Status != dps.StatusAssigned {
					errs <- fmt.Errorf("%s: %+v %v", id, res, err)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range each {
			en := symEnrollment(fmt.Sprintf("admin-%d", i), keyA, "")
			rr := doAdmin(t, r.AdminHandler(), "PUT", "/enrollments/"+en.RegistrationID, mustJSON(t, en), nil)
			if rr.Code != 200 {
				errs <- fmt.Errorf("PUT %d: %s", rr.Code, rr.Body)
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for w := range workers {
		for i := range each {
			if _, found, err := r.Registration(context.Background(), fmt.Sprintf("w%d-d%d", w, i)); !found || err != nil {
				t.Errorf("w%d-d%d not recorded: %v", w, i, err)
			}
		}
	}
}

func TestClosedRegistry(t *testing.T) {
	r, err := Open(context.Background(), Options{Config: sasConfig(), Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	a, err := r.Attest(context.Background(), Credentials{RegistrationID: "dev1", Password: sas(t, scope, "dev1", keyA, testNow.Add(time.Hour))}, AttestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := r.Attest(context.Background(), Credentials{RegistrationID: "dev1"}, AttestOptions{}); err != ErrClosed {
		t.Errorf("Attest after Close: %v", err)
	}
	if _, err := r.Assign(context.Background(), a, nil); err != ErrClosed {
		t.Errorf("Assign after Close: %v", err)
	}
	checkError(t, doAdmin(t, r.AdminHandler(), "GET", "/enrollments/dev1", "", nil), 500, 500000, "Internal error")
}

func BenchmarkAttestSAS(b *testing.B) {
	r := openTest(b, sasConfig())
	c := Credentials{RegistrationID: "dev1", Password: sas(b, scope, "dev1", keyA, testNow.Add(time.Hour))}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Attest(context.Background(), c, AttestOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAttestGroupSAS(b *testing.B) {
	cfg := sasConfig()
	for i := range 20 {
		cfg.EnrollmentGroups = append(cfg.EnrollmentGroups, symGroup(fmt.Sprintf("a%02d", i), keyG2, ""))
	}
	r := openTest(b, cfg)
	c := Credentials{RegistrationID: "thermo-1", Password: sas(b, scope, "thermo-1", derive(b, keyA, "thermo-1"), testNow.Add(time.Hour))}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Attest(context.Background(), c, AttestOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAssign measures one durable (fsync'd) assignment.
func BenchmarkAssign(b *testing.B) {
	r := openTest(b, &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "a"}, {Name: "b"}}, Enrollments: []IndividualEnrollment{symEnrollment("dev1", keyA, "")}})
	a, err := r.Attest(context.Background(), Credentials{RegistrationID: "dev1", Password: sas(b, scope, "dev1", keyA, testNow.Add(time.Hour))}, AttestOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Assign(context.Background(), a, nil); err != nil {
			b.Fatal(err)
		}
	}
}
