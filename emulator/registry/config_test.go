package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestExampleConfigParses(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("testdata", "enrollments.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IDScope != "0ne00FEED00" || len(cfg.LinkedHubs) != 3 || len(cfg.Enrollments) != 2 || len(cfg.EnrollmentGroups) != 2 {
		t.Fatalf("example: scope %q, %d hubs, %d enrollments, %d groups", cfg.IDScope, len(cfg.LinkedHubs), len(cfg.Enrollments), len(cfg.EnrollmentGroups))
	}
	if got := cfg.Enrollments[0].InitialTwin.Properties.Desired["telemetryInterval"]; got != 30 {
		t.Errorf("desired.telemetryInterval = %v", got)
	}
	if cfg.Enrollments[1].ProvisioningStatus != ProvisioningDisabled {
		t.Errorf("camera-042 status %q", cfg.Enrollments[1].ProvisioningStatus)
	}
	if cfg.EnrollmentGroups[1].CustomAllocationDefinition.APIVersion != "2021-10-01" {
		t.Errorf("apiVersion %q", cfg.EnrollmentGroups[1].CustomAllocationDefinition.APIVersion)
	}
	// The example opens, and the docs' copy is the same file.
	r := openTest(t, cfg)
	if r.IDScope() != "0ne00FEED00" {
		t.Errorf("IDScope %q", r.IDScope())
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "enrollments.md"))
	if err != nil {
		t.Skipf("docs/enrollments.md: %v", err)
	}
	ex, _ := os.ReadFile(filepath.Join("testdata", "enrollments.example.yaml"))
	if !strings.Contains(string(doc), string(ex)) {
		t.Errorf("docs/enrollments.md does not contain testdata/enrollments.example.yaml verbatim")
	}
}

