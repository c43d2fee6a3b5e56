package emulator

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator/registry"
)

// DefaultRetryAfter is the retry-after of 202 answers the command line uses
// by default: the value seen on the wire (DPS-PROTOCOL.md §8, trace I-393).
const DefaultRetryAfter = 3 * time.Second

// Error codes the emulator chooses where no public source gives one
// (DPS-PROTOCOL.md §4.7 lists the ones seen). The first three digits are the
// HTTP status, as in every DPS error code.
const (
	errorCodeBadRequest        = 400000
	errorCodeOperationNotFound = 404000
	errorCodeThrottled         = 429000
	errorCodeInternal          = 500000
	errorCodeUnavailable       = 503000
)

// Config configures a Server. The caller owns the TLS material and the
// registry: New reads no files and Close does not close the registry.
type Config struct {
	// MQTTAddr, WSAddr and AdminAddr are the listen addresses of MQTT over
	// TLS, MQTT over WebSocket over TLS, and the plain-HTTP admin API.
	// "" means not served; "127.0.0.1:0" picks a free port.
	MQTTAddr, WSAddr, AdminAddr string
	// InsecurePlainAddr serves MQTT without TLS, which DPS never does
	// ("DPS doesn't support non-secure connections over port 1883"); only
	// when set. Peer certificates are then absent, so only SAS devices
	// can register.
	InsecurePlainAddr string
	// TLSConfig is the caller-built base: certificates (and anything else
	// the caller wants). The version and suite policy of Profile and
	// Faults is applied on a clone; ClientAuth becomes
	// tls.RequestClientCert, since certificates are judged at register
	// (Part A §3). Required when MQTTAddr or WSAddr is set.
	TLSConfig *tls.Config
	// CAFile is the CA certificate file devices should trust; it is only
	// reported in the ready line.
	CAFile string
	// Registry holds enrollments and registrations; required.
	Registry *registry.Registry
	// Profile is the documented behaviour version; "" means dps-2019.
	Profile Profile
	// RetryAfter is the retry-after of 202 answers, rounded up to whole
	// seconds; assignments complete no sooner. Zero answers retry-after=0
	// (fast tests); the command line defaults to DefaultRetryAfter.
	RetryAfter time.Duration
	// Faults are the fault switches to enable (see Faults()).
	Faults []Fault
	// Limits bound the server; zero fields mean DefaultLimits values.
	Limits Limits
	// Logger receives structured logs; nil discards them. Secrets (the
	// MQTT password, SAS signatures, keys) are never logged.
	Logger *slog.Logger
	// Now is the clock of operations and throttling; nil means time.Now.
	// Network deadlines always use the real clock.
	Now func() time.Time
	// WrapConn, if set, wraps each accepted MQTT byte stream after TLS or
	// WebSocket unwrapping (plaintext MQTT), e.g. for a tracer recording.
	WrapConn func(net.Conn) net.Conn
	// Scenario, if set, scripts answers for device testing (see Scenario).
	Scenario *Scenario
	// WrapRaw, if set, wraps each raw TCP connection of the TLS listeners
	// (the bytes on the wire, TLS records included).
	WrapRaw func(net.Conn) net.Conn

	// backend replaces Registry in tests of this package.
	backend backend
}

// BudgetInstance returns c for a second server over the same registry:
// MQTT over TLS only (no WebSocket, admin or plaintext listener), with a
// registration budget of perMinute of its own. The suites serve one for
// DPS-REG-010, whose spec spends that budget without throttling the specs
// that register on the first server.
func (c Config) BudgetInstance(perMinute int) Config {
	c.WSAddr, c.AdminAddr, c.InsecurePlainAddr = "", "", ""
	c.Limits.RegistrationsPerMinute = perMinute
	return c
}

// backend is what the session needs of the registry.
type backend interface {
	IDScope() string
	Attest(ctx context.Context, c registry.Credentials, o registry.AttestOptions) (*registry.Attestation, error)
	Assign(ctx context.Context, a *registry.Attestation, payload json.RawMessage) (dps.DeviceRegistrationResult, error)
	// AssignMayWait reports whether Assign of a may wait on I/O (a
	// durable commit, a webhook); when not, it may run inline.
	AssignMayWait(a *registry.Attestation) bool
}

