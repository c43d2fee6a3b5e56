// Package emulatortest starts an in-process DPS emulator for tests, the way
// net/http/httptest starts an HTTP server: ephemeral loopback ports, a fresh
// PKI in t.TempDir(), a fixture of enrollments known by name, and cleanup
// through t.Cleanup.
//
//	e := emulatortest.Start(t, emulatortest.Options{})
//	// dial e.MQTTAddr with e.ClientTLSConfig(nil), CONNECT as
//	// emulatortest.SymDeviceID with password e.SASToken(t, emulatortest.SymDeviceID)
package emulatortest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/registry"
	"github.com/dps-conform/dps-conform/transport"
)

// The fixture enrollments of the Default configuration.
const (
	// IDScope is the id scope of the fixture.
	IDScope = "0ne000C0FFE"
	// HubName is the one linked IoT hub; every fixture device is assigned
	// to it.
	HubName = "hub1.azure-devices.net"

	// SymDeviceID is an individual symmetric key enrollment with key
	// SymDeviceKey and secondary key SymDeviceSecondaryKey.
	SymDeviceID           = "sym-device-1"
	SymDeviceKey          = "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg="
	SymDeviceSecondaryKey = "zdGrO+eRJkhXKCiItRX4TtkpK/r0GXqw2orPk21TbzY="

	// SymGroupID is a symmetric key enrollment group with key SymGroupKey:
	// any registration id not enrolled otherwise attests with
	// dps.DeriveDeviceKey(SymGroupKey, id) (see SymmetricKey), or with
	// the key derived from its secondary key SymGroupSecondaryKey.
	SymGroupID           = "group-sym"
	SymGroupKey          = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
	SymGroupSecondaryKey = "hYhZHlggmvYHX1iZjMYC0XTeXSA2zaeDNCKHgSrEtbl96Ffoe3AYzlKtd6/7352d9ugKWQtF6zuT3vlNvaRguw=="
	// SymGroupDeviceID is one device of SymGroupID.
	SymGroupDeviceID = "group-device-1"

	// X509DeviceID is an individual X.509 enrollment of a certificate
	// issued by the emulator's CA (see ClientCert).
	X509DeviceID = "x509-device-1"
	// X509GroupID is an X.509 enrollment group whose signing certificate is
	// an intermediate CA (Emulator.GroupCA); ClientCert issues leaves from
	// it for any other id.
	X509GroupID = "group-x509"
	// X509GroupDeviceID is one device of X509GroupID.
	X509GroupDeviceID = "x509-group-device-1"

	// SlowGroupID is a symmetric key enrollment group with key
	// SlowGroupKey whose custom allocation webhook
	// (registry.SlowAllocationWebhook, served by Start) takes
	// SlowAssignDelay: its registrations stay "assigning" that long, so a
	// second register finds one in progress (DPS-REG-009, 409).
	SlowGroupID     = "group-slow"
	SlowGroupKey    = "R1PD9hxUueetGrN+vVVHchSOUuTShANMp5lFE3pYwkj39ubqENBDW0JwcgrVM8hZ1h7Rt+CyVpLeBdz9S3ZwDQ=="
	SlowAssignDelay = 2 * time.Second

	// DisabledDeviceID is an individual symmetric key enrollment with
	// provisioningStatus disabled and key DisabledDeviceKey: registration
	// ends with status "disabled" (Part A §8).
	DisabledDeviceID  = "disabled-device-1"
	DisabledDeviceKey = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo="
)

// Options configure Start. The zero value serves the Default fixture with
// profile dps-2019, no faults, retry-after 0 and the default limits.
type Options struct {
	Profile    emulator.Profile
	Faults     []emulator.Fault
	RetryAfter time.Duration
	// Plain also serves plaintext MQTT (Emulator.PlainAddr).
	Plain bool
	// Config replaces the fixture enrollments; nil means the Default
	// fixture (built with this emulator's CA).
	Config *registry.Config
	// Limits replaces emulator.DefaultLimits.
	Limits *emulator.Limits
	// StateDir keeps the registry on disk; "" means in memory (a temporary
	// database).
	StateDir string
	// Logger receives the emulator's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock of operations and throttling; nil means time.Now.
	Now func() time.Time
	// WrapConn and WrapRaw are passed to emulator.Config.
	WrapConn, WrapRaw func(net.Conn) net.Conn
	// Scenario scripts answers for device testing (emulator.Config.Scenario).
	Scenario *emulator.Scenario
	// HTTPClient calls custom allocation webhooks
	// (registry.Options.HTTPClient), e.g. the one Scenario.Enroll returns;
	// nil means the registry's default.
	HTTPClient *http.Client
	// Budget, when positive, also serves a second instance on
	// Emulator.BudgetAddr (MQTT over TLS): the same registry, PKI, profile
	// and faults, with a registration budget of Budget per minute of its
	// own, for DPS-REG-010 to spend.
	Budget int
}