const goodSym = `
idScope: 0ne00000001
linkedHubs:
  - name: hub1.azure-devices.net
enrollments:
  - registrationId: dev1
    attestation:
      type: symmetricKey
      symmetricKey:
        primaryKey: ` + keyA + `
`

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // "" = no error; else fragments, "|"-separated
	}{
		{"empty", "", ""},
		{"good yaml", goodSym, ""},
		{"json with tabs", "{\n\t\"idScope\": \"0ne1\",\n\t\"linkedHubs\": [{\"name\": \"h.example\", \"allocationWeight\": 3}],\n\t\"enrollments\": [{\"registrationId\": \"d\", \"attestation\": {\"type\": \"symmetricKey\", \"symmetricKey\": {\"primaryKey\": \"" + keyA + "\"}}}]\n}\n", ""},
		{"az output with registrationState", "{\"enrollments\": [{\"registrationId\": \"d\", \"registrationState\": {\"registrationId\": \"d\", \"status\": \"assigned\", \"x509\": {}}, \"attestation\": {\"type\": \"symmetricKey\", \"symmetricKey\": {\"primaryKey\": \"" + keyA + "\"}}}]}", ""},
		{"unknown top field", "idScope: x\nlinkedHub: []\n", `cfg.yaml:2: linkedHub: unknown field "linkedHub" in Config`},
		{"unknown enrollment field", goodSym + "    registrationID: dev1\n", `cfg.yaml:11: registrationID: unknown field "registrationID" in IndividualEnrollment`},
		{"unknown nested field", strings.Replace(goodSym, "primaryKey:", "primarykey:", 1), `cfg.yaml:10: primarykey: unknown field "primarykey" in SymmetricKeyAttestation`},
		{"type mismatch", "linkedHubs:\n  - name: h\n    allocationWeight: heavy\n", `cfg.yaml:3: cannot unmarshal !!str ` + "`heavy`"},
		{"syntax", "idScope: [\n", "cfg.yaml:"},
		// yaml.v3 places a syntax error on the first line on no line at
		// all, and gives no column: a one-line JSON file said only
		// "cfg.yaml: did not find expected node content".
		{"json syntax on one line", `{"idScope": "0ne1", "enrollments": [ {"registrationId": "a",, } ]}`, "cfg.yaml:1:61: invalid character ',' looking for beginning of object key string"},
		{"json syntax, column in characters", "{\n  \"idScope\": \"é\" \"x\"\n}", "cfg.yaml:2:18: invalid character '\"' after object key:value pair"},
		{"json cut off", `{"idScope": "0ne1"`, "cfg.yaml:1:19: the file ends inside a JSON value"},
		{"two documents", goodSym + "---\nidScope: y\n", "more than one YAML document"},
		{"a second document that does not parse", goodSym + "---\nenrollments: [\n", "cfg.yaml:12: did not find expected node content"},
		{"bad base64 key", strings.Replace(goodSym, keyA, "not*base64", 1), `cfg.yaml:6: enrollments[0] (registrationId "dev1"): attestation.symmetricKey.primaryKey: not valid base64`},
		{"short key", strings.Replace(goodSym, keyA, "AAAA", 1), "primaryKey: decodes to 3 bytes"},
		{"bad registration id", strings.Replace(goodSym, "dev1", "dev/1", 1), `enrollments[0] (registrationId "dev/1"): registrationId: dps: registration id @3`},
		{"missing registration id", strings.Replace(goodSym, "registrationId: dev1", "deviceId: d", 1), "registrationId: missing"},
		{"device id not ASCII", goodSym + "    deviceId: \"dé\"\n", `deviceId: character 'é' (U+00E9) at offset 1 is not allowed in a device id`},
		{"empty entry", goodSym + "  -\n", `cfg.yaml:11: enrollments[1] is empty`},
		{"null hub", strings.Replace(goodSym, "  - name: hub1.azure-devices.net\n", "  - name: hub1.azure-devices.net\n  - null\n", 1), `cfg.yaml:5: linkedHubs[1] is empty`},
		{"optional device information", goodSym + "    optionalDeviceInformation: {version: 1, tags: {site: lab}}\n", ""},
		{"type mismatch names no Go package", goodSym + "    provisioningStatus: [a]\n", "cannot unmarshal !!seq into ProvisioningStatus"},
		{"unknown allocation policy", goodSym + "    allocationPolicy: random\n", `allocationPolicy: unknown allocation policy "random"`},
		{"hub not linked", goodSym + "    iotHubHostName: hub2.azure-devices.net\n", `iotHubHostName: hub "hub2.azure-devices.net" is not in linkedHubs`},
		{"iotHubs not linked", goodSym + "    iotHubs: [hub1.azure-devices.net, hubX]\n", `iotHubs[1]: hub "hubX" is not in linkedHubs`},
		{"tpm", strings.Replace(goodSym, "type: symmetricKey", "type: tpm", 1), "attestation.type: tpm: TPM attestation is not supported over MQTT"},
		{"unknown attestation", strings.Replace(goodSym, "type: symmetricKey", "type: password", 1), `unknown attestation type "password"`},
		{"bad status", goodSym + "    provisioningStatus: paused\n", `provisioningStatus: unknown status "paused"`},
		{"custom without webhook", goodSym + "    allocationPolicy: custom\n", "customAllocationDefinition.webhookUrl: custom allocation needs a webhook URL"},
		{"bad webhook url", goodSym + "    allocationPolicy: custom\n    customAllocationDefinition: {webhookUrl: 'ftp://x'}\n", "not an http or https URL"},
		{"duplicate enrollment", goodSym + strings.SplitAfterN(goodSym, "enrollments:\n", 2)[1], `enrollments[1] (registrationId "dev1"): registrationId: duplicate of enrollments[0]`},
		{"duplicate hub", "linkedHubs:\n  - name: a.b\n  - name: A.B\n", `cfg.yaml:3: linkedHubs[1]: name: duplicate linked hub "A.B"`},
		{"bad hub name", "linkedHubs:\n  - name: 'a b'\n", `linkedHubs[0]: name: character ' ' at offset 1`},
		{"negative weight", "linkedHubs:\n  - name: a\n    allocationWeight: -1\n", "allocationWeight: negative weight -1"},
		{"bad id scope", "linkedHubs: [{name: a}]\nidScope: 0ne/1\n", "cfg.yaml:2: idScope: character '/' at offset 3"},
		{"bad service policy", "linkedHubs: [{name: a}]\nallocationPolicy: random\n", `cfg.yaml:2: allocationPolicy: unknown allocation policy "random"`},
		{"custom service policy", "\nallocationPolicy: custom\n", "cfg.yaml:2: allocationPolicy: custom needs a webhook"},
		{"bad PEM", "enrollmentGroups:\n  - enrollmentGroupId: g\n    attestation:\n      type: x509\n      x509:\n        signingCertificates:\n          primary:\n            certificate: \"-----BEGIN CERTIFICATE-----\\nAAAA\\n\"\n",
			`cfg.yaml:2: enrollmentGroups[0] (enrollmentGroupId "g"): attestation.x509.signingCertificates.primary.certificate: bad PEM`},
		{"not base64 cert", "enrollmentGroups:\n  - enrollmentGroupId: g\n    attestation:\n      type: x509\n      x509:\n        signingCertificates:\n          primary:\n            certificate: '%%%'\n",
			"certificate: neither PEM nor base64"},
		{"der garbage cert", "enrollmentGroups:\n  - enrollmentGroupId: g\n    attestation:\n      type: x509\n      x509:\n        signingCertificates:\n          primary:\n            certificate: 'AAAA'\n",
			"certificate: bad certificate"},
		{"group clientCertificates", "enrollmentGroups:\n  - enrollmentGroupId: g\n    attestation:\n      type: x509\n      x509:\n        clientCertificates:\n          primary:\n            info: {sha256Thumbprint: '00'}\n",
			"clientCertificates: not allowed in an enrollment group"},
		{"bad thumbprint", "enrollments:\n  - registrationId: d\n    attestation:\n      type: x509\n      x509:\n        clientCertificates:\n          primary:\n            info: {sha256Thumbprint: 'abc'}\n",
			"clientCertificates.primary.info: sha256Thumbprint is not 64 hex digits"},
		{"x509 without certs", "enrollments:\n  - registrationId: d\n    attestation:\n      type: x509\n      x509: {}\n",
			"attestation.x509: needs clientCertificates or signingCertificates"},
		{"caReferences", "enrollments:\n  - registrationId: d\n    attestation:\n      type: x509\n      x509: {caReferences: {primary: ca1}}\n",
			"caReferences: not supported"},
		{"twin map key not a string", goodSym + "    initialTwin:\n      tags:\n        site:\n          2: lab\n",
			`cfg.yaml:6: enrollments[0] (registrationId "dev1"): initialTwin: not representable as JSON`},
		{"twin NaN", goodSym + "    initialTwin: {properties: {desired: {x: .nan}}}\n", "initialTwin: not representable as JSON"},
		{"group twin Inf", "enrollmentGroups:\n  - enrollmentGroupId: g\n    attestation: {type: symmetricKey, symmetricKey: {primaryKey: " + keyA + "}}\n    initialTwin: {tags: {x: .inf}}\n",
			`cfg.yaml:2: enrollmentGroups[0] (enrollmentGroupId "g"): initialTwin: not representable as JSON`},
		{"device information map key not a string", goodSym + "    optionalDeviceInformation: {a: {true: 1}}\n", "optionalDeviceInformation: not representable as JSON"},
		{"service default static ambiguous", "allocationPolicy: static\nlinkedHubs: [{name: a}, {name: b}]\n" + strings.SplitAfterN(goodSym, "hub1.azure-devices.net\n", 2)[1],
			`enrollments[0] (registrationId "dev1"): iotHubHostName: static allocation (the service default) needs iotHubHostName or exactly one of iotHubs`},
		{"service default static, enrollment hashed", "allocationPolicy: static\nlinkedHubs: [{name: a}, {name: b}]\n" + strings.SplitAfterN(goodSym, "hub1.azure-devices.net\n", 2)[1] + "    allocationPolicy: hashed\n", ""},
		{"service default static, enrollment hub", "allocationPolicy: static\nlinkedHubs: [{name: a}, {name: b}]\n" + strings.SplitAfterN(goodSym, "hub1.azure-devices.net\n", 2)[1] + "    iotHubHostName: b\n", ""},
		{"static ambiguous", "linkedHubs: [{name: a}, {name: b}]\n" + strings.SplitAfterN(goodSym, "hub1.azure-devices.net\n", 2)[1] + "    allocationPolicy: static\n",
			"static allocation needs iotHubHostName"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.in), "cfg.yaml")
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ParseConfig: %v", err)
				}
				if cfg == nil {
					t.Fatal("nil config")
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseConfig succeeded, want error %q", tc.want)
			}
			for _, frag := range strings.Split(tc.want, "|") {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("error %q\nwant fragment %q", err, frag)
				}
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
			for _, k := range []string{keyA, "not*base64"} {
				if strings.Contains(err.Error(), k) {
					t.Errorf("error leaks key material: %q", err)
				}
			}
		})
	}
}

