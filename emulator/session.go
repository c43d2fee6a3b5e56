package emulator

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator/registry"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/transport"
)

// session is one MQTT connection: the state machine of DPS-PROTOCOL.md
// Part A over a byte stream that is already decrypted (TLS, WebSocket) or
// plaintext. One goroutine runs it; it reads a packet, answers it, and reads
// the next, so writes need no lock.
type session struct {
	srv       *Server
	conn      net.Conn
	transport string
	peerCerts []*x509.Certificate
	log       *slog.Logger
	// connectBy bounds the arrival of CONNECT (zero: ConnectTimeout from
	// the session's start).
	connectBy time.Time

	br      *bufio.Reader   // buffer lent by srv.readBufs only while reading
	src     waitReader      // what br reads from
	lent    *bufio.Reader   // the pool's Reader whose buffer br uses; nil when none
	connR   *packets.Reader // lenient, for CONNECT
	r       *packets.Reader // strict, for everything after CONNECT
	w       *packets.Writer // writes into out
	out     outBuffer
	idle    time.Duration // read timeout between packets; 0 = none
	regID   string
	idScope string // from the username; "" when the username was not parsed
	apiVer  string // from the username; under accept-bad-username what it names, else ""
	pass    []byte // copy of the CONNECT password; never logged

	subQoS  int // granted QoS of dps.SubscribeFilter, -1 when not subscribed
	extra   map[string]byte
	nextPID uint16
	// kept: a CleanSession=0 connection whose subscription outlives it
	// (only the keep-subscription fault; DPS keeps no session state).
	kept bool
}

// serveSession runs the DPS state machine on conn until the device leaves,
// breaks a rule, or the server closes. It closes conn.
//
// connectBy is when CONNECT must have arrived (Limits.ConnectTimeout from
// the TCP accept, the TLS handshake included); zero means ConnectTimeout
// from now.
func (s *Server) serveSession(ctx context.Context, conn net.Conn, transport string, peerCerts []*x509.Certificate, connectBy time.Time) {
	defer conn.Close()
	br := new(bufio.Reader)
	max := s.limits.MaxPacketSize
	if max < 0 || s.faults.has(FaultNoSizeLimit) {
		max = 0
	}
	ss := &session{
		srv:       s,
		conn:      conn,
		transport: transport,
		peerCerts: peerCerts,
		log:       s.log,
		br:        br,
		connR:     packets.NewReader(br, packets.DecodeOptions{Lenient: true, MaxPacketSize: max}),
		r:         packets.NewReader(br, packets.DecodeOptions{MaxPacketSize: max}),
		subQoS:    -1,
		connectBy: connectBy,
	}
	if !s.logOff {
		// Without a logger, skip formatting attributes nobody reads.
		ss.log = s.log.With("conn", s.connSeq.Add(1), "transport", transport, "remote", conn.RemoteAddr().String())
	}
	ss.out.conn = conn
	ss.w = packets.NewWriter(&ss.out)
	ss.src.conn = conn
	ss.borrowReadBuf()
	defer ss.returnReadBuf()
	reason := ss.run(ctx)
	if !s.logOff {
		// A close the emulator decided (a refusal, a protocol violation, a
		// limit) is what an operator looks for: info. The ordinary ends
		// (DISCONNECT, the device or the server closing, I/O) stay debug.
		if refusal(reason) {
			ss.log.Info("connection closed by the emulator", "reason", reason)
		} else {
			ss.log.Debug("connection closed", "reason", reason)
		}
	}
}

// run returns why the session ended, for the log.
func (ss *session) run(ctx context.Context) string {
	if ss.srv.limits.ConnectTimeout > 0 {
		by := ss.connectBy
		if by.IsZero() {
			by = time.Now().Add(ss.srv.limits.ConnectTimeout)
		}
		_ = ss.conn.SetReadDeadline(by)
	}
	reason, ok := ss.connect(ctx)
	ss.connR = nil // CONNECT only; let it go for idle sessions
	if !ok {
		return reason
	}
	for {
		if ctx.Err() != nil {
			return "server closing"
		}
		if ss.idle > 0 {
			_ = ss.conn.SetReadDeadline(time.Now().Add(ss.idle))
		} else {
			_ = ss.conn.SetReadDeadline(time.Time{})
		}
		if ss.br.Buffered() == 0 {
			// Idle between requests: hold no read buffer while waiting
			// for the next byte (nor the one of a large packet, up to
			// MaxPacketSize: 10,000 idle connections would hold ~1 GB).
			ss.returnReadBuf()
			ss.r.Release()
			err := ss.src.wait()
			if err != nil {
				return readErrReason(err)
			}
			ss.borrowReadBuf()
		}
		p, err := ss.r.ReadPacket()
		if err != nil {
			if ss.skippable(err) {
				ss.log.Info("ignoring bad packet (fault ignore-malformed)", "err", err)
				continue
			}
			return readErrReason(err)
		}
		// The packets one request causes (PUBACK and the answer) leave in
		// one Write: one TLS record and one syscall instead of several,
		// in the same order.
		ss.out.hold = true
		reason, ok := ss.handle(ctx, p)
		if err := ss.out.flush(); err != nil && ok {
			reason, ok = "write: "+err.Error(), false
		}
		if !ok {
			return reason
		}
	}
}

