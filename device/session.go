package device

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/transport"
)

// closeWait bounds Close.
const closeWait = 5 * time.Second

// ErrTimeout is the cause of a wait that ran past Config.ResponseTimeout.
var ErrTimeout = errors.New("device: no answer within the response timeout")

// Session is one MQTT connection to the service, past a successful CONNACK.
// Its methods are the steps of the DPS flow; Send and Next let a caller (the
// conformance suite) send and read anything in between.
//
// A Session is used by one goroutine at a time, except Close, which may be
// called at any time. Received packets are read by a background goroutine
// that Close stops.
type Session struct {
	s    *settings
	conn net.Conn

	// Connack is the CONNACK that accepted the connection.
	Connack *packets.Connack
	// GrantedQoS is the SUBACK return code of the subscription, once
	// Subscribe succeeded.
	GrantedQoS packets.SubackCode

	writeMu sync.Mutex
	traceMu sync.Mutex
	// connMu guards connDone: once the connection is closed no deadline is
	// set on it any more (some net.Conn implementations block or misbehave
	// when a deadline is set after Close).
	connMu   sync.Mutex
	connDone bool

	in      chan incoming
	closing chan struct{}
	readEnd chan struct{} // closed when the reader goroutine returned
	readErr error         // set before in is closed

	closeOnce sync.Once
	closeErr  error

	nrid        int
	npid        uint16
	pendingAcks map[uint16]bool // QoS 1 requests answered before their PUBACK
	deadConn    bool            // the reader saw the end of the connection
	// pings counts PINGREQs sent whose PINGRESP has not been read yet: the
	// PINGRESPs a long wait's keep-alive pings earn are not "other
	// packets" for MaxIgnored.
	pings int

	// holdAcks (set by Provision only) makes the PUBACK of a matched
	// answer wait for the next write (the poll or DISCONNECT that follows
	// at once), so both leave in one write; wait flushes it before any
	// non-zero sleep, so it is never held across a retry-after.
	holdAcks bool
	held     []packets.Packet // acknowledgements not yet written, in order
}

type incoming struct {
	p packets.Packet
}

// Connect dials the target, sends CONNECT and waits for the CONNACK. A
// CONNACK with a non-zero return code is a *ConnectRefusedError; dial and
// TLS failures keep their *transport.DialError in the chain.
func Connect(ctx context.Context, c Config) (*Session, error) {
	st, err := c.settings()
	if err != nil {
		return nil, err
	}
	return connect(ctx, st)
}