// adminHandler is the admin API of the backend, or 404 for every path when
// the backend has none.
func (s *Server) adminHandler() http.Handler {
	if h, ok := s.backend.(interface{ AdminHandler() http.Handler }); ok {
		return h.AdminHandler()
	}
	return http.NotFoundHandler()
}

// adminReadTimeout bounds the reading of an admin API request, body
// included (at most 1 MiB, on loopback); twice as long bounds the request
// and its answer. A variable for the tests.
var adminReadTimeout = 30 * time.Second

// Ready describes a started server; it marshals to the command's ready line
// (ARCHITECTURE.md §3):
//
//	{"event":"ready","mqtt":"127.0.0.1:P","wss":"127.0.0.1:P","admin":"http://127.0.0.1:P","idScope":"…","caFile":"…"}
type Ready struct {
	Event   string `json:"event"`
	MQTT    string `json:"mqtt,omitempty"`
	WSS     string `json:"wss,omitempty"`
	Admin   string `json:"admin,omitempty"`
	Plain   string `json:"plain,omitempty"`
	IDScope string `json:"idScope"`
	CAFile  string `json:"caFile,omitempty"`
}

// Server is the reference DPS emulator: MQTT over TLS, MQTT over WSS, an
// optional plaintext MQTT listener and the admin API.
type Server struct {
	cfg        Config
	backend    backend
	profile    Profile
	faults     faultSet
	limits     Limits
	log        *slog.Logger
	logOff     bool // no Config.Logger: every record is discarded
	now        func() time.Time
	rand       io.Reader
	retryAfter time.Duration
	idScope    string
	tlsConf    *tls.Config

	ops       *operations
	readBufs  sync.Pool // *bufio.Reader of readBufSize, lent to sessions while they read
	polls     *limiter
	regBudget *limiter
	scenario  scenarioState
	connSeq   atomic.Uint64
	kept      keptSubs

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	started   bool
	closing   bool
	listeners []net.Listener
	servers   []*http.Server
	conns     map[net.Conn]struct{}
	ready     Ready
	stopCtx   func() bool
	closeOnce sync.Once
}