// readErrReason describes a read error for the log.
func readErrReason(err error) string {
	switch {
	case errors.Is(err, io.EOF):
		return "device closed the connection"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout: " + err.Error()
	case errors.Is(err, packets.ErrTooLarge):
		return "packet over the size limit (Part A §7): " + err.Error()
	case errors.Is(err, transport.ErrNotOnePacket):
		return "WebSocket message not one MQTT packet (fault ws-packet-per-message): " + err.Error()
	}
	var pe *packets.ProtocolError
	if errors.As(err, &pe) {
		return "protocol error, closing (MQTT-4.8.0-1): " + err.Error()
	}
	return "read: " + err.Error()
}

// skippable reports whether the ignore-malformed fault lets the session go on
// after err: only for packets that were framed (so the stream is still in
// step), never for size or remaining-length errors.
func (ss *session) skippable(err error) bool {
	if !ss.srv.faults.has(FaultIgnoreMalformed) {
		return false
	}
	var pe *packets.ProtocolError
	return errors.As(err, &pe) && pe.Clause != "MQTT-2.2.3" && !errors.Is(err, packets.ErrTooLarge)
}

// acceptInvalidConnect is the accept-invalid-connect fault: CONNACK 0 to a
// malformed or invalid CONNECT, then the connection is kept (read and
// discarded) until the device closes it or the CONNECT timeout passes.
func (ss *session) acceptInvalidConnect(err error) (string, bool) {
	ss.log.Info("accepting an invalid CONNECT (fault accept-invalid-connect)", "err", err)
	if werr := ss.write(&packets.Connack{ReturnCode: packets.ConnackAccepted}); werr != nil {
		return "write CONNACK: " + werr.Error(), false
	}
	ss.drain()
	return "invalid CONNECT accepted (fault accept-invalid-connect): " + err.Error(), false
}

// drain reads and discards what the device sends, up to 1 MiB, until it
// closes the connection or a read fails.
func (ss *session) drain() {
	_, _ = io.Copy(io.Discard, io.LimitReader(ss.conn, 1<<20))
}

