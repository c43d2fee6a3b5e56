package transport

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names kept by LoadOrCreateServerPKI.
const (
	CAFileName        = "ca.pem"
	CAKeyFileName     = "ca-key.pem"
	ServerFileName    = "server.pem"
	ServerKeyFileName = "server-key.pem"
)

// Validity periods used by LoadOrCreateServerPKI. Certificates start one
// hour before now to tolerate clock skew between peers.
const (
	ServerPKICAValidity     = 10 * 365 * 24 * time.Hour
	ServerPKIServerValidity = 365 * 24 * time.Hour
	serverPKIMinRemaining   = 24 * time.Hour
	serverPKIBackdate       = time.Hour
)

// DefaultServerNames are always present in a certificate made by
// LoadOrCreateServerPKI.
func DefaultServerNames() []string { return []string{"localhost", "127.0.0.1", "::1"} }

// ServerPKI is the outcome of LoadOrCreateServerPKI: the files and the
// parsed CA and server certificate.
type ServerPKI struct {
	CAFile, CertFile, KeyFile string
	CA                        *x509.Certificate
	Certificate               tls.Certificate // Leaf set
	// Authority is the CA with its key, to issue more certificates (device
	// certificates in tests) from the same root.
	Authority *CA
	// Created lists the files written by this call (empty when everything
	// was reused).
	Created []string
}

// LoadOrCreateServerPKI keeps a CA and a server certificate in dir:
// ca.pem, ca-key.pem (0600), server.pem (leaf then chain), server-key.pem
// (0600). It reuses the server certificate when it parses, chains to the
// kept CA, is valid at now for at least one more day, uses key type kt and
// its SANs cover localhost, 127.0.0.1, ::1 and names; otherwise it issues a
// new one from the kept CA. The CA is made when its certificate is
// missing, and made again when it is not valid for at least one more day
// (which also forces a new server certificate); a kept CA that cannot be
// used otherwise (its key missing, a file damaged) is an error, not
// silently replaced: devices trust it. Files are written atomically
// (temporary file, then rename). dir is created (0700) if needed.
func LoadOrCreateServerPKI(dir string, names []string, kt KeyType, now time.Time) (*ServerPKI, error) {
	if dir == "" {
		return nil, errors.New("transport: server PKI: empty directory")
	}
	if kt != ECDSAP256 && kt != RSA2048 {
		return nil, fmt.Errorf("transport: server PKI: unknown key type %d", int(kt))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("transport: server PKI: %w", err)
	}
	want := append(DefaultServerNames(), names...)
	for i, n := range want {
		if n == "" {
			return nil, fmt.Errorf("transport: server PKI: name %d is empty", i-len(DefaultServerNames()))
		}
	}
	p := &ServerPKI{
		CAFile:   filepath.Join(dir, CAFileName),
		CertFile: filepath.Join(dir, ServerFileName),
		KeyFile:  filepath.Join(dir, ServerKeyFileName),
	}
	caKeyFile := filepath.Join(dir, CAKeyFileName)

	ca, err := loadCA(p.CAFile, caKeyFile, now)
	// No device can trust a CA whose certificate was never written (a
	// first run killed between the two files): that one is made again.
	if err != nil && !errors.Is(err, errCAExpiring) && !missing(p.CAFile) {
		// Devices trust this CA: replacing it silently would fail every
		// one of them with nothing to say why.
		return nil, fmt.Errorf("transport: server PKI: the kept CA cannot be used (%w); remove %s and %s to make a new one (devices that trust the old CA must then be given the new %s)",
			err, p.CAFile, caKeyFile, CAFileName)
	}
	if err != nil {
		ca, err = NewCA("dps-conform emulator CA", kt, now.Add(-serverPKIBackdate), ServerPKICAValidity)
		if err != nil {
			return nil, err
		}
		keyPEM, err := EncodeKeyPEM(ca.Key)
		if err != nil {
			return nil, err
		}
		if err := writeFileAtomic(caKeyFile, keyPEM, 0o600); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(p.CAFile, ca.CertPEM, 0o644); err != nil {
			return nil, err
		}
		p.Created = append(p.Created, caKeyFile, p.CAFile)
	}
	p.CA, p.Authority = ca.Cert, ca

	cert, err := LoadServerCertificate(p.CertFile, p.KeyFile)
	if err == nil {
		err = checkServerCert(cert, ca.Cert, want, kt, now)
	}
	if err != nil {
		cert, err = ca.IssueServer(dedupNames(want), kt, now.Add(-serverPKIBackdate), ServerPKIServerValidity)
		if err != nil {
			return nil, err
		}
		keyPEM, err := EncodeKeyPEM(cert.PrivateKey.(crypto.Signer))
		if err != nil {
			return nil, err
		}
		if err := writeFileAtomic(p.KeyFile, keyPEM, 0o600); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(p.CertFile, EncodeCertPEM(cert.Certificate...), 0o644); err != nil {
			return nil, err
		}
		p.Created = append(p.Created, p.KeyFile, p.CertFile)
	}
	p.Certificate = cert
	return p, nil
}

