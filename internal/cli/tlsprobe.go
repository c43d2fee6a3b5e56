package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/tlsprobe"
)

const tlsprobeUsage = `Usage:
  dps-conform tlsprobe [flags] HOST:PORT

Probes the TLS side of an MQTT server: which versions (TLS 1.0 to 1.3) and
TLS 1.2 cipher suites it accepts (each offered alone), the certificate chain
it presents (subject, issuer, validity, names, key; verified against --ca or
the system roots for --server-name), whether plaintext MQTT answers on the
port or on 1883, and whether an MQTT CONNECT over the accepted TLS gets a
CONNACK (a DPS server refuses the probe's credential-less CONNECT with 0x04,
which still proves MQTT). A version whose handshake fails on server bytes
that break TLS (a null chain, a doubled length prefix, a flight cut short)
shows as malformed, with what and at which byte of the server's stream.

With --policy dps, the result is judged against the DPS TLS profile (TLS 1.2
accepted, 1.0 and 1.1 refused, 1.3 refused under dps-2019, only the
DPS-recommended ECDHE suites, a chain that verifies, no plaintext MQTT): each
violation names its requirement (TLS-001…TLS-005) and the exit code is 1.

A server that answered a handshake, then answers neither a later one nor
a check handshake after it (offering everything) within --timeout, has gone
silent: the probe stops there (each handshake left would cost --timeout)
and says what it did not probe.

Exit codes: 0 probed (and conformant with --policy), 1 policy violated (in
what was probed, also when the probe stopped early), 2 usage error, 3
unreachable, a port that speaks no TLS (no answer to a ClientHello within
--timeout, an answer that is no TLS record, or a close without a TLS
alert), or an incomplete probe: the server went silent and nothing probed
violated the policy.

`

func tlsprobeCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("tlsprobe", tlsprobeUsage)
	ca := fs.String("ca", "", "CA bundle `FILE` (PEM) to verify the chain; default: the system roots")
	serverName := fs.String("server-name", "", "`NAME` to verify and send as SNI; default: the host")
	policy := fs.String("policy", "", "judge against `POLICY`: dps")
	profile := fs.String("profile", "dps-2019", "`VERSION` of the DPS profile for --policy: dps-2019 or dps-2023")
	format := fs.String("format", "text", "output `FORMAT`: text or json")
	var plain portsFlag
	fs.Var(&plain, "plaintext-port", "`PORT` to probe for plaintext MQTT (repeatable); default: the probed port and 1883")
	timeout := 5 * time.Second
	fs.Var(durationFlag{p: &timeout}, "timeout", "`DURATION` bound on each handshake and read")
	if done, err := parseFlags(env, fs, args); done || err != nil {
		return err
	}
	switch {
	case fs.NArg() != 1:
		return usageErrorf("want one HOST:PORT, got %d arguments", fs.NArg())
	case *policy != "" && *policy != "dps":
		return usageErrorf("--policy %q: the only policy is dps", *policy)
	case !conformance.KnownProfile(*profile):
		return usageErrorf("--profile %q is not dps-2019 or dps-2023", *profile)
	case *format != "text" && *format != "json":
		return usageErrorf("--format %q is not text or json", *format)
	}
	o := tlsprobe.Options{ServerName: *serverName, Timeout: timeout}
	if len(plain) > 0 {
		o.PlaintextPorts = plain
	}
	if *ca != "" {
		pool, err := loadCAPool("--ca", *ca)
		if err != nil {
			return err
		}
		o.RootCAs = pool
	}
	r, err := tlsprobe.Probe(ctx, fs.Arg(0), o)
	if err != nil && ctx.Err() != nil {
		return interrupted(ctx)
	}
	if err != nil {
		if errors.Is(err, tlsprobe.ErrUnreachable) || errors.Is(err, tlsprobe.ErrNoTLS) || ctx.Err() != nil {
			return &EnvError{Err: err}
		}
		return &UsageError{Err: err}
	}
	var vs []tlsprobe.Violation
	if *policy == "dps" {
		vs = tlsprobe.PolicyDPS(r, *profile)
	}
	if *format == "json" {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			*tlsprobe.Result
			Policy     string               `json:"policy,omitempty"`
			Violations []tlsprobe.Violation `json:"violations"`
		}{r, *policy, append([]tlsprobe.Violation{}, vs...)}); err != nil {
			return envErrorf("writing JSON: %v", err)
		}
	} else {
		writeProbe(env, r, *policy, vs)
	}
	if len(vs) > 0 {
		return &NonConformantError{MustFindings: len(vs)}
	}
	if r.Incomplete != "" {
		// Nothing probed broke the policy, but not everything was probed.
		return envErrorf("incomplete probe: %s; not probed: %s", r.Incomplete, strings.Join(r.NotProbed, ", "))
	}
	return nil
}

