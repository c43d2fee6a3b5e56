package device

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	randv2 "math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/transport"
)

// Defaults of Config fields left zero.
const (
	DefaultTokenTTL          = time.Hour        // N, P, J SDKs (DPS-PROTOCOL.md §1.3)
	DefaultKeepAlive         = 60 * time.Second // P, FR SDKs (§1.7)
	DefaultRetryAfter        = 2 * time.Second  // N, P, J when the service gives none (§4.3)
	DefaultMaxRetryAfter     = 5 * time.Minute  // C SDK's MAX_PROV_GET_THROTTLE_TIME (§4.3)
	DefaultResponseTimeout   = 30 * time.Second // N, P per-request timeout (§5)
	DefaultHandshakeTimeout  = 5 * time.Second  // TLS, WebSocket upgrade: as long as run and tlsprobe wait
	DefaultMaxPolls          = 60
	DefaultMaxAttempts       = 5
	DefaultMaxIgnored        = 100
	DefaultMaxPacketSize     = 256 << 10 // CS v1 inbound limit (§3.4)
	DefaultBackoffInitial    = time.Second
	DefaultBackoffMax        = 30 * time.Second
	DefaultBackoffJitter     = 0.2
	defaultDisconnectTimeout = 2 * time.Second
)

// Config says where and how a device provisions. The zero value of every
// optional field selects the documented default; Validate reports what is
// missing or contradictory.
type Config struct {
	// Target and Dial say how to reach the service (mqtts:// or wss://):
	// Dial.TLSConfig carries RootCAs, ServerName and, for X.509 devices, the
	// client certificate; Dial.WrapRaw/WrapPlain let a tracer see the bytes.
	// Dial.HandshakeTimeout bounds the TLS handshake and the WebSocket
	// upgrade, each, within ctx: zero means DefaultHandshakeTimeout,
	// negative ctx alone. A port that accepts TCP and never answers the
	// ClientHello then fails with a *transport.HandshakeTimeoutError
	// rather than at ctx's end.
	Target transport.Target
	Dial   transport.DialOptions
	// DialFunc, when set, replaces transport.Dial(ctx, Target, Dial): tests
	// and the suite hand in any net.Conn (net.Pipe, a recorder, …).
	DialFunc func(ctx context.Context) (net.Conn, error)

	// IDScope and RegistrationID name the registration. RegistrationID may be
	// left empty for an X.509 device: the subject CN of the client
	// certificate is used (D-TERMS: the CN is the registration id).
	IDScope, RegistrationID string

	// Credentials: exactly one of SymmetricKey (the device's own base64 key)
	// or GroupKey (an enrollment group key; the device key is derived with
	// dps.DeriveDeviceKey), or neither for X.509 (client certificate in
	// Dial.TLSConfig, and no password in CONNECT).
	SymmetricKey string
	GroupKey     string
	// SREncoding, KeyName and OmitKeyName shape the SAS token; the default
	// is the documented form (lower-case encoded sr, skn=registration).
	// KeyName "" means "registration"; OmitKeyName leaves skn out (P SDK).
	SREncoding  dps.SREncoding
	KeyName     string
	OmitKeyName bool
	// TokenTTL is the SAS token lifetime from Now (default 1h).
	TokenTTL time.Duration

	// APIVersion is the username's api-version (default dps.DefaultAPIVersion).
	APIVersion string
	// ClientVersion, when set, is appended as "&ClientVersion=" exactly as
	// given (escape it yourself if it needs escaping).
	ClientVersion string
	// Payload is the register body's "payload" member (custom allocation
	// data); it must be valid JSON. Nil leaves the member out.
	Payload json.RawMessage
	// RegisterBody, when non-nil, is sent as the register body verbatim
	// instead of {"registrationId":…[,"payload":…]} — e.g. empty (CS v1),
	// or `{"payload": null, "registrationId": "…"}` (P). PollBody is the
	// poll body (default empty as EC, J, CS send; N and P send " ").
	RegisterBody, PollBody []byte

	// KeepAlive is the CONNECT keep-alive (default 60s). While waiting longer
	// than KeepAlive between requests the client sends PINGREQ. Negative
	// means 0 (no keep-alive, as the C SDK sends).
	KeepAlive time.Duration
	// PersistentSession sends CleanSession = 0 (P, J, NX SDK style). The
	// default is CleanSession = 1, which every DPS profile accepts.
	PersistentSession bool
	// SubscribeQoS and PublishQoS default to 1 (C, N, P, CS SDKs); set
	// QoS0 to send 0 (FR, NX subscribe and C, J, FR publish at 0).
	SubscribeQoS, PublishQoS QoS

	// RequestID makes the $rid of the n-th request (n from 1). Default:
	// CounterRequestID (decimal counter, J SDK style); see also
	// UUIDRequestID (N, P) and ConstantRequestID (EC uses "1").
	RequestID func(n int) string

	// DefaultRetryAfter is the wait when a 202/429 gives no retry-after
	// (default 2s, the N/P/J SDKs' value).
	DefaultRetryAfter time.Duration
	// MaxRetryAfter bounds the retry-after the client accepts (default 5m,
	// the C SDK's bound). A longer retry-after ends Provision with an
	// ErrLimit error: the client never polls earlier than told.
	MaxRetryAfter time.Duration
	// MaxPolls bounds the operation status requests (default 60);
	// MaxAttempts bounds register requests (first send plus retries after
	// 429/5xx, default 5).
	MaxPolls, MaxAttempts int
	// ConnectAttempts bounds the connections Provision opens (default 1:
	// no reconnect). After a CONNECT that got no CONNACK (ResponseTimeout
	// passed, or the service closed the connection) or got CONNACK 0x03
	// (server unavailable), Provision waits Backoff and connects again, as
	// DPS-DEV-022 asks (EC: exponential back-off, min 1 s, with jitter).
	// Other refusals, and dial and TLS failures, end Provision at once.
	ConnectAttempts int
	// Backoff is the wait after a 5xx without retry-after, and before a
	// reconnect (ConnectAttempts).
	Backoff Backoff
	// ResponseTimeout bounds each wait for an answer (CONNACK, SUBACK, the
	// response to a request), default 30s (N, P SDKs). Negative: only ctx.
	ResponseTimeout time.Duration
	// MaxIgnored bounds the packets skipped while waiting for one answer
	// (responses to other $rid values, unasked-for PINGRESP, …), default
	// 100. The PINGRESPs answering the client's own PINGREQs do not count.
	MaxIgnored int
	// MaxPacketSize bounds an incoming packet (default 256 KiB).
	MaxPacketSize int

	// Now and Sleep are the clock (defaults time.Now and a timer bounded by
	// ctx); tests inject fakes and assert the requested waits.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns a number in [0,1) for back-off jitter (default
	// math/rand/v2).
	Rand func() float64
	// Logger receives one line per step (secrets redacted); nil discards.
	Logger *slog.Logger
	// Trace, when set, observes every packet sent and received and every
	// wait, in order. It is called from the session's goroutines one call at
	// a time; it must not block for long.
	Trace func(Event)

	// Misbehave switches make the client break the protocol on purpose, to
	// prove the device-role rules catch it. The zero value behaves.
	Misbehave Misbehave
}

