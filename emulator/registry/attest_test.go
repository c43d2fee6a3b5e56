package registry

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
)

const scope = "0ne00AAAA01"

func sasConfig() *Config {
	dis := symEnrollment("dev-disabled", keyB, "")
	dis.ProvisioningStatus = ProvisioningDisabled
	g2 := symGroup("g2", keyG2, "")
	g2.ProvisioningStatus = ProvisioningDisabled
	return &Config{
		IDScope:    scope,
		LinkedHubs: []LinkedHub{{Name: "hub1.example"}},
		Enrollments: []IndividualEnrollment{
			symEnrollment("dev1", keyA, keyB),
			dis,
		},
		EnrollmentGroups: []EnrollmentGroup{symGroup("g1", keyG1, keyA), g2},
	}
}

func TestAttestSAS(t *testing.T) {
	r := openTest(t, sasConfig())
	future := testNow.Add(time.Hour)
	tok := func(id, key string) []byte { return sas(t, scope, id, key, future) }
	tests := []struct {
		name      string
		id        string
		password  []byte
		opts      AttestOptions
		wantCode  int // 0 = success
		wantCause error
		wantGroup string
	}{
		{"primary key", "dev1", tok("dev1", keyA), AttestOptions{}, 0, nil, ""},
		{"secondary key", "dev1", tok("dev1", keyB), AttestOptions{}, 0, nil, ""},
		{"secondary key, primary only", "dev1", tok("dev1", keyB), AttestOptions{PrimaryOnly: true}, 401000, dps.ErrSignatureMismatch, ""},
		{"primary key, primary only", "dev1", tok("dev1", keyA), AttestOptions{PrimaryOnly: true}, 0, nil, ""},
		{"id case-insensitive", "DEV1", tok("DEV1", keyA), AttestOptions{}, 0, nil, ""},
		{"bad signature", "dev1", tok("dev1", keyG1), AttestOptions{}, 401000, dps.ErrSignatureMismatch, ""},
		{"bad signature ignored", "dev1", tok("dev1", keyG1), AttestOptions{IgnoreSignature: true}, 0, nil, ""},
		{"expired", "dev1", sas(t, scope, "dev1", keyA, testNow.Add(-dps.DefaultSkew-time.Second)), AttestOptions{}, 401000, dps.ErrTokenExpired, ""},
		{"expired within skew", "dev1", sas(t, scope, "dev1", keyA, testNow.Add(-time.Minute)), AttestOptions{}, 0, nil, ""},
		{"expired ignored", "dev1", sas(t, scope, "dev1", keyA, testNow.Add(-time.Hour)), AttestOptions{IgnoreExpiry: true}, 0, nil, ""},
		{"other device's token", "dev1", tok("dev-disabled", keyB), AttestOptions{}, 401000, dps.ErrResourceMismatch, ""},
		{"other device's token, resource ignored, its key", "dev1", tok("dev-disabled", keyA), AttestOptions{IgnoreResource: true}, 0, nil, ""},
		{"other device's token, resource ignored, wrong key", "dev1", tok("dev-disabled", keyG2), AttestOptions{IgnoreResource: true}, 401000, dps.ErrSignatureMismatch, ""},
		{"wrong scope", "dev1", sas(t, "0neOTHER", "dev1", keyA, future), AttestOptions{}, 401000, dps.ErrResourceMismatch, ""},
		{"skn other", "dev1", withKeyName(t, "dev1", keyA, future, "iothubowner"), AttestOptions{}, 401000, dps.ErrInvalidSASToken, ""},
		{"skn other ignored", "dev1", withKeyName(t, "dev1", keyA, future, "iothubowner"), AttestOptions{IgnoreKeyName: true}, 0, nil, ""},
		{"skn empty", "dev1", []byte(strings.TrimSuffix(string(tok("dev1", keyA)), "registration")), AttestOptions{}, 0, nil, ""},
		{"not a token", "dev1", []byte("hunter2"), AttestOptions{}, 401000, dps.ErrInvalidSASToken, ""},
		{"disabled enrollment attests", "dev-disabled", tok("dev-disabled", keyB), AttestOptions{}, 0, nil, ""},
		{"group derived primary", "thermo-7", tok("thermo-7", derive(t, keyG1, "thermo-7")), AttestOptions{}, 0, nil, "g1"},
		{"group derived secondary", "thermo-8", tok("thermo-8", derive(t, keyA, "thermo-8")), AttestOptions{}, 0, nil, "g1"},
		{"group derived secondary, primary only", "thermo-8", tok("thermo-8", derive(t, keyA, "thermo-8")), AttestOptions{PrimaryOnly: true}, 401000, dps.ErrSignatureMismatch, ""},
		{"group derived primary, primary only", "thermo-7", tok("thermo-7", derive(t, keyG1, "thermo-7")), AttestOptions{PrimaryOnly: true}, 0, nil, "g1"},
		{"disabled group attests", "thermo-9", tok("thermo-9", derive(t, keyG2, "thermo-9")), AttestOptions{}, 0, nil, "g2"},
		{"group bad signature ignored: the first group", "thermo-5", tok("thermo-5", keyB), AttestOptions{IgnoreSignature: true}, 0, nil, "g1"},
		{"group signature ignored: the group whose key signs", "thermo-6", tok("thermo-6", derive(t, keyG2, "thermo-6")), AttestOptions{IgnoreSignature: true}, 0, nil, "g2"},
		{"group key itself is not a device key", "thermo-7", tok("thermo-7", keyG1), AttestOptions{}, 401000, dps.ErrSignatureMismatch, ""},
		{"derived for another id", "thermo-7", tok("thermo-7", derive(t, keyG1, "thermo-8")), AttestOptions{}, 401000, dps.ErrSignatureMismatch, ""},
		{"individual wins over group", "dev1", tok("dev1", derive(t, keyG1, "dev1")), AttestOptions{}, 401000, dps.ErrSignatureMismatch, ""},
		{"invalid registration id", "dev/1", tok("dev1", keyA), AttestOptions{}, 401000, dps.ErrInvalidRegistrationID, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := r.Attest(context.Background(), Credentials{RegistrationID: tc.id, Password: tc.password}, tc.opts)
			if tc.wantCode == 0 {
				if err != nil {
					t.Fatalf("Attest: %v", err)
				}
				if a.Kind != SymmetricKey || a.RegistrationID != tc.id || a.EnrollmentGroupID != tc.wantGroup {
					t.Fatalf("attestation %+v, want group %q", a, tc.wantGroup)
				}
				return
			}
			var ae *AttestError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *AttestError", err)
			}
			if ae.ErrorCode != tc.wantCode || ae.Status() != 401 {
				t.Errorf("code %d status %d, want %d", ae.ErrorCode, ae.Status(), tc.wantCode)
			}
			if tc.wantCause != nil && !errors.Is(err, tc.wantCause) {
				t.Errorf("err = %v, want cause %v", err, tc.wantCause)
			}
			tokSig := string(tc.password)
			if i := strings.Index(tokSig, "sig="); i >= 0 {
				sig := tokSig[i+4:]
				sig = sig[:strings.IndexByte(sig+"&", '&')]
				if strings.Contains(err.Error(), sig) {
					t.Errorf("error leaks the signature: %v", err)
				}
			}
			for _, k := range []string{keyA, keyB, keyG1, keyG2} {
				if strings.Contains(err.Error(), k) {
					t.Errorf("error leaks a key: %v", err)
				}
			}
		})
	}
}