func writeProbe(env *Env, r *tlsprobe.Result, policy string, vs []tlsprobe.Violation) {
	w := env.Stdout
	fmt.Fprintf(w, "%s (server name %s)\n", r.Address, r.ServerName)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, v := range r.Versions {
		state := "refused"
		switch {
		case v.Accepted:
			state = "accepted"
		case v.TimedOut:
			state = "no answer"
		case v.Malformed:
			state = "malformed"
		case v.NotProbed:
			state, v.Error = "not probed", ""
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Version, state, v.Error)
	}
	tw.Flush()
	fmt.Fprintf(w, "TLS 1.2 suites accepted: %s\n", suitesAccepted(r))
	for i, c := range r.Chain {
		fmt.Fprintf(w, "certificate %d: %s, issued by %s, %s, valid %s to %s", i, c.Subject, c.Issuer, c.Key,
			c.NotBefore.UTC().Format("2006-01-02"), c.NotAfter.UTC().Format("2006-01-02"))
		if len(c.DNSNames)+len(c.IPs) > 0 {
			fmt.Fprintf(w, ", names %s", strings.Join(append(append([]string{}, c.DNSNames...), c.IPs...), " "))
		}
		switch {
		case c.Expired:
			fmt.Fprint(w, " EXPIRED")
		case c.NotYetValid:
			fmt.Fprint(w, " NOT YET VALID")
		}
		fmt.Fprintln(w)
	}
	if r.ChainError != "" {
		fmt.Fprintf(w, "chain does not verify: %s\n", r.ChainError)
	} else if len(r.Chain) > 0 {
		fmt.Fprintln(w, "chain verifies")
	}
	if len(r.Plaintext) > 0 {
		fmt.Fprintf(w, "plaintext MQTT answers on port(s) %v\n", r.Plaintext)
	} else {
		fmt.Fprintln(w, "no plaintext MQTT on the ports probed")
	}
	if r.MQTT >= 0 {
		fmt.Fprintf(w, "MQTT over TLS: CONNACK return code 0x%02x\n", r.MQTT)
	} else {
		fmt.Fprintf(w, "MQTT over TLS: %s\n", r.MQTTError)
	}
	if r.Incomplete != "" {
		fmt.Fprintf(w, "INCOMPLETE: %s\nnot probed: %s\n", r.Incomplete, strings.Join(r.NotProbed, ", "))
	}
	if policy != "" {
		for _, v := range vs {
			fmt.Fprintf(w, "! %s %s\n", v.ID, v.Msg)
		}
		switch {
		case len(vs) == 0 && r.Incomplete != "":
			fmt.Fprintf(w, "policy %s: no verdict: no violation in what was probed, but the probe was incomplete\n", policy)
		case len(vs) == 0:
			fmt.Fprintf(w, "policy %s: conformant\n", policy)
		case r.Incomplete != "":
			fmt.Fprintf(w, "policy %s: %d violation(s) in what was probed (the probe was incomplete)\n", policy, len(vs))
		default:
			fmt.Fprintf(w, "policy %s: %d violation(s)\n", policy, len(vs))
		}
	}
}

// suitesAccepted says which TLS 1.2 suites r found accepted, "none", or why
// they were not probed (all of them, or some when the probe stopped).
func suitesAccepted(r *tlsprobe.Result) string {
	suites := strings.Join(r.Suites, ", ")
	switch {
	case !r.SuitesProbed && slices.Contains(r.NotProbed, "TLS 1.2 suites"):
		return "not probed (the probe stopped)"
	case !r.SuitesProbed:
		return "not probed (TLS 1.2 not accepted)"
	case len(r.SuitesNotProbed) > 0:
		return cmp.Or(suites, "none") + "; not probed (the probe stopped): " + strings.Join(r.SuitesNotProbed, ", ")
	}
	return cmp.Or(suites, "none")
}
