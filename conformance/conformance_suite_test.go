package conformance_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/transport"
)

// emulatorTarget describes an emulatortest emulator as a suite target.
func emulatorTarget(t testing.TB, e *emulatortest.Emulator) conformance.Target {
	t.Helper()
	mqtt, err := transport.ParseTarget("mqtts://" + e.MQTTAddr)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := transport.ParseTarget(e.WSURL)
	if err != nil {
		t.Fatal(err)
	}
	cert := e.ClientCert(t, emulatortest.X509DeviceID)
	return conformance.Target{
		Name: "emulatortest", MQTT: mqtt, WS: ws, RootCAs: e.CAPool, ServerName: "localhost",
		IDScope: e.IDScope, Local: true,
		Credentials: conformance.Credentials{
			RegistrationID: emulatortest.SymDeviceID, SymmetricKey: emulatortest.SymDeviceKey,
			GroupKey: emulatortest.SymGroupKey,
			X509:     &cert, X509RegistrationID: emulatortest.X509DeviceID,
			DisabledRegistrationID: emulatortest.DisabledDeviceID, DisabledKey: emulatortest.DisabledDeviceKey,
		},
	}
}

func faultNames() []string {
	var out []string
	for _, f := range emulator.Faults() {
		out = append(out, string(f.Name))
	}
	return out
}

func runSuite(t *testing.T, faults []emulator.Fault, labelFilter string) *conformance.Result {
	t.Helper()
	e := emulatortest.Start(t, emulatortest.Options{Faults: faults})
	var progress strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := t.TempDir()
	if dir := os.Getenv("DPSCONFORM_SUITE_OUT"); dir != "" {
		out = dir // keep the evidence for a look after the test
	}
	res, err := conformance.Run(ctx, conformance.Config{
		Target: emulatorTarget(t, e), OutDir: out, LabelFilter: labelFilter,
		Progress: &progress, KnownFaults: faultNames(), CloseWait: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() || os.Getenv("DPSCONFORM_SUITE_LOG") != "" {
		t.Log("\n" + progress.String())
	}
	return res
}

// TestSuite runs the whole service suite against the in-process emulator:
// every spec passes (or is skipped with its reason, for the other profile).
func TestSuite(t *testing.T) {
	res := runSuite(t, nil, "")
	if len(res.Verdicts) < 40 {
		t.Errorf("%d specs ran; the suite has more", len(res.Verdicts))
	}
	for _, v := range res.Verdicts {
		switch {
		case v.Failed():
			t.Errorf("%s %s: %s\n%s", v.State, v.ID, v.Text, v.Message)
		case v.State == "skipped" && v.ID != "DPS-SESS-002":
			t.Errorf("skipped %s %s: %s", v.ID, v.Text, v.Message)
		}
	}
}
