package conformance

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tlsprobe"
	"github.com/dps-conform/dps-conform/tracer"
	"github.com/dps-conform/dps-conform/transport"
)

// Device is an identity a spec connects as.
type Device struct {
	RegistrationID string
	// Key is the device's symmetric key (individual, or derived from the
	// group key); empty for X.509 devices.
	Key string
	// Cert is the TLS client certificate of an X.509 device.
	Cert *tls.Certificate
}

// Device returns a symmetric key identity for the spec. Against a local
// target every call derives a fresh registration id from the group key, so
// specs never share throttling or operation state. Against another target
// with a group key it rotates through a few stable ids
// (dps-conform-device-1 … -8), so that a run creates at most eight
// devices; with only an individual enrollment, every spec uses it.
//
// A shared id whose last registration may still be in progress is not
// handed out until it is done (waiting, if every id is busy): its register
// would be answered 409. Nor is one with fewer than pollsFree of DPS's
// per-device polls left, or throttled (429) until its retry-after: its
// polls would be answered 429.
func (t *T) Device() Device {
	ginkgo.GinkgoHelper()
	return t.deviceWithPolls(pollsFree)
}

// deviceWithPolls is Device, handing out a shared id only once polls of
// its pollsPerWindow polls are free.
func (t *T) deviceWithPolls(polls int) Device {
	ginkgo.GinkgoHelper()
	cr := t.r.cfg.Target.Credentials
	if cr.GroupKey != "" {
		return t.groupDevice(cr.GroupKey, t.sharedGroupID(polls))
	}
	if cr.SymmetricKey == "" {
		ginkgo.Skip("needs symmetric key credentials (--symmetric-key/--registration-id or --group-key)")
	}
	return t.individualWith(cr.SymmetricKey, polls)
}

// individualWith returns the individual enrollment's device with key (its
// primary or its secondary key); on a target that is not local it is
// waited for as Device's ids are, until polls of its polls are free.
func (t *T) individualWith(key string, polls int) Device {
	id := t.r.cfg.Target.Credentials.RegistrationID
	if !t.r.cfg.Target.Local {
		t.r.idleDevice([]string{id}, polls, t.deadline)
	}
	return Device{RegistrationID: id, Key: key}
}

// sharedGroupID returns the registration id of a group device for a
// target that is not local, one of the few shared ids that is ready (see
// Device); "" on a local target, which gets a fresh id per device.
func (t *T) sharedGroupID(polls int) string {
	if t.r.cfg.Target.Local {
		return ""
	}
	n := t.r.devices.Add(1)
	var ids []string
	for k := range int64(sharedDevices) {
		ids = append(ids, fmt.Sprintf("dps-conform-device-%d", (n+k)%sharedDevices+1))
	}
	return t.r.idleDevice(ids, polls, t.deadline)
}

// individualDevice returns the individual enrollment's device with its
// primary key, if the target has one; on a target that is not local it is
// waited for as Device's ids are.
func (t *T) individualDevice() (Device, bool) {
	cr := t.r.cfg.Target.Credentials
	if cr.RegistrationID == "" || cr.SymmetricKey == "" {
		return Device{}, false
	}
	return t.individualWith(cr.SymmetricKey, pollsFree), true
}

// SecondaryKeyDevice returns the individual enrollment's device with its
// secondary key (Credentials.SecondaryKey) as its key, or skips the spec;
// on a target that is not local it is waited for as Device's ids are.
func (t *T) SecondaryKeyDevice() Device {
	ginkgo.GinkgoHelper()
	cr := t.r.cfg.Target.Credentials
	if cr.SecondaryKey == "" {
		ginkgo.Skip("needs the secondary key of the individual enrollment (--secondary-key with --registration-id, or individual.secondaryKey in --config)")
	}
	return t.individualWith(cr.SecondaryKey, pollsFree)
}

// GroupSecondaryKeyDevice returns a device of the enrollment group whose
// key is derived from the group's secondary key
// (Credentials.GroupSecondaryKey), or skips the spec; its registration id
// is chosen as Device's.
func (t *T) GroupSecondaryKeyDevice() Device {
	ginkgo.GinkgoHelper()
	cr := t.r.cfg.Target.Credentials
	if cr.GroupSecondaryKey == "" {
		ginkgo.Skip("needs the secondary key of the enrollment group (--group-secondary-key, or group.secondaryKey in --config)")
	}
	return t.groupDevice(cr.GroupSecondaryKey, t.sharedGroupID(pollsFree))
}