func TestLoadConfigMissing(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	ex, err := os.ReadFile(filepath.Join("testdata", "enrollments.example.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ex)
	f.Add([]byte(goodSym))
	f.Add([]byte(`{"idScope":"0ne1","enrollmentGroups":[{"enrollmentGroupId":"g","attestation":{"type":"x509","x509":{"signingCertificates":{"primary":{"certificate":"AAAA"}}}}}]}`))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("linkedHubs: [{name: a, latencyMs: 1e9}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data, "f.yaml")
		if err != nil {
			if cfg != nil {
				t.Fatal("config and error")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
			return
		}
		// A config that parses validates again (idempotent).
		if err := cfg.validate(); err != nil {
			t.Fatalf("parsed config fails validation: %v", err)
		}
	})
}

// TestReprovisionPolicyDefaults: each field of reprovisionPolicy that the
// policy leaves out is true (DPS-PROTOCOL.md §9), in a YAML config file
// and in JSON (a JSON config, the admin API's bodies); an unknown field of it is an
// error with its line, as everywhere in a config file.
func TestReprovisionPolicyDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, policy string
		want         ReprovisionPolicy
	}{
		{"migrate left out", "{updateHubAssignment: false}", ReprovisionPolicy{false, true}},
		{"update left out", "{migrateDeviceData: false}", ReprovisionPolicy{true, false}},
		{"empty", "{}", ReprovisionPolicy{true, true}},
		{"both given", "{updateHubAssignment: false, migrateDeviceData: false}", ReprovisionPolicy{false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(goodSym+"    reprovisionPolicy: "+tc.policy+"\n"), "cfg.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if got := *cfg.Enrollments[0].ReprovisionPolicy; got != tc.want {
				t.Errorf("YAML: %+v, want %+v", got, tc.want)
			}
			// The same policy as JSON (YAML flow maps with quoted keys).
			js := strings.NewReplacer("updateHubAssignment", `"updateHubAssignment"`, "migrateDeviceData", `"migrateDeviceData"`).Replace(tc.policy)
			var en IndividualEnrollment
			if err := json.Unmarshal([]byte(`{"registrationId":"d","reprovisionPolicy":`+js+`}`), &en); err != nil {
				t.Fatal(err)
			}
			if got := *en.ReprovisionPolicy; got != tc.want {
				t.Errorf("JSON: %+v, want %+v", got, tc.want)
			}
		})
	}
	_, err := ParseConfig([]byte(goodSym+"    reprovisionPolicy:\n      migrateDeviceData: false\n      updateHubAsignment: true\n"), "cfg.yaml")
	if err == nil || !strings.Contains(err.Error(), `cfg.yaml:13: unknown field "updateHubAsignment" in reprovisionPolicy`) || !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("misspelt field: %v", err)
	}
}