// connect reads and judges CONNECT (Part A §1–§3). It reports false when the
// connection must close.
func (ss *session) connect(ctx context.Context) (string, bool) {
	p, err := ss.connR.ReadPacket()
	if err != nil {
		var pe *packets.ProtocolError
		if errors.As(err, &pe) && pe.Type == packets.TypeConnect && pe.Clause == "MQTT-3.1.2-2" {
			// [MQTT-3.1.2-2] The Server MUST respond to the CONNECT Packet
			// with a CONNACK return code 0x01 (unacceptable protocol level)
			// and then disconnect the Client if the Protocol Level is not
			// supported by the Server. (MQTT 5, levels other than 3 and 4.)
			return ss.refuseLevel(err.Error())
		}
		var v packets.Violations
		if ss.srv.faults.has(FaultAcceptInvalidConnect) && (errors.As(err, &pe) && pe.Type == packets.TypeConnect || errors.As(err, &v)) {
			return ss.acceptInvalidConnect(err)
		}
		if p == nil || !errors.As(err, &v) {
			return firstPacketUnreadable + readErrReason(err), false
		}
		if _, ok := p.(*packets.Connect); !ok {
			return "first packet is not CONNECT (MQTT-3.1.0-1)", false
		}
		for _, pe := range v {
			switch pe.Clause {
			case "MQTT-3.1.2-2": // level 3 (MQTT 3.1, "MQIsdp")
				return ss.refuseLevel(pe.Error())
			case "MQTT-3.1.3-7":
				// [MQTT-3.1.3-8] If the Client supplies a zero-byte ClientId
				// with CleanSession set to 0, the Server MUST respond to the
				// CONNECT Packet with a CONNACK return code 0x02.
				return ss.refuse(packets.ConnackRefusedIdentifierRejected, pe.Error())
			}
		}
		return "CONNECT breaks MQTT 3.1.1: " + err.Error(), false
	}
	c, ok := p.(*packets.Connect)
	if !ok {
		// [MQTT-3.1.0-1] After a Network Connection is established by a
		// Client to a Server, the first Packet sent from the Client to the
		// Server MUST be a CONNECT Packet.
		return fmt.Sprintf("first packet is %v, not CONNECT (MQTT-3.1.0-1)", p.Type()), false
	}
	if !ss.srv.logOff {
		ss.log = ss.log.With("clientId", string(c.ClientID))
	}

	// Part A §3: syntax at CONNECT. A username not of the DPS form → 0x04.
	u, uerr := dps.ParseUsername(string(c.Username))
	if c.Username == nil && uerr == nil {
		uerr = errors.New("no username")
	}
	switch {
	case uerr == nil:
		ss.regID, ss.idScope, ss.apiVer = u.RegistrationID, u.IDScope, u.APIVersion
	case ss.srv.faults.has(FaultAcceptBadUsername):
		// The registry's substatus depends on the api-version
		// (registry.Credentials.APIVersion): keep the one the username
		// names, if it names one.
		ss.regID, ss.idScope, ss.apiVer = string(c.ClientID), ss.srv.idScope, badUsernameAPIVersion(string(c.Username))
		ss.log.Info("accepting a bad username (fault accept-bad-username)", "err", uerr, "apiVersion", ss.apiVer)
	default:
		return ss.refuse(packets.ConnackRefusedBadUsernameOrPassword, "username: "+uerr.Error())
	}
	// Part A §3: a ClientId other than the username's registration id → 0x02.
	if !ss.srv.sameRegistrationID(string(c.ClientID), ss.regID) {
		if !ss.srv.faults.has(FaultAcceptClientIDMismatch) {
			return ss.refuse(packets.ConnackRefusedIdentifierRejected, fmt.Sprintf("ClientId %q is not the username's registration id %q", c.ClientID, ss.regID))
		}
		ss.log.Info("accepting a ClientId mismatch (fault accept-clientid-mismatch)")
	}
	// Part A §2: dps-2019 refuses CleanSession=0 with 0x02 and closes.
	if !c.CleanSession && ss.srv.profile.refusesCleanSession0() && !ss.srv.faults.has(FaultAcceptCleanSession0) {
		return ss.refuse(packets.ConnackRefusedIdentifierRejected, "CleanSession=0 is not supported (profile dps-2019, Part A §2)")
	}
	if reason, ok := ss.connectFaults(c, uerr == nil); !ok {
		return reason, false
	}
	if c.Password != nil {
		ss.pass = append([]byte{}, c.Password...)
	}
	// Part A §3: proof of possession is judged at the register request,
	// not here; the fault judges it here, as IoT Hub does at CONNECT.
	if ss.srv.faults.has(FaultAuthAtConnect) {
		if _, fail := ss.attest(ctx); fail != nil && fail.status == 401 {
			return ss.refuse(packets.ConnackRefusedNotAuthorized, "attestation failed at CONNECT (fault auth-at-connect)")
		}
	}
	// [MQTT-3.1.2-24] If the Keep Alive value is non-zero and the Server does
	// not receive a Control Packet from the Client within one and a half
	// times the Keep Alive time period, it MUST disconnect.
	switch {
	case c.KeepAlive > 0:
		ss.idle = time.Duration(c.KeepAlive) * time.Second * 3 / 2
	case ss.srv.limits.IdleTimeout > 0:
		ss.idle = ss.srv.limits.IdleTimeout
	}
	if ss.withholdConnack() {
		return "scenario: CONNACK withheld", false
	}
	// Part A §1: sessions are never persistent; session-present is always 0.
	if !c.CleanSession && ss.srv.faults.has(FaultKeepSubscription) {
		ss.kept = true
		if q, ok := ss.srv.kept.load(ss.regID); ok {
			ss.subQoS = q
		}
	}
	ack := &packets.Connack{ReturnCode: packets.ConnackAccepted, SessionPresent: ss.srv.faults.has(FaultSessionPresent)}
	if err := ss.write(ack); err != nil {
		return "write CONNACK: " + err.Error(), false
	}
	if ss.srv.faults.has(FaultCloseAfterConnack) {
		return "closing after CONNACK 0x00 (fault close-after-connack)", false
	}
	ss.log.Debug("connected", "registrationId", ss.regID, "cleanSession", c.CleanSession, "keepAlive", c.KeepAlive)
	return "", true
}

// connectFaults applies the fault switches that refuse a documented CONNECT.
// parsed reports whether the username is of the DPS form.
func (ss *session) connectFaults(c *packets.Connect, parsed bool) (string, bool) {
	f := ss.srv.faults
	switch {
	case f.has(FaultRequirePassword) && len(c.Password) == 0:
		return ss.refuse(packets.ConnackRefusedBadUsernameOrPassword, "no password (fault require-password)")
	case f.has(FaultRefuseClientVersion) && parsed && extraUsernameParams(string(c.Username)):
		return ss.refuse(packets.ConnackRefusedBadUsernameOrPassword, "text after api-version in the username (fault refuse-client-version)")
	case f.has(FaultRefuseKeepAlive0) && c.KeepAlive == 0:
		return ss.refuse(packets.ConnackRefusedIdentifierRejected, "keep-alive 0 (fault refuse-keepalive-0)")
	case f.has(FaultMaxClientID23) && len(c.ClientID) > 23:
		return ss.refuse(packets.ConnackRefusedIdentifierRejected, "ClientId longer than 23 characters (fault max-client-id-23)")
	case f.has(FaultNarrowRegistrationID) && strings.ContainsAny(ss.regID, "._:"):
		return ss.refuse(packets.ConnackRefusedIdentifierRejected, fmt.Sprintf("registration id %q holds '.', '_' or ':' (fault narrow-registration-id)", ss.regID))
	}
	return "", true
}

// extraUsernameParams reports whether a DPS username has anything after its
// api-version value, such as "&ClientVersion=…".
func extraUsernameParams(u string) bool {
	const key = "/api-version="
	i := strings.Index(u, key)
	return i >= 0 && strings.Contains(u[i+len(key):], "&")
}