// Misbehave switches; each breaks one documented behaviour.
type Misbehave struct {
	// ClientID, Username and Password, when non-nil, are sent in CONNECT
	// instead of the computed values.
	ClientID, Username, Password *string
	// ProtocolName, when non-nil, is sent in CONNECT instead of "MQTT";
	// ProtocolLevel, when non-zero, instead of 4 (3 with "MQIsdp" is an
	// MQTT 3.1 client, 5 an MQTT 5 one; the body stays 3.1.1's).
	ProtocolName  *string
	ProtocolLevel byte
	// SkipSubscribe registers without subscribing first.
	SkipSubscribe bool
	// IgnoreRetryAfter polls without waiting.
	IgnoreRetryAfter bool
	// NoPuback never acknowledges QoS 1 deliveries.
	NoPuback bool
	// PollInterval, when positive, is the wait before every poll and
	// every retry, whatever the retry-after says ("poll too fast").
	PollInterval time.Duration
	// RetryAfter401 reconnects once with the same credentials after a 401
	// answer and registers again.
	RetryAfter401 bool
	// PollOperationID, when set, is the operationId of every poll instead
	// of the one the service gave.
	PollOperationID string
	// PollAfterAssigned polls the operation once more, at once, after its
	// 200 "assigned" answer, waits for that answer and then disconnects.
	PollAfterAssigned bool
	// RegisterAgain sends a second register request right after the 202
	// answer to the first, while its operation is in progress (the
	// service answers 409), then polls the first operation as usual.
	RegisterAgain bool
	// RegisterAfterFailure registers once more, on the same connection,
	// after an answer with status "failed" or "disabled".
	RegisterAfterFailure bool
	// RIDWithoutDollar writes "?rid=" for "?$rid=" in request topics.
	RIDWithoutDollar bool
	// AcceptAnyServerCert skips the verification of the server
	// certificate (tls.Config.InsecureSkipVerify).
	AcceptAnyServerCert bool
}

