package cli_test

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/internal/cli"
	"github.com/dps-conform/dps-conform/reports"
)

// TestDeviceJUnit: a real device run (the reference client, run by
// testscript's dps-conform in $PATH, as in device.txtar) leaves a
// junit.xml that parses, with a test case per requirement and scenario
// in which its rule applied and a skipped one per requirement not
// judged, counted as results.json counts them; the manifest lists it, and
// report render writes the same file again.
func TestDeviceJUnit(t *testing.T) {
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
