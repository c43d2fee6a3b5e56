package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dps-conform/dps-conform/device"
	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/transport"
)

const provisionUsage = `Usage:
  dps-conform provision --id-scope SCOPE --registration-id ID --symmetric-key KEY [flags]
  dps-conform provision --id-scope SCOPE --registration-id ID --group-key KEY [flags]
  dps-conform provision --id-scope SCOPE --cert FILE --key FILE [--registration-id ID] [flags]

Provisions one device with the reference device client (CONNECT, SUBSCRIBE
$dps/registrations/res/#, register, poll after each retry-after, DISCONNECT)
and prints the final RegistrationOperationStatus as indented JSON on stdout.

The target is mqtts://HOST:PORT or wss://HOST:PORT/PATH (for example
wss://HOST:443/$iothub/websocket). With --cert/--key the registration id
defaults to the certificate's subject CN and no password is sent.

Exit status: 0 assigned; 1 the service refused or failed the registration
(CONNACK or SUBACK refusal, 4xx answer, status failed or disabled, a
malformed answer); 2 usage error; 3 no verdict (unreachable target, TLS
failure, connection lost, timeout).
`

// defaultProvisionTarget is where "dps-conform emulator" listens by default.
const defaultProvisionTarget = "mqtts://127.0.0.1:8883"

type provisionFlags struct {
	target, idScope, registrationID string
	symmetricKey, groupKey          string
	certFile, keyFile, caFile       string
	serverName                      string
	payload                         string
	apiVersion, clientVersion       string
	timeout, handshakeTimeout       time.Duration
	connectAttempts                 int
	insecure, verbose               bool
}

func provisionCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("provision", provisionUsage)
	f := provisionFlags{timeout: 2 * time.Minute, handshakeTimeout: device.DefaultHandshakeTimeout}
	fs.StringVar(&f.target, "target", defaultProvisionTarget, "`URL` of the DPS endpoint: mqtts://HOST:PORT or wss://HOST:PORT/PATH")
	fs.StringVar(&f.idScope, "id-scope", "", "ID `SCOPE` of the DPS instance (required)")
	fs.StringVar(&f.registrationID, "registration-id", "", "registration `ID` (required unless --cert gives it as CN)")
	fs.StringVar(&f.symmetricKey, "symmetric-key", "", "base64 symmetric `KEY` of the device (individual enrollment)")
	fs.StringVar(&f.groupKey, "group-key", "", "base64 symmetric `KEY` of the enrollment group; the device key is derived from it")
	fs.StringVar(&f.certFile, "cert", "", "PEM client certificate `FILE` (X.509 attestation; needs --key)")
	fs.StringVar(&f.keyFile, "key", "", "PEM private key `FILE` of --cert")
	fs.StringVar(&f.caFile, "ca", "", "PEM `FILE` of CA certificates to trust instead of the system roots")
	fs.StringVar(&f.serverName, "server-name", "", "TLS server `NAME` to verify (default: the target host)")
	fs.StringVar(&f.payload, "payload", "", "custom allocation `JSON` sent as the register body's payload")
	fs.StringVar(&f.apiVersion, "api-version", "", "api-version `VERSION` in the username (default 2019-03-31)")
	fs.StringVar(&f.clientVersion, "client-version", "", "`VALUE` appended as &ClientVersion= to the username")
	fs.Var(durationFlag{p: &f.timeout}, "timeout", "bound on the whole provisioning, a Go `DURATION`")
	fs.Var(durationFlag{p: &f.handshakeTimeout}, "handshake-timeout", "bound on each TLS handshake and WebSocket upgrade, a Go `DURATION` (raise it on a slow link; --timeout still bounds the whole)")
	fs.IntVar(&f.connectAttempts, "connect-attempts", 1, "`N` connections at most: after a CONNECT that got no CONNACK or got 0x03 (server unavailable), reconnect after an exponential back-off (1 s, 2 s, 4 s … up to 30 s, +0–20 % jitter)")
	fs.BoolVar(&f.insecure, "insecure-skip-verify", false, "do not verify the server certificate (testing only)")
	fs.BoolVar(&f.verbose, "verbose", false, "trace every packet and wait on stderr (SAS sig redacted)")
	if done, err := parseFlags(env, fs, args); done || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (provision takes only flags)", fs.Arg(0))
	}
	cfg, err := f.config(flagsSet(fs), env)
	if err != nil {
		return err
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	res, err := device.Provision(ctx, cfg)
	if err != nil && parent.Err() != nil {
		return interrupted(parent)
	}
	if res != nil && res.Operation != nil && (err == nil || errors.Is(err, device.ErrNotAssigned)) {
		out, jerr := json.MarshalIndent(res.Operation, "", "  ")
		if jerr != nil {
			return envErrorf("encoding the result: %v", jerr)
		}
		fmt.Fprintf(env.Stdout, "%s\n", out)
	}
	if err != nil && !errors.Is(err, device.ErrConfig) && !strings.Contains(err.Error(), cfg.Target.String()) {
		// "waiting for CONNACK: context deadline exceeded" says what
		// was awaited, not from whom.
		err = fmt.Errorf("target %s: %w", cfg.Target, err)
	}
	return provisionError(err)
}

