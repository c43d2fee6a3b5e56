package cli

import (
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadCAPool: run, tlsprobe and provision share loadCAPool, so a --ca
// that is missing, unreadable or not PEM is the same usage error (exit 2)
// naming the flag in all three.
func TestLoadCAPool(t *testing.T) {
	dir := t.TempDir()
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	notPEM := write("notpem.txt", []byte("not a certificate\n"))
	for _, tc := range []struct {
		name, path, wantErr string // wantErr "" means success
	}{
		{"valid bundle", good, ""},
		{"missing file", filepath.Join(dir, "missing.pem"), "--ca: open " + filepath.Join(dir, "missing.pem")},
		{"a directory", dir, "--ca: read " + dir},
		{"not PEM", notPEM, "--ca: no PEM certificate in " + notPEM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := loadCAPool("--ca", tc.path)
			if tc.wantErr == "" {
				if err != nil || pool == nil {
					t.Fatalf("loadCAPool = %v, %v; want a pool", pool, err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Fatalf("loadCAPool error = %v, want prefix %q", err, tc.wantErr)
			}
			var ue *UsageError
			if !errors.As(err, &ue) || ExitCode(err) != ExitUsage {
				t.Errorf("loadCAPool error %T maps to exit %d, want a *UsageError (exit %d)", err, ExitCode(err), ExitUsage)
			}
		})
	}
}
