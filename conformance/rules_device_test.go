package conformance_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/device"
	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/emulator/registry"
	"github.com/dps-conform/dps-conform/internal/testproc"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
	"github.com/dps-conform/dps-conform/tracer/tlstrace"
	"github.com/dps-conform/dps-conform/tracer/wstrace"
	"github.com/dps-conform/dps-conform/transport"
)

// closeTracker reports when every connection it wrapped was closed.
type closeTracker struct {
	wg sync.WaitGroup
}

type trackedConn struct {
	net.Conn
	once sync.Once
	done func()
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.done)
	return err
}

// recordDevice runs device.Provision against an emulator started with o,
// recording the raw TLS bytes on the emulator's side with the device's key
// log, and returns the decoded capture and Provision's error. mod adjusts
// the device's configuration (its TLS config trusts the emulator's CA and
// names "localhost").
func recordDevice(t *testing.T, o emulatortest.Options, mod func(e *emulatortest.Emulator, cfg *device.Config)) (*tracer.Capture, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "device.pcapng")
	rec, err := tracer.CreateRecorder(path, tracer.RecorderOptions{Comment: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	var tr closeTracker
	o.WrapRaw = func(c net.Conn) net.Conn {
		tr.wg.Add(1)
		return &trackedConn{Conn: rec.Wrap(c, tracer.ConnOptions{Side: tracer.Server, Layer: tracer.TLS}), done: tr.wg.Done}
	}
	e := emulatortest.Start(t, o)
	target, err := transport.ParseTarget("mqtts://" + e.MQTTAddr)
	if err != nil {
		t.Fatal(err)
	}
	tc := e.ClientTLSConfig(nil)
	tc.ServerName = "localhost"
	tc.KeyLogWriter = rec.KeyLogWriter()
	cfg := device.Config{
		Target: target, Dial: transport.DialOptions{TLSConfig: tc},
		IDScope: e.IDScope, RegistrationID: emulatortest.SymDeviceID, SymmetricKey: emulatortest.SymDeviceKey,
		ResponseTimeout: 5 * time.Second,
	}
	if mod != nil {
		mod(e, &cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, perr := device.Provision(ctx, cfg)
	// The emulator closes each connection once the device is gone: wait
	// for it, so that the capture holds both ends.
	closed := make(chan struct{})
	go func() { tr.wg.Wait(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Errorf("the emulator did not close every connection within 5 s")
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	capt, err := tracer.DecodeFile(path, tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return capt, perr
}

func ptr[T any](v T) *T { return &v }

// reconnecting makes cfg give a CONNECT up after 0.3 s without CONNACK
// and reconnect after a back-off from initial, doubling, without jitter.
func reconnecting(cfg *device.Config, initial time.Duration) {
	cfg.ConnectAttempts = 3
	cfg.ResponseTimeout = 300 * time.Millisecond
	cfg.Backoff = device.Backoff{Initial: initial, Jitter: -1}
}

func findingIDs(fs []conformance.Finding) []string {
	var ids []string
	for _, f := range fs {
		if !slices.Contains(ids, f.ID) {
			ids = append(ids, f.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

func transcript(capt *tracer.Capture) string {
	var b strings.Builder
	tracer.WriteText(&b, capt, tracer.TranscriptOptions{})
	return b.String()
}

// TestDeviceRulesProof runs the device client against the emulator, clean
// and with one misbehaviour switch at a time: the clean client breaks no
// device rule, and each switch breaks exactly its rule.
func TestDeviceRulesProof(t *testing.T) {
	if testproc.Offload(t) { // mostly waits: alongside the other tests
		return
	}
	wrongKey := emulatortest.DisabledDeviceKey // valid base64, not sym-device-1's key
	sas := func(e *emulatortest.Emulator, expiry time.Time) *string {
		tok, err := dps.BuildSASToken(dps.SASOptions{IDScope: e.IDScope, RegistrationID: emulatortest.SymDeviceID, Key: emulatortest.SymDeviceKey, Expiry: expiry})
		if err != nil {
			t.Fatal(err)
		}
		return &tok
	}
	// env carries the key the device is given, as the device role does;
	// noKey is a capture whose key the rules do not know.
	env := conformance.RuleEnv{Profile: conformance.ProfileDPS2019, ServerName: "localhost", Live: true, SymmetricKey: emulatortest.SymDeviceKey}
	noKey := env
	noKey.SymmetricKey = ""
	hostile := conformance.RuleEnv{Profile: conformance.ProfileDPS2019, HostileServer: true, Live: true}
	// x509 is a device given a client certificate, as `device
	// --attestation x509` gives one; asX509 makes the client that device.
	// disabled is the device of a disabled enrollment (Part A §8: 200
	// with status "disabled"), asDisabled makes the client that device.
	disabled := env
	disabled.SymmetricKey = emulatortest.DisabledDeviceKey
	asDisabled := func(_ *emulatortest.Emulator, c *device.Config) {
		c.RegistrationID, c.SymmetricKey = emulatortest.DisabledDeviceID, emulatortest.DisabledDeviceKey
	}
	// failed enrolls SymDeviceID as the enrollment-failed scenario enrolls
	// the device (emulator.Scenario.Enroll: custom allocation whose
	// webhook answers 500): the registration ends in a 200 with status
	// "failed", errorCode 400207 (Part B §4.4, §4.7).
	failed := func() emulatortest.Options {
		sc, err := emulator.LookupScenario("enrollment-failed")
		if err != nil {
			t.Fatal(err)
		}
		e := registry.IndividualEnrollment{
			RegistrationID: emulatortest.SymDeviceID,
			Attestation: registry.AttestationMechanism{
				Type:         registry.AttestationSymmetricKey,
				SymmetricKey: &registry.SymmetricKeyAttestation{PrimaryKey: emulatortest.SymDeviceKey},
			},
		}
		hc := sc.Enroll(&e)
		return emulatortest.Options{HTTPClient: hc, Config: &registry.Config{
			IDScope:     emulatortest.IDScope,
			LinkedHubs:  []registry.LinkedHub{{Name: emulatortest.HubName}},
			Enrollments: []registry.IndividualEnrollment{e},
		}}
	}
	// overWS makes the client dial MQTT over WebSocket offering sub.
	overWS := func(sub string) func(e *emulatortest.Emulator, c *device.Config) {
		return func(e *emulatortest.Emulator, c *device.Config) {
			target, err := transport.ParseTarget(e.WSURL)
			if err != nil {
				t.Fatal(err)
			}
			c.Target, c.Dial.Subprotocol = target, sub
		}
	}
	x509 := noKey
	x509.X509 = true
	asX509 := func(e *emulatortest.Emulator, c *device.Config) {
		cert := e.ClientCert(t, emulatortest.X509DeviceID)
		c.RegistrationID, c.SymmetricKey = emulatortest.X509DeviceID, ""
		c.Dial.TLSConfig.Certificates = []tls.Certificate{cert}
	}
	for _, tc := range []struct {
		name string
		// scenario names an emulator.Scenario of the device role, scripted
		// as `dps-conform device` scripts it (429 retry-after 1 s).
		scenario string
		opts     emulatortest.Options
		mod      func(e *emulatortest.Emulator, cfg *device.Config)
		env      conformance.RuleEnv
		// fail is the one rule that must fail ("" for none); applied
		// lists rules that must have applied.
		fail    string
		applied []string
	}{
		{name: "clean", env: env, applied: []string{
			"DPS-DEV-001", "DPS-DEV-002", "DPS-DEV-003", "DPS-DEV-004", "DPS-DEV-005", "DPS-DEV-007", "DPS-DEV-008", "DPS-DEV-009",
			"DPS-DEV-010", "DPS-DEV-011", "DPS-DEV-012", "DPS-DEV-013", "DPS-DEV-014", "DPS-DEV-015", "DPS-DEV-019", "DPS-DEV-020",
			"DPS-DEV-023", "DPS-DEV-025", "DPS-DEV-026"}},
		{name: "clean, 401 answer", env: noKey, applied: []string{"DPS-DEV-005", "DPS-DEV-017"},
			mod: func(_ *emulatortest.Emulator, c *device.Config) { c.SymmetricKey = wrongKey }},
		{name: "clean, bad server certificate", env: hostile, applied: []string{"DPS-DEV-001", "DPS-DEV-021"},
			mod: func(_ *emulatortest.Emulator, c *device.Config) { c.Dial.TLSConfig.ServerName = "wrong.example" }},
		{name: "clean, X.509", env: x509, applied: []string{"DPS-DEV-006", "DPS-DEV-014", "DPS-DEV-027"}, mod: asX509},
		// A certificate of another device (CN other-device-9, from the
		// group CA): the service answers 401 and closes; the device gives up.
		{name: "X.509 certificate naming another device", env: x509, fail: "DPS-DEV-027", applied: []string{"DPS-DEV-006", "DPS-DEV-017"},
			mod: func(e *emulatortest.Emulator, c *device.Config) {
				asX509(e, c)
				c.Dial.TLSConfig.Certificates = []tls.Certificate{e.ClientCert(t, "other-device-9")}
			}},
		{name: "clean, register-429", scenario: "register-429", env: env, applied: []string{"DPS-DEV-016"}},
		// The C SDK's upper-case subprotocol is no finding.
		{name: "clean, WebSocket (subprotocol MQTT)", env: env, applied: []string{"DPS-DEV-001", "DPS-DEV-014", "DPS-DEV-028"}, mod: overWS("MQTT")},
		// The emulator chooses no subprotocol; the client gives up.
		{name: "WebSocket subprotocol mqttv3.1", env: env, fail: "DPS-DEV-028", mod: overWS("mqttv3.1")},
		{name: "clean, transient-500", scenario: "transient-500", env: env, applied: []string{"DPS-DEV-018"},
			mod: func(_ *emulatortest.Emulator, c *device.Config) {
				c.Backoff = device.Backoff{Initial: 200 * time.Millisecond, Max: time.Second, Jitter: -1}
			}},
		{name: "clean, poll-no-operation-id", scenario: "poll-no-operation-id", env: env, applied: []string{"DPS-DEV-013"}},
		// Two CONNECTs left unanswered: the device gives each up after
		// 0.3 s and reconnects 1 s, then 2 s later.
		{name: "clean, connack-withheld", scenario: "connack-withheld", env: env, applied: []string{"DPS-DEV-022"},
			mod: func(_ *emulatortest.Emulator, c *device.Config) { reconnecting(c, time.Second) }},
		// DPS compares registration ids without case (the emulator
		// accepts it, DPS-DEV-004 passes); DPS-DEV-003 wants it unmodified.
		{name: "ClientID in upper case", env: env, fail: "DPS-DEV-003",
			mod: func(_ *emulatortest.Emulator, c *device.Config) {
				c.Misbehave.ClientID = ptr(strings.ToUpper(emulatortest.SymDeviceID))
			}},
		// TLS settings, not switches: a device offering TLS 1.3 only (the
		// emulator refuses the handshake), and one dialling the IP address
		// (no server_name extension; the certificate names 127.0.0.1 too).
		{name: "TLS 1.3 only", env: env, fail: "DPS-DEV-001",
			mod: func(_ *emulatortest.Emulator, c *device.Config) { c.Dial.TLSConfig.MinVersion = tls.VersionTLS13 }},
		// ChaCha20 suites only: the emulator (D-TLS's suites) refuses the
		// handshake; TLS 1.2 was offered (DPS-DEV-001 passes).
		{name: "ChaCha20 suites only", env: env, fail: "DPS-DEV-025", applied: []string{"DPS-DEV-001", "DPS-DEV-002"},
			mod: func(_ *emulatortest.Emulator, c *device.Config) {
				c.Dial.TLSConfig.MaxVersion = tls.VersionTLS12
				c.Dial.TLSConfig.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}
			}},
		{name: "no SNI", env: env, fail: "DPS-DEV-002", applied: []string{"DPS-DEV-001", "DPS-DEV-014"},
			mod: func(_ *emulatortest.Emulator, c *device.Config) { c.Dial.TLSConfig.ServerName = "127.0.0.1" }},
		{name: "Username without api-version", env: env, fail: "DPS-DEV-004",
			mod: func(e *emulatortest.Emulator, c *device.Config) {
				c.Misbehave.Username = ptr(e.IDScope + "/registrations/" + emulatortest.SymDeviceID)
			}},
		{name: "expired SAS token", env: env, fail: "DPS-DEV-005",
			mod: func(e *emulatortest.Emulator, c *device.Config) {
				c.Misbehave.Password = sas(e, time.Now().Add(-time.Hour))
			}},
		{name: "SAS token signed with another key", env: env, fail: "DPS-DEV-005",
			mod: func(_ *emulatortest.Emulator, c *device.Config) { c.SymmetricKey = wrongKey }},
		// An MQTT 3.1 client: the emulator answers CONNACK 0x01 and
		// closes (MQTT-3.1.2-2), and the device gives up.
		{name: "MQTT 3.1 CONNECT (MQIsdp, level 3)", env: env, fail: "DPS-DEV-007",
			mod: func(_ *emulatortest.Emulator, c *device.Config) {
				c.Misbehave.ProtocolName = ptr("MQIsdp")
				c.Misbehave.ProtocolLevel = 3
			}},
		// Level 4 under another name: the emulator closes without CONNACK.
		{name: "protocol name MQIsdp, level 4", env: env, fail: "DPS-DEV-007",
			mod: func(_ *emulatortest.Emulator, c *device.Config) { c.Misbehave.ProtocolName = ptr("MQIsdp") }},
		{name: "PersistentSession", env: env, fail: "DPS-DEV-008", opts: emulatortest.Options{Profile: emulator.ProfileDPS2023},
			mod: func(_ *emulatortest.Emulator, c *device.Config) { c.PersistentSession = true }},
		{name: "keep-alive 4000 s", env: env, fail: "DPS-DEV-009",
			mod: func(_ *emulatortest.Emulator, c *device.Config) { c.KeepAlive = 4000 * time.Second }},
		{name: "SkipSubscribe", env: env, fail: "DPS-DEV-010",
			mod: func(_ *emulatortest.Emulator, c *device.Config) {
				c.Misbehave.SkipSubscribe = true
				c.ResponseTimeout = 300 * time.Millisecond
			}},
		{name: "RIDWithoutDollar", env: env, fail: "DPS-DEV-011",
			mod: func(_ *emulatortest.Emulator, c *device.Config) { c.Misbehave.RIDWithoutDollar = true }},
		{name: "register body not JSON", env: env, fail: "DPS-DEV-012",
			mod: func(_ *emulatortest.Emulator, c *device.Config) { c.RegisterBody = []byte(`{"registrationId":`) }},
		// The emulator answers the poll for an unknown operation 404, and
		// the device gives up.
		{name: "PollOperationID", env: env, fail: "DPS-DEV-013",
			mod: func(_ *emulatortest.Emulator, c *device.Config) {
				c.Misbehave.PollOperationID = "4.0000000000000000.00000000-0000-4000-8000-000000000000"
			}},
		{name: "IgnoreRetryAfter", env: env, fail: "DPS-DEV-014", opts: emulatortest.Options{RetryAfter: 2 * time.Second},
			mod: func(_ *emulatortest.Emulator, c *device.Config) {
				c.Misbehave.IgnoreRetryAfter = true
				c.MaxPolls = 2
			}},
		// Without a retry-after to follow (omit-retry-after) the pace is
		// the device's own: DPS-DEV-014 has nothing to judge, and the
		// sixth poll within 10 s is DPS-DEV-015's.
		{name: "PollInterval", env: env, fail: "DPS-DEV-015",
			opts: emulatortest.Options{Faults: []emulator.Fault{emulator.FaultNeverAssign, emulator.FaultOmitRetryAfter}, Limits: &emulator.Limits{PollsPerWindow: 100}},
			mod: func(_ *emulatortest.Emulator, c *device.Config) {
				c.Misbehave.PollInterval = 50 * time.Millisecond
				c.MaxPolls = 6
			}},
		// PollInterval replaces every wait: the register 0.3 s after the
		// 429 (retry-after 1 s) is DPS-DEV-016's; the poll follows the
		// 202's retry-after of 0.
		{name: "PollInterval, register-429", scenario: "register-429", env: env, fail: "DPS-DEV-016",
			mod: func(_ *emulatortest.Emulator, c *device.Config) { c.Misbehave.PollInterval = 300 * time.Millisecond }},
		// Two 500s without retry-after, each retry 2 s after: no growing
		// back-off. The rule counts a wait as longer only when it is 5 %
		// longer: 2 s leaves 100 ms of scheduling noise, not 50 ms.
		{name: "PollInterval, transient-500", scenario: "transient-500", env: env, fail: "DPS-DEV-018",
			mod: func(_ *emulatortest.Emulator, c *device.Config) { c.Misbehave.PollInterval = 2 * time.Second }},
		// A back-off that starts at 0.3 s: the first reconnect comes too soon.
		{name: "reconnect back-off from 0.3 s, connack-withheld", scenario: "connack-withheld", env: env, fail: "DPS-DEV-022",
			mod: func(_ *emulatortest.Emulator, c *device.Config) { reconnecting(c, 300*time.Millisecond) }},
		// An X.509 device that also sends a SAS token as its password.
		{name: "X.509 with a password", env: x509, fail: "DPS-DEV-006",
			mod: func(e *emulatortest.Emulator, c *device.Config) {
				asX509(e, c)
				c.Misbehave.Password = sas(e, time.Now().Add(time.Hour))
			}},
		// An X.509 device that connects without its certificate (with the
		// symmetric key of another enrollment): the service refuses it.
		{name: "X.509 device without its certificate", env: x509, fail: "DPS-DEV-006",
			mod: func(e *emulatortest.Emulator, c *device.Config) {
				c.RegistrationID, c.SymmetricKey = emulatortest.X509DeviceID, emulatortest.SymDeviceKey
			}},
		{name: "RetryAfter401", env: noKey, fail: "DPS-DEV-017",
			mod: func(_ *emulatortest.Emulator, c *device.Config) {
				c.SymmetricKey = wrongKey
				c.Misbehave.RetryAfter401 = true
			}},
		// The emulator answers the extra poll 200 again; the device
		// acknowledges it and disconnects.
		{name: "PollAfterAssigned", env: env, fail: "DPS-DEV-020", applied: []string{"DPS-DEV-019"},
			mod: func(_ *emulatortest.Emulator, c *device.Config) { c.Misbehave.PollAfterAssigned = true }},
		// The emulator answers the second register 409; the device then
		// polls the first operation to its 200.
		{name: "RegisterAgain", env: env, fail: "DPS-DEV-023",
			mod: func(_ *emulatortest.Emulator, c *device.Config) { c.Misbehave.RegisterAgain = true }},
		{name: "clean, disabled enrollment", env: disabled, applied: []string{"DPS-DEV-020", "DPS-DEV-024"}, mod: asDisabled},
		// The emulator answers the register after "disabled" 202 again.
		{name: "RegisterAfterFailure, disabled enrollment", env: disabled, fail: "DPS-DEV-024",
			mod: func(e *emulatortest.Emulator, c *device.Config) {
				asDisabled(e, c)
				c.Misbehave.RegisterAfterFailure = true
			}},
		{name: "clean, failed allocation", env: env, opts: failed(), applied: []string{"DPS-DEV-020", "DPS-DEV-024"}},
		// The emulator answers the register after "failed" 202 again (a
		// new operation, failed like the first).
		{name: "RegisterAfterFailure, failed allocation", env: env, opts: failed(), fail: "DPS-DEV-024",
			mod: func(_ *emulatortest.Emulator, c *device.Config) { c.Misbehave.RegisterAfterFailure = true }},
		// A register body of 100 KB (valid JSON, a custom payload): the
		// emulator closes the connection (Part A §7).
		{name: "register body over 96 KB", env: env, fail: "DPS-DEV-026",
			mod: func(_ *emulatortest.Emulator, c *device.Config) {
				c.RegisterBody = []byte(`{"registrationId":"` + emulatortest.SymDeviceID + `","payload":{"blob":"` + strings.Repeat("a", 100<<10) + `"}}`)
			}},
		{name: "NoPuback", env: env, fail: "DPS-DEV-019",
			mod: func(_ *emulatortest.Emulator, c *device.Config) { c.Misbehave.NoPuback = true }},
		{name: "AcceptAnyServerCert", env: hostile, fail: "DPS-DEV-021",
			mod: func(_ *emulatortest.Emulator, c *device.Config) {
				c.Dial.TLSConfig.ServerName = "wrong.example"
				c.Misbehave.AcceptAnyServerCert = true
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.scenario != "" {
				sc, err := emulator.LookupScenario(tc.scenario)
				if err != nil {
					t.Fatal(err)
				}
				sc.ThrottleRetryAfter = time.Second
				tc.opts.Scenario = &sc
			}
			capt, perr := recordDevice(t, tc.opts, tc.mod)
			fs, applied := conformance.CheckCapture(capt, conformance.DeviceRules(), tc.env)
			var want []string
			if tc.fail != "" {
				want = []string{tc.fail}
			}
			if got := findingIDs(fs); !slices.Equal(got, want) {
				for _, f := range fs {
					t.Log(f)
				}
				t.Logf("Provision: %v\n%s", perr, transcript(capt))
				t.Fatalf("rules failed: %q, want %q", got, want)
			}
			for _, id := range append(tc.applied, tc.fail) {
				if id != "" && applied[id] == 0 {
					t.Errorf("%s did not apply (applied: %v); Provision: %v\n%s", id, applied, perr, transcript(capt))
				}
			}
		})
	}
}

func TestDeviceRulesCatalogued(t *testing.T) {
	cat, err := conformance.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range conformance.DeviceRules() {
		ids = append(ids, r.ID)
		req, ok := cat.Lookup(r.ID)
		if !ok {
			t.Errorf("%s is not in the catalogue", r.ID)
			continue
		}
		if req.Role != conformance.RoleDevice || r.Role != conformance.RoleDevice {
			t.Errorf("%s: catalogue role %s, rule role %s", r.ID, req.Role, r.Role)
		}
		if (r.Check == nil) == (r.CheckCapture == nil) || r.Evidence == "" {
			t.Errorf("%s: not exactly one of Check and CheckCapture, or no Evidence", r.ID)
		}
	}
	var want []string
	for i := 1; i <= 28; i++ {
		want = append(want, fmt.Sprintf("DPS-DEV-%03d", i))
	}
	if !slices.Equal(ids, want) {
		t.Errorf("DeviceRules() = %q, want %q", ids, want)
	}
}

// ---- synthetic captures ----

// synth writes a capture of hand-made conversations on a fake clock.
type synth struct {
	t     *testing.T
	buf   bytes.Buffer
	rec   *tracer.Recorder
	now   time.Time
	flows int
}

func newSynth(t *testing.T) *synth {
	s := &synth{t: t, now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	rec, err := tracer.NewRecorder(&s.buf, tracer.RecorderOptions{Now: func() time.Time { return s.now }})
	if err != nil {
		t.Fatal(err)
	}
	s.rec = rec
	return s
}

func (s *synth) advance(d time.Duration) { s.now = s.now.Add(d) }

type synthFlow struct {
	s   *synth
	f   *tracer.Flow
	pid uint16
}

// conn starts a conversation: CONNECT cp (a documented one for
// sym-device-1 when nil), CONNACK 0, SUBSCRIBE to the response filter and
// its SUBACK.
func (s *synth) conn(cp *packets.Connect) *synthFlow {
	if cp == nil {
		cp = documentedConnect("")
	}
	sf := s.bare(cp, &packets.Connack{})
	sf.subscribe()
	return sf
}

// bare starts a conversation with CONNECT cp and, when ack is not nil, the
// server's answer ack: nothing more (conn also subscribes).
func (s *synth) bare(cp *packets.Connect, ack *packets.Connack) *synthFlow {
	s.flows++
	client := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(50000+s.flows))
	server := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), 1883)
	f, err := s.rec.Flow(client, server, tracer.FlowOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	sf := &synthFlow{s: s, f: f}
	sf.send(tracer.Client, cp)
	if ack != nil {
		sf.send(tracer.Server, ack)
	}
	return sf
}

// subscribe sends a SUBSCRIBE (packet id 1) to the response filter at
// QoS 1 and its SUBACK granting QoS 1.
func (f *synthFlow) subscribe() {
	f.send(tracer.Client, &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 1}}})
	f.send(tracer.Server, &packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{1}})
}

func documentedConnect(password string) *packets.Connect {
	cp := &packets.Connect{ProtocolName: []byte(packets.ProtocolName311), ProtocolLevel: 4, CleanSession: true, KeepAlive: 60,
		ClientID: []byte(emulatortest.SymDeviceID), Username: []byte(emulatortest.IDScope + "/registrations/" + emulatortest.SymDeviceID + "/api-version=" + dps.DefaultAPIVersion)}
	if password != "" {
		cp.Password = []byte(password)
	}
	return cp
}

func (f *synthFlow) send(from tracer.Side, p packets.Packet) {
	b, err := packets.Encode(nil, p, packets.EncodeOptions{AllowInvalid: true})
	if err != nil {
		f.s.t.Fatal(err)
	}
	if err := f.f.Send(from, b, tracer.SegOpts{}); err != nil {
		f.s.t.Fatal(err)
	}
}

// request publishes a device request at QoS 1 and the server's PUBACK.
func (f *synthFlow) request(topic, body string) {
	f.pid++
	f.send(tracer.Client, &packets.Publish{QoS: 1, PacketID: 100 + f.pid, Topic: []byte(topic), Payload: []byte(body)})
	f.send(tracer.Server, &packets.Puback{PacketID: 100 + f.pid})
}

// answer publishes a service answer at QoS 0 (so DPS-DEV-019 has nothing
// to say).
func (f *synthFlow) answer(status int, rid string, retryAfter int, body string) {
	f.send(tracer.Server, &packets.Publish{Topic: []byte(dps.ResponseTopic(status, rid, retryAfter)), Payload: []byte(body)})
}

func (f *synthFlow) close() {
	f.send(tracer.Client, &packets.Disconnect{})
	if err := f.f.Fin(tracer.Client); err != nil {
		f.s.t.Fatal(err)
	}
	if err := f.f.Fin(tracer.Server); err != nil {
		f.s.t.Fatal(err)
	}
}

func (s *synth) capture() *tracer.Capture {
	if err := s.rec.Close(); err != nil {
		s.t.Fatal(err)
	}
	c, err := tracer.Decode(bytes.NewReader(s.buf.Bytes()), tracer.Options{})
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

func deviceRule(t *testing.T, id string) *conformance.Rule {
	for _, r := range conformance.DeviceRules() {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("no rule %s", id)
	return nil
}

const (
	op1         = `{"operationId":"op-1","status":"assigning"}`
	opDisabled  = `{"operationId":"op-1","status":"disabled","registrationState":{"registrationId":"sym-device-1","status":"disabled"}}`
	op1Assigned = `{"operationId":"op-1","status":"assigned","registrationState":{"registrationId":"sym-device-1","assignedHub":"hub1.azure-devices.net","deviceId":"sym-device-1","status":"assigned"}}`
)

// TestDeviceRulesSynthetic judges single rules on hand-made captures, for
// violations the device client cannot be made to show live.
func TestDeviceRulesSynthetic(t *testing.T) {
	register := dps.RegisterTopic
	poll := dps.PollTopic
	regBody := `{"registrationId":"sym-device-1"}`
	// retriesAfter503 registers, then answers each register 503 without
	// retry-after and registers again after each wait of waits in turn.
	retriesAfter503 := func(waits ...time.Duration) func(s *synth) {
		return func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			for i, d := range waits {
				f.answer(503, fmt.Sprint(i+1), -1, `{}`)
				s.advance(d)
				f.request(register(fmt.Sprint(i+2)), regBody)
			}
			f.close()
		}
	}
	token := func(expiry time.Time, o dps.SASOptions) string {
		o.IDScope, o.Key, o.Expiry = emulatortest.IDScope, emulatortest.SymDeviceKey, expiry
		if o.RegistrationID == "" {
			o.RegistrationID = emulatortest.SymDeviceID
		}
		tok, err := dps.BuildSASToken(o)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []deviceRuleCase{
		{name: "SAS token valid", rule: "DPS-DEV-005", applied: 1, build: func(s *synth) {
			s.conn(documentedConnect(token(start.Add(time.Hour), dps.SASOptions{}))).close()
		}},
		{name: "SAS token expired", rule: "DPS-DEV-005", applied: 1, findings: 1, contains: []string{"expired 3600.00 s before the CONNECT"}, build: func(s *synth) {
			s.conn(documentedConnect(token(start.Add(-time.Hour), dps.SASOptions{}))).close()
		}},
		// DPS documents no maximum lifetime (Part B §8).
		{name: "SAS token for 400 days", rule: "DPS-DEV-005", applied: 1, build: func(s *synth) {
			s.conn(documentedConnect(token(start.Add(400*24*time.Hour), dps.SASOptions{}))).close()
		}},
		{name: "SAS token signed with the device's key", rule: "DPS-DEV-005", env: conformance.RuleEnv{SymmetricKey: emulatortest.SymDeviceKey}, applied: 1, build: func(s *synth) {
			s.conn(documentedConnect(token(start.Add(time.Hour), dps.SASOptions{}))).close()
		}},
		{name: "SAS token signed with another key", rule: "DPS-DEV-005", env: conformance.RuleEnv{SymmetricKey: emulatortest.DisabledDeviceKey}, applied: 1, findings: 1, contains: []string{"signature matches none"}, build: func(s *synth) {
			s.conn(documentedConnect(token(start.Add(time.Hour), dps.SASOptions{}))).close()
		}},
		{name: "SAS token of another device, skn owner", rule: "DPS-DEV-005", applied: 1, findings: 2, build: func(s *synth) {
			s.conn(documentedConnect(token(start.Add(time.Hour), dps.SASOptions{RegistrationID: "other", KeyName: "owner"}))).close()
		}},
		{name: "password not a SAS token", rule: "DPS-DEV-005", applied: 1, findings: 1, contains: []string{"not a SAS token"}, build: func(s *synth) {
			s.conn(documentedConnect("hunter2")).close()
		}},
		{name: "ClientId of another device", rule: "DPS-DEV-003", applied: 1, findings: 1, contains: []string{`ClientId "other-device"`}, build: func(s *synth) {
			cp := documentedConnect("")
			cp.ClientID = []byte("other-device")
			s.conn(cp).close()
		}},
		// DPS-DEV-003 wants the registration id unmodified; DPS-DEV-004
		// only that the username names the same registration, which DPS
		// compares without case.
		{name: "ClientId differing in case only", rule: "DPS-DEV-003", applied: 1, findings: 1, contains: []string{"the username names"}, build: func(s *synth) {
			cp := documentedConnect("")
			cp.ClientID = []byte(strings.ToUpper(emulatortest.SymDeviceID))
			s.conn(cp).close()
		}},
		{name: "username naming the ClientId in another case", rule: "DPS-DEV-004", applied: 1, build: func(s *synth) {
			cp := documentedConnect("")
			cp.ClientID = []byte(strings.ToUpper(emulatortest.SymDeviceID))
			s.conn(cp).close()
		}},
		{name: "username naming another device", rule: "DPS-DEV-004", applied: 1, findings: 1, contains: []string{`the ClientId is "other-device"`}, build: func(s *synth) {
			cp := documentedConnect("")
			cp.ClientID = []byte("other-device")
			s.conn(cp).close()
		}},
		{name: "protocol name MQIsdp at level 4", rule: "DPS-DEV-007", applied: 1, findings: 1, contains: []string{"MQIsdp"}, build: func(s *synth) {
			cp := documentedConnect("")
			cp.ProtocolName = []byte("MQIsdp")
			s.conn(cp).close()
		}},
		{name: "keep-alive 4000", rule: "DPS-DEV-009", applied: 1, findings: 1, contains: []string{"keep-alive 4000 s"}, build: func(s *synth) {
			cp := documentedConnect("")
			cp.KeepAlive = 4000
			s.conn(cp).close()
		}},
		{name: "MQTT 3.1", rule: "DPS-DEV-007", applied: 1, findings: 1, contains: []string{"protocol level 3"}, build: func(s *synth) {
			cp := documentedConnect("")
			cp.ProtocolName, cp.ProtocolLevel = []byte("MQIsdp"), 3
			s.conn(cp).close()
		}},
		{name: "other filter", rule: "DPS-DEV-010", applied: 1, findings: 1, contains: []string{`SUBSCRIBE to "devices/#"`}, build: func(s *synth) {
			f := s.conn(nil)
			f.send(tracer.Client, &packets.Subscribe{PacketID: 2, Subscriptions: []packets.Subscription{{Filter: []byte("devices/#")}}})
			f.close()
		}},
		{name: "register body of another device", rule: "DPS-DEV-012", applied: 1, findings: 1, contains: []string{`registrationId "other"`}, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), `{"registrationId":"other"}`)
			f.close()
		}},
		{name: "register body a JSON array", rule: "DPS-DEV-012", applied: 2, findings: 1, contains: []string{"not a JSON object"}, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), `[]`)
			f.request(register("2"), ``)
			f.close()
		}},
		{name: "wrong operationId", rule: "DPS-DEV-013", applied: 2, findings: 1, contains: []string{`operationId "op-2"`, `"op-1"`}, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.answer(202, "1", 0, op1)
			f.request(poll("2", "op-2"), "")
			f.answer(404, "2", -1, `{}`)
			f.request(poll("3", "op-1"), "")
			f.close()
		}},
		{name: "operationId of an earlier connection", rule: "DPS-DEV-013", applied: 1, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.answer(202, "1", 0, op1)
			f.close()
			g := s.conn(nil)
			g.request(poll("1", "op-1"), "")
			g.close()
		}},
		{name: "poll 0.4 s into a retry-after of 3 s", rule: "DPS-DEV-014", applied: 2, findings: 1,
			contains: []string{"poll $rid=2 0.40 s after the 202 answer (frame ", ") with retry-after=3 s", "a poll no earlier than 3.00 s (tolerance 0.25 s)"},
			build: func(s *synth) {
				f := s.conn(nil)
				f.request(register("1"), regBody)
				f.answer(202, "1", 3, op1)
				s.advance(400 * time.Millisecond)
				f.request(poll("2", "op-1"), "")
				f.answer(202, "2", 3, op1)
				s.advance(2800 * time.Millisecond) // within the tolerance
				f.request(poll("3", "op-1"), "")
				f.close()
			}},
		// The device's own pace: answers without a retry-after, or polls
		// before it, are judged; polls that follow a short retry-after
		// are the server's pace.
		{name: "6 polls in 10 s, no retry-after", rule: "DPS-DEV-015", applied: 6, findings: 1, contains: []string{"6 polls within 9.00 s"}, build: func(s *synth) {
			sixPolls(s, regBody, -1)
		}},
		{name: "6 polls in 10 s before a retry-after of 3 s", rule: "DPS-DEV-015", applied: 6, findings: 1, contains: []string{"6 polls within 9.00 s"}, build: func(s *synth) {
			sixPolls(s, regBody, 3)
		}},
		{name: "6 polls in 10 s after a retry-after of 1 s", rule: "DPS-DEV-015", applied: 6, build: func(s *synth) {
			sixPolls(s, regBody, 1)
		}},
		{name: "a burst of 8 polls 1 s after one retry-after of 1 s", rule: "DPS-DEV-015", applied: 8, findings: 3, contains: []string{"6 polls within 0.05 s"}, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.answer(202, "1", 1, op1)
			s.advance(time.Second)
			for i := range 8 {
				f.request(poll(strconv.Itoa(i+2), "op-1"), "")
				s.advance(10 * time.Millisecond)
			}
			f.close()
		}},
		{name: "register 0.10 s after a 429 with retry-after 2", rule: "DPS-DEV-016", applied: 2, findings: 1,
			contains: []string{"register $rid=2 0.10 s after the 429 answer", "a request no earlier than 2.00 s"}, build: func(s *synth) {
				f := s.conn(nil)
				f.request(register("1"), regBody)
				f.answer(429, "1", 2, `{}`)
				s.advance(100 * time.Millisecond)
				f.request(register("2"), regBody)
				f.answer(429, "2", 2, `{}`)
				s.advance(2 * time.Second)
				f.request(register("3"), regBody)
				f.close()
			}},
		{name: "reconnect 2 s after a 401", rule: "DPS-DEV-017", applied: 2, findings: 1, contains: []string{"CONNECT with the same username 2.00 s after the 401 answer (conversation 1"}, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.answer(401, "1", -1, `{}`)
			f.close()
			s.advance(2 * time.Second)
			g := s.conn(nil)
			g.request(register("1"), regBody)
			g.answer(401, "1", -1, `{}`)
			g.close()
			s.advance(11 * time.Second) // after the window
			s.conn(nil).close()
		}},
		{name: "request after a 401 on the same connection", rule: "DPS-DEV-017", applied: 1, findings: 1, contains: []string{"after the 401 answer"}, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.answer(401, "1", -1, `{}`)
			f.request(register("2"), regBody)
			f.close()
		}},
		{name: "constant back-off after 503", rule: "DPS-DEV-018", applied: 3, findings: 1, contains: []string{"register $rid=4 2.00 s after the 503 answer", "the retry before waited 2.00 s", "a wait longer than 2.00 s"},
			build: retriesAfter503(time.Second, 2*time.Second, 2*time.Second)}, // 1, 2, then 2 again
		{name: "back-off capped at 30 s, jitter below the wait before", rule: "DPS-DEV-018", applied: 8, findings: 0,
			build: retriesAfter503(time.Second, 2*time.Second, 4*time.Second, 8*time.Second, 16*time.Second, 34*time.Second, 31*time.Second, 30*time.Second)},
		{name: "back-off drops from 60 s to 30 s", rule: "DPS-DEV-018", applied: 7, findings: 1, contains: []string{"the retry before waited 60.00 s"},
			build: retriesAfter503(time.Second, 2*time.Second, 4*time.Second, 8*time.Second, 16*time.Second, 60*time.Second, 30*time.Second)},
		{name: "back-off levels off below 30 s", rule: "DPS-DEV-018", applied: 5, findings: 1, contains: []string{"the retry before waited 20.00 s"},
			build: retriesAfter503(time.Second, 5*time.Second, 10*time.Second, 20*time.Second, 20*time.Second)},
		{name: "growing back-off after 500, then retry-after", rule: "DPS-DEV-018", applied: 4, findings: 1, contains: []string{"with retry-after=3 s"}, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			for i, d := range []time.Duration{time.Second, 2 * time.Second} {
				f.answer(500, fmt.Sprint(i+1), -1, `{}`)
				s.advance(d)
				f.request(register(fmt.Sprint(i+2)), regBody)
			}
			f.answer(503, "3", 3, `{}`)
			s.advance(3 * time.Second)
			f.request(register("4"), regBody)
			f.answer(503, "4", 3, `{}`)
			s.advance(time.Second)
			f.request(register("5"), regBody)
			f.close()
		}},
		{name: "no PUBACK, capture ends at once", rule: "DPS-DEV-019", applied: 0, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.send(tracer.Server, &packets.Publish{QoS: 1, PacketID: 7, Topic: []byte(dps.ResponseTopic(202, "1", 0)), Payload: []byte(op1)})
			s.advance(100 * time.Millisecond)
			f.send(tracer.Client, &packets.Pingreq{})
		}},
		{name: "no PUBACK within 2 s", rule: "DPS-DEV-019", applied: 2, findings: 1, contains: []string{"no PUBACK", "packet id 7"}, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.send(tracer.Server, &packets.Publish{QoS: 1, PacketID: 7, Topic: []byte(dps.ResponseTopic(202, "1", 0)), Payload: []byte(op1)})
			f.send(tracer.Server, &packets.Publish{QoS: 1, PacketID: 8, Topic: []byte(dps.ResponseTopic(202, "1", 0)), Payload: []byte(op1)})
			f.send(tracer.Client, &packets.Puback{PacketID: 8})
			s.advance(2 * time.Second)
			f.send(tracer.Client, &packets.Pingreq{})
		}},
		{name: "poll after 200", rule: "DPS-DEV-020", applied: 1, findings: 1, contains: []string{`poll $rid=3 for operation "op-1" 0.50 s after its 200 answer`}, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.answer(202, "1", 0, op1)
			f.request(poll("2", "op-1"), "")
			f.answer(200, "2", -1, op1Assigned)
			s.advance(500 * time.Millisecond)
			f.request(poll("3", "op-1"), "")
			f.close()
		}},
		// DPS-DEV-023: one registration at a time.
		{name: "register, poll to 200, register again", rule: "DPS-DEV-023", applied: 2, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.answer(202, "1", 0, op1)
			f.request(poll("2", "op-1"), "")
			f.answer(200, "2", -1, op1Assigned)
			f.request(register("3"), regBody)
			f.close()
		}},
		// After an error or a 202 without operationId a device may start
		// over (EC mqtt_state_machine.md).
		{name: "register again after a poll's 429 and a 202 without operationId", rule: "DPS-DEV-023", applied: 3, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.answer(202, "1", 0, op1)
			f.request(poll("2", "op-1"), "")
			f.answer(429, "2", 1, `{}`)
			f.request(register("3"), regBody)
			f.answer(202, "3", 0, op1)
			f.request(poll("4", "op-1"), "")
			f.answer(202, "4", 0, `{"status":"assigning"}`)
			f.request(register("5"), regBody)
			f.close()
		}},
		{name: "register again while in progress", rule: "DPS-DEV-023", applied: 2, findings: 1,
			contains: []string{`register $rid=2 0.50 s after the 202 answer (frame `, `operation "op-1" in progress`, "answers 409"}, build: func(s *synth) {
				f := s.conn(nil)
				f.request(register("1"), regBody)
				f.answer(202, "1", 1, op1)
				s.advance(500 * time.Millisecond)
				f.request(register("2"), regBody)
				f.answer(409, "2", -1, `{"errorCode":409203}`)
				f.request(poll("3", "op-1"), "")
				f.close()
			}},
		{name: "register on a second connection while in progress", rule: "DPS-DEV-023", applied: 2, findings: 1,
			contains: []string{`register $rid=1 while operation "op-1"`, "202 answer of conversation 1"}, build: func(s *synth) {
				f := s.conn(nil)
				f.request(register("1"), regBody)
				f.answer(202, "1", 3, op1)
				s.advance(time.Second)
				g := s.conn(nil)
				g.request(register("1"), regBody)
				g.close()
				s.advance(100 * time.Millisecond)
				f.close()
			}},
		// The first connection is gone: the device starts over.
		{name: "register on a new connection after the old one closed", rule: "DPS-DEV-023", applied: 2, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.answer(202, "1", 3, op1)
			f.close()
			s.advance(time.Second)
			g := s.conn(nil)
			g.request(register("1"), regBody)
			g.close()
		}},
		// DPS-DEV-026: 96 KB, the whole packet. The register PUBLISH at
		// QoS 1 has a 2-byte length, the 46-byte topic, a packet id and a
		// 3-byte remaining length: 53 bytes besides the body.
		{name: "a register of exactly 96 KB", rule: "DPS-DEV-026", applied: 1, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), `{"payload":"`+strings.Repeat("a", 96<<10-54-14)+`"}`)
			f.close()
		}},
		{name: "a register one byte over 96 KB", rule: "DPS-DEV-026", applied: 1, findings: 1, contains: []string{"a 98305-byte packet", "at most 98304 bytes"}, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.request(register("2"), `{"payload":"`+strings.Repeat("a", 96<<10-54-13)+`"}`)
			f.close()
		}},
		// DPS-DEV-024: failed and disabled are final.
		{name: "stop after disabled, reconnect after the window", rule: "DPS-DEV-024", applied: 1, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.answer(202, "1", 0, op1)
			f.request(poll("2", "op-1"), "")
			f.answer(200, "2", -1, opDisabled)
			f.close()
			s.advance(11 * time.Second)
			s.conn(nil).close()
		}},
		{name: "register again after disabled", rule: "DPS-DEV-024", applied: 1, findings: 1,
			contains: []string{`register $rid=3 0.20 s after the 200 answer with status "disabled" (frame `}, build: func(s *synth) {
				f := s.conn(nil)
				f.request(register("1"), regBody)
				f.answer(202, "1", 0, op1)
				f.request(poll("2", "op-1"), "")
				f.answer(200, "2", -1, opDisabled)
				s.advance(200 * time.Millisecond)
				f.request(register("3"), regBody)
				f.close()
			}},
		{name: "reconnect 1 s after failed", rule: "DPS-DEV-024", applied: 1, findings: 1,
			contains: []string{`CONNECT with the same username 1.00 s after the 200 answer with status "failed"`}, build: func(s *synth) {
				f := s.conn(nil)
				f.request(register("1"), regBody)
				f.answer(202, "1", 0, op1)
				f.request(poll("2", "op-1"), "")
				f.answer(200, "2", -1, `{"operationId":"op-1","status":"failed","registrationState":{"registrationId":"sym-device-1","status":"failed","errorCode":400207}}`)
				f.close()
				s.advance(time.Second)
				s.conn(nil).close()
			}},
	} {
		t.Run(tc.name, tc.run)
	}
}

