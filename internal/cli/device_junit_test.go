package cli_test

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/internal/cli"
	"github.com/dps-conform/dps-conform/internal/testproc"
	"github.com/dps-conform/dps-conform/reports"
	"github.com/dps-conform/dps-conform/tracer"
	"github.com/dps-conform/dps-conform/transport"
)

// TestDeviceJUnit: a real device run (the reference client, run by
// testscript's dps-conform in $PATH, as in device.txtar) leaves a
// junit.xml that parses, with a test case per requirement and scenario
// in which its rule applied and a skipped one per requirement not
// judged, counted as results.json counts them; the manifest lists it, and
// report render writes the same file again.
func TestDeviceJUnit(t *testing.T) {
	if testproc.Offload(t) {
		return
	}
	provision := "dps-conform provision --target mqtts://$DPS_HOST:$DPS_PORT --id-scope $DPS_ID_SCOPE --registration-id $DPS_REGISTRATION_ID --symmetric-key $DPS_SYMMETRIC_KEY"
	for _, tc := range []struct {
		name     string
		exec     string
		code     int
		failures int
	}{
		{"conformant", provision + " --ca $DPS_CA_FILE", cli.ExitConformant, 0},
		// Accepting the untrusted certificate fails DPS-DEV-021.
		{"hostile certificate accepted", provision + " --insecure-skip-verify", cli.ExitNonConformant, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "d")
			code, stdout, stderr := runCLI(t, "device", "--out", out, "--scenario", "normal", "--scenario", "tls-untrusted-ca",
				"--scenario-timeout", "20s", "--exec", tc.exec)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tc.code, stdout, stderr)
			}
			b, err := os.ReadFile(filepath.Join(out, "junit.xml"))
			if err != nil {
				t.Fatal(err)
			}
			rep, err := reports.ReadJSONFile(filepath.Join(out, "results.json"))
			if err != nil {
				t.Fatal(err)
			}
			var d struct {
				Tests    int `xml:"tests,attr"`
				Failures int `xml:"failures,attr"`
				Errors   int `xml:"errors,attr"`
				Disabled int `xml:"disabled,attr"`
				Suites   []struct {
					Name    string `xml:"name,attr"`
					Package string `xml:"package,attr"`
					Tests   int    `xml:"tests,attr"`
					Skipped int    `xml:"skipped,attr"`
					Cases   []struct {
						Name    string `xml:"name,attr"`
						Failure *struct {
							Message string `xml:"message,attr"`
						} `xml:"failure"`
						Skipped *struct{} `xml:"skipped"`
					} `xml:"testcase"`
				} `xml:"testsuite"`
			}
			dec := xml.NewDecoder(bytes.NewReader(b))
			dec.Strict = true
			if err := dec.Decode(&d); err != nil {
				t.Fatalf("junit.xml does not parse: %v\n%s", err, b)
			}
			var cases, specs, failed int
			for _, rq := range rep.Requirements {
				cases += max(1, len(rq.Specs))
				specs += len(rq.Specs)
				for _, s := range rq.Specs {
					if s.Failed() {
						failed++
					}
				}
			}
			notJudged := rep.Summary.Requirements[reports.Skip] + rep.Summary.Requirements[reports.NotCovered]
			if specs == 0 || failed != tc.failures || len(d.Suites) != 1 || d.Suites[0].Name != "dps-conform device role" ||
				len(d.Suites[0].Cases) != cases || d.Suites[0].Tests != cases || d.Suites[0].Skipped != notJudged ||
				d.Tests != cases || d.Failures != failed || d.Errors != 0 || d.Disabled != notJudged {
				t.Fatalf("junit.xml counts tests=%d failures=%d errors=%d disabled=%d; results.json gives %d cases (%d specs, %d failed, %d not judged):\n%s",
					d.Tests, d.Failures, d.Errors, d.Disabled, cases, specs, failed, notJudged, b)
			}
			// <testsuite package> names the tool, not the target (a
			// property): the same for every run and machine.
			if p := d.Suites[0].Package; p != "dps-conform" {
				t.Errorf("<testsuite package=%q>, want \"dps-conform\"", p)
			}
			for _, c := range d.Suites[0].Cases {
				if c.Failure != nil && (c.Name != "DPS-DEV-021 scenario tls-untrusted-ca" || !strings.HasPrefix(c.Failure.Message, "conversation ")) {
					t.Errorf("failure in %q: %q", c.Name, c.Failure.Message)
				}
			}
			m, err := os.ReadFile(filepath.Join(out, reports.ManifestName))
			if err != nil || !strings.Contains(string(m), `"path": "junit.xml"`) {
				t.Errorf("the manifest does not list junit.xml (%v):\n%s", err, m)
			}
			// report render of the device results writes it again, the same.
			os.Remove(filepath.Join(out, "junit.xml"))
			if code, stdout, stderr := runCLI(t, "report", "render", out); code != 0 || !strings.Contains(stdout, "junit.xml") {
				t.Fatalf("report render: exit %d\n%s\n%s", code, stdout, stderr)
			}
			if again, err := os.ReadFile(filepath.Join(out, "junit.xml")); err != nil || !bytes.Equal(again, b) {
				t.Errorf("report render wrote another junit.xml (%v):\n%s", err, again)
			}
			if code, stdout, stderr := runCLI(t, "report", "verify", out); code != 0 {
				t.Errorf("report verify after render: exit %d\n%s\n%s", code, stdout, stderr)
			}
		})
	}
}

