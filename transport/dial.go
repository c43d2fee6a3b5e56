package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// Dial stages reported in DialError.Stage.
const (
	StageTCP       = "tcp"       // connecting the socket: unreachable, refused, DNS
	StageTLS       = "tls"       // TLS handshake: alert, certificate refused
	StageWebSocket = "websocket" // HTTP upgrade: 404, 400, bad subprotocol
)

// DefaultDialTimeout bounds the TCP connect, and each handshake when the
// context has no deadline, when DialOptions.Dialer is nil.
const DefaultDialTimeout = 10 * time.Second

// IsTimeout reports whether err is a timeout (a context deadline or a
// net.Error that timed out) rather than a refusal: the peer said nothing.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// DialError reports the stage at which Dial failed, so callers can tell an
// unreachable peer (StageTCP) from a TLS refusal (StageTLS) or a refused
// WebSocket upgrade (StageWebSocket).
type DialError struct {
	Target Target
	Stage  string
	Err    error
}

var _ error = (*DialError)(nil)

// Error implements error.
func (e *DialError) Error() string {
	msg := fmt.Sprint(e.Err)
	if strings.HasPrefix(msg, e.Stage+": ") || strings.HasPrefix(msg, e.Stage+" ") {
		// crypto/tls says "tls: ..." itself, a WSHandshakeError
		// "websocket upgrade ...".
		return fmt.Sprintf("transport: dial %s: %s", e.Target, msg)
	}
	return fmt.Sprintf("transport: dial %s: %s: %s", e.Target, e.Stage, msg)
}

// Unwrap returns the underlying error.
func (e *DialError) Unwrap() error { return e.Err }

// WSHandshakeError is the DialError.Err of a refused WebSocket upgrade: the
// HTTP status and the start of the response body.
type WSHandshakeError struct {
	StatusCode int
	Status     string
	Body       string // at most 512 bytes
	// Problem says what was wrong with a 101 answer that did not complete
	// the upgrade (a header missing, an accept key that does not match);
	// "" for a refusal (any other status).
	Problem string
}

// Error implements error.
func (e *WSHandshakeError) Error() string {
	if e.Problem != "" {
		return fmt.Sprintf("websocket upgrade failed: HTTP %s, but %s", e.Status, e.Problem)
	}
	s := fmt.Sprintf("websocket upgrade refused: HTTP %s", e.Status)
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// upgradeProblem names what a 101 answer lacks for the client to accept
// it (RFC 6455 §4.1, the client's checks in the order of the RFC); ""
// for another status.
func upgradeProblem(resp *http.Response) string {
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return ""
	}
	hasToken := func(name, token string) bool {
		for _, v := range resp.Header.Values(name) {
			for _, t := range strings.Split(v, ",") {
				if strings.EqualFold(strings.TrimSpace(t), token) {
					return true
				}
			}
		}
		return false
	}
	switch {
	case !hasToken("Upgrade", "websocket"):
		return "the answer has no Upgrade: websocket header (RFC 6455 §4.1)"
	case !hasToken("Connection", "upgrade"):
		return "the answer has no Connection: Upgrade header (RFC 6455 §4.1)"
	case resp.Header.Get("Sec-WebSocket-Accept") == "":
		return "the answer has no Sec-WebSocket-Accept header (RFC 6455 §4.1)"
	}
	return "its Sec-WebSocket-Accept does not match the request's key (RFC 6455 §4.1)"
}

// Unwrap returns websocket.ErrBadHandshake.
func (e *WSHandshakeError) Unwrap() error { return websocket.ErrBadHandshake }

// DialOptions configures Dial. The zero value dials with system roots, a
// 10 s connect timeout and subprotocol "mqtt".
type DialOptions struct {
	// TLSConfig is used for mqtts and wss; nil means system roots with
	// ServerName = Target.Host. A config without ServerName gets Target.Host.
	TLSConfig *tls.Config
	// Dialer connects the TCP socket; nil means a net.Dialer with
	// DefaultDialTimeout.
	Dialer *net.Dialer
	// WrapRaw wraps the TCP connection: it sees the bytes as on the wire
	// (TLS records, WebSocket frames).
	WrapRaw func(net.Conn) net.Conn
	// WrapPlain wraps the returned connection: it sees the MQTT byte stream,
	// after TLS and WebSocket.
	WrapPlain func(net.Conn) net.Conn
	// Subprotocol is the WebSocket subprotocol offered; default "mqtt".
	Subprotocol string
	// Header holds extra WebSocket upgrade request headers.
	Header http.Header
	// EnableCompression offers permessage-deflate.
	EnableCompression bool
}