// sharedDevices is how many group device ids a run against a target that
// is not local uses.
const sharedDevices = 8

// busyMargin is added to a registration's expected end: the target's
// clock and ours are read at different moments.
const busyMargin = 250 * time.Millisecond

// pollsFree is how many of DPS's pollsPerWindow polls per device a shared
// id has left when it is handed out, so that a spec may poll a few times
// unthrottled.
const pollsFree = 3

// idleDevice returns the first of ids that is ready: its registration is
// not (or no longer) in progress and it has polls polls left in the
// target's window. When none is, it returns the one ready first, after
// waiting for it as long as the spec has time (until deadline, less 5 s
// for the spec's own work).
func (r *registrar) idleDevice(ids []string, polls int, deadline time.Time) string {
	r.busyMu.Lock()
	now := time.Now()
	best, until := 0, time.Time{}
	for i, id := range ids {
		u := r.readyAt(id, polls, now)
		if !now.Before(u) {
			best, until = i, time.Time{}
			break
		}
		if until.IsZero() || u.Before(until) {
			best, until = i, u
		}
	}
	r.busyMu.Unlock()
	if wait := min(time.Until(until), time.Until(deadline)-5*time.Second); wait > 0 {
		select {
		case <-time.After(wait):
		case <-r.stop:
		}
	}
	return ids[best]
}

// readyAt says from when id may be handed out: once its registration is
// done and enough of its recent polls left the window for polls to be
// free. busyMu is held.
func (r *registrar) readyAt(id string, polls int, now time.Time) time.Time {
	u := r.busy[id]
	ps := r.polls[id]
	for len(ps) > 0 && !now.Before(ps[0].Add(pollWindow)) {
		ps = ps[1:]
	}
	if len(ps) < len(r.polls[id]) {
		r.polls[id] = ps
	}
	if n := len(ps) - (pollsPerWindow - polls); n > 0 {
		// The n-th oldest poll leaving the window leaves polls free.
		if free := ps[n-1].Add(pollWindow + busyMargin); free.After(u) {
			u = free
		}
	}
	return u
}

// markBusy records that registration id may have a registration in
// progress until the given time, or later if already recorded so (a
// target that is not local only).
func (r *registrar) markBusy(id string, until time.Time) { r.setBusy(id, until, false) }

// setBusy records until when registration id's registration is in
// progress: exactly (an answer about the operation said so; the zero time
// is done), or at least (a guess).
func (r *registrar) setBusy(id string, until time.Time, exact bool) {
	if r.cfg.Target.Local || id == "" {
		return
	}
	r.busyMu.Lock()
	defer r.busyMu.Unlock()
	if r.busy == nil {
		r.busy = map[string]time.Time{}
	}
	if exact || until.After(r.busy[id]) {
		r.busy[id] = until
	}
}

// polled records a poll of registration id sent now (a target that is not
// local only).
func (r *registrar) polled(id string) {
	if r.cfg.Target.Local || id == "" {
		return
	}
	r.busyMu.Lock()
	defer r.busyMu.Unlock()
	if r.polls == nil {
		r.polls = map[string][]time.Time{}
	}
	r.polls[id] = append(r.polls[id], time.Now())
}

// SlowDevice returns a device of Credentials.SlowGroupKey, whose
// assignment takes a while, or else of GroupKey, or else Device. On a
// target that is not local a group device's registration id is
// dps-conform-slow-device, which no other spec uses: the registration it
// leaves in progress must not make theirs 409.
func (t *T) SlowDevice() Device {
	ginkgo.GinkgoHelper()
	cr := t.r.cfg.Target.Credentials
	switch {
	case cr.SlowGroupKey != "":
		return t.groupDevice(cr.SlowGroupKey, "dps-conform-slow-device")
	case cr.GroupKey != "":
		return t.groupDevice(cr.GroupKey, "dps-conform-slow-device")
	}
	return t.Device()
}

// groupDevice returns a device of the symmetric key group with key
// groupKey: a fresh registration id on a local target, else remoteID (a
// real DPS instance keeps every registration, so a run reuses a few).
// remoteID is not waited for (see Device): the slow device's id is used
// only by DPS-REG-009 and DPS-POLL-001, which poll its registrations until
// final before they end.
func (t *T) groupDevice(groupKey, remoteID string) Device {
	ginkgo.GinkgoHelper()
	t.nDev++
	id := fmt.Sprintf("dpsc-%s-%03d-%d", t.r.runID, t.seq, t.nDev)
	if !t.r.cfg.Target.Local {
		id = remoteID
	}
	key, err := dps.DeriveDeviceKey(groupKey, id)
	if err != nil {
		ginkgo.Fail(fmt.Sprintf("deriving a device key from the group key: %v", err))
	}
	return Device{RegistrationID: id, Key: key}
}