func withKeyName(t *testing.T, id, key string, exp time.Time, skn string) []byte {
	t.Helper()
	s, err := dps.BuildSASToken(dps.SASOptions{IDScope: scope, RegistrationID: id, Key: key, Expiry: exp, KeyName: skn})
	if err != nil {
		t.Fatal(err)
	}
	return []byte(s)
}

func TestAttestUnknownDevice(t *testing.T) {
	r := openTest(t, &Config{IDScope: scope, Enrollments: []IndividualEnrollment{symEnrollment("dev1", keyA, "")}})
	_, err := r.Attest(context.Background(), Credentials{RegistrationID: "nobody", Password: sas(t, scope, "nobody", keyA, testNow.Add(time.Hour))}, AttestOptions{})
	var ae *AttestError
	if !errors.As(err, &ae) || ae.ErrorCode != 401000 || !errors.Is(err, errNoEnrollment) {
		t.Fatalf("err = %v, want 401000 unknown device", err)
	}
	// No credentials at all.
	_, err = r.Attest(context.Background(), Credentials{RegistrationID: "dev1"}, AttestOptions{})
	if !errors.As(err, &ae) || ae.ErrorCode != 401000 {
		t.Fatalf("no credentials: err = %v, want 401000", err)
	}
}

// x509Fixture is a root → intermediate → leaf chain plus an unrelated root.
type x509Fixture struct {
	root, inter, other *pki
	leaf               func(cn string) *pki
}

func newX509Fixture(t *testing.T) x509Fixture {
	nb := testNow.Add(-72 * time.Hour)
	root := newCert(t, "test root", nil, true, nb, 365*24*time.Hour)
	inter := newCert(t, "test intermediate", root, true, nb, 365*24*time.Hour)
	other := newCert(t, "other root", nil, true, nb, 365*24*time.Hour)
	return x509Fixture{root: root, inter: inter, other: other, leaf: func(cn string) *pki {
		return newCert(t, cn, inter, false, nb, 30*24*time.Hour)
	}}
}

