package cli

import (
	"bufio"
	"cmp"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/registry"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/reports"
	"github.com/dps-conform/dps-conform/tracer"
	"github.com/dps-conform/dps-conform/transport"
)

const deviceUsage = `Usage:
  dps-conform device [--exec CMD] [--scenario NAME]... [flags]

Judges a device under test (a DPS client: firmware, an SDK sample, a
simulator). dps-conform plays the service: for each scenario it starts the
reference emulator on loopback with a fresh PKI and one individual
enrollment (a symmetric key; with --attestation x509 a client certificate
with CN = --registration-id; with --device-cert the device's own
certificate, whose CN is the registration id), scripts the scenario's answers, records every connection as
pcapng (server side, TLS key log embedded), and judges what the device did
with the device rules (DPS-DEV-001…028): TLS 1.2 with a recommended suite,
CONNECT fields, SUBSCRIBE before register, $rid, packets of at most 96 KB,
polling no earlier than retry-after and at most 5 per 10 s, one registration
at a time, waiting after 429, stopping after 401 and after a failed or
disabled status, back-off after 5xx, PUBACKs, presenting a certificate whose
CN is the registration id and no password (X.509), the mqtt WebSocket
subprotocol, and refusing a hostile server certificate.

With --exec, CMD runs (through sh -c) once per scenario with DPS_HOST,
DPS_PORT, DPS_WS_PORT, DPS_WS_URL, DPS_ID_SCOPE, DPS_REGISTRATION_ID,
DPS_ATTESTATION (symmetric-key or x509), DPS_SYMMETRIC_KEY or
DPS_CERT_FILE and DPS_KEY_FILE (PEM), DPS_CA_FILE, DPS_TRANSPORT (mqtt or
mqttws) and DPS_SCENARIO in its environment (and no DPS_SYMMETRIC_KEY,
DPS_GROUP_KEY, DPS_CERT_FILE or DPS_KEY_FILE but the scenario's: those of
the caller's environment are removed); the scenario ends when the CMD process
(the sh -c) exits or after --scenario-timeout, and then whatever CMD left
running in its process group is killed. Without --exec, the settings are printed and a person
starts the device; the scenario ends on Enter or after --scenario-timeout.
A device that opened no TCP connection in two scenarios in a row (without
--exec: two that ended at --scenario-timeout, not on Enter), and none
before, stops the run: every scenario expects one, and the scenarios after
them are reported not run (no verdict).

Scenarios: normal, register-429, poll-429, unauthorized-401, transient-500,
poll-no-operation-id, disconnect-mid-poll, connack-withheld,
enrollment-disabled, enrollment-failed, tls-untrusted-ca, tls-wrong-host,
tls-expired (default: all).

Exit codes: 0 every MUST rule that applied passed, 1 a MUST rule failed,
2 usage error, 3 no verdict (in no scenario that serves DPS did the device
connect, send CONNECT, register and poll on to a final status; no MUST
rule applied; or an environment failure).

`

// tlsScenarios are served with a certificate the device must refuse.
var tlsScenarios = []string{"tls-untrusted-ca", "tls-wrong-host", "tls-expired"}

// refusingScenarios serve DPS but may rightly leave a device without a 200:
// unauthorized-401 never assigns, connack-withheld assigns only a device
// that reconnects, and enrollment-disabled and enrollment-failed end in a
// 200 with status disabled or failed, which is no assignment. A run of
// these alone is judged on any final answer.
var refusingScenarios = []string{"unauthorized-401", "connack-withheld", "enrollment-disabled", "enrollment-failed"}

type deviceFlags struct {
	exec, transport, profile, out, regID, host string
	product, attestation, keyType, deviceCert  string
	kt                                         transport.KeyType
	// deviceCertPEM is the leaf of --device-cert, enrolled in every
	// scenario instead of a generated certificate.
	deviceCertPEM                          []byte
	scenarios                              stringsFlag
	timeout, retryAfter, tolerance, window time.Duration
}

func deviceCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("device", deviceUsage)
	var f deviceFlags
	fs.StringVar(&f.exec, "exec", "", "`CMD` that runs the device once (sh -c); without it a person starts the device")
	fs.Var(&f.scenarios, "scenario", "scenario `NAME` (repeatable; default: all)")
	fs.StringVar(&f.transport, "transport", "mqtt", "`TRANSPORT` the device is told to use (DPS_TRANSPORT): mqtt or mqttws")
	fs.StringVar(&f.profile, "profile", conformance.ProfileDPS2019, "`VERSION` of the DPS profile: dps-2019 or dps-2023")
	fs.StringVar(&f.out, "out", "dps-conform-device-results", "`DIR` for evidence (pcaps/), logs and reports")
	fs.StringVar(&f.regID, "registration-id", "dps-conform-dut", "registration `ID` of the device's enrollment")
	fs.StringVar(&f.host, "host", "127.0.0.1", "`HOST` the device is told to connect to (DPS_HOST); a DNS name (resolving to loopback only) makes SNI judged (DPS-DEV-002)")
	fs.StringVar(&f.product, "product", "", "`FILE` (YAML: vendor, model, firmware) naming the device in the report")
	fs.StringVar(&f.attestation, "attestation", attestSymmetricKey, "`KIND` of the device's enrollment: symmetric-key (DPS_SYMMETRIC_KEY) or x509 (DPS_CERT_FILE, DPS_KEY_FILE)")
	fs.StringVar(&f.deviceCert, "device-cert", "", "PEM `FILE` of the device's own certificate (leaf first), enrolled instead of a generated one (implies --attestation x509; DPS_CERT_FILE names it, no DPS_KEY_FILE: the device has its key); its subject CN is the registration id")
	fs.StringVar(&f.keyType, "key-type", "ecdsa", "`TYPE` of the generated keys (the server's certificates, and the device's with --attestation x509): ecdsa (P-256) or rsa (2048), for a TLS stack that has only ECDHE-RSA suites")
	f.timeout, f.retryAfter, f.tolerance, f.window = 60*time.Second, time.Second, 250*time.Millisecond, 10*time.Second
	fs.Var(durationFlag{p: &f.timeout}, "scenario-timeout", "`DURATION` bound on each scenario")
	fs.Var(durationFlag{p: &f.retryAfter, zeroOK: true, seconds: true}, "retry-after", "retry-after of 202 answers, a `DURATION` of whole seconds")
	fs.Var(durationFlag{p: &f.tolerance, zeroOK: true}, "tolerance", "`DURATION` earlier than retry-after a request may come")
	fs.Var(durationFlag{p: &f.window}, "window", "`DURATION` after a 401 (DPS-DEV-017), or a failed or disabled status (DPS-DEV-024), in which the device must not reconnect with the same credentials")
	if done, err := parseFlags(env, fs, args); done || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (device takes only flags; quote --exec CMD)", fs.Arg(0))
	}
	switch {
	case f.transport != "mqtt" && f.transport != "mqttws":
		return usageErrorf("--transport %q: want mqtt or mqttws", f.transport)
	case f.attestation != attestSymmetricKey && f.attestation != attestX509:
		return usageErrorf("--attestation %q: want %s or %s", f.attestation, attestSymmetricKey, attestX509)
	case f.deviceCert != "" && flagsSet(fs)["attestation"] && f.attestation != attestX509:
		return usageErrorf("--device-cert is an X.509 device's certificate: it does not go with --attestation %s", f.attestation)
	case !conformance.KnownProfile(f.profile):
		return usageErrorf("--profile %q: want dps-2019 or dps-2023", f.profile)
	case f.retryAfter%time.Second != 0:
		return usageErrorf("--retry-after %v is not a whole number of seconds", f.retryAfter)
	case f.exec == "" && flagsSet(fs)["exec"]:
		// Not the operator mode that leaving --exec out asks for.
		return usageErrorf("--exec is empty: give the command that runs the device, or leave --exec out to start the device by hand")
	}
	var err error
	if f.kt, err = parseKeyType("key-type", f.keyType); err != nil {
		return err
	}
	if f.deviceCert != "" {
		if err := f.loadDeviceCert(flagsSet(fs)["registration-id"]); err != nil {
			return err
		}
	}
	if err := checkHostName("host", f.host); err != nil {
		return err
	}
	lctx, lcancel := context.WithTimeout(ctx, hostLookupTimeout)
	err = checkLoopbackHost(lctx, f.host, net.DefaultResolver.LookupIPAddr)
	lcancel()
	if err != nil {
		return err
	}
	// Every scenario: the emulator's, in its order, then the TLS ones.
	var all []string
	for _, s := range emulator.Scenarios() {
		all = append(all, s.Name)
	}
	all = append(all, tlsScenarios...)
	names := []string(f.scenarios)
	if len(names) == 0 {
		names = all
	}
	for _, n := range names {
		if !slices.Contains(all, n) {
			return usageErrorf("--scenario: unknown scenario %q (known: %s)", n, strings.Join(slices.Sorted(slices.Values(all)), ", "))
		}
	}
	var product *reports.Product
	if f.product != "" {
		b, err := readInputFile("--product", f.product)
		if err != nil {
			return err
		}
		product = &reports.Product{}
		if err := decodeYAMLFile("--product", f.product, b, product, "a product file", "vendor, model, firmware"); err != nil {
			if errors.Is(err, io.EOF) {
				return usageErrorf("--product %s: the file is empty (want YAML with vendor, model and firmware)", f.product)
			}
			return err
		}
		if product.Vendor == "" || product.Model == "" {
			return usageErrorf("--product %s: vendor and model are required", f.product)
		}
	}
	if err := checkOutRole(f.out, string(conformance.RoleDevice)); err != nil {
		return err
	}
	// An earlier device run's captures, key logs and device logs
	// (NN-scenario.*) would mix with this run's: run removes its own the
	// same way.
	if err := conformance.RemoveEvidence(f.out, "[0-9][0-9]-*.pcapng", "[0-9][0-9]-*.keylog", "[0-9][0-9]-*.log"); err != nil {
		return envErrorf("--out: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(f.out, "pcaps"), 0o755); err != nil {
		return envErrorf("--out: %v", err)
	}
	cat, err := conformance.LoadCatalog()
	if err != nil {
		return &EnvError{Err: err}
	}
	rules := cat.RulesUnder(conformance.DeviceRules(), f.profile)
	var runs []*scenarioRun
	var stopped []string // scenarios an interrupt cut short: not judged
	var lines <-chan time.Time
	if f.exec == "" && env.Stdin != nil {
		lines = readLines(env.Stdin)
	}
	start := time.Now()
	var notRun []string // scenarios after the device showed it would not connect
	notRunWhy := ""
	silent, connected := 0, false
	for i, name := range names {
		run, err := f.runScenario(ctx, env, i+1, name, rules, lines)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if ctx.Err() != nil {
			// The device was stopped half-way: what it did is in the
			// capture, but judging it would blame the device for the
			// interrupt. The scenarios that finished are reported.
			stopped = append(stopped, name)
			fmt.Fprintf(env.Stderr, "%s scenario %s: interrupted, not judged\n", progName, name)
			break
		}
		runs = append(runs, run)
		fmt.Fprintf(env.Stderr, "%s scenario %s: %s, %s (%.1fs)\n", progName, name, plural(run.accepted, "connection"), plural(len(run.Findings), "finding"), run.elapsed.Seconds())
		// Every scenario expects at least a TCP connection (the tls-*
		// ones too): a device that opened none in silentScenarios in a
		// row, and none before, will not open one in the others, and
		// each would cost its whole --scenario-timeout. Without --exec
		// only a scenario nobody ended (Enter) counts: an operator who
		// ends one before starting the device decides.
		connected = connected || run.accepted > 0
		if run.accepted == 0 && (f.exec != "" || run.timedOut) {
			silent++
		} else {
			silent = 0
		}
		if !connected && silent >= silentScenarios && i+1 < len(names) {
			notRun = names[i+1:]
			notRunWhy = fmt.Sprintf("the device opened no TCP connection in %d scenarios in a row (%s), and every scenario expects at least one (the tls-* ones too)",
				silent, strings.Join(names[i+1-silent:i+1], ", "))
			fmt.Fprintf(env.Stderr, "%s: %s\n", progName, notRunLine(len(notRun), notRun, notRunWhy))
			break
		}
	}
	target := reports.Target{Name: "device under test", Endpoint: f.exec, Attestation: f.attestation}
	if f.exec == "" {
		target.Endpoint = "started by a person"
	}
	if product != nil {
		target.Product = product
		target.Name = fmt.Sprintf("%s %s (firmware %s)", product.Vendor, product.Model, product.Firmware)
	}
	in := reports.DeviceInput{Catalog: cat, Profile: f.profile, Tool: toolInfo(), Target: target,
		Started: start, Ended: time.Now(), ResultsDir: f.out, Interrupted: stopped, NoVerdict: noVerdictReason(runs, f.exec != "", f.credentialsHint()),
		NotRun: notRun, NotRunReason: notRunWhy}
	for _, r := range runs {
		in.Scenarios = append(in.Scenarios, r.Scenario)
	}
	rep := reports.BuildDevice(in)
	if _, err := writeReportFiles(f.out, rep, true); err != nil {
		return err
	}
	note := "the device's symmetric key was generated per scenario and is not recorded"
	if f.attestation == attestX509 {
		note = "the device's certificate and key were generated per scenario and are not recorded"
	}
	cfg, _ := yaml.Marshal(map[string]any{"exec": target.Endpoint, "profile": f.profile, "attestation": f.attestation, "note": note})
	if err := os.WriteFile(filepath.Join(f.out, "config.yaml"), cfg, 0o644); err != nil {
		return envErrorf("writing config.yaml: %v", err)
	}
	if err := sealResults(f.out, ""); err != nil {
		return err
	}
	writeDeviceVerdicts(env.Stdout, rep, runs)
	if ctx.Err() != nil && rep.Summary.MustFailed == 0 {
		return interrupted(ctx)
	}
	if rep.Summary.Verdict == reports.HeadlineNoVerdict {
		return envErrorf("no verdict: %s", noVerdictWhy(rep.Summary))
	}
	if rep.Summary.MustFailed > 0 {
		return &NonConformantError{MustFindings: rep.Summary.MustFailed}
	}
	return nil
}

