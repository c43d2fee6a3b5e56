package registry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"

	"github.com/dps-conform/dps-conform/dps"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		// The re-exec'd child of TestKillAfterAssign runs only its
		// helper and must not wait for goleak.
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}

// Keys of the tests (random 32-byte values, base64).
const (
	keyA  = "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg="
	keyB  = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
	keyG1 = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo="
	keyG2 = "cXdlcnR5dWlvcGFzZGZnaGprbHp4Y3Zibm0xMjM0NTY="
)

// testNow is the fixed clock of the tests.
var testNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// pki is a test certificate: its DER-parsed form and key.
type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial atomic.Int64

// newCert issues a certificate for cn signed by parent (self-signed when
// parent is nil).
func newCert(t testing.TB, cn string, parent *pki, isCA bool, nb time.Time, validity time.Duration, eku ...x509.ExtKeyUsage) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1) + 1000),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"dps-conform test"}},
		NotBefore:             nb,
		NotAfter:              nb.Add(validity),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		ExtKeyUsage:           eku,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		if eku == nil {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki{c, key}
}

func (p *pki) pem() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.cert.Raw}))
}

// sas builds a documented-form token for id signed with key.
func sas(t testing.TB, scope, id, key string, expiry time.Time) []byte {
	t.Helper()
	tok, err := dps.BuildSASToken(dps.SASOptions{IDScope: scope, RegistrationID: id, Key: key, Expiry: expiry})
	if err != nil {
		t.Fatal(err)
	}
	return []byte(tok)
}

func derive(t testing.TB, groupKey, id string) string {
	t.Helper()
	k, err := dps.DeriveDeviceKey(groupKey, id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// openTest opens a registry on cfg with the test clock, in a temporary
// state dir removed by the test.
func openTest(t testing.TB, cfg *Config, mods ...func(*Options)) *Registry {
	t.Helper()
	o := Options{StateDir: t.TempDir(), Config: cfg, Now: func() time.Time { return testNow }}
	for _, m := range mods {
		m(&o)
	}
	r, err := Open(context.Background(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if inMemory := r.mem != nil; inMemory != (o.StateDir == "") {
		t.Fatalf("registrations in memory: %v, with StateDir %q", inMemory, o.StateDir)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// forStores runs test once for each home of the registrations: the
// database (with a state dir) and memory (without one).
func forStores(t *testing.T, test func(t *testing.T, store func(*Options))) {
	t.Run("database", func(t *testing.T) { test(t, func(*Options) {}) })
	t.Run("memory", func(t *testing.T) { test(t, func(o *Options) { o.StateDir = "" }) })
}

// openTestIn is openTest with store applied first.
func openTestIn(t testing.TB, store func(*Options), cfg *Config, mods ...func(*Options)) *Registry {
	t.Helper()
	return openTest(t, cfg, append([]func(*Options){store}, mods...)...)
}

func symEnrollment(id, primary, secondary string) IndividualEnrollment {
	return IndividualEnrollment{
		RegistrationID: id,
		Attestation: AttestationMechanism{Type: AttestationSymmetricKey,
			SymmetricKey: &SymmetricKeyAttestation{PrimaryKey: primary, SecondaryKey: secondary}},
	}
}

func symGroup(id, primary, secondary string) EnrollmentGroup {
	return EnrollmentGroup{
		EnrollmentGroupID: id,
		Attestation: AttestationMechanism{Type: AttestationSymmetricKey,
			SymmetricKey: &SymmetricKeyAttestation{PrimaryKey: primary, SecondaryKey: secondary}},
	}
}

func mustYAML(t testing.TB, v any) []byte {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