// deviceRuleCase is one row of the tables that judge a device rule on a
// synthetic capture.
type deviceRuleCase struct {
	name  string
	rule  string
	env   conformance.RuleEnv
	build func(s *synth)
	// findings is the number of findings wanted; each must contain
	// every string of contains.
	findings int
	applied  int
	contains []string
}

func (tc deviceRuleCase) run(t *testing.T) {
	s := newSynth(t)
	tc.build(s)
	capt := s.capture()
	fs, applied := conformance.CheckCapture(capt, []*conformance.Rule{deviceRule(t, tc.rule)}, tc.env)
	if len(fs) != tc.findings || applied[tc.rule] != tc.applied {
		for _, f := range fs {
			t.Log(f)
		}
		t.Fatalf("%d findings, applied %d; want %d findings, applied %d\n%s", len(fs), applied[tc.rule], tc.findings, tc.applied, transcript(capt))
	}
	for _, f := range fs {
		d := f.Detail()
		for _, want := range tc.contains {
			if !strings.Contains(d, want) {
				t.Errorf("finding %q lacks %q", d, want)
			}
		}
	}
}

// TestDeviceRulesTLSFacts judges the rules on TLS facts from conversations
// built by hand (the recorder cannot fake a handshake).
func TestDeviceRulesTLSFacts(t *testing.T) {
	connect := tracer.Packet{Dir: tracer.ClientToServer, Frame: 9, Packet: documentedConnect("x")}
	for _, tc := range []struct {
		name     string
		rule     string
		env      conformance.RuleEnv
		conv     tracer.Conversation
		applied  int
		findings int
	}{
		{name: "TLS 1.2 offered and chosen", rule: "DPS-DEV-001", applied: 1,
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, ServerHello: true, OfferedVersions: []uint16{0x0304, 0x0303}, Version: 0x0303}}},
		{name: "TLS 1.3 only", rule: "DPS-DEV-001", applied: 1, findings: 1,
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, OfferedVersions: []uint16{0x0304}}}},
		{name: "plaintext, our own recording", rule: "DPS-DEV-001", env: conformance.RuleEnv{Live: true}, applied: 1, findings: 1,
			conv: tracer.Conversation{Transport: "mqtt", Packets: []tracer.Packet{connect}}},
		{name: "plaintext, a field capture (maybe a plaintext view)", rule: "DPS-DEV-001", applied: 0,
			conv: tracer.Conversation{Transport: "mqtt", Packets: []tracer.Packet{connect}}},
		{name: "aborted against a good server", rule: "DPS-DEV-001", applied: 1, findings: 1,
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, ServerHello: true, OfferedVersions: []uint16{0x0303}, Version: 0x0303,
				Alerts: []tlstrace.Alert{{Dir: tlstrace.ClientToServer, Level: 2, Description: 40}}}}},
		// Refusing the certificate is trust (DPS-DEV-021), not TLS 1.2: a
		// trace of the untrusted-CA scenario, or a device not given the CA.
		{name: "certificate refused, the server not known hostile", rule: "DPS-DEV-001", applied: 0,
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, ServerHello: true, OfferedVersions: []uint16{0x0303}, Version: 0x0303,
				Alerts: []tlstrace.Alert{{Dir: tlstrace.ClientToServer, Level: 2, Description: 42}}}}},
		{name: "unknown_ca", rule: "DPS-DEV-001", applied: 0,
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, ServerHello: true, OfferedVersions: []uint16{0x0303}, Version: 0x0303,
				Alerts: []tlstrace.Alert{{Dir: tlstrace.ClientToServer, Level: 2, Description: 48}}}}},
		// DPS-DEV-028: subprotocol mqtt, in any case, among others.
		{name: "WebSocket offering mqttv3.1 and MQTT", rule: "DPS-DEV-028", applied: 1,
			conv: tracer.Conversation{Transport: "wss", WS: &wstrace.Facts{Path: "/$iothub/websocket", OfferedSubprotocols: []string{"mqttv3.1", "MQTT"}}}},
		{name: "WebSocket offering no subprotocol", rule: "DPS-DEV-028", applied: 1, findings: 1,
			conv: tracer.Conversation{Transport: "wss", WS: &wstrace.Facts{Path: "/mqtt"}}},
		{name: "no WebSocket", rule: "DPS-DEV-028",
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true}}},
		// DPS-DEV-027: the leaf's CN is the registration id, without case.
		{name: "certificate CN the registration id in upper case", rule: "DPS-DEV-027", applied: 1,
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, ClientCertificate: true, ClientCertificateKnown: true,
				ClientCertificates: [][]byte{selfSigned(t, strings.ToUpper(emulatortest.SymDeviceID))}}, Packets: []tracer.Packet{connect}}},
		{name: "certificate CN of another device", rule: "DPS-DEV-027", applied: 1, findings: 1,
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, ClientCertificate: true, ClientCertificateKnown: true,
				ClientCertificates: [][]byte{selfSigned(t, "other-device")}}, Packets: []tracer.Packet{connect}}},
		// A symmetric-key device's certificate is not its attestation.
		{name: "certificate of a symmetric-key device", rule: "DPS-DEV-027", env: conformance.RuleEnv{SymmetricKey: "c2VjcmV0"},
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, ClientCertificate: true, ClientCertificateKnown: true,
				ClientCertificates: [][]byte{selfSigned(t, "other-device")}}, Packets: []tracer.Packet{connect}}},
		// DPS-DEV-025: one recommended ECDHE suite among others is enough.
		{name: "a recommended suite among others", rule: "DPS-DEV-025", applied: 1,
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, OfferedVersions: []uint16{0x0304, 0x0303},
				OfferedSuites: []uint16{0x1301, 0xcca9, 0x009c, 0xc028, 0x00ff}}}},
		{name: "ChaCha20 and RSA key exchange only", rule: "DPS-DEV-025", applied: 1, findings: 1,
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, OfferedVersions: []uint16{0x0303},
				OfferedSuites: []uint16{0x0a0a, 0xcca9, 0xcca8, 0x009c, 0x002f}}}},
		{name: "TLS 1.3 only: DPS-DEV-001's", rule: "DPS-DEV-025",
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, OfferedVersions: []uint16{0x0304}, OfferedSuites: []uint16{0x1301}}}},
		{name: "no SNI", rule: "DPS-DEV-002", env: conformance.RuleEnv{ServerName: "dps.example"}, applied: 1, findings: 1,
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true}}},
		{name: "SNI not judged without ServerName", rule: "DPS-DEV-002",
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true}}},
		{name: "X.509 with a password", rule: "DPS-DEV-006", applied: 1, findings: 1,
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, ClientCertificate: true, ClientCertificateKnown: true}, Packets: []tracer.Packet{connect}}},
		// A device given a certificate (the device role's --attestation
		// x509) must present it; whether it did is unknown in TLS 1.3
		// without keys; a device not known to be X.509 is not judged.
		{name: "X.509 device, no certificate presented", rule: "DPS-DEV-006", env: conformance.RuleEnv{X509: true}, applied: 1, findings: 1,
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, ClientCertificateKnown: true}, Packets: []tracer.Packet{connect}}},
		{name: "X.509 device, certificate unknown (TLS 1.3, no keys)", rule: "DPS-DEV-006", env: conformance.RuleEnv{X509: true},
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true}, Packets: []tracer.Packet{connect}}},
		{name: "no certificate, device not known X.509", rule: "DPS-DEV-006",
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, ClientCertificateKnown: true}, Packets: []tracer.Packet{connect}}},
		{name: "X.509 device, certificate and no password", rule: "DPS-DEV-006", env: conformance.RuleEnv{X509: true}, applied: 1,
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, ClientCertificate: true, ClientCertificateKnown: true},
				Packets: []tracer.Packet{{Dir: tracer.ClientToServer, Frame: 9, Packet: &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, ClientID: []byte("x"), Username: []byte("0ne/registrations/x/api-version=2019-03-31")}}}}},
		// A symmetric-key device (its key known, as in the device role)
		// that also presents a client certificate: its SAS token is
		// judged (DPS-DEV-005), and DPS-DEV-006 is not its rule.
		{name: "symmetric-key device presenting a certificate", rule: "DPS-DEV-006", env: conformance.RuleEnv{SymmetricKey: "c2VjcmV0"},
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, ClientCertificate: true, ClientCertificateKnown: true}, Packets: []tracer.Packet{connect}}},
		{name: "symmetric-key device presenting a certificate, its SAS token", rule: "DPS-DEV-005", env: conformance.RuleEnv{SymmetricKey: "c2VjcmV0"}, applied: 1, findings: 1,
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, ClientCertificate: true, ClientCertificateKnown: true}, Packets: []tracer.Packet{connect}}},
		{name: "hostile server, encrypted and no keys", rule: "DPS-DEV-021", env: conformance.RuleEnv{HostileServer: true},
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, ServerHello: true}}},
		{name: "hostile server, alert", rule: "DPS-DEV-021", env: conformance.RuleEnv{HostileServer: true}, applied: 1,
			conv: tracer.Conversation{Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, ServerHello: true, Alerts: []tlstrace.Alert{{Dir: tlstrace.ClientToServer, Level: 2, Description: 42}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.conv
			c.ID = 1
			capt := &tracer.Capture{Conversations: []*tracer.Conversation{&c}}
			fs, applied := conformance.CheckCapture(capt, []*conformance.Rule{deviceRule(t, tc.rule)}, tc.env)
			if len(fs) != tc.findings || applied[tc.rule] != tc.applied {
				t.Fatalf("findings %v, applied %d; want %d findings, applied %d", fs, applied[tc.rule], tc.findings, tc.applied)
			}
		})
	}
}

