package conformance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/dps-conform/dps-conform/transport"
)

// UnreachableError is a target endpoint the suite cannot judge: nothing
// answers, nothing answers in TLS, or its certificate does not verify
// with the CA and server name given. A run stops on it before any spec,
// with one line, instead of failing every spec for the same reason.
type UnreachableError struct {
	// Endpoint names the endpoint: "MQTT", "WebSocket" or "budget".
	Endpoint string
	Target   transport.Target
	// Why is one of the Why* values.
	Why string
	Err error
	// Timeout is how long the endpoint had to answer.
	Timeout time.Duration
}

// Values of UnreachableError.Why.
const (
	WhyNoAnswer    = "no answer"   // TCP refused, unreachable, DNS
	WhyNoTLS       = "no TLS"      // TCP accepted; no answer within the timeout, or one not in TLS
	WhyCertificate = "certificate" // the server certificate does not verify
)

// Error implements error.
func (e *UnreachableError) Error() string {
	return e.Describe(e.Endpoint + " endpoint " + e.Target.String())
}

// Describe is the error's message with the endpoint named as label (a
// caller names it as its user gave it: "target mqtts://…", "--ws-target
// wss://…").
func (e *UnreachableError) Describe(label string) string {
	switch e.Why {
	case WhyNoTLS:
		if transport.IsTimeout(e.Err) && e.Timeout > 0 {
			// The dial error's "tls: context deadline exceeded" does
			// not say that the port said nothing, nor for how long.
			return fmt.Sprintf("%s accepts TCP but does not speak TLS (is it a TLS port?): no answer to a ClientHello within %v", label, e.Timeout)
		}
		return fmt.Sprintf("%s accepts TCP but does not speak TLS (is it a TLS port?): %v", label, e.Err)
	case WhyCertificate:
		return fmt.Sprintf("%s: its certificate does not verify; give its CA with --ca FILE (caFile: in --config), and --server-name NAME if it is issued to another name: %v", label, e.Err)
	default:
		return fmt.Sprintf("%s unreachable: %v", label, e.Err)
	}
}

// Unwrap returns the dial error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// CheckReachable connects to every endpoint the run will use (MQTT, the
// WebSocket endpoint's host and port, the budget endpoint unless Local)
// and completes a TLS handshake with the target's CA and server name, the
// connect and the handshake of each endpoint within timeout. It returns an
// *UnreachableError for the first endpoint that does not answer, answers
// nothing or something other than TLS to a ClientHello, or whose
// certificate does not verify; ctx's error when ctx ended first. Any other
// handshake failure (a TLS version or suite refused, an alert) is the
// suite's to judge, and is not reported here.
func (t *Target) CheckReachable(ctx context.Context, timeout time.Duration) error {
	type endpoint struct {
		name string
		tg   transport.Target
	}
	eps := []endpoint{{"MQTT", t.MQTT}}
	if t.WS.Scheme != "" {
		eps = append(eps, endpoint{"WebSocket", t.WS})
	}
	if t.BudgetMQTT.Scheme != "" && !t.Local {
		eps = append(eps, endpoint{"budget", t.BudgetMQTT})
	}
	for _, ep := range eps {
		// TCP and TLS only: the WebSocket upgrade and MQTT are the
		// specs' to judge.
		tg := transport.Target{Scheme: "mqtts", Host: ep.tg.Host, Port: ep.tg.Port}
		if ep.tg.Port == 0 {
			tg.Port = transport.DefaultPort(ep.tg.Scheme)
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		c, err := transport.Dial(cctx, tg, transport.DialOptions{
			TLSConfig: t.tlsConfig(nil, tls.VersionTLS12, 0),
			Dialer:    &net.Dialer{Timeout: timeout},
		})
		cancel()
		if err == nil {
			c.Close()
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err() // interrupted: no verdict on the endpoint
		}
		if why := unreachableWhy(err); why != "" {
			return &UnreachableError{Endpoint: ep.name, Target: ep.tg, Why: why, Err: err, Timeout: timeout}
		}
	}
	return nil
}

// unreachableWhy classifies a dial error: "" when the suite should judge
// it.
func unreachableWhy(err error) string {
	var de *transport.DialError
	if !errors.As(err, &de) {
		return WhyNoAnswer
	}
	if de.Stage == transport.StageTCP {
		return WhyNoAnswer
	}
	var (
		rh  tls.RecordHeaderError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		cve *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci), errors.As(err, &cve):
		return WhyCertificate
	case transport.IsTimeout(err):
		return WhyNoTLS
	case errors.As(err, &rh), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		// It answered, but not in TLS (plaintext MQTT, HTTP, …), or
		// closed on a ClientHello offering every version and suite a
		// DPS client might: nothing the TLS specs could judge.
		return WhyNoTLS
	}
	return ""
}