// scenarioRun is the outcome of one scenario: what the report needs, and
// what the verdict table adds.
type scenarioRun struct {
	reports.Scenario
	accepted      int    // TCP connections the emulator accepted
	conversations int    // of them, those recorded (from a TLS ClientHello on)
	connects      int    // of those, the ones that carried a CONNECT
	registers     int    // register requests the device published
	finals        int    // answers that ended an operation (finalAnswer)
	assigned      int    // of them, 200 answers (an assignment's final status)
	refusedStatus int    // the status of the last of them that was an error (0: none)
	ended         string // how the scenario ended: "device exited: 0", "ended by the operator"
	timedOut      bool   // without --exec: it ended at --scenario-timeout, not on Enter
	elapsed       time.Duration
}

func randomKey() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// The device's enrollment kinds (--attestation).
const (
	attestSymmetricKey = "symmetric-key"
	attestX509         = "x509"
)

// scenarioCredentials are the device's credentials in one scenario: its
// enrollment's attestation, the environment that hands them to the
// device, and the symmetric key (for DPS-DEV-005; "" for X.509).
type scenarioCredentials struct {
	attestation registry.AttestationMechanism
	vars        []string
	key         string
}

// loadDeviceCert reads --device-cert: its leaf's subject CN becomes the
// registration id, and one given with --registration-id must be that CN.
func (f *deviceFlags) loadDeviceCert(regIDSet bool) error {
	b, err := os.ReadFile(f.deviceCert)
	if err != nil {
		return inputError("--device-cert", err)
	}
	var block *pem.Block
	for rest := b; ; {
		if block, rest = pem.Decode(rest); block == nil || block.Type == "CERTIFICATE" {
			break
		}
	}
	if block == nil {
		return usageErrorf("--device-cert: no PEM certificate in %s", f.deviceCert)
	}
	id, err := certRegistrationID("--device-cert "+f.deviceCert, tls.Certificate{Certificate: [][]byte{block.Bytes}})
	if err != nil {
		return err
	}
	if regIDSet && !dps.EqualRegistrationID(id, f.regID) {
		return usageErrorf("--registration-id %q is not the subject CN %q of --device-cert %s (an X.509 device's registration id is its CN)", f.regID, id, f.deviceCert)
	}
	f.regID, f.attestation = id, attestX509
	f.deviceCertPEM = pem.EncodeToMemory(block)
	if abs, err := filepath.Abs(f.deviceCert); err == nil {
		f.deviceCert = abs // DPS_CERT_FILE, whatever the device's directory
	}
	return nil
}