// X509Device returns the configured X.509 identity or skips the spec. On
// a target that is not local it is shared, and waited for as Device's ids
// are.
func (t *T) X509Device() Device {
	cr := t.r.cfg.Target.Credentials
	if cr.X509 == nil {
		ginkgo.Skip("needs an X.509 enrollment (--cert/--key, or x509 in --config)")
	}
	if !t.r.cfg.Target.Local {
		t.r.idleDevice([]string{cr.X509RegistrationID}, pollsFree, t.deadline)
	}
	return Device{RegistrationID: cr.X509RegistrationID, Cert: cr.X509}
}

// DisabledDevice returns the configured disabled enrollment or skips; it
// is waited for as X509Device is.
func (t *T) DisabledDevice() Device {
	cr := t.r.cfg.Target.Credentials
	if cr.DisabledRegistrationID == "" {
		ginkgo.Skip("needs a disabled enrollment (--disabled-registration-id/--disabled-key, or disabled in --config)")
	}
	if !t.r.cfg.Target.Local {
		t.r.idleDevice([]string{cr.DisabledRegistrationID}, pollsFree, t.deadline)
	}
	return Device{RegistrationID: cr.DisabledRegistrationID, Key: cr.DisabledKey}
}

// Token builds a SAS token for d in the documented form, valid for an hour,
// with o adjusting it (o.IDScope, RegistrationID, Key, Expiry default to the
// device's).
func (t *T) Token(d Device, o dps.SASOptions) string {
	ginkgo.GinkgoHelper()
	if o.IDScope == "" {
		o.IDScope = t.r.cfg.Target.IDScope
	}
	if o.RegistrationID == "" {
		o.RegistrationID = d.RegistrationID
	}
	if o.Key == "" {
		o.Key = d.Key
	}
	if o.Expiry.IsZero() {
		o.Expiry = time.Now().Add(time.Hour)
	}
	tok, err := dps.BuildSASToken(o)
	if err != nil {
		ginkgo.Fail(fmt.Sprintf("building a SAS token: %v", err))
	}
	return tok
}

// ConnectPacket is the documented CONNECT of d (DPS-PROTOCOL.md Part B §1):
// ClientId = registration id, username with api-version 2019-03-31,
// CleanSession 1, keep-alive 60, a SAS token as password unless d is X.509.
func (t *T) ConnectPacket(d Device) *packets.Connect {
	ginkgo.GinkgoHelper()
	cp := &packets.Connect{
		ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, KeepAlive: 60,
		ClientID: []byte(d.RegistrationID),
		Username: []byte(dps.Username{IDScope: t.r.cfg.Target.IDScope, RegistrationID: d.RegistrationID, APIVersion: dps.DefaultAPIVersion}.String()),
	}
	if d.Cert == nil {
		cp.Password = []byte(t.Token(d, dps.SASOptions{}))
	}
	return cp
}

// DialOptions select how a spec reaches the target.
type DialOptions struct {
	// WebSocket dials the WSS endpoint (Path and Subprotocol override the
	// target's path and "mqtt").
	WebSocket         bool
	Path, Subprotocol string
	// MinTLS and MaxTLS bound the TLS versions offered; zero means TLS 1.2
	// to TLS 1.3.
	MinTLS, MaxTLS uint16
	// Cert is presented as the TLS client certificate.
	Cert *tls.Certificate
	// CipherSuites, when set, are the TLS 1.2 suites offered (else Go's
	// defaults).
	CipherSuites []uint16
	// Plain dials the MQTT endpoint's host and port without TLS (the
	// plaintext checks).
	Plain bool
	// Budget dials Target.BudgetMQTT, when the target has one, instead of
	// the MQTT endpoint (DPS-REG-010 spends its registration budget).
	Budget bool
}