// New checks cfg and returns a server that is not listening yet.
func New(cfg Config) (*Server, error) {
	b := cfg.backend
	if b == nil {
		if cfg.Registry == nil {
			return nil, errors.New("emulator: Config.Registry is required")
		}
		b = cfg.Registry
	}
	profile, err := ParseProfile(string(cfg.Profile))
	if err != nil {
		return nil, err
	}
	faults, err := newFaultSet(cfg.Faults)
	if err != nil {
		return nil, err
	}
	if cfg.RetryAfter < 0 {
		return nil, fmt.Errorf("emulator: Config.RetryAfter %v is negative", cfg.RetryAfter)
	}
	if (cfg.MQTTAddr != "" || cfg.WSAddr != "") && cfg.TLSConfig == nil {
		return nil, errors.New("emulator: Config.TLSConfig is required to serve MQTTAddr or WSAddr")
	}
	if cfg.MQTTAddr == "" && cfg.WSAddr == "" && cfg.InsecurePlainAddr == "" {
		return nil, errors.New("emulator: no MQTT listener configured (MQTTAddr, WSAddr or InsecurePlainAddr)")
	}
	s := &Server{
		cfg:        cfg,
		backend:    b,
		profile:    profile,
		faults:     faults,
		limits:     cfg.Limits.withDefaults(),
		log:        cfg.Logger,
		now:        cfg.Now,
		rand:       rand.Reader,
		retryAfter: cfg.RetryAfter,
		idScope:    b.IDScope(),
		conns:      map[net.Conn]struct{}{},
	}
	if s.log == nil {
		s.log, s.logOff = slog.New(slog.DiscardHandler), true
	}
	if s.now == nil {
		s.now = time.Now
	}
	if cfg.TLSConfig != nil {
		s.tlsConf = serverTLSConfig(cfg.TLSConfig, faults)
	}
	s.ops = newOperations(s.limits.MaxOperations, s.limits.OperationTTL)
	s.polls = newLimiter(s.limits.PollsPerWindow, s.limits.PollWindow)
	s.regBudget = newLimiter(s.limits.RegistrationsPerMinute, time.Minute)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Start binds the listeners and serves in the background until Close, or
// until ctx is cancelled (which closes the server as Close does). If a
// listener cannot be bound, the ones already bound are closed and the error
// names the address.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closing {
		return errors.New("emulator: Start called twice or after Close")
	}
	s.started = true
	ready := Ready{Event: "ready", IDScope: s.idScope, CAFile: s.cfg.CAFile}
	fail := func(err error) error {
		for _, l := range s.listeners {
			l.Close()
		}
		s.listeners = nil
		s.closing = true
		s.cancel()
		return err
	}
	listen := func(what, addr string) (net.Listener, error) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("emulator: %s listener on %q: %w", what, addr, err)
		}
		s.listeners = append(s.listeners, l)
		return l, nil
	}
	var starts []func()
	if a := s.cfg.MQTTAddr; a != "" {
		l, err := listen("MQTT", a)
		if err != nil {
			return fail(err)
		}
		ready.MQTT = l.Addr().String()
		starts = append(starts, func() { s.acceptLoop(l, "mqtts") })
	}
	if a := s.cfg.InsecurePlainAddr; a != "" {
		l, err := listen("plaintext MQTT", a)
		if err != nil {
			return fail(err)
		}
		ready.Plain = l.Addr().String()
		starts = append(starts, func() { s.acceptLoop(l, "mqtt") })
	}
	if a := s.cfg.WSAddr; a != "" {
		l, err := listen("WebSocket", a)
		if err != nil {
			return fail(err)
		}
		ready.WSS = l.Addr().String()
		srv := s.wsServer()
		s.servers = append(s.servers, srv)
		starts = append(starts, func() { s.serveHTTP(srv, s.wsListener(l), "wss") })
	}
	if a := s.cfg.AdminAddr; a != "" {
		l, err := listen("admin", a)
		if err != nil {
			return fail(err)
		}
		ready.Admin = "http://" + l.Addr().String()
		if ap, err := netip.ParseAddrPort(l.Addr().String()); err == nil && !ap.Addr().IsLoopback() {
			s.log.Warn("the admin API (plain HTTP, no authentication) listens beyond loopback", "addr", l.Addr().String())
		}
		srv := &http.Server{
			Handler:           s.counted(s.adminHandler()),
			ReadHeaderTimeout: 10 * time.Second,
			// A client that sends its headers and then the body slowly,
			// or never, or does not read the answer, is cut off: it held
			// a handler for as long as it liked.
			ReadTimeout:  adminReadTimeout,
			WriteTimeout: 2 * adminReadTimeout,
			// A kept-alive client idle this long is closed.
			IdleTimeout: time.Minute,
			ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		s.servers = append(s.servers, srv)
		starts = append(starts, func() { s.serveHTTP(srv, l, "admin") })
	}
	for _, start := range starts {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			start()
		}()
	}
	s.ready = ready
	s.stopCtx = context.AfterFunc(ctx, func() { s.Close() })
	s.log.Info("emulator listening", "mqtt", ready.MQTT, "wss", ready.WSS, "admin", ready.Admin, "plain", ready.Plain,
		"idScope", ready.IDScope, "profile", string(s.profile), "faults", fmt.Sprint(s.cfg.Faults))
	return nil
}

// Ready returns the addresses the server listens on (valid after Start).
func (s *Server) Ready() Ready {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// IDScope returns the id scope devices must use.
func (s *Server) IDScope() string { return s.idScope }

// Close stops the listeners, closes every connection, and waits for every
// goroutine of the server (sessions and running assignments) to end. It is
// safe to call more than once; the registry stays open.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		if s.stopCtx != nil {
			s.stopCtx()
		}
		s.cancel()
		for _, l := range s.listeners {
			l.Close()
		}
		for _, srv := range s.servers {
			srv.Close()
		}
		// Close connections concurrently: a WebSocket close waits for the
		// peer's close frame (bounded by transport's CloseTimeout).
		var closers sync.WaitGroup
		for c := range s.conns {
			closers.Go(func() { c.Close() })
		}
		s.mu.Unlock()
		closers.Wait()
		s.wg.Wait()
	})
	return nil
}