// credentials makes fresh credentials for one scenario: a random
// symmetric key, or (--attestation x509) a client certificate with CN
// --registration-id issued by a fresh device CA, enrolled individually by
// the certificate (as DPS enrolls one by its PEM) and written with its key
// to dir as PEM files; or the --device-cert the device brings, enrolled the
// same way.
func (f *deviceFlags) credentials(dir string, now time.Time) (scenarioCredentials, error) {
	byCert := func(certPEM []byte) registry.AttestationMechanism {
		return registry.AttestationMechanism{Type: registry.AttestationX509, X509: &registry.X509Attestation{
			ClientCertificates: &registry.X509Certificates{Primary: &registry.X509CertificateWithInfo{Certificate: string(certPEM)}},
		}}
	}
	if f.deviceCertPEM != nil {
		return scenarioCredentials{attestation: byCert(f.deviceCertPEM), vars: []string{"DPS_CERT_FILE=" + f.deviceCert}}, nil
	}
	if f.attestation != attestX509 {
		key := randomKey()
		return scenarioCredentials{
			attestation: registry.AttestationMechanism{Type: registry.AttestationSymmetricKey, SymmetricKey: &registry.SymmetricKeyAttestation{PrimaryKey: key}},
			vars:        []string{"DPS_SYMMETRIC_KEY=" + key},
			key:         key,
		}, nil
	}
	ca, err := transport.NewCA("dps-conform device CA", f.kt, now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		return scenarioCredentials{}, fmt.Errorf("device CA: %w", err)
	}
	cert, err := ca.IssueClient(f.regID, f.kt, now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		return scenarioCredentials{}, fmt.Errorf("device certificate: %w", err)
	}
	keyPEM, err := transport.EncodeKeyPEM(cert.PrivateKey.(crypto.Signer))
	if err != nil {
		return scenarioCredentials{}, fmt.Errorf("device key: %w", err)
	}
	certFile, keyFile := filepath.Join(dir, "device-cert.pem"), filepath.Join(dir, "device-key.pem")
	if err := os.WriteFile(certFile, transport.EncodeCertPEM(cert.Certificate[0]), 0o600); err != nil {
		return scenarioCredentials{}, err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return scenarioCredentials{}, err
	}
	return scenarioCredentials{
		attestation: byCert(transport.EncodeCertPEM(cert.Certificate[0])),
		vars:        []string{"DPS_CERT_FILE=" + certFile, "DPS_KEY_FILE=" + keyFile},
	}, nil
}