// Dial connects to t and returns a net.Conn carrying the MQTT byte stream.
// For mqtts and wss the TLS handshake has completed when Dial returns; for ws
// and wss so has the WebSocket upgrade (the conn is then a *WSConn unless
// WrapPlain replaced it). Handshakes are bounded by ctx and, if ctx has no
// deadline, by the dialer's Timeout. Errors are *DialError.
func Dial(ctx context.Context, t Target, o DialOptions) (net.Conn, error) {
	if DefaultPort(t.Scheme) == 0 {
		return nil, &DialError{Target: t, Stage: StageTCP,
			Err: &TargetError{Input: t.String(), Part: "scheme", Msg: fmt.Sprintf("%q is not one of mqtts, wss, mqtt, ws", t.Scheme)}}
	}
	d := o.Dialer
	if d == nil {
		d = &net.Dialer{Timeout: DefaultDialTimeout}
	}
	if _, ok := ctx.Deadline(); !ok {
		// Every wait is bounded: without a ctx deadline the handshakes get
		// the connect timeout (or DefaultDialTimeout).
		timeout := d.Timeout
		if timeout <= 0 {
			timeout = DefaultDialTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	raw, err := d.DialContext(ctx, "tcp", t.Addr())
	if err != nil {
		return nil, &DialError{Target: t, Stage: StageTCP, Err: err}
	}
	if o.WrapRaw != nil {
		raw = o.WrapRaw(raw)
	}
	conn := raw
	if t.IsTLS() {
		cfg := &tls.Config{}
		if o.TLSConfig != nil {
			cfg = o.TLSConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = t.Host
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, &DialError{Target: t, Stage: StageTLS, Err: err}
		}
		conn = tc
	}
	if t.IsWebSocket() {
		wc, err := dialWS(ctx, t, o, conn)
		if err != nil {
			conn.Close()
			return nil, &DialError{Target: t, Stage: StageWebSocket, Err: err}
		}
		conn = wc
	}
	if o.WrapPlain != nil {
		conn = o.WrapPlain(conn)
	}
	return conn, nil
}

// dialWS runs the WebSocket upgrade over an established (TLS) connection.
func dialWS(ctx context.Context, t Target, o DialOptions, conn net.Conn) (*WSConn, error) {
	sub := o.Subprotocol
	if sub == "" {
		sub = "mqtt"
	}
	used := false
	give := func(context.Context, string, string) (net.Conn, error) {
		if used {
			return nil, errors.New("transport: websocket dialer asked for a second connection")
		}
		used = true
		return conn, nil
	}
	wd := websocket.Dialer{
		NetDialContext:    give,
		NetDialTLSContext: give,
		Subprotocols:      []string{sub},
		EnableCompression: o.EnableCompression,
	}
	// The dialer bounds the upgrade by ctx's deadline only: a cancelled
	// ctx (Ctrl-C) would leave it reading a stalled answer. Cancellation
	// sets a deadline in the past, which ends the read; if it came, the
	// conn is closed, and if not (stop reports it), no deadline was set.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	ws, resp, err := wd.DialContext(ctx, t.URL(), o.Header)
	if !stop() && err == nil {
		ws.NetConn().Close()
		return nil, ctx.Err()
	}
	if err != nil && ctx.Err() != nil {
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		return nil, fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	if err != nil {
		if errors.Is(err, websocket.ErrBadHandshake) && resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			return nil, &WSHandshakeError{StatusCode: resp.StatusCode, Status: resp.Status,
				Body: string(bytes.TrimSpace(body)), Problem: upgradeProblem(resp)}
		}
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		return nil, err
	}
	if got := ws.Subprotocol(); got != sub {
		ws.NetConn().Close()
		return nil, fmt.Errorf("server selected subprotocol %q, want %q [MQTT-6.0.0-4]", got, sub)
	}
	if ext := unofferedExtension(resp.Header, o.EnableCompression); ext != "" {
		ws.NetConn().Close()
		return nil, fmt.Errorf("server selected extension %q, which was not offered (RFC 6455 §4.1)", ext)
	}
	return newWSConn(ws, false), nil
}

// unofferedExtension names the first extension a 101 answer selects that
// the client did not offer, or "". Dial offers permessage-deflate only, and
// only with EnableCompression; gorilla would take it unasked (and then send
// compressed frames) and ignores any other.
func unofferedExtension(h http.Header, deflateOffered bool) string {
	for _, v := range h.Values("Sec-WebSocket-Extensions") {
		for _, e := range strings.Split(v, ",") {
			name, _, _ := strings.Cut(e, ";")
			name = strings.TrimSpace(name)
			if name != "" && (!deflateOffered || name != "permessage-deflate") {
				return name
			}
		}
	}
	return ""
}
