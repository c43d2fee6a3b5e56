package registry_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator/registry"
)

// A device of a symmetric key group registers: its key is derived from the
// group key, it attests with a SAS token, and Assign gives it a hub.
func Example() {
	cfg, err := registry.ParseConfig([]byte(`
idScope: 0ne00FEED00
linkedHubs:
  - name: hub1.azure-devices.net
enrollmentGroups:
  - enrollmentGroupId: thermostats
    attestation:
      type: symmetricKey
      symmetricKey:
        primaryKey: cXdlcnR5dWlvcGFzZGZnaGprbHp4Y3Zibm0xMjM0NTY=
`), "example.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	r, err := registry.Open(ctx, registry.Options{Config: cfg, Now: func() time.Time { return now }}) // temporary state
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()

	key, _ := dps.DeriveDeviceKey("cXdlcnR5dWlvcGFzZGZnaGprbHp4Y3Zibm0xMjM0NTY=", "thermo-1")
	tok, _ := dps.BuildSASToken(dps.SASOptions{IDScope: r.IDScope(), RegistrationID: "thermo-1", Key: key, Expiry: now.Add(time.Hour)})
	a, err := r.Attest(ctx, registry.Credentials{RegistrationID: "thermo-1", Password: []byte(tok)}, registry.AttestOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := r.Assign(ctx, a, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(a.EnrollmentGroupID, res.Status, res.Substatus, res.AssignedHub, res.DeviceID, res.CreatedDateTimeUTC)
	// Output: thermostats assigned initialAssignment hub1.azure-devices.net thermo-1 2026-05-01T12:00:00.0000000Z
}

// A token signed with the wrong key is refused with 401000.
func ExampleAttestError() {
	cfg := &registry.Config{IDScope: "0ne00FEED00", Enrollments: []registry.IndividualEnrollment{{
		RegistrationID: "dev1",
		Attestation: registry.AttestationMechanism{Type: registry.AttestationSymmetricKey,
			SymmetricKey: &registry.SymmetricKeyAttestation{PrimaryKey: "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg="}},
	}}}
	r, err := registry.Open(context.Background(), registry.Options{Config: cfg})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	tok, _ := dps.BuildSASToken(dps.SASOptions{IDScope: "0ne00FEED00", RegistrationID: "dev1",
		Key: "cXdlcnR5dWlvcGFzZGZnaGprbHp4Y3Zibm0xMjM0NTY=", Expiry: time.Now().Add(time.Hour)})
	_, err = r.Attest(context.Background(), registry.Credentials{RegistrationID: "dev1", Password: []byte(tok)}, registry.AttestOptions{})
	if ae, ok := err.(*registry.AttestError); ok {
		fmt.Println(ae.Status(), ae.ErrorCode, ae.Message)
	}
	// Output: 401 401000 Unauthorized
}

// An enrollment group whose custom allocation webhook takes its time: its
// registrations stay "assigning" while the webhook works, which is what a
// test of a second register (409) or of polling needs.
func ExampleSlowAllocationWebhook() {
	hook := httptest.NewServer(registry.SlowAllocationWebhook(10 * time.Millisecond))
	defer hook.Close()
	const groupKey = "cXdlcnR5dWlvcGFzZGZnaGprbHp4Y3Zibm0xMjM0NTY="
	cfg := &registry.Config{
		IDScope:          "0ne00FEED00",
		LinkedHubs:       []registry.LinkedHub{{Name: "hub1.azure-devices.net"}},
		EnrollmentGroups: []registry.EnrollmentGroup{registry.SlowGroup("slow", groupKey, hook.URL)},
	}
	ctx := context.Background()
	r, err := registry.Open(ctx, registry.Options{Config: cfg})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	key, _ := dps.DeriveDeviceKey(groupKey, "dev-1")
	tok, _ := dps.BuildSASToken(dps.SASOptions{IDScope: r.IDScope(), RegistrationID: "dev-1", Key: key, Expiry: time.Now().Add(time.Hour)})
	a, err := r.Attest(ctx, registry.Credentials{RegistrationID: "dev-1", Password: []byte(tok)}, registry.AttestOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := r.Assign(ctx, a, nil) // returns once the webhook has answered
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Status, res.AssignedHub)
	// Output: assigned hub1.azure-devices.net
}