// runScenario serves one scenario, runs or waits for the device, and
// judges the recording with rules.
func (f *deviceFlags) runScenario(ctx context.Context, env *Env, n int, name string, rules []*conformance.Rule, lines <-chan time.Time) (*scenarioRun, error) {
	started := time.Now()
	dir, err := os.MkdirTemp("", "dps-conform-device-")
	if err != nil {
		return nil, envErrorf("scenario %s: %v", name, err)
	}
	defer os.RemoveAll(dir)
	now := time.Now()
	// The certificates name --host, as DPS's name the host a device is
	// given: a device that checks the name must be able to pass.
	names := transport.DefaultServerNames()
	if !slices.Contains(names, f.host) {
		names = append(names, f.host)
	}
	pki, err := transport.LoadOrCreateServerPKI(dir, []string{f.host}, f.kt, now)
	if err != nil {
		return nil, envErrorf("scenario %s: PKI: %v", name, err)
	}
	serverCert := pki.Certificate
	hostile := slices.Contains(tlsScenarios, name)
	switch name {
	case "tls-untrusted-ca":
		other, err := transport.NewCA("dps-conform untrusted CA", f.kt, now.Add(-time.Hour), 24*time.Hour)
		if err == nil {
			serverCert, err = other.IssueServer(names, f.kt, now.Add(-time.Hour), 24*time.Hour)
		}
		if err != nil {
			return nil, envErrorf("scenario %s: %v", name, err)
		}
	case "tls-wrong-host":
		if serverCert, err = pki.Authority.IssueServer([]string{"wrong-host.example"}, f.kt, now.Add(-time.Hour), 24*time.Hour); err != nil {
			return nil, envErrorf("scenario %s: %v", name, err)
		}
	case "tls-expired":
		if serverCert, err = pki.Authority.IssueServer(names, f.kt, now.Add(-72*time.Hour), 24*time.Hour); err != nil {
			return nil, envErrorf("scenario %s: %v", name, err)
		}
	}
	var sc *emulator.Scenario
	if !hostile {
		s, _ := emulator.LookupScenario(name)
		s.ThrottleRetryAfter = max(f.retryAfter, time.Second)
		sc = &s
	}
	cred, err := f.credentials(dir, now)
	if err != nil {
		return nil, envErrorf("scenario %s: %v", name, err)
	}
	cfg := &registry.Config{
		IDScope:     "0ne00DE71CE",
		LinkedHubs:  []registry.LinkedHub{{Name: "dut-hub.azure-devices.net"}},
		Enrollments: []registry.IndividualEnrollment{{RegistrationID: f.regID, Attestation: cred.attestation}},
	}
	regOpts := registry.Options{Config: cfg}
	if sc != nil {
		regOpts.HTTPClient = sc.Enroll(&cfg.Enrollments[0])
	}
	reg, err := registry.Open(ctx, regOpts)
	if err != nil {
		return nil, &UsageError{Err: fmt.Errorf("--registration-id %q: %w", f.regID, err)}
	}
	defer reg.Close()
	pcap := filepath.Join(f.out, "pcaps", fmt.Sprintf("%02d-%s.pcapng", n, name))
	rec, err := tracer.CreateRecorder(pcap, tracer.RecorderOptions{
		Comment:    fmt.Sprintf("dps-conform device scenario %s (server side)", name),
		KeyLogPath: strings.TrimSuffix(pcap, ".pcapng") + ".keylog",
	})
	if err != nil {
		return nil, envErrorf("scenario %s: %v", name, err)
	}
	recClosed := false
	defer func() {
		if !recClosed {
			rec.Close()
		}
	}()
	var accepted atomic.Int32
	limits := emulator.DefaultLimits()
	limits.ConnectTimeout = 5 * time.Second
	srv, err := emulator.New(emulator.Config{
		MQTTAddr: net.JoinHostPort(bindHost(f.host), "0"), WSAddr: net.JoinHostPort(bindHost(f.host), "0"),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{serverCert}, KeyLogWriter: rec.KeyLogWriter()},
		CAFile:    pki.CAFile, Registry: reg, Profile: emulator.Profile(f.profile), RetryAfter: f.retryAfter,
		Scenario: sc, Limits: limits,
		WrapRaw: func(c net.Conn) net.Conn {
			accepted.Add(1)
			return rec.Wrap(c, tracer.ConnOptions{Side: tracer.Server, Layer: tracer.TLS, Comment: "scenario " + name})
		},
	})
	if err == nil {
		err = srv.Start(ctx)
	}
	if err != nil {
		return nil, envErrorf("scenario %s: emulator: %v", name, err)
	}
	ready := srv.Ready()
	_, mqttPort, _ := net.SplitHostPort(ready.MQTT)
	_, wsPort, _ := net.SplitHostPort(ready.WSS)
	vars := []string{
		"DPS_HOST=" + f.host, "DPS_PORT=" + mqttPort, "DPS_WS_PORT=" + wsPort,
		"DPS_WS_URL=wss://" + net.JoinHostPort(f.host, wsPort) + transport.DefaultWSPath,
		"DPS_ID_SCOPE=" + ready.IDScope, "DPS_REGISTRATION_ID=" + f.regID, "DPS_ATTESTATION=" + f.attestation,
	}
	vars = append(vars, cred.vars...)
	vars = append(vars, "DPS_CA_FILE="+pki.CAFile, "DPS_TRANSPORT="+f.transport, "DPS_SCENARIO="+name)
	run := &scenarioRun{Scenario: reports.Scenario{Name: name, Pcap: pcap}}
	sctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	if f.exec != "" {
		run.ended = "device " + runDevice(sctx, f.exec, vars, deviceLog(pcap))
	} else {
		prompt := time.Now()
		fmt.Fprintf(env.Stderr, "\nscenario %s: start the device now with\n", name)
		for _, v := range vars {
			fmt.Fprintf(env.Stderr, "  %s\n", v)
		}
		fmt.Fprintf(env.Stderr, "press Enter when it has finished (or wait %v)\n", f.timeout)
		run.ended = "ended by the operator"
		if !waitEnter(sctx, lines, prompt) {
			run.ended = fmt.Sprintf("ended at the scenario timeout (%v)", f.timeout)
			run.timedOut = ctx.Err() == nil
		}
	}
	// Give connections the device left open a moment to end, then stop.
	time.Sleep(200 * time.Millisecond)
	srv.Close()
	recClosed = true
	if err := rec.Close(); err != nil {
		return nil, envErrorf("scenario %s: recording: %v", name, err)
	}
	capt, err := tracer.DecodeFile(pcap, tracer.Options{})
	if err != nil {
		return nil, envErrorf("scenario %s: decoding the recording: %v", name, err)
	}
	run.conversations = len(capt.Conversations)
	run.accepted = max(int(accepted.Load()), run.conversations)
	for _, c := range capt.Conversations {
		if c.MQTTVersion != 0 { // a CONNECT was seen
			run.connects++
		}
		for _, p := range c.Packets {
			pub, ok := p.Packet.(*packets.Publish)
			switch {
			case !ok:
			case p.Dir == tracer.ClientToServer && strings.HasPrefix(string(pub.Topic), dps.RegisterPrefix):
				run.registers++ // well-formed or not: DPS-DEV-011 judges the topic
			case p.Dir == tracer.ServerToClient:
				if final, status := finalAnswer(string(pub.Topic)); final {
					run.finals++
					switch {
					case status != 200:
						run.refusedStatus = status
					case !assignment(pub.Payload):
						// A 200 with status failed or disabled (as in
						// enrollment-failed and enrollment-disabled):
						// final, but no assignment.
					default:
						run.assigned++
					}
				}
			}
		}
	}
	renv := conformance.RuleEnv{Profile: f.profile, PollTolerance: f.tolerance, Window: f.window, HostileServer: hostile, Live: true,
		SymmetricKey: cred.key, X509: f.attestation == attestX509}
	if net.ParseIP(f.host) == nil {
		renv.ServerName = f.host
	}
	run.Findings, run.Applied = conformance.CheckCapture(capt, rules, renv)
	var b strings.Builder
	tracer.WriteText(&b, capt, tracer.TranscriptOptions{})
	run.Transcript = b.String()
	run.Sequence = conformance.Sequence(capt)
	run.elapsed = time.Since(started)
	return run, nil
}