// TestDeviceOwnCertificate: a device that brings its own certificate
// (--device-cert; its key stays with the device, in a secure element say)
// is enrolled by it in every scenario, its CN is the registration id, and
// with --key-type rsa the server's certificates are RSA (for a TLS stack
// with only ECDHE-RSA suites); a device presenting another certificate is
// refused, and the run says so rather than passing it.
func TestDeviceOwnCertificate(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, err := transport.NewCA("vendor CA", transport.RSA2048, now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, cert tls.Certificate) (certFile, keyFile string) {
		keyPEM, err := transport.EncodeKeyPEM(cert.PrivateKey.(crypto.Signer))
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		if err := os.WriteFile(certFile, transport.EncodeCertPEM(cert.Certificate...), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		return certFile, keyFile
	}
	own, err := ca.IssueClient("thermostat-7", transport.RSA2048, now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.IssueClient("thermostat-7", transport.RSA2048, now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ownCert, ownKey := write("own", own)
	otherCert, otherKey := write("other", other)
	// The flag's file may hold more than the certificate: here the key
	// first (the device's key never reaches dps-conform in real use).
	bundle := filepath.Join(dir, "bundle.pem")
	k, _ := os.ReadFile(ownKey)
	c, _ := os.ReadFile(ownCert)
	if err := os.WriteFile(bundle, append(k, c...), 0o600); err != nil {
		t.Fatal(err)
	}
	provision := "test -z \"$DPS_KEY_FILE\" && test \"$DPS_CERT_FILE\" = " + bundle + " && test \"$DPS_REGISTRATION_ID\" = thermostat-7 && " +
		"dps-conform provision --target mqtts://$DPS_HOST:$DPS_PORT --ca $DPS_CA_FILE --id-scope $DPS_ID_SCOPE "
	for _, tc := range []struct {
		name, exec string
		code       int
		stdout     []string
	}{
		{"its own certificate", provision + "--cert " + ownCert + " --key " + ownKey, cli.ExitConformant,
			[]string{"PASS         DPS-DEV-006  MUST    normal", "CONFORMANT"}},
		// Same CN, another key: refused with 401, assigned nowhere.
		{"another certificate", provision + "--cert " + otherCert + " --key " + otherKey, cli.ExitTargetUnreachable,
			[]string{"NO VERDICT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "d")
			code, stdout, stderr := runCLI(t, "device", "--out", out, "--device-cert", bundle, "--key-type", "rsa", "--scenario", "normal",
				"--scenario-timeout", "20s", "--exec", tc.exec)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tc.code, stdout, stderr)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			capt, err := tracer.DecodeFile(filepath.Join(out, "pcaps", "01-normal.pcapng"), tracer.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(capt.Conversations) == 0 || capt.Conversations[0].TLS == nil || !strings.Contains(tls.CipherSuiteName(capt.Conversations[0].TLS.Suite), "ECDHE_RSA") {
				t.Errorf("the server's certificate is not RSA: %+v", capt.Conversations)
			}
		})
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--device-cert", ownCert, "--registration-id", "other"}, `--registration-id "other" is not the subject CN "thermostat-7"`},
		{[]string{"--device-cert", ownKey}, "--device-cert: no PEM certificate in " + ownKey},
		{[]string{"--device-cert", ownCert, "--attestation", "symmetric-key"}, "--device-cert is an X.509 device's certificate"},
		{[]string{"--key-type", "ed25519"}, `--key-type "ed25519": want ecdsa or rsa`},
	} {
		code, _, stderr := runCLI(t, append([]string{"device", "--exec", "true"}, tc.args...)...)
		if code != cli.ExitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