// badUsernameAPIVersion returns the api-version a username not of the DPS
// form names, for the accept-bad-username fault: the value of its first
// "api-version=" after a '/', '?' or '&' (a DPS username with a wrong
// path, an IoT Hub username's "?api-version="), up to a '&'. "" (taken as
// current) when there is none, or the value is not made of letters,
// digits, '-' and '.' as an api-version is (dps.ParseUsername).
func badUsernameAPIVersion(u string) string {
	const key = "api-version="
	for off := 0; ; {
		i := strings.Index(u[off:], key)
		if i < 0 {
			return ""
		}
		i += off
		off = i + len(key)
		if i == 0 || !strings.ContainsRune("/?&", rune(u[i-1])) {
			continue
		}
		v, _, _ := strings.Cut(u[off:], "&")
		if v == "" || strings.IndexFunc(v, func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '.')
		}) >= 0 {
			return ""
		}
		return v
	}
}

// refuseLevel answers an unsupported protocol level: 0x01 and close, or under
// the accept-mqtt5 fault CONNACK 0x00 and go on.
func (ss *session) refuseLevel(why string) (string, bool) {
	if ss.srv.faults.has(FaultAcceptMQTT5) {
		ss.log.Info("accepting an unsupported protocol level (fault accept-mqtt5)", "err", why)
		// The CONNECT was not parsed, so its keep-alive is unknown: bound
		// the session as one with keep-alive 0.
		if d := ss.srv.limits.IdleTimeout; d > 0 {
			ss.idle = d
		}
		if err := ss.write(&packets.Connack{ReturnCode: packets.ConnackAccepted}); err != nil {
			return "write CONNACK: " + err.Error(), false
		}
		return "", true
	}
	return ss.refuse(packets.ConnackRefusedProtocolVersion, why)
}

// refuse writes a CONNACK with a refusal code; the caller then closes.
// [MQTT-3.2.2-5] If a server sends a CONNACK packet containing a non-zero
// return code it MUST then close the Network Connection. Under the fault
// no-close-after-refusal the connection is kept instead: what the device
// sends is read and ignored until it closes.
func (ss *session) refuse(code packets.ConnackCode, why string) (string, bool) {
	if err := ss.write(&packets.Connack{ReturnCode: code}); err != nil {
		return "write CONNACK: " + err.Error(), false
	}
	if ss.srv.faults.has(FaultNoCloseAfterRefusal) {
		ss.log.Info("keeping the connection after a refusal CONNACK (fault no-close-after-refusal)", "returnCode", byte(code))
		ss.drain()
		return fmt.Sprintf("CONNACK %#02x (%v), connection kept until the device closed (fault no-close-after-refusal): %s", byte(code), code, why), false
	}
	return fmt.Sprintf("CONNACK %#02x (%v): %s", byte(code), code, why), false
}

// readBufSize is the size of the sessions' read buffers; larger packets are
// read through it (packets.Reader).
const readBufSize = 4096

// borrowReadBuf gives br a buffer from the server's pool. br's state moves
// by value: only one of ss.br and ss.lent is in use at a time.
func (ss *session) borrowReadBuf() {
	pr, _ := ss.srv.readBufs.Get().(*bufio.Reader)
	if pr == nil {
		pr = bufio.NewReaderSize(nil, readBufSize)
	}
	pr.Reset(&ss.src)
	*ss.br = *pr
	ss.lent = pr
}

// returnReadBuf gives br's buffer back to the pool; br must hold no
// unread data.
func (ss *session) returnReadBuf() {
	if ss.lent == nil {
		return
	}
	*ss.lent = *ss.br
	ss.lent.Reset(nil)
	ss.srv.readBufs.Put(ss.lent)
	ss.lent = nil
	*ss.br = bufio.Reader{}
}

// waitReader is the source of the session's bufio.Reader: the connection,
// preceded by at most one byte that wait read ahead.
type waitReader struct {
	conn    net.Conn
	first   [1]byte
	pending bool
}