// hostLookupTimeout bounds the resolution of --host NAME.
const hostLookupTimeout = 5 * time.Second

// checkLoopbackHost refuses a --host NAME that does not resolve, or that
// resolves to any address other than a loopback one (docs/device-role.md:
// "a DNS name resolving to loopback"): the emulator listens on loopback,
// and a device told the name must reach it there and nowhere else. An IP
// address is not looked up. Nothing is dialled.
func checkLoopbackHost(ctx context.Context, host string, lookup func(context.Context, string) ([]net.IPAddr, error)) error {
	if net.ParseIP(host) != nil {
		return nil
	}
	addrs, err := lookup(ctx, host)
	if err == nil && len(addrs) == 0 {
		err = errors.New("no address")
	}
	if err != nil {
		return usageErrorf("--host %q: does not resolve: %v (want a DNS name resolving to loopback addresses only)", host, err)
	}
	has := false
	var ips []string
	for _, a := range addrs {
		ips = append(ips, a.IP.String())
		if !a.IP.IsLoopback() {
			return usageErrorf("--host %q: resolves to %s, not a loopback address (want a DNS name resolving to loopback addresses only: the emulator listens on loopback)", host, a.IP)
		}
		has = has || a.IP.Equal(net.IPv4(127, 0, 0, 1))
	}
	if !has {
		// bindHost: for a name the emulator listens on 127.0.0.1.
		return usageErrorf("--host %q: resolves to %s but not to 127.0.0.1, where the emulator listens for a name (give the address itself as --host to listen there)", host, strings.Join(ips, ", "))
	}
	return nil
}

// bindHost is the address the emulator listens on for a --host name.
func bindHost(host string) string {
	if net.ParseIP(host) != nil {
		return host
	}
	return "127.0.0.1"
}

// groupExitWait bounds the wait for the device's shell to be reaped once
// its process group was killed.
const groupExitWait = 5 * time.Second

// maxDeviceLog bounds what a scenario keeps of the device's output: a
// device that prints without end (a retry loop logging every attempt,
// 'yes') would fill the disk and then the results could not be sealed
// (1.4 GB in 3 s, beyond the bundle's per-file limit).
const maxDeviceLog = 16 << 20

// cappedWriter writes the first left bytes to w and counts the rest,
// which it discards; it never fails the writer (the device must not see
// its output fail).
type cappedWriter struct {
	w       io.Writer
	left    int64
	dropped int64
	err     error
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	n := int64(len(p))
	keep := min(n, c.left)
	if keep > 0 && c.err == nil {
		_, c.err = c.w.Write(p[:keep])
		c.left -= keep
	}
	c.dropped += n - keep
	return len(p), nil
}

// runDevice runs cmd through sh -c with vars added to the environment and
// its output in logPath (the first maxDeviceLog bytes, and a last line
// saying how much more was discarded), until the sh process exits or ctx
// ends (the scenario timeout or an interrupt). Either way its process
// group is then killed, so that nothing cmd started in the background
// outlives the scenario (a process that left the group, with setsid, is
// beyond reach). It returns how it ended.
func runDevice(ctx context.Context, cmd string, vars []string, logPath string) string {
	log, err := os.Create(logPath)
	if err != nil {
		return "cannot create " + logPath + ": " + err.Error()
	}
	defer log.Close()
	// The device writes into a pipe of its own (a file, so that Wait
	// does not wait for the copy): what it prints is copied, up to the
	// cap, while it runs.
	pr, pw, err := os.Pipe()
	if err != nil {
		return "did not start: " + err.Error()
	}
	defer pr.Close()
	c := exec.Command("sh", "-c", cmd)
	c.Env = append(deviceEnviron(os.Environ()), vars...)
	c.Stdout, c.Stderr = pw, pw
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = c.Start()
	pw.Close()
	if err != nil {
		return "did not start: " + err.Error()
	}
	out := &cappedWriter{w: log, left: maxDeviceLog}
	copied := make(chan struct{})
	go func() {
		io.Copy(out, pr)
		close(copied)
	}()
	how := waitDevice(ctx, c)
	// Once the group is gone so are the pipe's writers, but one that left
	// the group (setsid) may hold it: its output is not waited for long.
	select {
	case <-copied:
	case <-time.After(time.Second):
		pr.Close()
		<-copied
	}
	if out.dropped > 0 {
		fmt.Fprintf(log, "\n[dps-conform: the device printed %d bytes more; this log keeps the first %d]\n", out.dropped, maxDeviceLog)
	}
	return how
}

// waitDevice waits for the sh process of c to exit or ctx to end, kills
// c's process group either way and says how it ended.
func waitDevice(ctx context.Context, c *exec.Cmd) string {
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	// The group id is the shell's pid; the group outlives the shell while
	// a member is left, and the id is not reused before it is gone.
	killGroup := func() { syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	select {
	case err := <-done:
		killGroup()
		if err != nil {
			return "exited: " + err.Error()
		}
		return "exited: 0"
	case <-ctx.Done():
		killGroup()
		select {
		case <-done:
		case <-time.After(groupExitWait):
			return "killed, but did not exit within " + groupExitWait.String()
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "killed at the scenario timeout"
		}
		return "killed: interrupted"
	}
}

// inheritedCredentials are the credential variables a device reads
// (DPS_GROUP_KEY too: interop/node/provision.js prefers it to a
// certificate). The device role gives one attestation's; those of the
// caller's environment (exported by hand from the printed settings, or for
// another run) must not reach the device beside them.
var inheritedCredentials = []string{"DPS_SYMMETRIC_KEY", "DPS_GROUP_KEY", "DPS_CERT_FILE", "DPS_KEY_FILE"}

// deviceEnviron is env without inheritedCredentials.
func deviceEnviron(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(inheritedCredentials, k)
	})
}