// track registers a live connection and counts it in the wait group; it
// reports false (and the caller must close c) when the server is closing or
// at MaxConnections. Adding to the wait group under the lock that Close takes
// before waiting keeps Add from racing with Wait.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if m := s.limits.MaxConnections; m > 0 && len(s.conns) >= m {
		s.log.Warn("connection refused: at MaxConnections", "remote", c.RemoteAddr().String(), "max", m)
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// counted wraps h so that Close waits for requests in progress (net/http's
// Close does not) and new ones after Close get 503.
func (s *Server) counted(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			http.Error(w, "emulator shutting down", http.StatusServiceUnavailable)
			return
		}
		s.wg.Add(1)
		s.mu.Unlock()
		defer s.wg.Done()
		h.ServeHTTP(w, r)
	})
}

// untrack undoes track.
func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// acceptLoop accepts MQTT connections on l until it is closed.
func (s *Server) acceptLoop(l net.Listener, transport string) {
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary errors (EMFILE, …): back off like net/http.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept", "err", err, "retry", delay)
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		if !s.track(c) {
			c.Close()
			continue
		}
		go func() {
			defer s.untrack(c)
			s.serveConn(c, transport)
		}()
	}
}

// serveConn runs the TLS handshake (for mqtts) and the session.
func (s *Server) serveConn(raw net.Conn, transport string) {
	if transport == "mqtt" {
		s.serveSession(s.ctx, s.wrapConn(raw), transport, nil, time.Time{})
		return
	}
	if s.cfg.WrapRaw != nil {
		raw = s.cfg.WrapRaw(raw)
	}
	// A deadline, not HandshakeContext: a cancellable context costs a
	// goroutine and a timer per handshake. Close interrupts the handshake
	// by closing raw (tracked in s.conns).
	// One deadline for the handshake and the CONNECT after it
	// (Limits.ConnectTimeout): the session goes on with the same.
	var connectBy time.Time
	if s.limits.ConnectTimeout > 0 { // negative: no limit (Limits)
		connectBy = time.Now().Add(s.limits.ConnectTimeout)
		_ = raw.SetDeadline(connectBy)
	}
	if s.faults.has(FaultAcceptPlaintext) {
		pc, plain, err := peekPlainMQTT(raw)
		if err != nil {
			s.log.Debug("reading the first byte failed", "remote", raw.RemoteAddr().String(), "err", err)
			raw.Close()
			return
		}
		raw = pc
		if plain {
			s.log.Info("serving plaintext MQTT on the TLS listener (fault accept-plaintext)", "remote", raw.RemoteAddr().String())
			_ = raw.SetDeadline(time.Time{}) // the session sets its own
			s.serveSession(s.ctx, s.wrapConn(raw), "mqtt", nil, connectBy)
			return
		}
	}
	tc := tls.Server(raw, s.tlsConf)
	err := tc.Handshake()
	if err == nil {
		err = raw.SetDeadline(time.Time{}) // the session sets its own
	}
	if err != nil {
		s.log.Debug("TLS handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
		tc.Close()
		return
	}
	s.serveSession(s.ctx, s.wrapConn(tc), transport, tc.ConnectionState().PeerCertificates, connectBy)
}

// peekPlainMQTT reads the first byte of c (within c's deadline) and reports
// whether it starts an MQTT CONNECT (0x10) rather than a TLS ClientHello
// (0x16). The returned conn replays the byte; only the accept-plaintext
// fault uses it.
func peekPlainMQTT(c net.Conn) (net.Conn, bool, error) {
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return nil, false, fmt.Errorf("emulator: peek first byte: %w", err)
	}
	return &replayConn{Conn: c, first: b[0], pending: true}, b[0] == 0x10, nil
}

// replayConn is a connection whose first Read returns one byte read ahead.
type replayConn struct {
	net.Conn
	first   byte
	pending bool
}

// Read implements net.Conn.
func (c *replayConn) Read(p []byte) (int, error) {
	if c.pending && len(p) > 0 {
		p[0] = c.first
		c.pending = false
		return 1, nil
	}
	return c.Conn.Read(p)
}