// QoS is an MQTT QoS level for Config; its zero value means "default" (1).
type QoS int

// QoS values for Config.SubscribeQoS and PublishQoS.
const (
	QoSDefault QoS = iota
	QoS0
	QoS1
	QoS2
)

func (q QoS) level(def byte) byte {
	switch q {
	case QoS0:
		return 0
	case QoS1:
		return 1
	case QoS2:
		return 2
	}
	return def
}

// Backoff is an exponential back-off: Initial·2^(n-1) for the n-th retry,
// capped at Max, plus up to Jitter·delay of random extra (CS RetryJitter,
// D-TROUBLE "exponential back-off with jitter"). Zero fields take the
// defaults 1s, 30s, 0.2; a negative Jitter means none.
type Backoff struct {
	Initial, Max time.Duration
	Jitter       float64
}

// Delay returns the wait before retry n (n ≥ 1), with r in [0,1) the random
// draw for the jitter.
func (b Backoff) Delay(n int, r float64) time.Duration {
	b = b.withDefaults()
	if n < 1 {
		n = 1
	}
	d := float64(b.Initial) * math.Pow(2, float64(n-1))
	if d > float64(b.Max) {
		d = float64(b.Max)
	}
	if b.Jitter > 0 {
		d += d * b.Jitter * r
	}
	return time.Duration(d)
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Jitter == 0 {
		b.Jitter = DefaultBackoffJitter
	}
	return b
}

// CounterRequestID is the default $rid generator: "1", "2", "3", …
func CounterRequestID(n int) string { return strconv.Itoa(n) }

// ConstantRequestID returns a generator that uses rid for every request, as
// the embedded C SDK does with "1".
func ConstantRequestID(rid string) func(int) string {
	return func(int) string { return rid }
}

// UUIDRequestID makes a random UUID v4 per request, as the Node and Python
// SDKs do. It panics only if crypto/rand fails, which Go documents as
// impossible.
func UUIDRequestID(int) string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// settings is a Config with defaults applied and credentials resolved.
type settings struct {
	Config
	keepAlive  uint16
	subQoS     byte
	pubQoS     byte
	deviceKey  string // "" for X.509
	log        *slog.Logger
	registerJS []byte
}