// finalAnswer reports whether topic is an answer that ends a
// registration operation: 200, or an error other than the transient ones
// (429 and 5xx, which a device retries). While the answer is 202 a device
// keeps polling ("keep polling the service if the response code is 202
// after a delay equal to the retry-after period … successful if the
// service returns a 200", D-MQTT; DPS-PROTOCOL.md Part B §4.3, §5).
func finalAnswer(topic string) (final bool, status int) {
	r, err := dps.ParseResponseTopic(topic)
	if err != nil {
		return false, 0
	}
	return r.Status == 200 || r.Status >= 400 && r.Status < 500 && r.Status != 429, r.Status
}

// assignment reports whether the body of a 200 answer is not a final
// failed or disabled status (Part B §4.4): a body that does not parse
// counts as an assignment, as every 200 did before bodies were read.
func assignment(body []byte) bool {
	var st dps.RegistrationOperationStatus
	if json.Unmarshal(body, &st) != nil {
		return true
	}
	return st.Status != dps.StatusFailed && st.Status != dps.StatusDisabled
}

// deviceLog is where a scenario keeps what its --exec device printed:
// next to the capture, pcaps/NN-scenario.log.
func deviceLog(pcap string) string { return strings.TrimSuffix(pcap, ".pcapng") + ".log" }

// noVerdictReason is why runs show too little of the device to judge it,
// or "": it never connected; or, in the scenarios that serve DPS (not the
// hostile TLS ones, where a device must stop before CONNECT), it never
// connected, sent no CONNECT, published no register request, or never
// polled on to an answer that ends the operation (finalAnswer), so its DPS
// flow was not seen through: the rules on polling had little or nothing
// to judge. A TLS handshake alone (DPS-DEV-001) is no provisioning device,
// nor is a CONNECT alone. A device that does all this in one scenario
// that serves DPS is judged (a device may rightly stop early in another,
// as after connack-withheld). Where the run has a scenario that assigns
// (all but refusingScenarios), seeing it through means a 200 there: the
// 401 of unauthorized-401 ends an operation without any poll. A run of
// TLS scenarios only is judged on them.
func noVerdictReason(runs []*scenarioRun, exec bool, creds string) string {
	all, tcp, served, servedConns, connects, registers := 0, 0, 0, 0, 0, 0
	assigning := slices.ContainsFunc(runs, func(r *scenarioRun) bool {
		return !slices.Contains(tlsScenarios, r.Name) && !slices.Contains(refusingScenarios, r.Name)
	})
	seenThrough := false
	refused := "" // "401 in normal": where a scenario that assigns refused the device
	for _, r := range runs {
		all += r.conversations
		tcp += r.accepted
		if slices.Contains(tlsScenarios, r.Name) {
			continue
		}
		served++
		servedConns += r.conversations
		connects += r.connects
		registers += r.registers
		switch {
		case r.connects == 0 || r.registers == 0:
		case assigning:
			seenThrough = seenThrough || r.assigned > 0
			if r.refusedStatus != 0 && !slices.Contains(refusingScenarios, r.Name) && refused == "" {
				refused = fmt.Sprintf("%d in %s", r.refusedStatus, r.Name)
			}
		default:
			seenThrough = seenThrough || r.finals > 0
		}
	}
	switch {
	case len(runs) > 0 && all == 0 && tcp > 0:
		// The recording holds a connection from its ClientHello on.
		return fmt.Sprintf("the device opened %d TCP connection(s) but sent no TLS ClientHello in any scenario (is it speaking TLS to DPS_PORT?)", tcp)
	case len(runs) > 0 && all == 0:
		if !exec {
			return "the device never connected in any scenario (check that it was given the printed host, port and CA)"
		}
		why := "the device never connected in any scenario (check --exec, and that it uses DPS_HOST/DPS_PORT"
		if runs[0].Pcap != "" {
			// What the device printed (a missing module, a bad flag)
			// is kept next to the capture.
			why += "; its output: " + deviceLog(runs[0].Pcap)
		}
		return why + ")"
	case served == 0:
		return ""
	case servedConns == 0:
		return "the device never connected in a scenario that serves DPS, only in the TLS scenarios (where it must stop before CONNECT)"
	case connects == 0:
		return fmt.Sprintf("the device connected %d time(s) but sent no CONNECT in any scenario that serves DPS", servedConns)
	case registers == 0:
		return "the device sent CONNECT but no register request (PUBLISH to " + dps.RegisterPrefix + ") in any scenario that serves DPS"
	case !seenThrough && refused != "":
		// It reached a final status, but an error where it should
		// have been assigned: the credentials it attests with, mostly.
		return "the device registered, but the service ended its registration with status " + refused +
			" and assigned it in no scenario (check the credentials it attests with: " +
			cmp.Or(creds, "DPS_REGISTRATION_ID, and DPS_SYMMETRIC_KEY or, with --attestation x509, DPS_CERT_FILE and DPS_KEY_FILE") +
			"; the answer's errorCode is in the transcript)"
	case !seenThrough:
		return "the device registered but never polled to a final status (a 200 answer, or an error that ends the operation) in any scenario that serves DPS: while the answer is 202 a device keeps polling"
	default:
		return ""
	}
}