// Emulator is a running emulator.
type Emulator struct {
	Server   *emulator.Server
	Registry *registry.Registry
	// Config is the enrollment configuration served.
	Config *registry.Config

	IDScope string
	// MQTTAddr is host:port of MQTT over TLS.
	MQTTAddr string
	// WSAddr is host:port of MQTT over WebSocket over TLS; WSURL is
	// wss://WSAddr/$iothub/websocket.
	WSAddr, WSURL string
	// PlainAddr is host:port of plaintext MQTT ("" unless Options.Plain).
	PlainAddr string
	// BudgetAddr is host:port of the budget instance ("" unless
	// Options.Budget).
	BudgetAddr string
	// AdminURL is http://host:port of the admin API.
	AdminURL string
	// CAFile is the PEM file of the CA that issued the server certificate
	// (and device certificates); CAPool holds it.
	CAFile string
	CAPool *x509.CertPool
	// CA issues device certificates for individual X.509 enrollments;
	// GroupCA is the intermediate enrolled as X509GroupID's signing
	// certificate.
	CA, GroupCA *transport.CA

	mu    sync.Mutex
	certs map[string]tls.Certificate
}

// Start starts an emulator on loopback ephemeral ports and stops it (and
// closes its registry) at the end of the test.
func Start(t testing.TB, o Options) *Emulator {
	t.Helper()
	now := time.Now()
	dir := t.TempDir()
	pki, err := transport.LoadOrCreateServerPKI(dir, nil, transport.ECDSAP256, now)
	if err != nil {
		t.Fatalf("emulatortest: PKI: %v", err)
	}
	e := &Emulator{CA: pki.Authority, CAFile: pki.CAFile, CAPool: x509.NewCertPool(), certs: map[string]tls.Certificate{}}
	e.CAPool.AddCert(pki.CA)
	e.GroupCA, err = pki.Authority.NewIntermediate("dps-conform test group CA", transport.ECDSAP256, now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatalf("emulatortest: intermediate CA: %v", err)
	}
	cfg := o.Config
	if cfg == nil {
		devCert, err := e.CA.IssueClient(X509DeviceID, transport.ECDSAP256, now.Add(-time.Hour), 24*time.Hour)
		if err != nil {
			t.Fatalf("emulatortest: device certificate: %v", err)
		}
		e.certs[strings.ToLower(X509DeviceID)] = devCert
		// Cleanups run last first: the webhook closes after the emulator,
		// whose Close cancels the webhook calls still waiting.
		webhook := httptest.NewServer(registry.SlowAllocationWebhook(SlowAssignDelay))
		t.Cleanup(webhook.Close)
		cfg = Default(string(transport.EncodeCertPEM(devCert.Certificate[0])), string(e.GroupCA.CertPEM), webhook.URL)
	}
	e.Config = cfg
	reg, err := registry.Open(context.Background(), registry.Options{StateDir: o.StateDir, Config: cfg, Now: o.Now, Logger: o.Logger, HTTPClient: o.HTTPClient})
	if err != nil {
		t.Fatalf("emulatortest: registry: %v", err)
	}
	e.Registry = reg
	limits := emulator.Limits{}
	if o.Limits != nil {
		limits = *o.Limits
	}
	srvCfg := emulator.Config{
		MQTTAddr:   "127.0.0.1:0",
		WSAddr:     "127.0.0.1:0",
		AdminAddr:  "127.0.0.1:0",
		TLSConfig:  &tls.Config{Certificates: []tls.Certificate{pki.Certificate}},
		CAFile:     pki.CAFile,
		Registry:   reg,
		Profile:    o.Profile,
		RetryAfter: o.RetryAfter,
		Faults:     o.Faults,
		Limits:     limits,
		Logger:     o.Logger,
		Now:        o.Now,
		WrapConn:   o.WrapConn,
		WrapRaw:    o.WrapRaw,
		Scenario:   o.Scenario,
	}
	if o.Plain {
		srvCfg.InsecurePlainAddr = "127.0.0.1:0"
	}
	srv, err := emulator.New(srvCfg)
	if err != nil {
		reg.Close()
		t.Fatalf("emulatortest: %v", err)
	}
	if err := srv.Start(context.Background()); err != nil {
		reg.Close()
		t.Fatalf("emulatortest: %v", err)
	}
	t.Cleanup(func() {
		srv.Close()
		if err := reg.Close(); err != nil {
			t.Errorf("emulatortest: closing the registry: %v", err)
		}
	})
	if o.Budget > 0 {
		bsrv, err := emulator.New(srvCfg.BudgetInstance(o.Budget))
		if err == nil {
			err = bsrv.Start(context.Background())
		}
		if err != nil {
			t.Fatalf("emulatortest: budget instance: %v", err)
		}
		t.Cleanup(func() { bsrv.Close() }) // runs before the registry closes
		e.BudgetAddr = bsrv.Ready().MQTT
	}
	r := srv.Ready()
	e.Server = srv
	e.IDScope = r.IDScope
	e.MQTTAddr, e.WSAddr, e.PlainAddr, e.AdminURL = r.MQTT, r.WSS, r.Plain, r.Admin
	e.WSURL = "wss://" + r.WSS + transport.DefaultWSPath
	return e
}

