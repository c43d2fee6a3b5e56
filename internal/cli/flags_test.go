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

func TestRerunHint(t *testing.T) {
	tests := []struct {
		failed []string
		out    string
		want   string
	}{
		{nil, "r", ""},
		{[]string{"DPS-SUB-002"}, "dps-conform-results/", "--label-filter 'req: containsAny {DPS-SUB-002}' --seed 7 --out dps-conform-results-rerun"},
		{[]string{"DPS-AUTH-001", "MQTT-3.12.4-1"}, "/tmp/my results", "--label-filter 'req: containsAny {DPS-AUTH-001, MQTT-3.12.4-1}' --seed 7 --out '/tmp/my results-rerun'"},
		{[]string{"DPS-SUB-002"}, "it's", `--out 'it'\''s-rerun'`},
		{[]string{"DPS-SUB-002"}, ".", "--out dps-conform-results-rerun"},
		{[]string{"DPS-SUB-002"}, "/", "--out /dps-conform-results-rerun"},
	}
	for _, tt := range tests {
		got := rerunHint(tt.failed, 7, tt.out)
		if tt.want == "" && got != "" || !strings.HasSuffix(got, tt.want) {
			t.Errorf("rerunHint(%q, 7, %q) = %q, want it to end in %q", tt.failed, tt.out, got, tt.want)
		}
	}
}

// TestDurationFlagSet: a value of duration form too large for
// time.Duration says it is out of range, not that it is not a duration.
func TestDurationFlagSet(t *testing.T) {
	for _, tc := range []struct {
		in      string
		flag    durationFlag
		want    time.Duration
		wantErr string
	}{
		{"1h", durationFlag{}, time.Hour, ""},
		{"2562047h", durationFlag{}, 2562047 * time.Hour, ""},
		{"99999999h", durationFlag{}, 0, "out of range: the longest duration is 2562047h47m16.854775807s (about 292 years)"},
		{"9223372036854775808ns", durationFlag{}, 0, "out of range"},
		{"1h99999999999m", durationFlag{}, 0, "out of range"},
		{"-99999999h", durationFlag{negativeOK: true}, 0, "out of range: the most negative duration is -2562047h47m16.854775808s (about 292 years)"},
		{"forever", durationFlag{}, 0, "want a positive duration such as 500ms, 30s or 24h"},
		{"5", durationFlag{}, 0, "(a number needs its unit: 5s)"},
		{"5x", durationFlag{}, 0, "want a positive duration"},
		{"0s", durationFlag{}, 0, "want a positive duration"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var got time.Duration
			tc.flag.p = &got
			err := tc.flag.Set(tc.in)
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Errorf("Set(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Set(%q) error = %v, want it to contain %q", tc.in, err, tc.wantErr)
			}
		})
	}
}
