package transport

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func verifyChain(t *testing.T, cert tls.Certificate, root *x509.Certificate, usage x509.ExtKeyUsage, name string) error {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inter.AddCert(c)
	}
	_, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name,
		CurrentTime: t0.Add(time.Hour), KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

func TestPKIChains(t *testing.T) {
	for _, kt := range []KeyType{ECDSAP256, RSA2048} {
		t.Run(kt.String(), func(t *testing.T) {
			root, err := NewCA("root", kt, t0, 48*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if !root.IsRoot() || !root.Cert.IsCA || root.Cert.Subject.CommonName != "root" {
				t.Fatalf("root: IsRoot %v IsCA %v CN %q", root.IsRoot(), root.Cert.IsCA, root.Cert.Subject.CommonName)
			}
			inter, err := root.NewIntermediate("inter", kt, t0, 48*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if inter.IsRoot() || !inter.Cert.MaxPathLenZero {
				t.Error("intermediate looks like a root or allows a path below it")
			}
			tests := []struct {
				name      string
				ca        *CA
				chainLen  int
				issue     func(ca *CA) (tls.Certificate, error)
				usage     x509.ExtKeyUsage
				wrongUse  x509.ExtKeyUsage
				verifyDNS string
			}{
				{"server-from-root", root, 1, func(ca *CA) (tls.Certificate, error) {
					return ca.IssueServer([]string{"localhost", "127.0.0.1", "::1", "dps.example"}, kt, t0, time.Hour*24)
				}, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth, "dps.example"},
				{"server-from-intermediate", inter, 2, func(ca *CA) (tls.Certificate, error) {
					return ca.IssueServer([]string{"localhost", "127.0.0.1", "::1", "dps.example"}, kt, t0, time.Hour*24)
				}, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth, "localhost"},
				{"client-from-intermediate", inter, 2, func(ca *CA) (tls.Certificate, error) {
					return ca.IssueClient("my-device-01", kt, t0, time.Hour*24)
				}, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth, ""},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					cert, err := tt.issue(tt.ca)
					if err != nil {
						t.Fatal(err)
					}
					if len(cert.Certificate) != tt.chainLen || cert.Leaf == nil {
						t.Fatalf("chain length %d (Leaf %v), want %d", len(cert.Certificate), cert.Leaf != nil, tt.chainLen)
					}
					if tt.chainLen == 2 && !bytes.Equal(cert.Certificate[1], inter.Cert.Raw) {
						t.Error("chain[1] is not the intermediate")
					}
					if err := verifyChain(t, cert, root.Cert, tt.usage, tt.verifyDNS); err != nil {
						t.Errorf("Verify: %v", err)
					}
					if err := verifyChain(t, cert, root.Cert, tt.wrongUse, ""); err == nil {
						t.Errorf("Verify with usage %v succeeded", tt.wrongUse)
					}
					other, _ := NewCA("other", kt, t0, 48*time.Hour)
					if err := verifyChain(t, cert, other.Cert, tt.usage, ""); err == nil {
						t.Error("Verify against a foreign root succeeded")
					}
					if got, ok := keyTypeOf(cert.Leaf.PublicKey); !ok || got != kt {
						t.Errorf("leaf key type %v", got)
					}
					switch cert.PrivateKey.(type) {
					case *ecdsa.PrivateKey, *rsa.PrivateKey:
					default:
						t.Errorf("private key %T", cert.PrivateKey)
					}
				})
			}
			srv, _ := root.IssueServer([]string{"localhost", "127.0.0.1", "::1"}, kt, t0, time.Hour)
			if !slices.Equal(srv.Leaf.DNSNames, []string{"localhost"}) || len(srv.Leaf.IPAddresses) != 2 ||
				!srv.Leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || !srv.Leaf.IPAddresses[1].Equal(net.IPv6loopback) {
				t.Errorf("SANs: DNS %v IP %v", srv.Leaf.DNSNames, srv.Leaf.IPAddresses)
			}
			cli, _ := root.IssueClient("reg-1", kt, t0, time.Hour)
			if cli.Leaf.Subject.CommonName != "reg-1" || !slices.Equal(cli.Leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
				t.Errorf("client: CN %q EKU %v", cli.Leaf.Subject.CommonName, cli.Leaf.ExtKeyUsage)
			}
			if !cli.Leaf.NotBefore.Equal(t0) || !cli.Leaf.NotAfter.Equal(t0.Add(time.Hour)) {
				t.Errorf("validity %v..%v", cli.Leaf.NotBefore, cli.Leaf.NotAfter)
			}
		})
	}
}