// Dial connects to the target and records the connection in the spec's
// capture: the real TLS records (with the key log embedded, so the tracer
// decrypts them) or the WebSocket frames over TLS.
func (t *T) Dial(ctx context.Context, o DialOptions) (*Conn, error) {
	tg := t.r.cfg.Target
	target := tg.MQTT
	layer := tracer.TLS
	if o.WebSocket {
		if tg.WS.Scheme == "" {
			ginkgo.Skip("the target has no MQTT over WebSocket endpoint (--ws-target wss://… or --target wss://…, or wsTarget in --config)")
		}
		target, layer = tg.WS, tracer.WebSocketTLS
		if o.Path != "" {
			target.Path = o.Path
		}
	}
	if o.Plain {
		target = transport.Target{Scheme: transport.SchemeMQTT, Host: tg.MQTT.Host, Port: tg.MQTT.Port}
		layer = tracer.Plain
	}
	if o.Budget && tg.BudgetMQTT.Scheme != "" {
		target = tg.BudgetMQTT
	}
	minV, maxV := o.MinTLS, o.MaxTLS
	if minV == 0 {
		minV = tls.VersionTLS12
	}
	if maxV == 0 {
		maxV = tls.VersionTLS13
	}
	cfg := tg.tlsConfig(o.Cert, minV, maxV)
	cfg.KeyLogWriter = t.rec.KeyLogWriter()
	if minV < tls.VersionTLS12 {
		// TLS 1.0 and 1.1 need suites crypto/tls leaves out by default.
		cfg.CipherSuites = tlsprobe.Suites(minV)
	}
	if o.CipherSuites != nil {
		cfg.CipherSuites = o.CipherSuites
	}
	var raw net.Conn
	c, err := transport.Dial(ctx, target, transport.DialOptions{
		TLSConfig:   cfg,
		Subprotocol: o.Subprotocol,
		WrapRaw: func(nc net.Conn) net.Conn {
			raw = t.rec.Wrap(nc, tracer.ConnOptions{Side: tracer.Client, Layer: layer, Comment: t.req.ID})
			return raw
		},
	})
	if err != nil {
		return nil, err // transport.Dial closed raw
	}
	conn := &Conn{t: t, c: c, raw: raw, r: bufio.NewReader(c)}
	t.conns = append(t.conns, conn)
	// Reads and writes are bounded by deadlines; an interrupt (ctx
	// cancelled, not past its deadline) must end a blocked one too, or
	// Ctrl-C waits out --read-timeout and Ginkgo's grace period.
	context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	return conn, nil
}

// MustDial is Dial that fails the spec on error.
func (t *T) MustDial(ctx context.Context, o DialOptions) *Conn {
	ginkgo.GinkgoHelper()
	c, err := t.Dial(ctx, o)
	if err != nil {
		// err (a *transport.DialError) names the endpoint dialled: the
		// budget endpoint too.
		ginkgo.Fail(fmt.Sprintf("connecting to %s: %v", t.r.cfg.Target.Name, err))
	}
	return c
}

// Connect dials the target and sends cp (the documented CONNECT of d when
// cp is nil), and requires CONNACK 0.
func (t *T) Connect(ctx context.Context, d Device, cp *packets.Connect, o DialOptions) *Conn {
	ginkgo.GinkgoHelper()
	if o.Cert == nil {
		o.Cert = d.Cert
	}
	c := t.MustDial(ctx, o)
	c.MustConnect(ctx, d, cp)
	return c
}

// MustConnect sends cp (the documented CONNECT of d when cp is nil) on a
// dialled connection and requires CONNACK 0.
func (c *Conn) MustConnect(ctx context.Context, d Device, cp *packets.Connect) {
	ginkgo.GinkgoHelper()
	what := "the documented CONNECT of " + d.RegistrationID
	if cp == nil {
		cp = c.t.ConnectPacket(d)
	} else {
		// A spec's own CONNECT: an altered token, CleanSession 0, … that
		// the spec needs accepted at CONNECT to go on (Part A §3 judges
		// only the username's syntax and the ClientId there).
		what = "the spec's CONNECT of " + d.RegistrationID + " (see the spec for what it alters)"
	}
	c.dev = d.RegistrationID
	c.MustSend(ctx, cp)
	p := c.MustNext(ctx, "CONNACK")
	ack, ok := p.(*packets.Connack)
	if !ok || ack.ReturnCode != packets.ConnackAccepted {
		ginkgo.Fail(fmt.Sprintf("%s was refused at CONNECT: expected CONNACK 0x00; actual: %s", what, describe(p)))
	}
}

// Conn is one MQTT connection of a spec.
type Conn struct {
	t      *T
	c      net.Conn // the MQTT byte stream
	raw    net.Conn // the recorded TCP connection
	r      *bufio.Reader
	nextID uint16
	closed bool
	// dev is the registration id c connected as (MustConnect), whose
	// registrations in progress c tracks for Device.
	dev string
}