func TestAttestX509(t *testing.T) {
	f := newX509Fixture(t)
	nb := testNow.Add(-24 * time.Hour)
	selfSigned := newCert(t, "cam-1", nil, false, nb, 24*time.Hour*30)
	expired := newCert(t, "cam-2", nil, false, testNow.Add(-48*time.Hour), 24*time.Hour)
	byThumb := newCert(t, "cam-3", nil, false, nb, 24*time.Hour*30)
	serverOnly := newCert(t, "dev-srv", f.inter, false, nb, 24*time.Hour*30, x509.ExtKeyUsageServerAuth)
	groupLeaf := f.leaf("dev-7")
	expiredGroupLeaf := newCert(t, "dev-8", f.inter, false, testNow.Add(-48*time.Hour), 24*time.Hour)
	untrusted := newCert(t, "dev-9", f.other, false, nb, 24*time.Hour*30)

	ind := func(id string, cert *pki) IndividualEnrollment {
		return IndividualEnrollment{RegistrationID: id, Attestation: AttestationMechanism{Type: AttestationX509,
			X509: &X509Attestation{ClientCertificates: &X509Certificates{Primary: &X509CertificateWithInfo{Certificate: cert.pem()}}}}}
	}
	thumbEn := IndividualEnrollment{RegistrationID: "cam-3", Attestation: AttestationMechanism{Type: AttestationX509,
		X509: &X509Attestation{ClientCertificates: &X509Certificates{Primary: &X509CertificateWithInfo{Info: &X509CertificateInfo{SHA256Thumbprint: certInfo(byThumb.cert).SHA256Thumbprint}}}}}}
	caInd := IndividualEnrollment{RegistrationID: "dev-ca", Attestation: AttestationMechanism{Type: AttestationX509,
		X509: &X509Attestation{SigningCertificates: &X509Certificates{Primary: &X509CertificateWithInfo{Certificate: f.root.pem()}}}}}
	caLeaf := f.leaf("dev-ca")
	disabled := ind("dev-10", f.leaf("dev-10"))
	disabled.ProvisioningStatus = ProvisioningDisabled
	group := func(id string, ca *pki) EnrollmentGroup {
		return EnrollmentGroup{EnrollmentGroupID: id, Attestation: AttestationMechanism{Type: AttestationX509,
			X509: &X509Attestation{SigningCertificates: &X509Certificates{Primary: &X509CertificateWithInfo{Certificate: ca.pem()}}}}}
	}
	cfg := &Config{
		IDScope:     scope,
		LinkedHubs:  []LinkedHub{{Name: "hub1.example"}},
		Enrollments: []IndividualEnrollment{ind("cam-1", selfSigned), ind("cam-2", expired), thumbEn, disabled, symEnrollment("sym-1", keyA, ""), caInd},
		// "a-inter" sorts first: a chain ending at the intermediate
		// attests under it even though the root group exists too.
		EnrollmentGroups: []EnrollmentGroup{group("b-root", f.root), group("a-inter", f.inter)},
	}
	if _, err := ParseConfig(mustYAML(t, cfg), "x509.yaml"); err != nil {
		t.Fatalf("fixture config does not validate: %v", err)
	}
	r := openTest(t, cfg)

	chain := func(ps ...*pki) []*x509.Certificate {
		var out []*x509.Certificate
		for _, p := range ps {
			out = append(out, p.cert)
		}
		return out
	}
	tests := []struct {
		name      string
		id        string
		password  []byte
		certs     []*x509.Certificate
		opts      AttestOptions
		wantCode  int
		wantGroup string
		wantMsg   string
	}{
		{"individual by certificate", "cam-1", nil, chain(selfSigned), AttestOptions{}, 0, "", ""},
		{"individual by certificate, empty password", "cam-1", []byte{}, chain(selfSigned), AttestOptions{}, 0, "", ""},
		{"non-SAS password with certificate", "cam-1", []byte("x"), chain(selfSigned), AttestOptions{}, 0, "", ""},
		{"individual by thumbprint", "cam-3", nil, chain(byThumb), AttestOptions{}, 0, "", ""},
		{"individual wrong certificate", "cam-3", nil, chain(newCert(t, "cam-3", nil, false, nb, 24*time.Hour)), AttestOptions{}, 401002, "", "thumbprint"},
		{"individual wrong certificate, signature ignored", "cam-3", nil, chain(newCert(t, "cam-3", nil, false, nb, 24*time.Hour)), AttestOptions{IgnoreSignature: true}, 0, "", ""},
		{"individual expired", "cam-2", nil, chain(expired), AttestOptions{}, 401002, "", "not valid at"},
		{"individual expired ignored", "cam-2", nil, chain(expired), AttestOptions{IgnoreExpiry: true}, 0, "", ""},
		{"individual CA-signed", "dev-ca", nil, chain(caLeaf, f.inter), AttestOptions{}, 0, "", ""},
		{"individual CA-signed, untrusted", "dev-ca", nil, chain(newCert(t, "dev-ca", f.other, false, nb, 24*time.Hour)), AttestOptions{}, 401002, "", "unknown authority"},
		{"CN mismatch", "cam-1", nil, chain(byThumb), AttestOptions{}, 401002, "", `CN "cam-3"`},
		{"group via intermediate", "dev-7", nil, chain(groupLeaf, f.inter), AttestOptions{}, 0, "a-inter", ""},
		{"group leaf only, intermediate enrolled", "dev-7", nil, chain(groupLeaf), AttestOptions{}, 0, "a-inter", ""},
		{"group expired leaf", "dev-8", nil, chain(expiredGroupLeaf, f.inter), AttestOptions{}, 401002, "", "not valid at"},
		{"group expired leaf ignored", "dev-8", nil, chain(expiredGroupLeaf, f.inter), AttestOptions{IgnoreExpiry: true}, 0, "a-inter", ""},
		{"untrusted chain", "dev-9", nil, chain(untrusted, f.other), AttestOptions{}, 401002, "", "unknown authority"},
		{"untrusted chain, signature ignored", "dev-9", nil, chain(untrusted, f.other), AttestOptions{IgnoreSignature: true}, 0, "a-inter", ""},
		{"server-only EKU", "dev-srv", nil, chain(serverOnly, f.inter), AttestOptions{}, 401002, "", "usage"},
		{"disabled individual attests", "dev-10", nil, chain(f.leaf("dev-10")), AttestOptions{}, 401002, "", "thumbprint"},
		{"sas device with certificate only", "sym-1", nil, chain(newCert(t, "sym-1", f.inter, false, nb, 24*time.Hour)), AttestOptions{}, 401002, "", "not x509"},
		{"x509 device with SAS", "cam-1", sas(t, scope, "cam-1", keyA, testNow.Add(time.Hour)), chain(selfSigned), AttestOptions{}, 401000, "", "not symmetricKey"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := r.Attest(context.Background(), Credentials{RegistrationID: tc.id, Password: tc.password, PeerCertificates: tc.certs}, tc.opts)
			if tc.wantCode == 0 {
				if err != nil {
					t.Fatalf("Attest: %v", err)
				}
				if a.Kind != X509 || a.EnrollmentGroupID != tc.wantGroup || a.leaf != tc.certs[0] {
					t.Fatalf("attestation %+v, want group %q", a, tc.wantGroup)
				}
				return
			}
			var ae *AttestError
			if !errors.As(err, &ae) || ae.ErrorCode != tc.wantCode {
				t.Fatalf("err = %v, want code %d", err, tc.wantCode)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("err = %v, want %q", err, tc.wantMsg)
			}
		})
	}
}