func TestPKIErrors(t *testing.T) {
	root, err := NewCA("root", ECDSAP256, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  func() error
		want string
	}{
		{"ca-empty-cn", func() error { _, err := NewCA("", ECDSAP256, t0, time.Hour); return err }, "common name is empty"},
		{"ca-zero-validity", func() error { _, err := NewCA("x", ECDSAP256, t0, 0); return err }, "validity 0s is not positive"},
		{"ca-bad-key-type", func() error { _, err := NewCA("x", KeyType(9), t0, time.Hour); return err }, "unknown key type 9"},
		{"server-no-names", func() error { _, err := root.IssueServer(nil, ECDSAP256, t0, time.Hour); return err }, "at least one name"},
		{"server-empty-name", func() error { _, err := root.IssueServer([]string{"a", ""}, ECDSAP256, t0, time.Hour); return err }, "name 1 is empty"},
		{"client-empty-cn", func() error { _, err := root.IssueClient("", ECDSAP256, t0, time.Hour); return err }, "common name is empty"},
		{"nil-ca", func() error { _, err := (&CA{}).IssueClient("x", ECDSAP256, t0, time.Hour); return err }, "no certificate or no key"},
		{"encode-nil-key", func() error { _, err := EncodeKeyPEM(nil); return err }, "nil key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestEncodePEMRoundTrip(t *testing.T) {
	root, _ := NewCA("root", ECDSAP256, t0, time.Hour)
	inter, _ := root.NewIntermediate("inter", RSA2048, t0, time.Hour)
	leaf, err := inter.IssueServer([]string{"h"}, ECDSAP256, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := EncodeKeyPEM(leaf.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(EncodeCertPEM(leaf.Certificate...), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(pair.Certificate) != 2 || !bytes.Equal(pair.Certificate[1], inter.Cert.Raw) {
		t.Errorf("round trip lost the chain: %d certs", len(pair.Certificate))
	}
	if got := bytes.Count(EncodeCertPEM(root.Cert.Raw, inter.Cert.Raw), []byte("-----BEGIN CERTIFICATE-----")); got != 2 {
		t.Errorf("EncodeCertPEM wrote %d blocks", got)
	}
}

func TestLoadOrCreateServerPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	now := t0
	first, err := LoadOrCreateServerPKI(dir, []string{"dps.local"}, ECDSAP256, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Created) != 4 {
		t.Errorf("first call created %v, want 4 files", first.Created)
	}
	for name, perm := range map[string]os.FileMode{CAFileName: 0o644, CAKeyFileName: 0o600, ServerFileName: 0o644, ServerKeyFileName: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != perm {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), perm)
		}
	}
	leaf := first.Certificate.Leaf
	for _, n := range []string{"localhost", "127.0.0.1", "::1", "dps.local"} {
		if err := leaf.VerifyHostname(n); err != nil {
			t.Errorf("SAN %s: %v", n, err)
		}
	}
	if err := verifyChain(t, first.Certificate, first.CA, x509.ExtKeyUsageServerAuth, "dps.local"); err != nil {
		t.Errorf("chain: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 4 {
		t.Errorf("dir holds %d entries (temporary files left?)", len(entries))
	}

	tests := []struct {
		name           string
		names          []string
		kt             KeyType
		at             time.Time
		newCA, newLeaf bool
	}{
		{"reuse", []string{"dps.local"}, ECDSAP256, now.Add(time.Hour), false, false},
		{"reuse-subset-of-names", nil, ECDSAP256, now.Add(time.Hour), false, false},
		{"reuse-case-insensitive", []string{"DPS.local", "127.0.0.1"}, ECDSAP256, now.Add(time.Hour), false, false},
		{"new-name", []string{"dps.local", "10.0.0.7"}, ECDSAP256, now.Add(time.Hour), false, true},
		{"key-type-change", []string{"dps.local", "10.0.0.7"}, RSA2048, now.Add(time.Hour), false, true},
		{"leaf-expiring", []string{"dps.local", "10.0.0.7"}, RSA2048, now.Add(ServerPKIServerValidity - 12*time.Hour), false, true},
		{"ca-expiring", nil, ECDSAP256, now.Add(ServerPKICAValidity), true, true},
	}
	prev := first
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadOrCreateServerPKI(dir, tt.names, tt.kt, tt.at)
			if err != nil {
				t.Fatal(err)
			}
			sameCA := got.CA.SerialNumber.Cmp(prev.CA.SerialNumber) == 0
			sameLeaf := got.Certificate.Leaf.SerialNumber.Cmp(prev.Certificate.Leaf.SerialNumber) == 0
			if sameCA == tt.newCA || sameLeaf == tt.newLeaf {
				t.Errorf("new CA %v new leaf %v, want %v %v (created %v)", !sameCA, !sameLeaf, tt.newCA, tt.newLeaf, got.Created)
			}
			if (len(got.Created) == 0) == (tt.newCA || tt.newLeaf) {
				t.Errorf("Created = %v", got.Created)
			}
			if err := verifyChainAt(got, tt.at); err != nil {
				t.Errorf("chain: %v", err)
			}
			prev = got
		})
	}
}