// PacketID returns a fresh packet identifier.
func (c *Conn) PacketID() uint16 {
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	return c.nextID
}

func deadline(ctx context.Context, d time.Duration) time.Time {
	dl := time.Now().Add(d)
	if x, ok := ctx.Deadline(); ok && x.Before(dl) {
		dl = x
	}
	return dl
}

// armDeadline sets a deadline d from now (or ctx's, if earlier) with set,
// then reports ctx's error. The check comes after the deadline is set: an
// interrupt that came before would otherwise be overwritten (the AfterFunc
// of Dial, which sets a past deadline, ran already).
func armDeadline(ctx context.Context, set func(time.Time) error, d time.Duration) error {
	_ = set(deadline(ctx, d))
	return ctx.Err()
}

// Send writes p.
func (c *Conn) Send(ctx context.Context, p packets.Packet) error {
	b, err := packets.Encode(nil, p, packets.EncodeOptions{})
	if err != nil {
		return fmt.Errorf("encoding %s: %w", p.Type(), err)
	}
	c.sending(p)
	return c.SendRaw(ctx, b)
}

// sending notes a register or poll about to be sent, for the tracking of
// the device's registrations in progress and its polls.
func (c *Conn) sending(p packets.Packet) {
	if pub, ok := p.(*packets.Publish); ok {
		if req, err := dps.ParseRequestTopic(string(pub.Topic)); err == nil {
			switch req.Kind {
			case dps.Register:
				// Until its answer says more: DPS's usual retry-after.
				c.t.r.markBusy(c.dev, time.Now().Add(3*time.Second+busyMargin))
			case dps.Poll:
				c.t.r.polled(c.dev)
			}
		}
	}
}

// SendFramed writes ps, encoded back to back into one byte stream, on a
// connection dialled with DialOptions.WebSocket, cut into WebSocket
// messages where the spec says: cut gets the stream and returns the pieces
// that make it up, in order, and each goes out as one binary message (one
// frame: transport.WSConn sends each Write so, and the pieces are far under
// its 4 KiB write buffer). So a spec splits a packet across frames, even
// inside its fixed header, or puts several packets in one frame (Part A
// §10). Registers and polls are tracked as Send tracks them.
func (c *Conn) SendFramed(ctx context.Context, cut func(stream []byte) [][]byte, ps ...packets.Packet) error {
	if _, ok := c.c.(*transport.WSConn); !ok {
		return fmt.Errorf("suite bug: SendFramed needs a WebSocket connection (DialOptions.WebSocket), not a %T", c.c)
	}
	var stream []byte
	for _, p := range ps {
		var err error
		if stream, err = packets.Encode(stream, p, packets.EncodeOptions{}); err != nil {
			return fmt.Errorf("encoding %s: %w", p.Type(), err)
		}
	}
	pieces := cut(bytes.Clone(stream))
	var joined []byte
	for _, b := range pieces {
		if len(b) == 0 {
			return errors.New("suite bug: SendFramed cut an empty piece (no WebSocket message carries it)")
		}
		joined = append(joined, b...)
	}
	if !bytes.Equal(joined, stream) {
		return fmt.Errorf("suite bug: SendFramed's pieces (%d bytes) do not make up the %d bytes of the stream", len(joined), len(stream))
	}
	for _, p := range ps {
		c.sending(p)
	}
	for i, b := range pieces {
		if err := c.SendRaw(ctx, b); err != nil {
			return fmt.Errorf("WebSocket message %d of %d: %w", i+1, len(pieces), err)
		}
	}
	return nil
}

// SendRaw writes b as is (illegal encodings included).
func (c *Conn) SendRaw(ctx context.Context, b []byte) error {
	if err := armDeadline(ctx, c.c.SetWriteDeadline, 10*time.Second); err != nil {
		return err
	}
	_, err := c.c.Write(b)
	return err
}

// MustSend is Send that fails the spec on error.
func (c *Conn) MustSend(ctx context.Context, p packets.Packet) {
	ginkgo.GinkgoHelper()
	if err := c.Send(ctx, p); err != nil {
		ginkgo.Fail(fmt.Sprintf("sending %s: %v", p.Type(), err))
	}
}

// Next reads the next packet, waiting at most Config.ReadTimeout (bounded
// by ctx). A closed connection is io.EOF.
func (c *Conn) Next(ctx context.Context) (packets.Packet, error) {
	return c.next(ctx, c.t.r.cfg.ReadTimeout)
}