func connect(ctx context.Context, st *settings) (*Session, error) {
	conn, err := dial(ctx, st)
	if err != nil {
		return nil, err
	}
	s := newSession(st, conn)
	if err := s.handshake(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func dial(ctx context.Context, st *settings) (net.Conn, error) {
	if st.DialFunc != nil {
		conn, err := st.DialFunc(ctx)
		if err != nil {
			return nil, fmt.Errorf("device: dial: %w", err)
		}
		return conn, nil
	}
	opts := st.Dial
	if st.Misbehave.AcceptAnyServerCert {
		opts.TLSConfig = opts.TLSConfig.Clone()
		if opts.TLSConfig == nil {
			opts.TLSConfig = &tls.Config{}
		}
		opts.TLSConfig.InsecureSkipVerify = true
	}
	conn, err := transport.Dial(ctx, st.Target, opts)
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	return conn, nil
}

func newSession(st *settings, conn net.Conn) *Session {
	s := &Session{
		s:           st,
		conn:        conn,
		in:          make(chan incoming, 16),
		closing:     make(chan struct{}),
		readEnd:     make(chan struct{}),
		pendingAcks: map[uint16]bool{},
	}
	go s.readLoop()
	return s
}

// readLoop reads packets until the connection ends or Close is called.
func (s *Session) readLoop() {
	defer close(s.readEnd)
	defer close(s.in)
	br := bufio.NewReader(s.conn)
	opt := packets.DecodeOptions{Lenient: true, MaxPacketSize: s.s.MaxPacketSize}
	for {
		p, err := packets.ReadPacket(br, opt)
		var v packets.Violations
		if err != nil && !(errors.As(err, &v) && p != nil) {
			select {
			case <-s.closing:
				s.readErr = net.ErrClosed
			default:
				switch {
				case errors.Is(err, packets.ErrMalformed), errors.Is(err, packets.ErrTooLarge):
					s.readErr = fmt.Errorf("%w: undecodable packet: %w", ErrProtocol, err)
				case errors.Is(err, io.EOF):
					s.readErr = &closedError{err: io.EOF}
				default:
					s.readErr = &closedError{err: err}
				}
				s.trace(Event{Dir: Closed, Err: s.readErr})
			}
			s.closeConn()
			return
		}
		s.trace(Event{Dir: Received, Packet: p, Violations: v})
		select {
		case s.in <- incoming{p: p}:
		case <-s.closing:
			// Next must fail after the queue, never return (nil, nil).
			s.readErr = net.ErrClosed
			return
		}
	}
}

// Next returns the next packet received, without acknowledging it. It fails
// when ctx ends or when the connection has ended: an error wrapping
// ErrConnectionClosed when the service closed it, ErrProtocol for an
// undecodable packet, net.ErrClosed after Close.
func (s *Session) Next(ctx context.Context) (packets.Packet, error) {
	select {
	case x, ok := <-s.in:
		if !ok {
			s.deadConn = true
			return nil, s.readErr
		}
		return x.p, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// Send writes p, which may break the protocol (it is encoded with
// AllowInvalid: typed packets with illegal fields and packets.Raw go out as
// given). The write is bounded by ctx.
func (s *Session) Send(ctx context.Context, p packets.Packet) error {
	return s.send(ctx, p)
}

// flushHeld writes the held acknowledgements, if any.
func (s *Session) flushHeld(ctx context.Context) error {
	if len(s.held) == 0 {
		return nil
	}
	return s.send(ctx, nil)
}

// send writes the held acknowledgements and then p (when not nil) in one
// write.
func (s *Session) send(ctx context.Context, p packets.Packet) error {
	held := s.held
	s.held = nil
	var b []byte
	for _, h := range held {
		var err error
		if b, err = packets.Encode(b, h, packets.EncodeOptions{AllowInvalid: true}); err != nil {
			return fmt.Errorf("device: encoding %s: %w", h.Type(), err)
		}
	}
	if p != nil {
		var err error
		if b, err = packets.Encode(b, p, packets.EncodeOptions{AllowInvalid: true}); err != nil {
			return fmt.Errorf("device: encoding %s: %w", p.Type(), err)
		}
	} else {
		p = held[len(held)-1]
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	// A write is bounded by ctx and by ResponseTimeout, so a peer that
	// stops reading cannot hold the client forever.
	var dl time.Time
	if s.s.ResponseTimeout > 0 {
		dl = time.Now().Add(s.s.ResponseTimeout)
	}
	if d, ok := ctx.Deadline(); ok && (dl.IsZero() || d.Before(dl)) {
		dl = d
	}
	if !s.setWriteDeadline(dl) {
		return &closedError{err: fmt.Errorf("writing %s: %w", p.Type(), net.ErrClosed)}
	}
	stop := context.AfterFunc(ctx, func() { s.setWriteDeadline(time.Unix(1, 0)) })
	for _, h := range held {
		if h != p {
			s.trace(Event{Dir: Sent, Packet: h})
		}
	}
	s.trace(Event{Dir: Sent, Packet: p})
	_, err := s.conn.Write(b)
	if !stop() && ctx.Err() != nil {
		err = errors.Join(context.Cause(ctx), err)
	}
	s.setWriteDeadline(time.Time{})
	if err != nil {
		return &closedError{err: fmt.Errorf("writing %s: %w", p.Type(), err)}
	}
	return nil
}

// Close closes the connection without DISCONNECT and stops the reader. It is
// safe to call more than once and concurrently with other methods.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		// Bounded even if the transport's Close or Read does not return
		// (then the reader goroutine is abandoned, and reported).
		closed := make(chan error, 1)
		go func() { closed <- s.closeConn() }()
		t := time.NewTimer(closeWait)
		defer t.Stop()
		select {
		case err := <-closed:
			if err != nil && !errors.Is(err, net.ErrClosed) {
				s.closeErr = err
			}
		case <-t.C:
			s.closeErr = fmt.Errorf("device: closing the connection took over %v", closeWait)
			return
		}
		select {
		case <-s.readEnd:
		case <-t.C:
			s.closeErr = fmt.Errorf("device: the connection's reader did not stop within %v of Close", closeWait)
		}
	})
	return s.closeErr
}

// closeConn closes the connection once.
func (s *Session) closeConn() error {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.connDone {
		return nil
	}
	s.connDone = true
	return s.conn.Close()
}

// setWriteDeadline sets the write deadline unless the connection is closed;
// it reports whether the connection is still open.
func (s *Session) setWriteDeadline(t time.Time) bool {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.connDone {
		return false
	}
	s.conn.SetWriteDeadline(t)
	return true
}

// Disconnect sends DISCONNECT (the clean end of an MQTT session) and closes
// the connection.
func (s *Session) Disconnect(ctx context.Context) error {
	err := s.Send(ctx, &packets.Disconnect{})
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// handshake sends CONNECT and checks the CONNACK.
func (s *Session) handshake(ctx context.Context) error {
	st := s.s
	username := dps.Username{IDScope: st.IDScope, RegistrationID: st.RegistrationID, APIVersion: st.APIVersion, ClientVersion: st.ClientVersion}.String()
	clientID := st.RegistrationID
	var password []byte
	if st.deviceKey != "" {
		tok, err := dps.BuildSASToken(dps.SASOptions{
			IDScope: st.IDScope, RegistrationID: st.RegistrationID, Key: st.deviceKey,
			Expiry: st.Now().Add(st.TokenTTL), Encoding: st.SREncoding, KeyName: st.KeyName, OmitKeyName: st.OmitKeyName,
		})
		if err != nil {
			return fmt.Errorf("%w: SAS token: %w", ErrConfig, err)
		}
		password = []byte(tok)
	}
	m := st.Misbehave
	if m.ClientID != nil {
		clientID = *m.ClientID
	}
	if m.Username != nil {
		username = *m.Username
	}
	if m.Password != nil {
		password = []byte(*m.Password)
	}
	protoName, protoLevel := packets.ProtocolName311, packets.ProtocolLevel311
	if m.ProtocolName != nil {
		protoName = *m.ProtocolName
	}
	if m.ProtocolLevel != 0 {
		protoLevel = m.ProtocolLevel
	}
	connect := &packets.Connect{
		ProtocolName:  []byte(protoName),
		ProtocolLevel: protoLevel,
		CleanSession:  !st.PersistentSession,
		KeepAlive:     st.keepAlive,
		ClientID:      []byte(clientID),
		Username:      []byte(username),
		Password:      password,
	}
	if err := s.Send(ctx, connect); err != nil {
		return err
	}
	st.log.Debug("device: CONNECT sent", "clientId", clientID, "username", username, "sas", password != nil)
	err := s.await(ctx, "CONNACK", func(p packets.Packet) (bool, error) {
		ack, ok := p.(*packets.Connack)
		if !ok {
			return false, &UnexpectedPacketError{Waiting: "CONNACK", Got: p.Type()}
		}
		s.Connack = ack
		if ack.ReturnCode != packets.ConnackAccepted {
			return false, &ConnectRefusedError{ReturnCode: ack.ReturnCode, SessionPresent: ack.SessionPresent}
		}
		return true, nil
	})
	if err == nil {
		st.log.Debug("device: connected", "sessionPresent", s.Connack.SessionPresent)
	}
	return err
}

// Subscribe subscribes to $dps/registrations/res/# at Config.SubscribeQoS and
// waits for the SUBACK; a failure return code is a *SubscribeRefusedError.
func (s *Session) Subscribe(ctx context.Context) error {
	pid := s.packetID()
	sub := &packets.Subscribe{PacketID: pid, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: s.s.subQoS}}}
	if err := s.Send(ctx, sub); err != nil {
		return err
	}
	return s.await(ctx, "SUBACK", func(p packets.Packet) (bool, error) {
		ack, ok := p.(*packets.Suback)
		if !ok || ack.PacketID != pid {
			return false, nil
		}
		if len(ack.ReturnCodes) != 1 {
			return false, fmt.Errorf("%w: SUBACK for one filter carries %d return codes", ErrProtocol, len(ack.ReturnCodes))
		}
		code := ack.ReturnCodes[0]
		if code > packets.SubackMaxQoS2 {
			return false, &SubscribeRefusedError{Filter: dps.SubscribeFilter, Code: code}
		}
		s.GrantedQoS = code
		return true, nil
	})
}

// Response is one answer of the service on the response topic.
type Response struct {
	// Status is the status segment of the topic (200, 202, 401, 429, …).
	Status int
	// RID is the $rid echoed by the service.
	RID string
	// RetryAfter is the retry-after parameter, when HasRetryAfter.
	RetryAfter    time.Duration
	HasRetryAfter bool
	// Operation is the body of a 2xx answer.
	Operation *dps.RegistrationOperationStatus
	// Error is the body of an error answer, when it parses as one.
	Error *dps.ErrorBody
	// Topic and Raw are the topic and body as received.
	Topic string
	Raw   []byte
	// QoS is the delivery QoS of the answer.
	QoS byte
	// PubackFirst reports, for a QoS 1 request, that its PUBACK arrived
	// before this answer (Part A §6; the .NET v1 SDK needs that order).
	PubackFirst bool
}

// Register publishes the register request with a fresh $rid and waits for
// its answer. Error statuses are returned as a Response, not as an error;
// Provision turns them into *StatusError.
func (s *Session) Register(ctx context.Context) (*Response, error) {
	rid := s.requestID()
	resp, err := s.Request(ctx, s.topic(dps.RegisterTopic(rid)), rid, s.s.registerJS)
	if err == nil && resp.Status == 401 && s.s.Misbehave.RetryAfter401 {
		return s.registerAgain(ctx)
	}
	return resp, err
}

// registerAgain is Misbehave.RetryAfter401: a second connection with the
// same credentials subscribes and registers once more.
func (s *Session) registerAgain(ctx context.Context) (*Response, error) {
	st := *s.s
	st.Misbehave.RetryAfter401 = false
	again, err := connect(ctx, &st)
	if err != nil {
		return nil, err
	}
	defer again.Disconnect(ctx)
	if !st.Misbehave.SkipSubscribe {
		if err := again.Subscribe(ctx); err != nil {
			return nil, err
		}
	}
	return again.Register(ctx)
}

// Poll publishes an operation status request for opID (body
// Config.PollBody, empty by default as the EC, J and CS SDKs send) and waits
// for its answer. Misbehave.PollOperationID, when set, replaces opID.
func (s *Session) Poll(ctx context.Context, opID string) (*Response, error) {
	if id := s.s.Misbehave.PollOperationID; id != "" {
		opID = id
	}
	rid := s.requestID()
	return s.Request(ctx, s.topic(dps.PollTopic(rid, opID)), rid, s.s.PollBody)
}

// topic applies Misbehave.RIDWithoutDollar to a request topic.
func (s *Session) topic(t string) string {
	if s.s.Misbehave.RIDWithoutDollar {
		return strings.Replace(t, "?$rid=", "?rid=", 1)
	}
	return t
}

// Request publishes body on topic at Config.PublishQoS and waits for the
// answer whose $rid equals rid, acknowledging QoS 1 deliveries and skipping
// (up to MaxIgnored) answers to other requests. For a QoS 1 publish the
// PUBACK may come before or after the answer.
func (s *Session) Request(ctx context.Context, topic, rid string, body []byte) (*Response, error) {
	pub := &packets.Publish{QoS: s.s.pubQoS, Topic: []byte(topic), Payload: body}
	if pub.QoS > 0 {
		pub.PacketID = s.packetID()
	}
	if err := s.Send(ctx, pub); err != nil {
		return nil, err
	}
	return s.awaitResponse(ctx, rid, pub.PacketID)
}

// Await waits for the answer to a request sent with Send, matched by rid.
func (s *Session) Await(ctx context.Context, rid string) (*Response, error) {
	return s.awaitResponse(ctx, rid, 0)
}

func (s *Session) awaitResponse(ctx context.Context, rid string, pid uint16) (*Response, error) {
	var resp *Response
	acked := false
	err := s.await(ctx, fmt.Sprintf("the answer to $rid=%s", rid), func(p packets.Packet) (bool, error) {
		switch p := p.(type) {
		case *packets.Puback:
			if pid != 0 && p.PacketID == pid {
				acked = true
			}
			return false, nil
		case *packets.Publish:
			r, ok := matchResponse(p, rid)
			if !ok {
				return false, nil
			}
			r.PubackFirst = acked
			resp = r
			if pid != 0 && !acked {
				s.pendingAcks[pid] = true
			}
			return true, parseBody(r)
		}
		return false, nil
	})
	if err != nil {
		return resp, err
	}
	return resp, nil
}

// matchResponse reports whether p is a DPS answer to rid.
func matchResponse(p *packets.Publish, rid string) (*Response, bool) {
	t, err := dps.ParseResponseTopic(string(p.Topic))
	if err != nil || t.RID != rid {
		return nil, false
	}
	return &Response{
		Status: t.Status, RID: t.RID, RetryAfter: t.RetryAfter, HasRetryAfter: t.HasRetryAfter,
		Topic: string(p.Topic), Raw: append([]byte(nil), p.Payload...), QoS: p.QoS,
	}, true
}

func parseBody(r *Response) error {
	if r.Status < 300 {
		var op dps.RegistrationOperationStatus
		if err := json.Unmarshal(r.Raw, &op); err != nil {
			return &MalformedResponseError{Topic: r.Topic, Msg: "body is not a RegistrationOperationStatus", Err: err}
		}
		r.Operation = &op
		return nil
	}
	var eb dps.ErrorBody
	if json.Unmarshal(r.Raw, &eb) == nil && (eb.ErrorCode != 0 || eb.Message != "") {
		r.Error = &eb
	}
	return nil
}

// await reads packets until match reports done or fails, handling what every
// wait handles: PUBACK for QoS 1 deliveries, PUBREC/PUBCOMP for QoS 2, and
// late PUBACKs of answered requests. It is bounded by ctx,
// Config.ResponseTimeout and Config.MaxIgnored.
func (s *Session) await(ctx context.Context, what string, match func(packets.Packet) (bool, error)) error {
	if s.s.ResponseTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, s.s.ResponseTimeout, ErrTimeout)
		defer cancel()
	}
	// The publishes skipped (answers to another $rid, say) are named when
	// the wait fails: a service that answers with the wrong $rid is
	// otherwise only "no answer".
	skipped, firstSkipped := 0, ""
	for ignored := 0; ; {
		p, err := s.Next(ctx)
		if err != nil {
			if skipped > 0 {
				return fmt.Errorf("device: waiting for %s (skipped %d other publish(es), the first on %q): %w", what, skipped, firstSkipped, err)
			}
			return fmt.Errorf("device: waiting for %s: %w", what, err)
		}
		done, merr := match(p)
		if pub, ok := p.(*packets.Publish); ok && !done && merr == nil {
			if skipped++; skipped == 1 {
				firstSkipped = string(pub.Topic)
			}
		}
		var herr error
		if pub, ok := p.(*packets.Publish); ok && done && merr == nil && s.holdAcks && pub.QoS == 1 && !s.s.Misbehave.NoPuback {
			s.held = append(s.held, &packets.Puback{PacketID: pub.PacketID})
		} else {
			herr = s.housekeeping(ctx, p)
		}
		if merr != nil || done {
			// The answer (or the refusal) is the outcome even when its
			// PUBACK can no longer be written: the service may close
			// right after a 401 (Part A §3).
			return merr
		}
		if herr != nil {
			return herr
		}
		if _, ok := p.(*packets.Pingresp); ok && s.pings > 0 {
			s.pings--
			continue
		}
		ignored++
		if ignored > s.s.MaxIgnored {
			return limitErrorf("waiting for %s: more than %d other packets", what, s.s.MaxIgnored)
		}
	}
}

