// Package tlsprobe probes the TLS side of an MQTT server: which protocol
// versions and TLS 1.2 cipher suites it accepts, the certificate chain it
// presents, whether it also speaks plaintext MQTT, and whether MQTT answers
// over the TLS it accepts. Policy judges the result against the DPS TLS
// profile (D-TLS: TLS 1.2 only, the recommended ECDHE suites).
package tlsprobe

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/dps-conform/dps-conform/transport"
)

// Options configure a probe.
type Options struct {
	// RootCAs verifies the chain; nil means the system roots.
	RootCAs *x509.CertPool
	// ServerName is the name verified and sent as SNI; default the host.
	ServerName string
	// Timeout bounds each handshake and each read; default 5 s.
	Timeout time.Duration
	// PlaintextPorts are probed for plaintext MQTT (a CONNECT answered by
	// a CONNACK); default: the probed port and 1883.
	PlaintextPorts []int
	// Now is the clock for certificate validity; nil means time.Now.
	Now func() time.Time
}

// Result is what a probe found.
type Result struct {
	Address    string `json:"address"`
	ServerName string `json:"serverName"`
	// Versions maps "TLS 1.0" … "TLS 1.3" to whether a handshake offering
	// only that version succeeded.
	Versions []VersionResult `json:"versions"`
	// Suites are the TLS 1.2 cipher suites accepted when offered alone;
	// SuitesProbed says they were tried, which happens only when TLS 1.2
	// was accepted.
	Suites       []string `json:"suites"`
	SuitesProbed bool     `json:"suitesProbed"`
	// Chain describes the certificates the server presented (leaf first)
	// in the TLS 1.2 handshake, or else the first successful one.
	Chain []Certificate `json:"chain"`
	// ChainError is why the chain does not verify against the roots for
	// ServerName ("" when it does).
	ChainError string `json:"chainError,omitempty"`
	// Plaintext lists the ports on which a plaintext CONNECT got a CONNACK.
	Plaintext []int `json:"plaintext"`
	// MQTT is the CONNACK return code a CONNECT over the accepted TLS got
	// (-1: none, MQTTError says why).
	MQTT      int    `json:"mqttConnackCode"`
	MQTTError string `json:"mqttError,omitempty"`
	// Incomplete, when not "", says why the probe stopped before every
	// handshake: the server answered a handshake before, then answered
	// neither one nor the check after it (a handshake offering every
	// version and suite, as the first) within the timeout. It went
	// silent, and every further handshake would cost a timeout.
	// NotProbed lists what was then left out: versions ("TLS 1.3"),
	// "TLS 1.2 suites" and "MQTT over TLS"; SuitesNotProbed the suites.
	Incomplete      string   `json:"incomplete,omitempty"`
	NotProbed       []string `json:"notProbed,omitempty"`
	SuitesNotProbed []string `json:"suitesNotProbed,omitempty"`
}

// VersionResult is one protocol version.
type VersionResult struct {
	Version  string `json:"version"`
	Accepted bool   `json:"accepted"`
	// Error is why the handshake failed (alert, close), when it did.
	Error string `json:"error,omitempty"`
	// TimedOut says the server did not answer the handshake within the
	// timeout (not a refusal: it said nothing).
	TimedOut bool `json:"timedOut,omitempty"`
	// Malformed says the server answered, but with handshake bytes that
	// break TLS (not a refusal either): Error says what, and at which
	// byte of the server's stream (MalformedError).
	Malformed bool `json:"malformed,omitempty"`
	// NotProbed says the probe stopped before this version
	// (Result.Incomplete): nothing is known of it.
	NotProbed bool `json:"notProbed,omitempty"`
	// WentSilent says this version's handshake is the one at which the
	// server was found silent (Result.Incomplete): its TimedOut tells
	// nothing of the version, and the policy does not judge it.
	WentSilent bool `json:"wentSilent,omitempty"`
}

// Certificate is the facts of one certificate of the chain.
type Certificate struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	DNSNames  []string  `json:"dnsNames,omitempty"`
	IPs       []string  `json:"ips,omitempty"`
	Key       string    `json:"key"`
	// Expired or NotYetValid at probe time.
	Expired     bool `json:"expired"`
	NotYetValid bool `json:"notYetValid"`
}