func (c *Conn) next(ctx context.Context, wait time.Duration) (packets.Packet, error) {
	if c.closed {
		return nil, io.EOF
	}
	if err := armDeadline(ctx, c.c.SetReadDeadline, wait); err != nil {
		return nil, err
	}
	p, err := packets.ReadPacket(c.r, packets.DecodeOptions{Lenient: true})
	var v packets.Violations
	if errors.As(err, &v) && p != nil {
		return p, nil // judged from the capture, not here
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if cerr := ctx.Err(); cerr != nil {
				return nil, cerr // interrupted, not a silent peer
			}
			return nil, fmt.Errorf("nothing received within %v: %w", wait.Round(time.Millisecond), os.ErrDeadlineExceeded)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || (errors.As(err, &ne) && !ne.Timeout()) ||
			errors.Is(err, syscall.ECONNRESET) {
			c.closed = true
			c.drainRaw(ctx)
			return nil, io.EOF
		}
		return nil, err
	}
	return p, nil
}

// drainRaw reads the TCP connection to its end after the MQTT stream
// ended: a TLS close_notify ends the stream before the TCP FIN, and the
// capture must show who closed the connection.
func (c *Conn) drainRaw(ctx context.Context) {
	if c.raw == nil {
		return
	}
	if armDeadline(ctx, c.raw.SetReadDeadline, c.t.r.cfg.CloseWait) != nil {
		return
	}
	var buf [4096]byte
	for range 64 {
		if _, err := c.raw.Read(buf[:]); err != nil {
			return
		}
	}
}

// MustNext reads the next packet, failing the spec when none comes: what
// names the packet awaited.
func (c *Conn) MustNext(ctx context.Context, what string) packets.Packet {
	ginkgo.GinkgoHelper()
	p, err := c.Next(ctx)
	if err != nil {
		if errors.Is(err, io.EOF) {
			ginkgo.Fail(fmt.Sprintf("waiting for %s: the server closed the connection", what))
		}
		ginkgo.Fail(fmt.Sprintf("waiting for %s: %v", what, err))
	}
	return p
}