// TestDeviceReconnectBackoff judges DPS-DEV-022 on hand-made captures:
// attempts whose CONNECT got no CONNACK, then the reconnects.
func TestDeviceReconnectBackoff(t *testing.T) {
	tests := []struct {
		name     string
		waits    []time.Duration // before each reconnect
		refuse03 bool            // CONNACK 0x03 instead of none
		giveUp   bool            // without waits: one unanswered attempt, no reconnect
		applied  int
		findings int
	}{
		{"growing back-off", []time.Duration{time.Second, 2 * time.Second}, false, false, 2, 0},
		{"immediate reconnect", []time.Duration{100 * time.Millisecond}, false, false, 1, 1},
		{"constant wait", []time.Duration{2 * time.Second, 2 * time.Second}, false, false, 2, 1},
		{"0x03 then growing", []time.Duration{time.Second, 3 * time.Second}, true, false, 2, 0},
		// A back-off capped at 30 s or more, with jitter: level or a
		// little shorter passes; a drop by more than a quarter does not,
		// nor does a level below the cap floor.
		{"capped at 40 s with jitter", []time.Duration{20 * time.Second, 40 * time.Second, 44 * time.Second, 36 * time.Second}, false, false, 4, 0},
		{"drop from 60 s to 30 s", []time.Duration{30 * time.Second, 60 * time.Second, 30 * time.Second}, false, false, 3, 1},
		{"levelled at 20 s", []time.Duration{10 * time.Second, 20 * time.Second, 20 * time.Second}, false, false, 3, 1},
		{"every attempt answered", nil, false, false, 0, 0},
		// An attempt with no reconnect after it is no evidence of a
		// back-off, good or bad.
		{"unanswered, then no reconnect", nil, false, true, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSynth(t)
			attempt := func(answered bool) {
				s.flows++
				client := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(50000+s.flows))
				server := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), 1883)
				f, err := s.rec.Flow(client, server, tracer.FlowOptions{})
				if err != nil {
					t.Fatal(err)
				}
				sf := &synthFlow{s: s, f: f}
				sf.send(tracer.Client, documentedConnect(""))
				s.advance(50 * time.Millisecond)
				switch {
				case answered:
					sf.send(tracer.Server, &packets.Connack{})
				case tt.refuse03:
					sf.send(tracer.Server, &packets.Connack{ReturnCode: packets.ConnackRefusedServerUnavailable})
				}
				s.advance(3 * time.Second) // the device's CONNACK timeout
				if err := f.Fin(tracer.Client); err != nil {
					t.Fatal(err)
				}
			}
			attempt(len(tt.waits) == 0 && !tt.giveUp)
			for i, w := range tt.waits {
				s.advance(w)
				attempt(i == len(tt.waits)-1)
			}
			if len(tt.waits) == 0 && !tt.giveUp {
				attempt(true)
			}
			n, fs := deviceRule(t, "DPS-DEV-022").CheckCapture(s.capture(), conformance.RuleEnv{})
			if n != tt.applied || len(fs) != tt.findings {
				t.Errorf("applied %d, findings %v; want %d applied, %d findings", n, fs, tt.applied, tt.findings)
			}
		})
	}
}

// sixPolls is a registration polled six times 1.8 s apart, every answer a
// 202 with retry-after ra seconds (none when negative).
func sixPolls(s *synth, regBody string, ra int) {
	f := s.conn(nil)
	f.request(dps.RegisterTopic("1"), regBody)
	f.answer(202, "1", ra, op1)
	for i := range 6 {
		if i > 0 {
			s.advance(1800 * time.Millisecond)
		}
		f.request(dps.PollTopic(fmt.Sprint(i+2), "op-1"), "")
		f.answer(202, fmt.Sprint(i+2), ra, op1)
	}
	f.close()
}

// selfSigned returns the DER of a self-signed certificate with subject CN cn.
func selfSigned(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