// TestOpenStoppedWhileStoring: Open's ctx bounds the upsert of the
// config's enrollments, not only the wait for the file lock. A ctx that
// ends while they are stored stops Open with ctx's error, and the
// transaction stores nothing of the config. (The emulator, given Ctrl-C
// while it stored a --config of 200,000 enrollments, went on for 25 s and
// then printed its ready line.)
func TestOpenStoppedWhileStoring(t *testing.T) {
	cfg := &Config{IDScope: "0ne00000001"}
	for i := range 2500 {
		cfg.Enrollments = append(cfg.Enrollments, symEnrollment(fmt.Sprintf("dev-%d", i), keyA, ""))
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r, err := Open(ctx, Options{StateDir: dir, Config: cfg})
	if err == nil {
		r.Close()
		t.Fatal("Open with an ended ctx stored the config")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Open: %v, want an error wrapping context.Canceled", err)
	}
	r = openTest(t, nil, func(o *Options) { o.StateDir = dir })
	var n int
	if err := r.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketEnrollments).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d enrollments stored by the stopped Open, want 0", n)
	}
}

// TestJSONSyntaxError: a config written as JSON gets the line and column
// (in characters) of the byte where its syntax breaks; YAML and valid
// JSON get nothing from it (yaml.v3's own message stands). run --config
// and device --product use it too.
func TestJSONSyntaxError(t *testing.T) {
	for _, tc := range []struct {
		in        string
		line, col int
		msg       string
		ok        bool
	}{
		{`{"a": 1,, "b": 2}`, 1, 9, "invalid character ','", true},
		{"{\n  \"é\": \"ü\",\n  ]\n}", 3, 3, "invalid character ']'", true},
		{"  [1, 2", 1, 8, "the file ends inside a JSON value", true},
		{"{}\n{}", 2, 1, "invalid character '{' after top-level value", true},
		{`{"a": 1}`, 0, 0, "", false},
		{"a: [1,,]", 0, 0, "", false},
		{"", 0, 0, "", false},
	} {
		var line, col int
		var msg string
		ce := JSONSyntaxError([]byte(tc.in), "f")
		ok := ce != nil
		if ok {
			line, col, msg = ce.Line, ce.Column, ce.Msg
		}
		if ok != tc.ok || line != tc.line || col != tc.col || !strings.HasPrefix(msg, tc.msg) {
			t.Errorf("%q: %d:%d %q %v, want %d:%d %q… %v", tc.in, line, col, msg, ok, tc.line, tc.col, tc.msg, tc.ok)
		}
	}
}