// wait blocks until the connection has a byte to read (or fails), without
// a buffer: the byte is kept for the next Read. Errors are the
// connection's, as ReadPacket would return them for an empty read.
func (w *waitReader) wait() error {
	if w.pending {
		return nil
	}
	for range 16 { // a Read may return 0, nil; never spin forever
		n, err := w.conn.Read(w.first[:])
		if n == 1 {
			w.pending = true
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// Read implements io.Reader.
func (w *waitReader) Read(p []byte) (int, error) {
	if w.pending && len(p) > 0 {
		p[0] = w.first[0]
		w.pending = false
		return 1, nil
	}
	return w.conn.Read(p)
}

// outBuffer is the session's writer: it passes writes through to conn, or,
// while hold is set, gathers them until flush. It keeps no buffer between
// requests, so idle connections hold none.
type outBuffer struct {
	conn net.Conn
	hold bool
	buf  []byte
}

// Write implements io.Writer.
func (o *outBuffer) Write(p []byte) (int, error) {
	if !o.hold {
		return o.conn.Write(p)
	}
	if o.buf == nil {
		o.buf = make([]byte, 0, max(512, len(p)))
	}
	o.buf = append(o.buf, p...)
	return len(p), nil
}

// flush writes what was gathered (within the write deadline the last
// ss.write set), ends holding and releases the buffer.
func (o *outBuffer) flush() error {
	o.hold = false
	if len(o.buf) == 0 {
		return nil
	}
	_, err := o.conn.Write(o.buf)
	o.buf = nil
	return err
}

// write sends one packet within the write timeout.
func (ss *session) write(p packets.Packet) error {
	if d := ss.srv.limits.WriteTimeout; d > 0 {
		_ = ss.conn.SetWriteDeadline(time.Now().Add(d))
	}
	return ss.w.WritePacket(p)
}

// handle answers one packet after CONNECT. It reports false when the
// connection must close.
func (ss *session) handle(ctx context.Context, p packets.Packet) (string, bool) {
	switch p := p.(type) {
	case *packets.Subscribe:
		return ss.subscribe(p)
	case *packets.Unsubscribe:
		for _, f := range p.Filters {
			if string(f) == dps.SubscribeFilter {
				ss.subQoS = -1
			}
			delete(ss.extra, string(f))
		}
		return ss.ok(ss.write(&packets.Unsuback{PacketID: p.PacketID}))
	case *packets.Pingreq:
		if ss.srv.faults.has(FaultNoPingresp) {
			return "", true
		}
		return ss.ok(ss.write(&packets.Pingresp{}))
	case *packets.Disconnect:
		return "device sent DISCONNECT", false
	case *packets.Publish:
		return ss.publish(ctx, p)
	case *packets.Puback, *packets.Pubcomp:
		return "", true // acknowledgements of our deliveries
	case *packets.Pubrec:
		// Only under deliver-qos2 do we send QoS 2; answer per §4.3.3.
		return ss.ok(ss.write(&packets.Pubrel{PacketID: p.PacketID}))
	case *packets.Pubrel:
		// [MQTT-4.3.3-2] answer PUBREL with PUBCOMP.
		return ss.ok(ss.write(&packets.Pubcomp{PacketID: p.PacketID}))
	case *packets.Connect:
		// [MQTT-3.1.0-2] The Server MUST process a second CONNECT Packet
		// sent from a Client as a protocol violation and disconnect.
		return "second CONNECT (MQTT-3.1.0-2)", false
	default:
		return fmt.Sprintf("%v is a server-to-client packet (MQTT-4.8.0-1)", p.Type()), false
	}
}

// ok turns a write error into handle's result.
func (ss *session) ok(err error) (string, bool) {
	if err != nil {
		return "write: " + err.Error(), false
	}
	return "", true
}

// subscribe answers SUBSCRIBE (Part A §9): only dps.SubscribeFilter, QoS 0
// and 1 granted as asked, 2 granted 1; any other filter 0x80.
func (ss *session) subscribe(p *packets.Subscribe) (string, bool) {
	codes := make([]packets.SubackCode, len(p.Subscriptions))
	for i, sub := range p.Subscriptions {
		q := min(sub.QoS, 1)
		if ss.srv.faults.has(FaultGrantQoS2) {
			q = sub.QoS
		}
		switch {
		case string(sub.Filter) == dps.SubscribeFilter:
			if ss.srv.faults.has(FaultGrantQoS0) {
				q = 0
			}
			ss.subQoS = int(q)
			if ss.kept {
				ss.srv.kept.store(ss.regID, int(q))
			}
			codes[i] = packets.SubackCode(q)
		case ss.srv.faults.has(FaultAcceptAnyFilter):
			if ss.extra == nil {
				ss.extra = map[string]byte{}
			}
			if len(ss.extra) < 64 {
				ss.extra[string(sub.Filter)] = q
			}
			codes[i] = packets.SubackCode(q)
		case ss.srv.faults.has(FaultCloseOnOtherFilter):
			return fmt.Sprintf("SUBSCRIBE to %q, closing (fault close-on-other-filter)", sub.Filter), false
		default:
			ss.log.Info("refusing subscription (Part A §9)", "filter", string(sub.Filter))
			codes[i] = packets.SubackFailure
		}
	}
	return ss.ok(ss.write(&packets.Suback{PacketID: p.PacketID, ReturnCodes: codes}))
}

// answer is the service's reply to one request.
type answer struct {
	status     int
	retryAfter int // seconds; -1 = no retry-after parameter
	body       []byte
	close      bool // close the connection after sending (401, Part A §3)
	drop       bool // close the connection without sending (scenario disconnect-mid-poll)
}

// publish serves a device request (Part A §6–§9).
func (ss *session) publish(ctx context.Context, p *packets.Publish) (string, bool) {
	if p.QoS == 2 && !ss.srv.faults.has(FaultAcceptQoS2Publish) {
		// DPS documents QoS 0 and 1 only; IoT Hub, which shares the
		// gateway, documents "If a device app publishes a message with
		// QoS 2, IoT Hub closes the network connection."
		return "QoS 2 PUBLISH is not supported (docs/emulator.md)", false
	}
	ack := func() error {
		switch p.QoS {
		case 1:
			return ss.write(&packets.Puback{PacketID: p.PacketID})
		case 2:
			return ss.write(&packets.Pubrec{PacketID: p.PacketID})
		}
		return nil
	}
	req, err := dps.ParseRequestTopic(string(p.Topic))
	if err != nil {
		if !ss.srv.faults.has(FaultAcceptUndocumentedTopic) {
			// Part A §9: 3.1.1 has no negative PUBACK; close.
			return fmt.Sprintf("PUBLISH to an undocumented topic %q (Part A §9): %v", p.Topic, err), false
		}
		ss.log.Info("ignoring a PUBLISH to an undocumented topic (fault accept-undocumented-topic)", "topic", string(p.Topic))
		return ss.ok(ack())
	}
	if p.QoS == 0 && ss.srv.faults.has(FaultIgnoreQoS0Requests) {
		ss.log.Info("ignoring a QoS 0 request (fault ignore-qos0-requests)", "topic", string(p.Topic))
		return "", true
	}
	late := ss.srv.faults.has(FaultNoPubackFirst)
	if !late {
		// Part A §6: PUBACK before the answer (CS v1 needs it).
		if err := ack(); err != nil {
			return "write PUBACK: " + err.Error(), false
		}
	}
	var a answer
	switch req.Kind {
	case dps.Register:
		a = ss.register(ctx, p.Payload)
	default:
		if len(p.Payload) > 0 && ss.srv.faults.has(FaultStrictPollBody) {
			// Refused before it is served: it counts toward no throttle.
			a = ss.srv.errorAnswer(400, errorCodeBadRequest, "A poll request has no body.", -1)
			break
		}
		a = ss.poll(ctx, req.OperationID)
	}
	if a.drop {
		return "scenario: connection dropped without an answer", false
	}
	if err := ss.deliver(req.RID, a); err != nil {
		return "write answer: " + err.Error(), false
	}
	if late {
		if err := ack(); err != nil {
			return "write PUBACK: " + err.Error(), false
		}
	}
	if a.close {
		if !ss.srv.faults.has(FaultNoCloseAfter401) {
			return fmt.Sprintf("answered %d, closing (Part A §3)", a.status), false
		}
		ss.log.Info("keeping the connection after 401 (fault no-close-after-401)")
	}
	return "", true
}

// deliver publishes an answer on the response topic (Part A §5, §6) if the
// device subscribed to it.
func (ss *session) deliver(rid string, a answer) error {
	q, ok := ss.grantedFor()
	if !ok {
		ss.log.Info("answer dropped: the device has not subscribed to "+dps.SubscribeFilter, "status", a.status)
		return nil
	}
	q = min(q, 1)
	switch {
	case ss.srv.faults.has(FaultDeliverQoS2):
		q = 2
	case ss.srv.faults.has(FaultDeliverQoS0):
		q = 0
	}
	pub := &packets.Publish{QoS: q, Topic: []byte(ss.srv.responseTopic(a.status, rid, a.retryAfter)), Payload: a.body}
	if pub.Payload == nil {
		pub.Payload = []byte{}
	}
	if q > 0 {
		ss.nextPID++
		if ss.nextPID == 0 {
			ss.nextPID = 1
		}
		pub.PacketID = ss.nextPID
	}
	if ss.log.Enabled(context.Background(), slog.LevelDebug) {
		ss.log.Debug("answer", "status", a.status, "topic", string(pub.Topic), "qos", q)
	}
	return ss.write(pub)
}

// grantedFor returns the QoS the device is subscribed with for answers.
func (ss *session) grantedFor() (byte, bool) {
	if ss.subQoS >= 0 {
		return byte(ss.subQoS), true
	}
	// Filters granted under accept-any-filter deliver when they match.
	for f, q := range ss.extra {
		if topicMatches(f, "$dps/registrations/res/200/?$rid=1") {
			return q, true
		}
	}
	return 0, false
}

// responseTopic builds an answer topic, bending it under the topic faults.
func (s *Server) responseTopic(status int, rid string, retryAfter int) string {
	if s.faults.has(FaultWrongRID) {
		rid += "0"
	}
	key := "retry-after"
	if s.faults.has(FaultUpperCaseRetryAfter) {
		key = "Retry-After"
	}
	switch {
	case retryAfter >= 0 && s.faults.has(FaultRIDNotFirst):
		return dps.ResponsePrefix + strconv.Itoa(status) + "/?" + key + "=" + strconv.Itoa(retryAfter) + "&$rid=" + rid
	case retryAfter >= 0 && key != "retry-after":
		return dps.ResponsePrefix + strconv.Itoa(status) + "/?$rid=" + rid + "&" + key + "=" + strconv.Itoa(retryAfter)
	}
	return dps.ResponseTopic(status, rid, retryAfter)
}

// topicMatches reports whether topic matches the MQTT filter (§4.7).
func topicMatches(filter, topic string) bool {
	for {
		if filter == "#" {
			return true
		}
		fl, frest, fmore := cut(filter)
		tl, trest, tmore := cut(topic)
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			return !fmore && !tmore || fmore && frest == "#"
		}
		filter, topic = frest, trest
	}
}

func cut(s string) (level, rest string, more bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// sameRegistrationID reports whether a and b name the same registration:
// compared case-insensitively (Part A §11), or byte for byte under the
// fault case-sensitive-registration-id. Only the ClientId and the register
// body's registrationId are compared with it; the registry's lookups and
// the SAS sr check stay case-insensitive under the fault.
func (s *Server) sameRegistrationID(a, b string) bool {
	if s.faults.has(FaultCaseSensitiveRegistrationID) {
		return a == b
	}
	return dps.EqualRegistrationID(a, b)
}

// credentials are what this connection presented.
func (ss *session) credentials() registry.Credentials {
	return registry.Credentials{RegistrationID: ss.regID, Password: ss.pass, PeerCertificates: ss.peerCerts, APIVersion: ss.apiVer}
}

// attest judges the connection's credentials for one request (Part A §3).
// A failure comes back as the 401 answer to send.
func (ss *session) attest(ctx context.Context) (*registry.Attestation, *answer) {
	s := ss.srv
	if ss.idScope != s.idScope && !s.faults.has(FaultAcceptWrongScope) {
		a := s.errorAnswer(401, dps.ErrorCodeUnauthorized, "Unauthorized", -1)
		a.close = true
		ss.log.Info("attestation failed: username id scope is not this service's", "scope", ss.idScope)
		return nil, &a
	}
	opts := registry.AttestOptions{
		IgnoreSignature: s.faults.has(FaultAcceptBadSignature),
		IgnoreExpiry:    s.faults.has(FaultAcceptExpiredToken),
		NoSkew:          s.faults.has(FaultNoClockSkew),
		IgnoreResource:  s.faults.has(FaultAcceptOtherDeviceToken),
		IgnoreKeyName:   s.faults.has(FaultAcceptWrongSKN),
		AllowNoExpiry:   s.faults.has(FaultAcceptTokenWithoutSE),
		PrimaryOnly:     s.faults.has(FaultPrimaryKeyOnly),
		IgnoreDisabled:  s.faults.has(FaultAssignDisabled),
	}
	att, err := s.backend.Attest(ctx, ss.credentials(), opts)
	if err != nil {
		var ae *registry.AttestError
		if errors.As(err, &ae) {
			ss.log.Info("attestation failed", "err", err)
			a := s.errorAnswer(ae.Status(), ae.ErrorCode, ae.Message, -1)
			a.close = true
			return nil, &a
		}
		ss.log.Error("attestation error", "err", err)
		a := s.errorAnswer(500, errorCodeInternal, "Internal server error.", -1)
		return nil, &a
	}
	if s.faults.has(FaultStrictSAS) && strings.HasPrefix(string(ss.pass), dps.SASPrefix) {
		if why := sasFormProblem(string(ss.pass)); why != "" {
			ss.log.Info("attestation failed: SAS token not in the documented form (fault strict-sas)", "why", why)
			a := s.errorAnswer(401, dps.ErrorCodeUnauthorized, "Unauthorized", -1)
			a.close = true
			return nil, &a
		}
	}
	return att, nil
}

// sasFormProblem says how a SAS token departs from the documented form
// "SharedAccessSignature sr={lower-case percent-encoded resource}&sig=…&se=…&skn=registration",
// or returns "" when it does not. Only the strict-sas fault uses it.
func sasFormProblem(tok string) string {
	fields := strings.Split(strings.TrimPrefix(tok, dps.SASPrefix), "&")
	names := []string{"sr", "sig", "se", "skn"}
	if len(fields) != len(names) {
		return fmt.Sprintf("%d fields, want sr, sig, se, skn", len(fields))
	}
	values := make([]string, len(fields))
	for i, f := range fields {
		name, value, _ := strings.Cut(f, "=")
		if name != names[i] {
			return fmt.Sprintf("field %d is %q, want %q", i+1, name, names[i])
		}
		values[i] = value
	}
	if values[3] != dps.DefaultKeyName {
		return fmt.Sprintf("skn is %q, want %q", values[3], dps.DefaultKeyName)
	}
	sr := values[0]
	for i := 0; i < len(sr); i++ {
		c := sr[i]
		switch {
		case c == '%':
			if i+2 >= len(sr) || !isLowerHex(sr[i+1]) || !isLowerHex(sr[i+2]) {
				return "sr escape is not lower-case hex"
			}
			i += 2
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
		default:
			return fmt.Sprintf("sr has an unencoded %q", c)
		}
	}
	return ""
}

func isLowerHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// register serves PUT iotdps-register (Part A §6–§8).
func (ss *session) register(ctx context.Context, body []byte) answer {
	s := ss.srv
	if a, ok := ss.scriptRegister(); ok {
		return a
	}
	att, fail := ss.attest(ctx)
	if fail != nil {
		return *fail
	}
	// Part A §7: empty, {"registrationId"}, {"payload"}, payload null.
	dr, err := dps.ParseDeviceRegistration(body)
	if err != nil {
		return s.errorAnswer(400, errorCodeBadRequest, "Invalid request body: "+err.Error(), -1)
	}
	if dr.RegistrationID == "" && s.faults.has(FaultRequireRegistrationIDBody) {
		return s.errorAnswer(400, errorCodeBadRequest, "The request body has no registrationId.", -1)
	}
	if dr.RegistrationID != "" && !s.sameRegistrationID(dr.RegistrationID, ss.regID) && !s.faults.has(FaultAcceptRegistrationIDMismatch) {
		return s.errorAnswer(400, errorCodeBadRequest, "The registrationId of the request body does not match the connection's.", -1)
	}
	now := s.now()
	if !s.faults.has(FaultNoRegisterThrottle) {
		if ok, wait := s.regBudget.allow("", now); !ok {
			ss.log.Info("register throttled: the per-minute registration budget is spent (429)", "registrationId", ss.regID,
				"budget", s.limits.RegistrationsPerMinute, "retryAfter", retryAfterSeconds(wait))
			return s.errorAnswer(429, errorCodeThrottled, "Too many requests.", retryAfterSeconds(wait))
		}
	}
	id, err := dps.NewOperationID(s.rand)
	if err != nil {
		ss.log.Error("operation id", "err", err)
		return s.errorAnswer(500, errorCodeInternal, "Internal server error.", -1)
	}
	op := &operation{id: id, regID: ss.regID, created: now, readyAt: now.Add(s.retryAfter)}
	switch s.ops.add(op, now, !s.faults.has(FaultNo409)) {
	case opInProgress:
		ss.log.Info("register refused: a registration of the device is in progress (409)", "registrationId", ss.regID)
		return s.errorAnswer(409, dps.ErrorCodePreconditionFailed, "Precondition failed.", -1)
	case opTableFull:
		return s.errorAnswer(503, errorCodeUnavailable, "Service unavailable: too many operations.", retryAfterSeconds(s.retryAfter))
	}
	s.startAssign(op, att, dr.Payload)
	ss.log.Info("registration accepted", "registrationId", ss.regID, "operationId", id)
	return s.statusAnswer(202, s.retryAfterParam(), dps.RegistrationOperationStatus{OperationID: id, Status: dps.StatusAssigning})
}

// poll serves GET iotdps-get-operationstatus (Part A §6, §8).
func (ss *session) poll(ctx context.Context, operationID string) answer {
	s := ss.srv
	if _, fail := ss.attest(ctx); fail != nil {
		return *fail
	}
	if a, ok := ss.scriptPoll(); ok {
		return a
	}
	now := s.now()
	if !s.faults.has(FaultNoPollThrottle) {
		if ok, wait := s.polls.allow(regKey(ss.regID), now); !ok {
			ss.log.Info("poll throttled: the device's polls per window are spent (429)", "registrationId", ss.regID,
				"polls", s.limits.PollsPerWindow, "window", s.limits.PollWindow, "retryAfter", retryAfterSeconds(wait))
			return s.errorAnswer(429, errorCodeThrottled, "Too many requests.", retryAfterSeconds(wait))
		}
	}
	assigning := dps.RegistrationOperationStatus{
		OperationID:       operationID,
		Status:            dps.StatusAssigning,
		RegistrationState: &dps.DeviceRegistrationResult{RegistrationID: ss.regID, Status: dps.StatusAssigning},
	}
	st, ok := s.ops.lookup(operationID, ss.regID)
	if !ok {
		if s.faults.has(FaultNo404UnknownOperation) {
			return s.statusAnswer(202, s.retryAfterParam(), assigning)
		}
		return s.errorAnswer(404, errorCodeOperationNotFound, "Operation not found.", -1)
	}
	assigning.RegistrationState.RegistrationID = st.regID
	early := now.Before(st.readyAt) && !s.faults.has(FaultAssignBeforeRetryAfter)
	if !st.done || early {
		if s.faults.has(FaultPoll202Assigned) {
			assigning.Status, assigning.RegistrationState.Status = dps.StatusAssigned, dps.StatusAssigned
		}
		if s.faults.has(FaultPoll202NoRegistrationState) {
			assigning.RegistrationState = nil
		}
		return s.statusAnswer(202, s.retryAfterParam(), assigning)
	}
	if st.err != nil {
		ss.log.Error("assignment failed", "operationId", operationID, "err", st.err)
		return s.errorAnswer(500, errorCodeInternal, "Internal server error.", -1)
	}
	res := st.result
	if s.faults.has(FaultIncompleteRegistrationState) {
		res.DeviceID, res.CreatedDateTimeUTC, res.LastUpdatedDateTimeUTC, res.Substatus, res.ETag = "", "", "", "", ""
	}
	final := dps.RegistrationOperationStatus{OperationID: operationID, Status: res.Status, RegistrationState: &res}
	if s.faults.has(FaultAssignedStateStatus) && res.Status == dps.StatusAssigned {
		res.Status = dps.StatusAssigning
	}
	if s.faults.has(FaultWrongEnrollmentGroupID) && res.SymmetricKey != nil {
		// A copy: the operation's stored result keeps the right one.
		res.SymmetricKey = &dps.SymmetricKeyRegistrationResult{EnrollmentGroupID: res.RegistrationID}
	}
	return s.statusAnswer(200, -1, final)
}

// firstPacketUnreadable starts the end reason of a session whose CONNECT
// could not be read.
const firstPacketUnreadable = "first packet unreadable: "

// refusal reports whether a session's end reason is the emulator refusing
// something, rather than an ordinary end of the connection.
func refusal(reason string) bool {
	// A device that leaves before or during CONNECT ends the connection as
	// ordinarily as one that leaves later; the CONNECT timeout is the
	// emulator's limit and stays a refusal.
	if rest, ok := strings.CutPrefix(reason, firstPacketUnreadable); ok && !strings.HasPrefix(rest, "timeout: ") {
		reason = rest
	}
	for _, ordinary := range []string{"device sent DISCONNECT", "device closed the connection", "server closing", "read: ", "write", "timeout: "} {
		if strings.HasPrefix(reason, ordinary) {
			return false
		}
	}
	return reason != ""
}