// config checks the flags and builds the device configuration.
func (f *provisionFlags) config(set map[string]bool, env *Env) (device.Config, error) {
	var cfg device.Config
	// --ca with --insecure-skip-verify would be ignored: the user meant one.
	for _, pair := range [][2]string{{"symmetric-key", "group-key"}, {"symmetric-key", "cert"}, {"group-key", "cert"}, {"ca", "insecure-skip-verify"}} {
		if set[pair[0]] && set[pair[1]] {
			return cfg, usageErrorf("--%s and --%s are mutually exclusive", pair[0], pair[1])
		}
	}
	for name, v := range map[string]string{"target": f.target, "id-scope": f.idScope, "registration-id": f.registrationID,
		"symmetric-key": f.symmetricKey, "group-key": f.groupKey, "cert": f.certFile, "key": f.keyFile, "ca": f.caFile,
		"server-name": f.serverName, "payload": f.payload, "api-version": f.apiVersion, "client-version": f.clientVersion} {
		if set[name] && v == "" {
			return cfg, usageErrorf("--%s is empty", name)
		}
	}
	if f.idScope == "" {
		return cfg, usageErrorf("--id-scope is required")
	}
	// The id scope opens the username ({idScope}/registrations/…); one
	// that breaks its form would be refused with CONNACK 0x04, which would
	// read as the service's verdict.
	if i := strings.IndexByte(f.idScope, '/'); i >= 0 {
		return cfg, usageErrorf("--id-scope %q: '/' at byte %d: the username {idScope}/registrations/{registrationId}/… would not be of the DPS form", f.idScope, i)
	}
	if (f.certFile == "") != (f.keyFile == "") {
		return cfg, usageErrorf("--cert and --key go together")
	}
	if f.symmetricKey == "" && f.groupKey == "" && f.certFile == "" {
		return cfg, usageErrorf("one of --symmetric-key, --group-key or --cert/--key is required")
	}
	if f.registrationID == "" && f.certFile == "" {
		return cfg, usageErrorf("--registration-id is required")
	}
	// Checked here, so that a typo is a usage error naming the flag rather
	// than a refusal by the service (which would read as its verdict).
	if f.registrationID != "" {
		if err := dps.ValidateRegistrationID(f.registrationID); err != nil {
			return cfg, usageErrorf("--registration-id: %v", err)
		}
	}
	for _, k := range []struct{ flag, v string }{{"symmetric-key", f.symmetricKey}, {"group-key", f.groupKey}} {
		if k.v == "" {
			continue
		}
		if err := checkBase64Key(k.flag, k.v); err != nil {
			return cfg, err
		}
	}
	// The api-version goes into the username unencoded; a character
	// outside its form would be refused with CONNACK 0x04, which would
	// read as the service's verdict.
	for i := 0; i < len(f.apiVersion); i++ {
		if c := f.apiVersion[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return cfg, usageErrorf("--api-version %q: character %q at byte %d: want letters, digits, '-' and '.', such as 2019-03-31", f.apiVersion, c, i)
		}
	}
	if f.connectAttempts < 1 {
		return cfg, usageErrorf("--connect-attempts %d: want 1 or more", f.connectAttempts)
	}
	target, err := transport.ParseTarget(f.target)
	if err != nil {
		return cfg, usageErrorf("--target: %v", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.serverName, InsecureSkipVerify: f.insecure}
	if f.caFile != "" {
		pool, err := loadCAPool("--ca", f.caFile)
		if err != nil {
			return cfg, err
		}
		tc.RootCAs = pool
	}
	if f.certFile != "" {
		cert, err := loadKeyPair("--cert", f.certFile, "--key", f.keyFile)
		if err != nil {
			return cfg, err
		}
		tc.Certificates = []tls.Certificate{cert}
		// Without --registration-id the id is the certificate's CN.
		if f.registrationID == "" {
			if _, err := certRegistrationID("--cert "+f.certFile, cert); err != nil {
				return cfg, err
			}
		}
	}
	cfg = device.Config{
		Target:          target,
		Dial:            transport.DialOptions{TLSConfig: tc, HandshakeTimeout: f.handshakeTimeout},
		IDScope:         f.idScope,
		RegistrationID:  f.registrationID,
		SymmetricKey:    f.symmetricKey,
		GroupKey:        f.groupKey,
		APIVersion:      f.apiVersion,
		ClientVersion:   f.clientVersion,
		ConnectAttempts: f.connectAttempts,
		Now:             env.Now,
	}
	if f.payload != "" {
		var v any
		if err := json.Unmarshal([]byte(f.payload), &v); err != nil {
			var se *json.SyntaxError
			switch {
			case errors.As(err, &se) && strings.HasPrefix(se.Error(), "unexpected end"):
				// Only this error: the bad byte may be the last one read
				// ('{"a":1,}'), with the offset at the end too.
				return cfg, usageErrorf("--payload is not valid JSON: it ends inside a value (%d bytes)", len(f.payload))
			case errors.As(err, &se):
				// Offset counts the bytes read: the bad one is the last.
				return cfg, usageErrorf("--payload is not valid JSON at byte offset %d: %v", se.Offset-1, se)
			}
			return cfg, usageErrorf("--payload is not valid JSON: %v", err)
		}
		cfg.Payload = json.RawMessage(f.payload)
	}
	if f.verbose {
		start := env.Now()
		cfg.Trace = func(e device.Event) {
			fmt.Fprintf(env.Stderr, "%8.3fs %s\n", e.Time.Sub(start).Seconds(), e)
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, provisionConfigError(err)
	}
	return cfg, nil
}

// provisionConfigError reports a device.Config rejection against the flag it
// came from; device errors never contain key material.
func provisionConfigError(err error) error {
	return &UsageError{Err: err}
}

// verdictError is an answer of the target that decides the run: it maps to
// exit status 1 through errors.As on *NonConformantError, while keeping the
// device error's own message.
type verdictError struct{ err error }

func (e *verdictError) Error() string { return e.err.Error() }
func (e *verdictError) Unwrap() error { return e.err }

// As lets ExitCode see a verdict.
func (e *verdictError) As(target any) bool {
	if t, ok := target.(**NonConformantError); ok {
		*t = &NonConformantError{MustFindings: 1}
		return true
	}
	return false
}

// provisionError classifies a device.Provision error into an exit status:
// refusals, error answers, failed/disabled registrations and malformed
// answers are verdicts (1); everything else (dial, TLS, connection loss,
// timeouts, limits) gives no verdict (3).
func provisionError(err error) error {
	if err == nil {
		return nil
	}
	var se *device.StatusError
	switch {
	case errors.Is(err, device.ErrConfig):
		return &UsageError{Err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, device.ErrBeyondDeadline):
		// Before the verdicts: a retry-after beyond --timeout is the
		// client's limit, not a refusal.
		return &EnvError{Err: fmt.Errorf("timed out (--timeout): %w", err)}
	case errors.As(err, &se), errors.Is(err, device.ErrRefused), errors.Is(err, device.ErrNotAssigned), errors.Is(err, device.ErrProtocol):
		return &verdictError{err: err}
	}
	return &EnvError{Err: err}
}