func (s *Server) wrapConn(c net.Conn) net.Conn {
	if s.cfg.WrapConn != nil {
		return s.cfg.WrapConn(c)
	}
	return c
}

// serveHTTP runs an HTTP server on l until Close.
func (s *Server) serveHTTP(srv *http.Server, l net.Listener, what string) {
	// Close closes the listeners before the servers, so a clean shutdown
	// ends Serve with net.ErrClosed as often as with ErrServerClosed.
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		s.log.Error("HTTP server stopped", "listener", what, "err", err)
	}
}

// syncAssignWait bounds how long a registration answered with retry-after 0
// waits for its assignment before the 202 goes out.
const syncAssignWait = 100 * time.Millisecond

// startAssign runs the assignment of op in the background (Part A §6). With
// retry-after 0 the assignment may complete at once, so the caller (about to
// send the 202) waits for it a little, up to syncAssignWait: the device's
// first poll then normally finds it done instead of costing one more round
// trip. A slow backend (webhook, durable commit) still answers 202 in
// bounded time; an assignment that cannot wait on I/O runs inline instead.
func (s *Server) startAssign(op *operation, att *registry.Attestation, payload json.RawMessage) {
	if s.faults.has(FaultNeverAssign) {
		return // the operation stays assigning: every poll is answered 202
	}
	if s.retryAfter == 0 && !s.backend.AssignMayWait(att) {
		// CPU work only, and the 202 would wait for it anyway: no
		// goroutine, channel and timer per registration.
		res, err := s.backend.Assign(s.ctx, att, payload)
		s.ops.finish(op.id, res, err, s.now())
		return
	}
	done := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		res, err := s.backend.Assign(s.ctx, att, payload)
		s.ops.finish(op.id, res, err, s.now())
	}()
	if s.retryAfter > 0 {
		return
	}
	t := time.NewTimer(syncAssignWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-s.ctx.Done():
	}
}

// retryAfterParam is the retry-after of 202 answers, -1 (absent) under the
// omit-retry-after fault.
func (s *Server) retryAfterParam() int {
	if s.faults.has(FaultOmitRetryAfter) {
		return -1
	}
	return int((s.retryAfter + time.Second - 1) / time.Second)
}

// statusAnswer builds a 200 or 202 answer with a RegistrationOperationStatus.
func (s *Server) statusAnswer(status, retryAfter int, body dps.RegistrationOperationStatus) answer {
	b, err := json.Marshal(body)
	if err != nil {
		// The types marshal by construction; keep the session alive anyway.
		return s.errorAnswer(500, errorCodeInternal, "Internal server error.", -1)
	}
	return answer{status: status, retryAfter: retryAfter, body: b}
}

// errorAnswer builds an error answer with the body of Part A §8.
func (s *Server) errorAnswer(status, code int, msg string, retryAfter int) answer {
	// omit-retry-after bends the retry-afters Part A requires: 202 (§5,
	// §6, retryAfterParam) and 429 (§8). Other answers that carry one, the
	// 503 of a full operation table, keep it: the fault names no rule
	// about them.
	if status == 429 && s.faults.has(FaultOmitRetryAfter) {
		retryAfter = -1
	}
	a := answer{status: status, retryAfter: retryAfter}
	if s.faults.has(FaultNoErrorBody) {
		return a
	}
	a.body, _ = json.Marshal(dps.ErrorBody{
		ErrorCode:    code,
		TrackingID:   newUUID(s.rand),
		Message:      msg,
		TimestampUTC: dps.FormatTimestamp(s.now()),
	})
	return a
}

// newUUID returns a random UUID v4 text for trackingId.
func newUUID(r io.Reader) string {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "00000000-0000-4000-8000-000000000000"
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// keptSubs are subscriptions kept across connections, by registration id:
// only the keep-subscription fault keeps any (DPS keeps no session state,
// Part A §2).
type keptSubs struct {
	mu sync.Mutex
	m  map[string]int
}

func (k *keptSubs) load(regID string) (int, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	q, ok := k.m[regKey(regID)]
	return q, ok
}

func (k *keptSubs) store(regID string, q int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]int{}
	}
	if len(k.m) < 100_000 { // bounded, like every table of the server
		k.m[regKey(regID)] = q
	}
}