// WaitClose reads until the server closes the connection or
// Config.CloseWait passes, and reports whether it closed. Packets read on
// the way are discarded (the capture keeps them).
func (c *Conn) WaitClose(ctx context.Context) bool {
	end := time.Now().Add(c.t.r.cfg.CloseWait)
	for i := 0; i < 1000 && time.Now().Before(end); i++ {
		_, err := c.next(ctx, time.Until(end))
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

// NextConnack reads the server's answer to a CONNECT and reports whether
// it is CONNACK 0x00 (the session is usable). A refusal (a CONNACK with a
// non-zero return code) must be followed by the close ([MQTT-3.2.2-5];
// Part A §2, §3): NextConnack then waits for it as WaitClose does, so that
// the rule can judge a connection left open.
func (c *Conn) NextConnack(ctx context.Context) (accepted bool) {
	p, err := c.Next(ctx)
	if err != nil {
		return false
	}
	a, ok := p.(*packets.Connack)
	if ok && a.ReturnCode != packets.ConnackAccepted {
		c.WaitClose(ctx)
	}
	return ok && a.ReturnCode == packets.ConnackAccepted
}

// Subscribe subscribes to filter at qos and returns the SUBACK (nil when
// the server answered otherwise or closed).
func (c *Conn) Subscribe(ctx context.Context, filter string, qos byte) *packets.Suback {
	ginkgo.GinkgoHelper()
	id := c.PacketID()
	c.MustSend(ctx, &packets.Subscribe{PacketID: id, Subscriptions: []packets.Subscription{{Filter: []byte(filter), QoS: qos}}})
	p, err := c.Next(ctx)
	if err != nil {
		return nil
	}
	a, _ := p.(*packets.Suback)
	return a
}

// Answer is a decoded DPS answer read live.
type Answer struct {
	Topic  string
	Resp   dps.Response
	Body   []byte
	Status dps.RegistrationOperationStatus
}

// Request publishes a request on topic with body at qos and returns the
// answer PUBLISH, acknowledging it when it is QoS 1 (and skipping the
// PUBACK of the request). It fails the spec when no answer comes.
//
// Against a target that is not local, a register answered 409 is sent
// again after its retry-after (3 s without one), at most twice and while
// the spec has time: the specs share device ids there, and an earlier
// spec's registration may outlast the suite's estimate of it. (The
// register that must be answered 409, DPS-REG-009's, is sent once.)
func (c *Conn) Request(ctx context.Context, topic string, body []byte, qos byte) Answer {
	ginkgo.GinkgoHelper()
	a, err := c.TryRequest(ctx, topic, body, qos)
	if err != nil {
		ginkgo.Fail(fmt.Sprintf("request %q: %v", topic, err))
	}
	return a
}

// TryRequest is Request returning the error.
func (c *Conn) TryRequest(ctx context.Context, topic string, body []byte, qos byte) (Answer, error) {
	a, err := c.requestOnce(ctx, topic, body, qos)
	for retry := 0; err == nil && retry < 2 && a.Resp.Status == 409 && !c.t.r.cfg.Target.Local && isRegister(topic); retry++ {
		wait := 3 * time.Second
		if a.Resp.HasRetryAfter {
			wait = a.Resp.RetryAfter
		}
		if c.t.timeLeft() < wait+5*time.Second {
			break
		}
		ginkgo.AddReportEntry("register sent again", fmt.Sprintf("%q: the shared device %s had a registration in progress", a.Topic, c.dev))
		select {
		case <-ctx.Done():
			return a, ctx.Err()
		case <-time.After(wait):
		}
		a, err = c.requestOnce(ctx, topic, body, qos)
	}
	return a, err
}

// isRegister reports whether topic is a register request's.
func isRegister(topic string) bool {
	req, err := dps.ParseRequestTopic(topic)
	return err == nil && req.Kind == dps.Register
}

// requestOnce sends the request and reads its answer, whatever it is.
func (c *Conn) requestOnce(ctx context.Context, topic string, body []byte, qos byte) (Answer, error) {
	pub := &packets.Publish{QoS: qos, Topic: []byte(topic), Payload: body}
	if qos > 0 {
		pub.PacketID = c.PacketID()
	}
	if err := c.Send(ctx, pub); err != nil {
		return Answer{}, err
	}
	return c.ReadAnswer(ctx)
}

// ReadAnswer reads packets until an answer PUBLISH arrives (at most 16).
func (c *Conn) ReadAnswer(ctx context.Context) (Answer, error) {
	return c.ReadAnswerWithin(ctx, 16)
}

// ReadAnswerWithin is ReadAnswer reading at most limit packets: more than
// 16 when many requests are outstanding, whose PUBACKs may all come first.
func (c *Conn) ReadAnswerWithin(ctx context.Context, limit int) (Answer, error) {
	for range limit {
		p, err := c.Next(ctx)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return Answer{}, errors.New("the server closed the connection without answering")
			}
			return Answer{}, fmt.Errorf("no answer: %w", err)
		}
		pub, ok := p.(*packets.Publish)
		if !ok {
			continue
		}
		if pub.QoS == 1 {
			c.Send(ctx, &packets.Puback{PacketID: pub.PacketID})
		}
		a := Answer{Topic: string(pub.Topic), Body: append([]byte(nil), pub.Payload...)}
		a.Resp, _ = dps.ParseResponseTopic(a.Topic)
		json.Unmarshal(a.Body, &a.Status)
		c.track(a)
		return a, nil
	}
	return Answer{}, fmt.Errorf("no answer within %d packets", limit)
}

// track updates how long c's device may have a registration in progress
// from an answer: assigning, until its retry-after (DPS's usual 3 s
// without one); in progress already (409), for another 3 s; final, done.
// A throttled device (429) is not handed out before its retry-after.
func (c *Conn) track(a Answer) {
	switch {
	case a.Resp.Status == 202 && a.Status.Status == dps.StatusAssigning:
		wait := 3 * time.Second
		if a.Resp.HasRetryAfter {
			wait = a.Resp.RetryAfter
		}
		c.t.r.setBusy(c.dev, time.Now().Add(wait+busyMargin), true)
	case a.Resp.Status == 409:
		c.t.r.markBusy(c.dev, time.Now().Add(3*time.Second+busyMargin))
	case a.Resp.Status == 429 && a.Resp.HasRetryAfter:
		// Throttled: the device is not handed out before the service
		// would answer it again.
		c.t.r.markBusy(c.dev, time.Now().Add(a.Resp.RetryAfter+busyMargin))
	case a.Resp.Status == 200 && a.Status.Status.Final():
		c.t.r.setBusy(c.dev, time.Time{}, true)
	}
}