var versions = []struct {
	id   uint16
	name string
}{
	{tls.VersionTLS10, "TLS 1.0"}, {tls.VersionTLS11, "TLS 1.1"}, {tls.VersionTLS12, "TLS 1.2"}, {tls.VersionTLS13, "TLS 1.3"},
}

// ErrUnreachable is wrapped when the server cannot be reached over TCP.
var ErrUnreachable = errors.New("unreachable")

// ErrNoTLS is wrapped when the server accepts TCP but does not speak TLS:
// it answers no ClientHello (offering every version and suite) within the
// timeout, answers it with bytes that are no TLS record (an HTTP or MQTT
// port), or closes the connection without an alert at it and at a small
// TLS 1.2 ClientHello. There is nothing to probe, and probing on would
// cost one timeout per handshake.
var ErrNoTLS = errors.New("accepts TCP but completed no TLS handshake")

// Probe probes addr (host:port). It fails only when the address cannot be
// reached at all (ErrUnreachable), does not answer a TLS handshake
// (ErrNoTLS) or ctx ends; everything else is a finding in the Result.
func Probe(ctx context.Context, addr string, o Options) (*Result, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("tlsprobe: address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("tlsprobe: address %q: port is not 1..65535", addr)
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.ServerName == "" {
		o.ServerName = host
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PlaintextPorts == nil {
		o.PlaintextPorts = []int{port, 1883}
	}
	d := net.Dialer{Timeout: o.Timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tlsprobe: %s: %w: %w", addr, ErrUnreachable, err)
	}
	c.Close()
	// One handshake offering everything first: a server that answers
	// none within the timeout is not probed version by version.
	// So is one that answers it with something that is no TLS record, or
	// closes the connection without an alert.
	everything := &tls.Config{ServerName: o.ServerName, InsecureSkipVerify: true,
		MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS13, CipherSuites: Suites(tls.VersionTLS12)}
	if _, err := handshake(ctx, addr, everything, o.Timeout); err != nil && ctx.Err() == nil {
		var rh tls.RecordHeaderError
		switch {
		case transport.IsTimeout(err):
			return nil, fmt.Errorf("tlsprobe: %s %w (is it a TLS port?): no answer to a ClientHello within %v", addr, ErrNoTLS, o.Timeout)
		case errors.As(err, &rh):
			return nil, fmt.Errorf("tlsprobe: %s %w (is it a TLS port?): it answered a ClientHello with bytes that are no TLS record (% x)", addr, ErrNoTLS, rh.RecordHeader[:])
		case closedAtHello(err):
			// Some TLS servers and middleboxes drop a large ClientHello
			// (this one carries every version, every suite and a
			// post-quantum key share): a TLS 1.2 one, far smaller, tells.
			if _, err := handshake(ctx, addr, &tls.Config{ServerName: o.ServerName, InsecureSkipVerify: true,
				MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}, o.Timeout); err != nil && closedAtHello(err) && ctx.Err() == nil {
				return nil, fmt.Errorf("tlsprobe: %s %w (is it a TLS port?): it closed the connection at every ClientHello, without a TLS alert", addr, ErrNoTLS)
			}
		}
	}

	r := &Result{Address: addr, ServerName: o.ServerName, MQTT: -1, Suites: []string{}, Plaintext: []int{}}
	// wentSilent reports whether a handshake that failed with err, on a
	// server that answered the first one, shows the server silent: err
	// is a timeout, and a handshake offering everything, as the first,
	// gets no answer either. A server that drops only some hellos
	// unanswered (an old version, say) still answers that one, and is
	// probed on. One that went silent would cost a timeout for every
	// handshake left: the probe stops (Result.Incomplete), at most two
	// timeouts after the server's last answer.
	wentSilent := func(what string, err error) bool {
		if !transport.IsTimeout(err) || ctx.Err() != nil {
			return false
		}
		if _, err := handshake(ctx, addr, everything, o.Timeout); err == nil || !transport.IsTimeout(err) || ctx.Err() != nil {
			return false
		}
		r.Incomplete = fmt.Sprintf("the server answered before, then answered neither the %s handshake nor one offering every version and suite within %v: it went silent, and the probe stopped", what, o.Timeout)
		return true
	}
	var accepted *tls.ConnectionState
	var acceptedCfg *tls.Config
	for _, v := range versions {
		if r.Incomplete != "" {
			r.Versions = append(r.Versions, VersionResult{Version: v.name, NotProbed: true, Error: "not probed"})
			r.NotProbed = append(r.NotProbed, v.name)
			continue
		}
		cfg := &tls.Config{ServerName: o.ServerName, InsecureSkipVerify: true, MinVersion: v.id, MaxVersion: v.id}
		if v.id <= tls.VersionTLS12 {
			// Every suite Go implements, not its default list: that
			// leaves out suites DPS recommends (ECDHE with AES-CBC-SHA256).
			cfg.CipherSuites = Suites(v.id)
		}
		st, err := handshake(ctx, addr, cfg, o.Timeout)
		vr := VersionResult{Version: v.name, Accepted: err == nil}
		if err != nil {
			vr.Error = err.Error()
			var m *MalformedError
			switch {
			case errors.As(err, &m):
				vr.Malformed = true
			case transport.IsTimeout(err):
				vr.TimedOut, vr.Error = true, fmt.Sprintf("no answer within %v", o.Timeout)
				if wentSilent(v.name, err) {
					vr.WentSilent, vr.Error = true, vr.Error+" (the server went silent)"
				}
			}
		} else if accepted == nil || v.id == tls.VersionTLS12 {
			accepted, acceptedCfg = st, cfg
		}
		r.Versions = append(r.Versions, vr)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	// Suites alone only when TLS 1.2 was accepted: refused (or not
	// answered) with every suite offered, it would refuse each alone too,
	// or cost a timeout each.
	// After the probe stopped, the suites are unknown when TLS 1.2 was
	// accepted, not probed, or the handshake the server went silent at.
	var suites []uint16
	tls12 := acceptedCfg != nil && acceptedCfg.MaxVersion == tls.VersionTLS12
	silent12 := slices.ContainsFunc(r.Versions, func(v VersionResult) bool { return v.Version == "TLS 1.2" && v.WentSilent })
	switch {
	case tls12 && r.Incomplete == "":
		suites, r.SuitesProbed = Suites(tls.VersionTLS12), true
	case r.Incomplete != "" && (tls12 || silent12 || slices.Contains(r.NotProbed, "TLS 1.2")):
		r.NotProbed = append(r.NotProbed, "TLS 1.2 suites")
	}
	for i, id := range suites {
		cfg := &tls.Config{ServerName: o.ServerName, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{id}}
		_, err := handshake(ctx, addr, cfg, o.Timeout)
		if err == nil {
			r.Suites = append(r.Suites, tls.CipherSuiteName(id))
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err != nil && wentSilent(tls.CipherSuiteName(id), err) {
			for _, id := range suites[i+1:] {
				r.SuitesNotProbed = append(r.SuitesNotProbed, tls.CipherSuiteName(id))
			}
			if len(r.SuitesNotProbed) > 0 {
				r.NotProbed = append(r.NotProbed, "TLS 1.2 suites")
			}
			break
		}
	}
	switch {
	case accepted != nil && r.Incomplete != "":
		// The chain is known; MQTT would cost one more timeout.
		r.Chain, r.ChainError = chainFacts(accepted.PeerCertificates, o)
		r.MQTTError = "not probed: the probe stopped"
		r.NotProbed = append(r.NotProbed, "MQTT over TLS")
	case accepted != nil:
		r.Chain, r.ChainError = chainFacts(accepted.PeerCertificates, o)
		// The handshake that was accepted, suites included: Go's default
		// list lacks some a server may accept alone (ECDHE AES-CBC-SHA256).
		code, err := mqttConnect(ctx, addr, acceptedCfg, o.Timeout)
		r.MQTT = code
		if err != nil {
			r.MQTTError = err.Error()
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	case r.Incomplete != "":
		r.MQTTError = "not probed: the probe stopped"
		r.NotProbed = append(r.NotProbed, "MQTT over TLS")
	default:
		r.MQTTError = "no TLS version was accepted"
	}
	for _, p := range o.PlaintextPorts {
		pa := net.JoinHostPort(host, strconv.Itoa(p))
		if code, err := mqttConnect(ctx, pa, nil, o.Timeout); err == nil && code >= 0 {
			r.Plaintext = append(r.Plaintext, p)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Suites lists the cipher suites crypto/tls implements for version v (TLS
// 1.0 to 1.2), insecure ones included: a probe must offer what clients
// might. (The conformance suite offers them to show TLS 1.0/1.1 refused.)
func Suites(v uint16) []uint16 {
	var ids []uint16
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if slices.Contains(s.SupportedVersions, v) {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// closedAtHello reports a handshake the server ended by closing the
// connection, without a TLS alert.
func closedAtHello(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// handshake completes a TLS handshake with addr within timeout. When it
// fails on handshake bytes of the server that break TLS, the error is a
// *MalformedError saying what and where (diagnose), not only crypto/tls's.
func handshake(ctx context.Context, addr string, cfg *tls.Config, timeout time.Duration) (*tls.ConnectionState, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := net.Dialer{Timeout: timeout}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if cfg.ServerName == "" {
		// As tls.Dialer does: the name verified is the host.
		cfg = cfg.Clone()
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	rec := &recordingConn{Conn: raw}
	c := tls.Client(rec, cfg)
	defer c.Close()
	if err := c.HandshakeContext(ctx); err != nil {
		// A server that stops mid-flight until the timeout is not
		// answering, whatever it sent.
		if transport.IsTimeout(err) || ctx.Err() != nil {
			return nil, err
		}
		if m := diagnose(rec.got, rec.ended, err); m != nil {
			return nil, m
		}
		return nil, err
	}
	st := c.ConnectionState()
	return &st, nil
}

// connectBytes is a minimal MQTT 3.1.1 CONNECT: ClientId
// "dps-conform-tlsprobe", CleanSession 1, keep-alive 30, no credentials. A
// DPS server refuses it (0x04: not a DPS username), which still proves MQTT.
var connectBytes = func() []byte {
	id := "dps-conform-tlsprobe"
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 30, 0, byte(len(id))}, id...)
	return append([]byte{0x10, byte(len(body))}, body...)
}()

// mqttConnect sends a CONNECT (over TLS when cfg is set) and returns the
// CONNACK return code.
func mqttConnect(ctx context.Context, addr string, cfg *tls.Config, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var c net.Conn
	var err error
	if cfg != nil {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
		c, err = d.DialContext(ctx, "tcp", addr)
	} else {
		d := net.Dialer{Timeout: timeout}
		c, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return -1, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	// ctx ends the exchange too (Ctrl-C), not only the deadline.
	defer context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })()
	if _, err := c.Write(connectBytes); err != nil {
		return -1, fmt.Errorf("writing CONNECT: %w", err)
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		return -1, fmt.Errorf("no CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[1] != 0x02 {
		return -1, fmt.Errorf("answer is not a CONNACK: % x", ack)
	}
	return int(ack[3]), nil
}

func chainFacts(certs []*x509.Certificate, o Options) ([]Certificate, string) {
	now := o.Now()
	var out []Certificate
	for _, c := range certs {
		cf := Certificate{Subject: c.Subject.String(), Issuer: c.Issuer.String(), NotBefore: c.NotBefore, NotAfter: c.NotAfter,
			DNSNames: c.DNSNames, Key: keyName(c.PublicKey), Expired: now.After(c.NotAfter), NotYetValid: now.Before(c.NotBefore)}
		for _, ip := range c.IPAddresses {
			cf.IPs = append(cf.IPs, ip.String())
		}
		out = append(out, cf)
	}
	if len(certs) == 0 {
		return out, "no certificate presented"
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: o.RootCAs, Intermediates: inter, DNSName: o.ServerName, CurrentTime: now})
	if err != nil {
		return out, err.Error()
	}
	return out, ""
}

func keyName(k any) string {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", k)
}

// Violation is one way a result breaks a policy, with the catalogue
// requirement it breaks.
type Violation struct {
	ID  string `json:"id"`
	Msg string `json:"msg"`
}

// PolicyDPS judges a result against the DPS TLS profile (D-TLS, D-MQTT;
// requirement IDs TLS-001…TLS-005): TLS 1.2 accepted, TLS 1.0 and 1.1
// refused, TLS 1.3 refused under dps-2019, only DPS-recommended suites,
// a chain that verifies and is valid now, no plaintext MQTT, and MQTT
// answering over TLS.
func PolicyDPS(r *Result, profile string) []Violation {
	var vs []Violation
	acc := map[string]bool{}
	timedOut := map[string]bool{}
	malformed := map[string]string{}
	notProbed := map[string]bool{}
	for _, v := range r.Versions {
		acc[v.Version] = v.Accepted
		// The handshake the server went silent at is no answer of this
		// version's: as unknown as those never offered.
		notProbed[v.Version] = v.NotProbed || v.WentSilent
		timedOut[v.Version] = v.TimedOut
		if v.Malformed {
			malformed[v.Version] = v.Error
		}
	}
	switch {
	case notProbed["TLS 1.2"]:
		// An incomplete probe (Result.Incomplete): nothing to judge.
	case !acc["TLS 1.2"] && timedOut["TLS 1.2"]:
		vs = append(vs, Violation{"TLS-001", "TLS 1.2 got no answer within the timeout"})
	case !acc["TLS 1.2"] && malformed["TLS 1.2"] != "":
		// The server answered, with bytes no client can complete a
		// handshake on: not a refusal.
		vs = append(vs, Violation{"TLS-001", "the TLS 1.2 handshake failed on the server's bytes: " + malformed["TLS 1.2"]})
	case !acc["TLS 1.2"]:
		msg := "TLS 1.2 is refused"
		for _, v := range r.Versions {
			if v.Version == "TLS 1.2" && v.Error != "" {
				msg += " (" + v.Error + ")"
			}
		}
		// A server that takes only the CBC-SHA384 suites DPS also lists
		// refuses this probe too: say so rather than let the verdict
		// claim more than was offered.
		vs = append(vs, Violation{"TLS-001", msg + ", offered with every TLS 1.2 suite Go implements; not probed: the two ECDHE CBC-SHA384 suites DPS also lists, which Go does not implement"})
	}
	if acc["TLS 1.0"] {
		vs = append(vs, Violation{"TLS-002", "TLS 1.0 is accepted"})
	}
	if acc["TLS 1.1"] {
		vs = append(vs, Violation{"TLS-003", "TLS 1.1 is accepted"})
	}
	if acc["TLS 1.3"] && profile != "dps-2023" {
		vs = append(vs, Violation{"TLS-004", "TLS 1.3 is accepted (dps-2019: TLS 1.2 only)"})
	}
	var recommended []string
	for _, id := range transport.DPSCipherSuites() {
		recommended = append(recommended, tls.CipherSuiteName(id))
	}
	for _, s := range r.Suites {
		if !slices.Contains(recommended, s) {
			vs = append(vs, Violation{"TLS-001", "TLS 1.2 suite " + s + " is accepted; DPS accepts only its recommended ECDHE suites"})
		}
	}
	if r.ChainError != "" {
		// A device verifying the server as the DPS docs require cannot
		// complete this handshake.
		vs = append(vs, Violation{"TLS-001", "the certificate chain does not verify: " + r.ChainError})
	}
	for _, p := range r.Plaintext {
		vs = append(vs, Violation{"TLS-005", fmt.Sprintf("plaintext MQTT answers on port %d", p)})
	}
	if r.MQTT < 0 && !slices.Contains(r.NotProbed, "MQTT over TLS") {
		vs = append(vs, Violation{"TLS-001", "no MQTT CONNACK over the accepted TLS: " + r.MQTTError})
	}
	return vs
}