// errCAExpiring is a kept CA that is not valid for another day: it is
// replaced.
var errCAExpiring = errors.New("not valid")

// missing reports whether path does not exist.
func missing(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}

// loadCA reads a kept CA and checks it is usable at now for another day.
func loadCA(certFile, keyFile string, now time.Time) (*CA, error) {
	pair, err := LoadServerCertificate(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	c := pair.Leaf
	if !c.IsCA || !c.BasicConstraintsValid {
		return nil, fmt.Errorf("transport: %s: not a CA certificate", certFile)
	}
	if now.Before(c.NotBefore) || now.Add(serverPKIMinRemaining).After(c.NotAfter) {
		return nil, fmt.Errorf("transport: %s: %w from %v for another day", certFile, errCAExpiring, now)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("transport: %s: key cannot sign", keyFile)
	}
	return &CA{Cert: c, Key: signer, CertPEM: EncodeCertPEM(c.Raw)}, nil
}

// checkServerCert says why a kept server certificate cannot be reused.
func checkServerCert(cert tls.Certificate, ca *x509.Certificate, names []string, kt KeyType, now time.Time) error {
	leaf := cert.Leaf
	if got, ok := keyTypeOf(leaf.PublicKey); !ok || got != kt {
		return fmt.Errorf("key type is not %v", kt)
	}
	if now.Before(leaf.NotBefore) || now.Add(serverPKIMinRemaining).After(leaf.NotAfter) {
		return errors.New("not valid for another day")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return err
	}
	for _, n := range names {
		if err := leaf.VerifyHostname(n); err != nil {
			return err
		}
	}
	return nil
}

func dedupNames(names []string) []string {
	var out []string
	for _, n := range names {
		dup := slices.ContainsFunc(out, func(o string) bool {
			a, b := net.ParseIP(o), net.ParseIP(n)
			if a != nil && b != nil {
				return a.Equal(b)
			}
			return strings.EqualFold(o, n)
		})
		if !dup {
			out = append(out, n)
		}
	}
	return out
}

// writeFileAtomic writes data to a temporary file in name's directory, sets
// perm, syncs and renames it over name.
func writeFileAtomic(name string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return fmt.Errorf("transport: write %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("transport: write %s: %w", name, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("transport: write %s: %w", name, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("transport: write %s: %w", name, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("transport: write %s: %w", name, err)
	}
	if err = os.Rename(f.Name(), name); err != nil {
		return fmt.Errorf("transport: write %s: %w", name, err)
	}
	return nil
}

// LoadServerCertificate loads a PEM certificate chain (leaf first) and its
// PEM private key, for a bring-your-own server certificate. Errors name the
// file at fault and never contain key material. Leaf is set.
func LoadServerCertificate(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: certificate file: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: key file: %w", err)
	}
	if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		return tls.Certificate{}, fmt.Errorf("transport: certificate file %s: no PEM CERTIFICATE block at the start", certFile)
	}
	if b, _ := pem.Decode(keyPEM); b == nil || !strings.HasSuffix(b.Type, "PRIVATE KEY") {
		return tls.Certificate{}, fmt.Errorf("transport: key file %s: no PEM PRIVATE KEY block at the start", keyFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: certificate %s with key %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("transport: certificate file %s: %w", certFile, err)
		}
		cert.Leaf = leaf
	}
	return cert, nil
}