// credentialsHint is what a device refused where it should have been
// assigned is to check, for the run's attestation.
// With --device-cert there is no DPS_KEY_FILE: the device has its key, and
// what it presents must be the certificate enrolled.
func (f *deviceFlags) credentialsHint() string {
	switch {
	case f.deviceCertPEM != nil:
		return "the certificate it presents must be the one enrolled, --device-cert " + f.deviceCert + " (DPS_CERT_FILE), with its own private key"
	case f.attestation == attestX509:
		return "DPS_CERT_FILE and DPS_KEY_FILE, the certificate whose CN is DPS_REGISTRATION_ID and its key"
	default:
		return "DPS_REGISTRATION_ID and DPS_SYMMETRIC_KEY"
	}
}

// silentScenarios is how many scenarios in a row in which the device
// opened no TCP connection (and none before) stop a device run.
const silentScenarios = 2

// notRunLine says how many scenarios were not run, which, and why.
func notRunLine(n int, names []string, why string) string {
	return fmt.Sprintf("%s not run (%s): %s", plural(n, "scenario"), strings.Join(names, ", "), why)
}

// noVerdictWhy is the reason of a NO VERDICT headline, and on a line of
// its own the scenarios not run, when the run stopped before them.
func noVerdictWhy(s reports.Summary) string {
	why := s.NoVerdictReason
	if why == "" {
		why = "the device connected, but no MUST device rule applied to what it sent"
	}
	if s.NotRunReason != "" {
		why += "\n" + notRunLine(s.NotRun, s.NotRunScenarios, s.NotRunReason)
	}
	return why
}

// typedAhead is how many lines the operator may type ahead of a prompt
// and still have them told apart from the answer to it.
const typedAhead = 64

// readLines reads in (the operator's terminal) for the whole command, one
// goroutine for every scenario, and sends the time each line was read: a
// reader per scenario would leave the earlier ones waiting, and the first
// of them would take the operator's next Enter. Lines are read as they
// come (up to typedAhead ahead of a prompt), so that their times tell
// which came before a prompt. The channel closes at EOF.
func readLines(in io.Reader) <-chan time.Time {
	lines := make(chan time.Time, typedAhead)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			lines <- time.Now()
		}
	}()
	return lines
}

// waitEnter returns true on a line from lines read after prompt (those
// before were not about it; nil lines: none will come), false when ctx
// ends (the scenario's timeout). At the end of the input (stdin closed, as
// when a rig drives the device and the job has no terminal) only ctx is
// left.
func waitEnter(ctx context.Context, lines <-chan time.Time, prompt time.Time) bool {
	for {
		select {
		case at, ok := <-lines:
			if !ok {
				lines = nil // no Enter will come
				continue
			}
			if at.Before(prompt) {
				continue
			}
			return true
		case <-ctx.Done():
			return false
		}
	}
}

// writeDeviceVerdicts prints the verdict per rule and scenario.
func writeDeviceVerdicts(w io.Writer, rep *reports.Report, runs []*scenarioRun) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERDICT\tREQUIREMENT\tLEVEL\tSCENARIOS")
	for _, rq := range rep.Requirements {
		var sc []string
		for _, s := range rq.Specs {
			mark := ""
			if s.State == "failed" {
				mark = "!"
			}
			sc = append(sc, mark+strings.TrimPrefix(s.Text, "scenario "))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", rq.Verdict, rq.ID, rq.Level, strings.Join(sc, " "))
	}
	tw.Flush()
	for _, r := range runs {
		for _, fd := range r.Findings {
			fmt.Fprintf(w, "\nFAIL %s in scenario %s\n  %s\n  capture: %s\n", fd.ID, r.Name, fd.Detail(), r.Pcap)
		}
	}
	fmt.Fprintln(w)
	for _, r := range runs {
		fmt.Fprintf(w, "scenario %-22s %s, %s\n", r.Name, plural(r.accepted, "connection"), r.ended)
	}
	for _, name := range rep.Summary.NotRunScenarios {
		fmt.Fprintf(w, "scenario %-22s not run\n", name)
	}
	switch rep.Summary.Verdict {
	case reports.HeadlineNonConformant:
		var ids []string
		for _, rq := range rep.Requirements {
			if rq.Verdict == reports.Fail && rq.Level == string(conformance.MUST) {
				ids = append(ids, rq.ID)
			}
		}
		fmt.Fprintf(w, "NON-CONFORMANT: %d MUST requirement(s) failed: %s\n", rep.Summary.MustFailed, strings.Join(ids, " "))
		if rep.Summary.Incomplete() {
			fmt.Fprintln(w, "(interrupted before every scenario ran)")
		}
	case reports.HeadlineInterrupted:
		fmt.Fprintf(w, "INTERRUPTED: stopped before every scenario ran; %d MUST requirement(s) judged, none failed\n", rep.Summary.MustJudged)
	case reports.HeadlineNoVerdict:
		fmt.Fprintf(w, "NO VERDICT: %s\n", noVerdictWhy(rep.Summary))
	default:
		fmt.Fprintln(w, "CONFORMANT: every MUST device rule that applied passed")
	}
}

// plural is "1 connection", "2 connections".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