// TestLoadOrCreateServerPKIDamagedCA: a kept CA that cannot be read is an
// error naming the files to remove, never silently replaced (devices
// trust it); the files are left as they were.
func TestLoadOrCreateServerPKIDamagedCA(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(dir string) error
	}{
		{"ca.pem garbage", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, CAFileName), []byte("garbage\n"), 0o644)
		}},
		{"ca-key.pem missing", func(dir string) error { return os.Remove(filepath.Join(dir, CAKeyFileName)) }},
		{"ca.pem empty", func(dir string) error { return os.WriteFile(filepath.Join(dir, CAFileName), nil, 0o644) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreateServerPKI(dir, nil, ECDSAP256, t0); err != nil {
				t.Fatal(err)
			}
			if err := tc.damage(dir); err != nil {
				t.Fatal(err)
			}
			before := readDir(t, dir)
			_, err := LoadOrCreateServerPKI(dir, nil, ECDSAP256, t0.Add(time.Hour))
			if err == nil || !strings.Contains(err.Error(), "the kept CA cannot be used") || !strings.Contains(err.Error(), "remove "+filepath.Join(dir, CAFileName)) {
				t.Fatalf("LoadOrCreateServerPKI = %v, want an error naming the files to remove", err)
			}
			if after := readDir(t, dir); !maps.Equal(before, after) {
				t.Error("the PKI files changed")
			}
		})
	}
}

// readDir maps the names of dir's files to their contents.
func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

// TestLoadOrCreateServerPKICACertMissing: a CA key without its
// certificate (a first run killed between the two writes) is no CA any
// device trusts: a new CA is made.
func TestLoadOrCreateServerPKICACertMissing(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreateServerPKI(dir, nil, ECDSAP256, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(first.CAFile); err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateServerPKI(dir, nil, ECDSAP256, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if again.CA.SerialNumber.Cmp(first.CA.SerialNumber) == 0 || !slices.Contains(again.Created, first.CAFile) {
		t.Errorf("CA not made again: created %v", again.Created)
	}
}

func verifyChainAt(p *ServerPKI, at time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(p.CA)
	_, err := p.Certificate.Leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: at, DNSName: "localhost"})
	return err
}

// TestServerPKIHandshake serves with a created PKI and connects over both
// loopback families with only ca.pem as trust anchor.
func TestServerPKIHandshake(t *testing.T) {
	p, err := LoadOrCreateServerPKI(t.TempDir(), nil, ECDSAP256, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	addr, _ := serveTCP(t, TLS12Only(&tls.Config{Certificates: []tls.Certificate{p.Certificate}}), echo)
	_, port, _ := net.SplitHostPort(addr)
	for _, host := range []string{"127.0.0.1", "localhost"} {
		c, err := Dial(testCtx(t), mustTarget(t, "mqtts://"+net.JoinHostPort(host, port)), DialOptions{TLSConfig: &tls.Config{RootCAs: pool}})
		if err != nil {
			t.Errorf("%s: %v", host, err)
			continue
		}
		roundTrip(t, c, []byte{0xc0, 0x00})
		c.Close()
	}
}

func TestLoadServerCertificateErrors(t *testing.T) {
	dir := t.TempDir()
	p, err := LoadOrCreateServerPKI(filepath.Join(dir, "a"), nil, ECDSAP256, t0)
	if err != nil {
		t.Fatal(err)
	}
	q, err := LoadOrCreateServerPKI(filepath.Join(dir, "b"), nil, ECDSAP256, t0)
	if err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name, cert, key string
		want            []string
	}{
		{"ok", p.CertFile, p.KeyFile, nil},
		{"missing-cert", missing, p.KeyFile, []string{"certificate file", missing}},
		{"missing-key", p.CertFile, missing, []string{"key file", missing}},
		{"garbage-cert", garbage, p.KeyFile, []string{"certificate file " + garbage, "no PEM CERTIFICATE"}},
		{"garbage-key", p.CertFile, garbage, []string{"key file " + garbage, "no PEM PRIVATE KEY"}},
		{"key-is-cert", p.CertFile, p.CertFile, []string{"key file", "no PEM PRIVATE KEY"}},
		{"mismatched-key", p.CertFile, q.KeyFile, []string{p.CertFile, q.KeyFile, "does not match"}},
	}
	keyPEM, _ := os.ReadFile(q.KeyFile)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := LoadServerCertificate(tt.cert, tt.key)
			if tt.want == nil {
				if err != nil || cert.Leaf == nil {
					t.Fatalf("err %v, Leaf %v", err, cert.Leaf)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if bytes.Contains([]byte(err.Error()), keyPEM[30:60]) {
				t.Error("error contains key material")
			}
		})
	}
	// A corrupt kept PKI is replaced, not reported.
	if err := os.WriteFile(p.CertFile, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateServerPKI(filepath.Join(dir, "a"), nil, ECDSAP256, t0)
	if err != nil || again.CA.SerialNumber.Cmp(p.CA.SerialNumber) != 0 || !slices.Contains(again.Created, p.CertFile) {
		t.Errorf("corrupt server.pem: err %v, created %v", err, again.Created)
	}
	if _, err := LoadOrCreateServerPKI("", nil, ECDSAP256, t0); err == nil {
		t.Error("empty dir accepted")
	}
	if _, err := LoadOrCreateServerPKI(dir, []string{""}, ECDSAP256, t0); err == nil || !strings.Contains(err.Error(), "name 0 is empty") {
		t.Errorf("empty name: %v", err)
	}
}