// housekeeping acknowledges deliveries; it never consumes p.
func (s *Session) housekeeping(ctx context.Context, p packets.Packet) error {
	switch p := p.(type) {
	case *packets.Publish:
		switch {
		case p.QoS == 1 && !s.s.Misbehave.NoPuback:
			return s.Send(ctx, &packets.Puback{PacketID: p.PacketID})
		case p.QoS == 2:
			return s.Send(ctx, &packets.Pubrec{PacketID: p.PacketID})
		}
	case *packets.Pubrel:
		return s.Send(ctx, &packets.Pubcomp{PacketID: p.PacketID})
	case *packets.Puback:
		delete(s.pendingAcks, p.PacketID)
	}
	return nil
}

// Ping sends PINGREQ. The PINGRESP is skipped by the next wait, and not
// counted against MaxIgnored.
func (s *Session) Ping(ctx context.Context) error {
	if err := s.Send(ctx, &packets.Pingreq{}); err != nil {
		return err
	}
	s.pings++
	return nil
}

// wait sleeps d with Config.Sleep, sending PINGREQ every KeepAlive when d is
// longer, and records the wait in the trace.
func (s *Session) wait(ctx context.Context, d time.Duration) error {
	if p := s.s.Misbehave.PollInterval; p > 0 {
		d = p
	}
	if d > 0 {
		if err := s.flushHeld(ctx); err != nil {
			return err
		}
	}
	s.trace(Event{Dir: Waited, Wait: d})
	for {
		chunk := d
		if ka := s.s.KeepAlive; ka > 0 && chunk > ka {
			chunk = ka
		}
		if err := s.s.Sleep(ctx, chunk); err != nil {
			return fmt.Errorf("device: waiting %v: %w", d, err)
		}
		d -= chunk
		if d <= 0 {
			return nil
		}
		if err := s.Ping(ctx); err != nil {
			return err
		}
	}
}