func (c *Config) settings() (*settings, error) {
	s := &settings{Config: *c}
	if s.RegistrationID == "" {
		s.RegistrationID = certCN(c)
	}
	if s.DialFunc == nil && s.Target.Host == "" {
		return nil, configErrorf("Target is empty (and no DialFunc)")
	}
	if s.IDScope == "" {
		return nil, configErrorf("IDScope is empty")
	}
	if s.RegistrationID == "" {
		return nil, configErrorf("RegistrationID is empty (and no client certificate CN to take it from)")
	}
	if s.SymmetricKey != "" && s.GroupKey != "" {
		return nil, configErrorf("SymmetricKey and GroupKey are mutually exclusive")
	}
	switch {
	case s.GroupKey != "":
		k, err := dps.DeriveDeviceKey(s.GroupKey, s.RegistrationID)
		if err != nil {
			return nil, fmt.Errorf("%w: GroupKey: %w", ErrConfig, err)
		}
		s.deviceKey = k
	case s.SymmetricKey != "":
		// Checked by signing once; BuildSASToken reports a bad key.
		s.deviceKey = s.SymmetricKey
		if _, err := dps.SignString(s.SymmetricKey, ""); err != nil {
			return nil, fmt.Errorf("%w: SymmetricKey: %w", ErrConfig, err)
		}
	}
	if s.Payload != nil && !json.Valid(s.Payload) {
		return nil, configErrorf("Payload is not valid JSON")
	}
	if s.APIVersion == "" {
		s.APIVersion = dps.DefaultAPIVersion
	}
	if s.TokenTTL <= 0 {
		s.TokenTTL = DefaultTokenTTL
	}
	switch {
	case s.KeepAlive == 0:
		s.keepAlive = uint16(DefaultKeepAlive / time.Second)
		s.KeepAlive = DefaultKeepAlive
	case s.KeepAlive < 0:
		s.KeepAlive = 0
	default:
		secs := s.KeepAlive / time.Second
		if secs > math.MaxUint16 {
			return nil, configErrorf("KeepAlive %v exceeds 65535s", s.KeepAlive)
		}
		if secs == 0 {
			secs = 1
		}
		s.keepAlive = uint16(secs)
		s.KeepAlive = secs * time.Second
	}
	s.subQoS = s.SubscribeQoS.level(1)
	s.pubQoS = s.PublishQoS.level(1)
	if s.RequestID == nil {
		s.RequestID = CounterRequestID
	}
	if s.DefaultRetryAfter <= 0 {
		s.DefaultRetryAfter = DefaultRetryAfter
	}
	if s.MaxRetryAfter <= 0 {
		s.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if s.MaxPolls <= 0 {
		s.MaxPolls = DefaultMaxPolls
	}
	if s.MaxAttempts <= 0 {
		s.MaxAttempts = DefaultMaxAttempts
	}
	if s.ConnectAttempts <= 0 {
		s.ConnectAttempts = 1
	}
	if s.ResponseTimeout == 0 {
		s.ResponseTimeout = DefaultResponseTimeout
	}
	if s.Dial.HandshakeTimeout == 0 {
		s.Dial.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if s.MaxIgnored <= 0 {
		s.MaxIgnored = DefaultMaxIgnored
	}
	if s.MaxPacketSize <= 0 {
		s.MaxPacketSize = DefaultMaxPacketSize
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Sleep == nil {
		s.Sleep = sleepCtx
	}
	if s.Rand == nil {
		s.Rand = randv2.Float64
	}
	s.log = s.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	body, err := json.Marshal(dps.DeviceRegistration{RegistrationID: s.RegistrationID, Payload: s.Payload})
	if err != nil {
		return nil, fmt.Errorf("%w: register body: %w", ErrConfig, err)
	}
	s.registerJS = body
	if s.RegisterBody != nil {
		s.registerJS = s.RegisterBody
	}
	return s, nil
}

// Validate reports whether c is usable, without connecting.
func (c *Config) Validate() error {
	_, err := c.settings()
	return err
}

// certCN is the subject CN of the first client certificate, if any.
func certCN(c *Config) string {
	tc := c.Dial.TLSConfig
	if tc == nil || len(tc.Certificates) == 0 {
		return ""
	}
	cert := tc.Certificates[0]
	if cert.Leaf != nil {
		return cert.Leaf.Subject.CommonName
	}
	if len(cert.Certificate) == 0 {
		return ""
	}
	leaf, err := parseCert(cert.Certificate[0])
	if err != nil {
		return ""
	}
	return leaf.Subject.CommonName
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
