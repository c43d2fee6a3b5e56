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
	"sync/atomic"
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
	// HandshakeTimeout, when positive, bounds the TLS handshake and the
	// WebSocket upgrade, each on its own, within ctx: a port that accepts
	// TCP and never answers the ClientHello fails with a
	// *HandshakeTimeoutError after this long instead of at ctx's end.
	// Zero: ctx alone bounds them (or the dialer's timeout when ctx has no
	// deadline).
	HandshakeTimeout time.Duration
}

// HandshakeTimeoutError is the DialError.Err of a TLS handshake or
// WebSocket upgrade that did not finish within DialOptions.HandshakeTimeout.
// It is a net.Error whose Timeout is true (IsTimeout reports it), and not
// context.DeadlineExceeded: ctx did not end.
type HandshakeTimeoutError struct {
	Stage string        // StageTLS or StageWebSocket
	After time.Duration // DialOptions.HandshakeTimeout
	// Answered: the peer sent something before the time ran out (a
	// handshake that stalled half way), not nothing at all.
	Answered bool
}

var _ net.Error = (*HandshakeTimeoutError)(nil)

// Error implements error.
func (e *HandshakeTimeoutError) Error() string {
	switch {
	case e.Stage == StageWebSocket && e.Answered:
		return fmt.Sprintf("websocket upgrade not answered in full within %v", e.After)
	case e.Stage == StageWebSocket:
		return fmt.Sprintf("no answer to the websocket upgrade request within %v", e.After)
	case e.Answered:
		return fmt.Sprintf("TLS handshake not finished within %v: the server answered the ClientHello, then went silent", e.After)
	}
	return fmt.Sprintf("no answer to a ClientHello within %v (is it a TLS port?)", e.After)
}

// Timeout implements net.Error: true.
func (e *HandshakeTimeoutError) Timeout() bool { return true }

// Temporary implements net.Error: false.
func (e *HandshakeTimeoutError) Temporary() bool { return false }

// errHandshakeTimeout is the cause of a handshake context that ran past
// DialOptions.HandshakeTimeout.
var errHandshakeTimeout = errors.New("transport: handshake timeout")

// handshakeCtx bounds one handshake by o.HandshakeTimeout within ctx.
func handshakeCtx(ctx context.Context, o DialOptions) (context.Context, context.CancelFunc) {
	if o.HandshakeTimeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, o.HandshakeTimeout, errHandshakeTimeout)
}

// handshakeErr replaces err by a *HandshakeTimeoutError when hctx ran out
// of its handshake time (and ctx, the caller's, did not end).
func handshakeErr(ctx, hctx context.Context, err error, o DialOptions, stage string, answered bool) error {
	if ctx.Err() != nil || o.HandshakeTimeout <= 0 {
		return err
	}
	timedOut := errors.Is(context.Cause(hctx), errHandshakeTimeout)
	if !timedOut && IsTimeout(err) {
		// The WebSocket dialer puts hctx's deadline on the connection:
		// its read can time out a moment before hctx's own timer ends
		// hctx. That deadline is the handshake bound's unless ctx's
		// comes no later.
		hd, _ := hctx.Deadline()
		cd, bounded := ctx.Deadline()
		timedOut = !time.Now().Before(hd) && (!bounded || cd.After(hd))
	}
	if timedOut {
		return &HandshakeTimeoutError{Stage: stage, After: o.HandshakeTimeout, Answered: answered}
	}
	return err
}

// countingConn counts the bytes read through it, to tell a silent peer
// from one that stalled half way.
type countingConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
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
		var cc *countingConn
		under := raw
		if o.HandshakeTimeout > 0 {
			cc = &countingConn{Conn: raw}
			under = cc
		}
		tc := tls.Client(under, cfg)
		hctx, cancel := handshakeCtx(ctx, o)
		err := tc.HandshakeContext(hctx)
		if err != nil {
			err = handshakeErr(ctx, hctx, err, o, StageTLS, cc != nil && cc.n.Load() > 0)
		}
		cancel()
		if err != nil {
			raw.Close()
			return nil, &DialError{Target: t, Stage: StageTLS, Err: err}
		}
		conn = tc
	}
	if t.IsWebSocket() {
		var cc *countingConn
		under := conn
		if o.HandshakeTimeout > 0 {
			cc = &countingConn{Conn: conn}
			under = cc
		}
		hctx, cancel := handshakeCtx(ctx, o)
		wc, err := dialWS(hctx, t, o, under)
		if err != nil {
			err = handshakeErr(ctx, hctx, err, o, StageWebSocket, cc != nil && cc.n.Load() > 0)
		}
		cancel()
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