func (s *Session) requestID() string {
	s.nrid++
	return s.s.RequestID(s.nrid)
}

// packetID returns the next non-zero packet identifier.
func (s *Session) packetID() uint16 {
	s.npid++
	if s.npid == 0 {
		s.npid = 1
	}
	return s.npid
}

func (s *Session) trace(e Event) {
	if s.s.Trace == nil {
		return
	}
	s.traceMu.Lock()
	defer s.traceMu.Unlock()
	e.Time = s.s.Now()
	if e.Packet != nil {
		e.Packet = e.Packet.Clone()
	}
	s.s.Trace(e)
}

func parseCert(der []byte) (*x509.Certificate, error) { return x509.ParseCertificate(der) }

// redactPassword shows a password without its secret: the sig of a SAS
// token is replaced, any other password is reduced to its length.
func redactPassword(pw []byte) string {
	if pw == nil {
		return "(none)"
	}
	s := string(pw)
	if !strings.HasPrefix(s, dps.SASPrefix) {
		return fmt.Sprintf("[redacted %d bytes]", len(pw))
	}
	rest := s[len(dps.SASPrefix):]
	fields := strings.Split(rest, "&")
	for i, f := range fields {
		if k, _, ok := strings.Cut(f, "="); ok && strings.EqualFold(k, "sig") {
			fields[i] = k + "=[redacted]"
		}
	}
	return dps.SASPrefix + strings.Join(fields, "&")
}