// Register subscribes c to the response filter at QoS 1, registers d
// ($rid 1) and returns the answer, whatever it is.
func (t *T) Register(ctx context.Context, c *Conn, d Device) Answer {
	ginkgo.GinkgoHelper()
	c.Subscribe(ctx, dps.SubscribeFilter, 1)
	return c.Request(ctx, dps.RegisterTopic("1"), RegisterBody(d.RegistrationID), 1)
}

// StartRegistration is Register for a spec that needs the registration
// under way: it returns the operation id of the answer, failing the spec
// when it carries none; a register throttled (429) skips the spec, which
// has nothing to judge then.
func (t *T) StartRegistration(ctx context.Context, c *Conn, d Device) string {
	ginkgo.GinkgoHelper()
	a := t.Register(ctx, c, d)
	if a.Resp.Status == 429 {
		ginkgo.Skip(fmt.Sprintf("the target throttled the register (%q): nothing to judge", a.Topic))
	}
	op := a.Status.OperationID
	t.Expect(op).NotTo(gomega.BeEmpty(), "the register answer %q carries an operation id", a.Topic)
	return op
}

// AwaitFinal polls op (honouring retry-after, at most 10 times, so for
// about 30 s) until it is no longer assigning, to leave a shared device as
// it was found; the answers are in the capture, and a failure to get one
// ends the wait without failing the spec.
func (c *Conn) AwaitFinal(ctx context.Context, rid, op string) {
	// Three seconds at least between polls (DPS's own retry-after): the
	// service allows 5 in 10 s, and the caller may have polled twice.
	wait := 3 * time.Second
	for range 10 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		a, err := c.TryRequest(ctx, dps.PollTopic(rid, op), nil, 1)
		if err != nil || a.Status.Status != dps.StatusAssigning && a.Resp.Status != 429 {
			return
		}
		wait = max(a.Resp.RetryAfter, 3*time.Second)
	}
}

// Provision subscribes and registers with rid, then polls (honouring
// retry-after, at most maxPolls times) until the answer is final; a
// throttled register (429) is sent again after its retry-after when that
// fits in the spec's time (else the 429 is the last answer). It returns
// every answer. Subscription and requests are at QoS 1, as most SDKs
// send them; ProvisionQoS chooses.
func (c *Conn) Provision(ctx context.Context, rid string, body []byte, maxPolls int) []Answer {
	ginkgo.GinkgoHelper()
	return c.ProvisionQoS(ctx, rid, body, maxPolls, 1)
}

// ProvisionQoS is Provision with the subscription and every request at qos.
func (c *Conn) ProvisionQoS(ctx context.Context, rid string, body []byte, maxPolls int, qos byte) []Answer {
	ginkgo.GinkgoHelper()
	if ack := c.Subscribe(ctx, dps.SubscribeFilter, qos); ack == nil {
		ginkgo.Fail("SUBSCRIBE to " + dps.SubscribeFilter + " was not acknowledged")
	}
	a := c.Request(ctx, dps.RegisterTopic(rid), body, qos)
	out := []Answer{a}
	op := ""
	for i := 0; i < maxPolls && (a.Resp.Status == 202 || a.Resp.Status == 429); i++ {
		if a.Status.OperationID != "" {
			op = a.Status.OperationID // a throttled poll's answer carries none
		}
		if op == "" && a.Resp.Status != 429 {
			break
		}
		wait := a.Resp.RetryAfter
		if !a.Resp.HasRetryAfter {
			// No retry-after: the Node SDK's default, shortened for local
			// targets (DPS-REG-002 judges the omission).
			wait = 2 * time.Second
			if c.t.r.cfg.Target.Local {
				wait = 50 * time.Millisecond
			}
		}
		if op == "" && c.t.timeLeft() < wait+5*time.Second {
			break // a throttled register the spec has no time to wait out
		}
		select {
		case <-ctx.Done():
			ginkgo.Fail("spec timed out while waiting retry-after")
		case <-time.After(wait):
		}
		if op == "" {
			// The register itself was throttled: send it again.
			a = c.Request(ctx, dps.RegisterTopic(rid), body, qos)
		} else {
			a = c.Request(ctx, dps.PollTopic(rid, op), nil, qos)
		}
		out = append(out, a)
	}
	return out
}

// RegisterBody is the register body of the docs: {"registrationId":"…"}.
func RegisterBody(regID string) []byte {
	b, _ := json.Marshal(map[string]string{"registrationId": regID})
	return b
}