func TestAttestX509DisabledIndividualOverridesGroup(t *testing.T) {
	f := newX509Fixture(t)
	leaf := f.leaf("dev-1")
	en := IndividualEnrollment{RegistrationID: "dev-1", ProvisioningStatus: ProvisioningDisabled, Attestation: AttestationMechanism{Type: AttestationX509,
		X509: &X509Attestation{ClientCertificates: &X509Certificates{Primary: &X509CertificateWithInfo{Certificate: leaf.pem()}}}}}
	g := EnrollmentGroup{EnrollmentGroupID: "g", Attestation: AttestationMechanism{Type: AttestationX509,
		X509: &X509Attestation{SigningCertificates: &X509Certificates{Primary: &X509CertificateWithInfo{Certificate: f.root.pem()}}}}}
	r := openTest(t, &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "h"}}, Enrollments: []IndividualEnrollment{en}, EnrollmentGroups: []EnrollmentGroup{g}})
	a, err := r.Attest(context.Background(), Credentials{RegistrationID: "dev-1", PeerCertificates: []*x509.Certificate{leaf.cert, f.inter.cert}}, AttestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.EnrollmentGroupID != "" {
		t.Fatalf("attested under group %q, want the individual enrollment", a.EnrollmentGroupID)
	}
	res, err := r.Assign(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != dps.StatusDisabled || res.AssignedHub != "" {
		t.Fatalf("result %+v, want disabled", res)
	}
	if _, found, _ := r.Registration(context.Background(), "dev-1"); found {
		t.Error("a disabled registration was recorded")
	}
}