// Default is the fixture configuration: IDScope, one linked hub (HubName),
// the individual enrollments SymDeviceID, X509DeviceID (enrolled by its PEM
// certificate x509DeviceCertPEM) and DisabledDeviceID, and the groups
// SymGroupID and X509GroupID (signing certificate groupCAPEM), and
// SlowGroupID with the custom allocation webhook slowWebhookURL (none when
// "").
func Default(x509DeviceCertPEM, groupCAPEM, slowWebhookURL string) *registry.Config {
	cfg := &registry.Config{
		IDScope:    IDScope,
		LinkedHubs: []registry.LinkedHub{{Name: HubName}},
		Enrollments: []registry.IndividualEnrollment{
			{
				RegistrationID: SymDeviceID,
				Attestation: registry.AttestationMechanism{
					Type:         registry.AttestationSymmetricKey,
					SymmetricKey: &registry.SymmetricKeyAttestation{PrimaryKey: SymDeviceKey, SecondaryKey: SymDeviceSecondaryKey},
				},
			},
			{
				RegistrationID: X509DeviceID,
				Attestation: registry.AttestationMechanism{
					Type: registry.AttestationX509,
					X509: &registry.X509Attestation{ClientCertificates: &registry.X509Certificates{
						Primary: &registry.X509CertificateWithInfo{Certificate: x509DeviceCertPEM},
					}},
				},
			},
			{
				RegistrationID: DisabledDeviceID,
				Attestation: registry.AttestationMechanism{
					Type:         registry.AttestationSymmetricKey,
					SymmetricKey: &registry.SymmetricKeyAttestation{PrimaryKey: DisabledDeviceKey},
				},
				ProvisioningStatus: registry.ProvisioningDisabled,
			},
		},
		EnrollmentGroups: []registry.EnrollmentGroup{
			{
				EnrollmentGroupID: SymGroupID,
				Attestation: registry.AttestationMechanism{
					Type:         registry.AttestationSymmetricKey,
					SymmetricKey: &registry.SymmetricKeyAttestation{PrimaryKey: SymGroupKey, SecondaryKey: SymGroupSecondaryKey},
				},
			},
			{
				EnrollmentGroupID: X509GroupID,
				Attestation: registry.AttestationMechanism{
					Type: registry.AttestationX509,
					X509: &registry.X509Attestation{SigningCertificates: &registry.X509Certificates{
						Primary: &registry.X509CertificateWithInfo{Certificate: groupCAPEM},
					}},
				},
			},
		},
	}
	if slowWebhookURL != "" {
		cfg.EnrollmentGroups = append(cfg.EnrollmentGroups, registry.SlowGroup(SlowGroupID, SlowGroupKey, slowWebhookURL))
	}
	return cfg
}

// SymmetricKey returns the device key of regID under the Default fixture:
// the individual key of SymDeviceID and DisabledDeviceID, else the key
// derived from SymGroupKey.
func (e *Emulator) SymmetricKey(regID string) string {
	switch {
	case dps.EqualRegistrationID(regID, SymDeviceID):
		return SymDeviceKey
	case dps.EqualRegistrationID(regID, DisabledDeviceID):
		return DisabledDeviceKey
	}
	k, err := dps.DeriveDeviceKey(SymGroupKey, regID)
	if err != nil {
		panic("emulatortest: the fixture group key is not base64: " + err.Error())
	}
	return k
}

// SASToken returns a SAS token for regID signed with SymmetricKey(regID),
// valid for an hour, in the documented form.
func (e *Emulator) SASToken(t testing.TB, regID string) string {
	t.Helper()
	tok, err := dps.BuildSASToken(dps.SASOptions{IDScope: e.IDScope, RegistrationID: regID, Key: e.SymmetricKey(regID), Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatalf("emulatortest: SAS token: %v", err)
	}
	return tok
}

// ClientCert returns the TLS client certificate of regID: the enrolled
// certificate of X509DeviceID, or a leaf (CN = regID) issued by GroupCA,
// which attests under X509GroupID. Certificates are cached per id.
func (e *Emulator) ClientCert(t testing.TB, regID string) tls.Certificate {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.certs[strings.ToLower(regID)]; ok {
		return c
	}
	c, err := e.GroupCA.IssueClient(regID, transport.ECDSAP256, time.Now().Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatalf("emulatortest: client certificate: %v", err)
	}
	e.certs[strings.ToLower(regID)] = c
	return c
}

// ClientTLSConfig returns a client TLS config that trusts the emulator's CA
// and presents cert when it is not nil.
func (e *Emulator) ClientTLSConfig(cert *tls.Certificate) *tls.Config {
	c := &tls.Config{RootCAs: e.CAPool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}
