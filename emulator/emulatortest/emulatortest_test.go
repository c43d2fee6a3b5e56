package emulatortest_test

import (
	"crypto/tls"
	"os"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/packets"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestProvisionFixtureDevices(t *testing.T) {
	e := emulatortest.Start(t, emulatortest.Options{Plain: true})
	if e.IDScope != emulatortest.IDScope {
		t.Fatalf("IDScope %q, want the fixture's %q", e.IDScope, emulatortest.IDScope)
	}
	tests := []struct {
		name, scheme, id string
		x509             bool
		status           dps.Status
	}{
		{"individual symmetric key over mqtts", "mqtts", emulatortest.SymDeviceID, false, dps.StatusAssigned},
		{"group symmetric key over wss", "wss", emulatortest.SymGroupDeviceID, false, dps.StatusAssigned},
		{"group symmetric key over plaintext", "mqtt", "plain-device-1", false, dps.StatusAssigned},
		{"individual x509 over mqtts", "mqtts", emulatortest.X509DeviceID, true, dps.StatusAssigned},
		{"group x509 over wss", "wss", emulatortest.X509GroupDeviceID, true, dps.StatusAssigned},
		{"disabled enrollment", "mqtts", emulatortest.DisabledDeviceID, false, dps.StatusDisabled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cert *tls.Certificate
			pass := ""
			if tt.x509 {
				c := e.ClientCert(t, tt.id)
				cert = &c
			} else {
				pass = e.SASToken(t, tt.id)
			}
			code, st := emulatortest.Provision(t, e.Dial(t, tt.scheme, cert), e.IDScope, tt.id, pass)
			if code != 200 || st.Status != tt.status || st.RegistrationState == nil || st.RegistrationState.Status != tt.status {
				t.Fatalf("final %d %+v, want 200 %s", code, st, tt.status)
			}
			rs := st.RegistrationState
			if tt.status == dps.StatusAssigned && (rs.AssignedHub != emulatortest.HubName || rs.DeviceID == "" || !dps.EqualRegistrationID(rs.RegistrationID, tt.id)) {
				t.Fatalf("registrationState %+v", rs)
			}
		})
	}
}

func TestOptionsReachTheServer(t *testing.T) {
	dir := t.TempDir()
	e := emulatortest.Start(t, emulatortest.Options{Faults: []emulator.Fault{emulator.FaultGrantQoS2}, StateDir: dir})
	conn := e.Dial(t, "mqtts", nil)
	r := packets.NewReader(conn, packets.DecodeOptions{})
	cp := &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, KeepAlive: 30,
		ClientID: []byte(emulatortest.SymDeviceID), Username: []byte(dps.Username{IDScope: e.IDScope, RegistrationID: emulatortest.SymDeviceID}.String()),
		Password: []byte(e.SASToken(t, emulatortest.SymDeviceID))}
	sub := &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 2}}}
	for _, p := range []packets.Packet{cp, sub} {
		if err := packets.WritePacket(conn, p); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if p, err := r.ReadPacket(); err != nil || p.(*packets.Connack).ReturnCode != 0 {
		t.Fatalf("CONNACK %v %v", p, err)
	}
	if p, err := r.ReadPacket(); err != nil || p.(*packets.Suback).ReturnCodes[0] != packets.SubackMaxQoS2 {
		t.Fatalf("SUBACK %v %v, want QoS 2 under grant-qos2", p, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("StateDir %s is empty (%v): the registry is not kept there", dir, err)
	}
}

func TestClientCertAndKeys(t *testing.T) {
	e := emulatortest.Start(t, emulatortest.Options{})
	if e.SymmetricKey(emulatortest.SymDeviceID) != emulatortest.SymDeviceKey {
		t.Error("SymDeviceID's key is not SymDeviceKey")
	}
	derived, err := dps.DeriveDeviceKey(emulatortest.SymGroupKey, "any-device")
	if err != nil || e.SymmetricKey("any-device") != derived {
		t.Errorf("group device key %q, want the derived %q (%v)", e.SymmetricKey("any-device"), derived, err)
	}
	leaf := e.ClientCert(t, "some-x509-device")
	if leaf.Leaf == nil || leaf.Leaf.Subject.CommonName != "some-x509-device" {
		t.Fatalf("ClientCert leaf %+v, want CN some-x509-device", leaf.Leaf)
	}
	if err := leaf.Leaf.CheckSignatureFrom(e.GroupCA.Cert); err != nil {
		t.Errorf("group device certificate not issued by GroupCA: %v", err)
	}
	ind := e.ClientCert(t, emulatortest.X509DeviceID)
	if err := ind.Leaf.CheckSignatureFrom(e.CA.Cert); err != nil {
		t.Errorf("X509DeviceID certificate not issued by CA: %v", err)
	}
	if _, err := os.Stat(e.CAFile); err != nil {
		t.Errorf("CAFile: %v", err)
	}
}

// TestBudgetInstance: Options.Budget serves a second instance with the same
// enrollments whose registration budget is its own: the third registration
// in a minute is throttled there, while the main instance (a budget of 3)
// still takes three.
func TestBudgetInstance(t *testing.T) {
	limits := emulator.DefaultLimits()
	limits.RegistrationsPerMinute = 3
	e := emulatortest.Start(t, emulatortest.Options{Budget: 2, Limits: &limits})
	if e.BudgetAddr == "" || e.BudgetAddr == e.MQTTAddr {
		t.Fatalf("BudgetAddr %q (MQTTAddr %q)", e.BudgetAddr, e.MQTTAddr)
	}
	register := func(addr, id string) int {
		conn, err := tls.Dial("tcp", addr, e.ClientTLSConfig(nil))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		code, _, err := emulatortest.ProvisionConn(conn, e.IDScope, id, e.SASToken(t, id))
		if err != nil && code == 0 {
			t.Fatalf("%s on %s: %v", id, addr, err)
		}
		return code
	}
	var got []int
	for _, id := range []string{"budget-1", "budget-2", "budget-3"} {
		got = append(got, register(e.BudgetAddr, id))
	}
	if !slices.Equal(got, []int{200, 200, 429}) {
		t.Errorf("budget instance answered %v, want [200 200 429]", got)
	}
	got = got[:0]
	for _, id := range []string{"budget-4", "budget-5", "budget-6"} {
		got = append(got, register(e.MQTTAddr, id))
	}
	if !slices.Equal(got, []int{200, 200, 200}) {
		t.Errorf("main instance answered %v after the budget instance was spent, want [200 200 200]", got)
	}
}
