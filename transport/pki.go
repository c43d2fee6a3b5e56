package transport

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// KeyType selects the key algorithm of generated certificates.
type KeyType int

// Key types.
const (
	ECDSAP256 KeyType = iota // ECDSA on P-256 (default)
	RSA2048                  // RSA, 2048-bit modulus
)

// String returns "ecdsa-p256" or "rsa-2048".
func (k KeyType) String() string {
	switch k {
	case ECDSAP256:
		return "ecdsa-p256"
	case RSA2048:
		return "rsa-2048"
	}
	return fmt.Sprintf("KeyType(%d)", int(k))
}

// GenerateKey returns a new private key of type k.
func (k KeyType) GenerateKey() (crypto.Signer, error) {
	switch k {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("transport: unknown key type %d", int(k))
}

// keyTypeOf reports the KeyType of a public key, and false for others.
func keyTypeOf(pub crypto.PublicKey) (KeyType, bool) {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		return ECDSAP256, p.Curve == elliptic.P256()
	case *rsa.PublicKey:
		return RSA2048, p.N.BitLen() == 2048
	}
	return 0, false
}

// CA is a certificate authority able to issue certificates: a root (self
// signed) or an intermediate.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte

	// chain holds the DER certificates between Cert and the root, root
	// excluded, sent after a leaf issued by this CA.
	chain [][]byte
}

// IsRoot reports whether the CA's certificate is self-signed.
func (ca *CA) IsRoot() bool {
	return bytes.Equal(ca.Cert.RawIssuer, ca.Cert.RawSubject) && ca.Cert.CheckSignatureFrom(ca.Cert) == nil
}

// NewCA creates a self-signed root CA valid from notBefore for validity.
func NewCA(commonName string, kt KeyType, notBefore time.Time, validity time.Duration) (*CA, error) {
	return newCA(nil, commonName, kt, notBefore, validity)
}

// NewIntermediate creates an intermediate CA signed by ca. Leaves it issues
// carry the chain up to, not including, the root.
func (ca *CA) NewIntermediate(commonName string, kt KeyType, notBefore time.Time, validity time.Duration) (*CA, error) {
	if err := ca.check(); err != nil {
		return nil, err
	}
	return newCA(ca, commonName, kt, notBefore, validity)
}

func newCA(parent *CA, cn string, kt KeyType, notBefore time.Time, validity time.Duration) (*CA, error) {
	if cn == "" {
		return nil, errors.New("transport: CA common name is empty")
	}
	key, tmpl, err := template(cn, kt, notBefore, validity)
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	signer, signerCert := key, tmpl
	if parent != nil {
		signer, signerCert = parent.Key, parent.Cert
		tmpl.MaxPathLenZero = true
		tmpl.AuthorityKeyId = parent.Cert.SubjectKeyId
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("transport: create CA %q: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("transport: parse CA %q: %w", cn, err)
	}
	ca := &CA{Cert: cert, Key: key, CertPEM: EncodeCertPEM(der)}
	if parent != nil {
		ca.chain = append([][]byte{der}, parent.chainAbove()...)
	}
	return ca, nil
}

// chainAbove returns the certificates a leaf of ca's child must carry above
// the child: ca itself unless it is the root, and ca's own chain.
func (ca *CA) chainAbove() [][]byte {
	if ca.chain != nil {
		return ca.chain
	}
	if ca.IsRoot() {
		return nil
	}
	return [][]byte{ca.Cert.Raw}
}

func (ca *CA) check() error {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return errors.New("transport: CA has no certificate or no key")
	}
	return nil
}

// template returns a fresh key and a certificate template with a random
// 128-bit serial number and a subject key id.
func template(cn string, kt KeyType, notBefore time.Time, validity time.Duration) (crypto.Signer, *x509.Certificate, error) {
	if validity <= 0 {
		return nil, nil, fmt.Errorf("transport: certificate %q: validity %v is not positive", cn, validity)
	}
	key, err := kt.GenerateKey()
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("transport: serial number: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("transport: marshal public key: %w", err)
	}
	ski := sha1.Sum(pubDER)
	return key, &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"dps-conform"}},
		NotBefore:    notBefore,
		NotAfter:     notBefore.Add(validity),
		SubjectKeyId: ski[:],
	}, nil
}

// IssueServer issues a TLS server certificate for names (DNS names or IP
// literals; the first is also the common name). The returned certificate has
// Leaf set and its chain holds the leaf followed by the intermediates up to,
// not including, the root.
func (ca *CA) IssueServer(names []string, kt KeyType, notBefore time.Time, validity time.Duration) (tls.Certificate, error) {
	if len(names) == 0 {
		return tls.Certificate{}, errors.New("transport: server certificate needs at least one name")
	}
	for i, n := range names {
		if n == "" {
			return tls.Certificate{}, fmt.Errorf("transport: server certificate name %d is empty", i)
		}
	}
	return ca.issue(names[0], kt, notBefore, validity, func(t *x509.Certificate) {
		for _, n := range names {
			if ip := net.ParseIP(n); ip != nil {
				t.IPAddresses = append(t.IPAddresses, ip)
			} else {
				t.DNSNames = append(t.DNSNames, n)
			}
		}
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
}

// IssueClient issues a TLS client certificate whose common name is the
// registration ID, as DPS X.509 attestation requires.
func (ca *CA) IssueClient(commonName string, kt KeyType, notBefore time.Time, validity time.Duration) (tls.Certificate, error) {
	if commonName == "" {
		return tls.Certificate{}, errors.New("transport: client certificate common name is empty")
	}
	return ca.issue(commonName, kt, notBefore, validity, func(t *x509.Certificate) {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
}

func (ca *CA) issue(cn string, kt KeyType, notBefore time.Time, validity time.Duration, fill func(*x509.Certificate)) (tls.Certificate, error) {
	if err := ca.check(); err != nil {
		return tls.Certificate{}, err
	}
	key, tmpl, err := template(cn, kt, notBefore, validity)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if kt == RSA2048 {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	tmpl.AuthorityKeyId = ca.Cert.SubjectKeyId
	fill(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: issue certificate %q: %w", cn, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: parse certificate %q: %w", cn, err)
	}
	chain := append([][]byte{der}, ca.chainAbove()...)
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// EncodeCertPEM encodes DER certificates as concatenated PEM CERTIFICATE
// blocks.
func EncodeCertPEM(ders ...[]byte) []byte {
	var b []byte
	for _, d := range ders {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return b
}

// EncodeKeyPEM encodes a private key as a PKCS #8 "PRIVATE KEY" PEM block.
func EncodeKeyPEM(k crypto.Signer) ([]byte, error) {
	if k == nil {
		return nil, errors.New("transport: encode key: nil key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("transport: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
