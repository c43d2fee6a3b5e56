package conformance

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
	"github.com/dps-conform/dps-conform/tracer/tlstrace"
	"github.com/dps-conform/dps-conform/transport"
)

// Rule judges one requirement from a decoded conversation. The same rules
// judge live specs (T.Judge), field captures (dps-conform trace --check,
// CheckCapture) and, for role device, devices under test.
type Rule struct {
	ID   string
	Role Role
	// Evidence says what a capture must hold for the rule to apply, for the
	// "no evidence" failure of a spec.
	Evidence string
	// Check returns how many times the rule applied in c and what it found.
	// Exactly one of Check and CheckCapture is set.
	Check func(c *tracer.Conversation, env RuleEnv) (applied int, findings []Finding)
	// CheckCapture, when set, judges a whole capture at once, for a rule
	// whose evidence spans conversations (a reconnect after a 401, an
	// operationId given on another connection); the function CheckCapture
	// calls it once per capture.
	CheckCapture func(c *tracer.Capture, env RuleEnv) (applied int, findings []Finding)
}

// RuleEnv is what rules may know beyond the traffic.
type RuleEnv struct {
	// Profile is dps-2019 or dps-2023.
	Profile string
	// CloseGrace is how long a server is given to close a connection it
	// must close: when the device closed (or the capture ended) sooner, a
	// rule cannot tell and does not judge. Zero means one second. Live
	// specs set it from Config.CloseWait, which they wait.
	CloseGrace time.Duration
	// ServerName is the host name the device was told to connect to, the
	// SNI it must send (DPS-DEV-002); "" does not judge it.
	ServerName string
	// PollTolerance is how much earlier than a retry-after a request may
	// come before device rules call it early (clock and scheduling
	// noise); zero means 250 ms.
	PollTolerance time.Duration
	// Window is how long after a 401 answer (DPS-DEV-017), or an answer
	// with status failed or disabled (DPS-DEV-024), a device must not
	// reconnect with the same credentials; zero means 10 s.
	Window time.Duration
	// Live reports that dps-conform recorded the capture on the wire
	// itself (a live spec or the device role), so a plaintext conversation
	// really crossed the wire unencrypted; a field capture may be a
	// recorder's plaintext view of a TLS connection.
	Live bool
	// HostileServer reports that the scenario served a certificate the
	// device must refuse (DPS-DEV-021).
	HostileServer bool
	// SymmetricKey is the key (base64) the device was given, when it was
	// given one (the device role): DPS-DEV-005 then verifies the
	// signature of its SAS tokens with it. "" leaves the signature
	// unjudged; a field capture has no key.
	SymmetricKey string
	// X509 reports that the device was given a client certificate to
	// attest with (the device role's --attestation x509): DPS-DEV-006 then
	// also wants the certificate presented on every TLS connection that
	// carries a CONNECT.
	X509 bool
	// Enrollments are the target's symmetric key enrollments as the suite
	// was given them (live specs: the target's credentials). DPS-POLL-002
	// tells by a device's SAS token which one the device registered under,
	// and judges the enrollmentGroupId of its registrationState. Empty (a
	// field capture) leaves that unjudged.
	Enrollments []KnownEnrollment
}

// KnownEnrollment is a symmetric key enrollment of the target
// (RuleEnv.Enrollments).
type KnownEnrollment struct {
	// RegistrationID is the registration id of an individual enrollment;
	// "" for an enrollment group.
	RegistrationID string
	// GroupID is the enrollmentGroupId of a group; "" when the group's id
	// is not known (or for an individual enrollment).
	GroupID string
	// Keys are the enrollment's keys (base64), primary and secondary: the
	// device keys of an individual enrollment, the group keys of a group
	// (a device's key is derived from one, Part A §4).
	Keys []string
}

// enrollmentOf returns the enrollment of env whose key signs the SAS token
// cp carries for registration id regID: an individual enrollment of that
// id, or a group from whose key the device key is derived (Part A §4).
func (env RuleEnv) enrollmentOf(cp *packets.Connect, regID string) (KnownEnrollment, bool) {
	if len(env.Enrollments) == 0 || len(cp.Password) == 0 {
		return KnownEnrollment{}, false
	}
	tok, err := dps.ParseSASToken(string(cp.Password))
	if err != nil {
		return KnownEnrollment{}, false
	}
	for _, e := range env.Enrollments {
		keys := e.Keys
		if e.RegistrationID != "" {
			if !dps.EqualRegistrationID(e.RegistrationID, regID) {
				continue
			}
		} else {
			keys = nil
			for _, k := range e.Keys {
				if k == "" {
					continue
				}
				if dk, err := dps.DeriveDeviceKey(k, regID); err == nil {
					keys = append(keys, dk)
				}
			}
		}
		if len(keys) > 0 && tok.CheckSignature(keys...) == nil {
			return e, true
		}
	}
	return KnownEnrollment{}, false
}

// undecided reports that the server did not close the connection first but
// was not given CloseGrace after t to do so: the device closed, or the
// capture ended, too soon to judge.
func undecided(c *tracer.Conversation, t time.Time, env RuleEnv) bool {
	if serverClosedFirst(c) {
		return false
	}
	grace := env.CloseGrace
	if grace <= 0 {
		grace = time.Second
	}
	end := c.End
	if c.Closed[tracer.ClientToServer] {
		end = c.CloseTime[tracer.ClientToServer]
	}
	return end.Sub(t) < grace
}

// Finding is one violation of a requirement, with the packet that shows it.
type Finding struct {
	ID string `json:"id"`
	// Conversation and Frame locate the evidence in the capture (frame
	// numbers as Wireshark shows them).
	Conversation int       `json:"conversation"`
	Frame        int       `json:"frame"`
	Time         time.Time `json:"time"`
	// Expected lists what would have passed; Actual is what was seen
	// (h2spec's TestError).
	Expected []string `json:"expected"`
	Actual   string   `json:"actual"`
}

// Detail renders the finding as "conversation N frame F: expected …; actual …".
func (f Finding) Detail() string {
	return fmt.Sprintf("conversation %d, frame %d: expected %s; actual: %s", f.Conversation, f.Frame, strings.Join(f.Expected, " or "), f.Actual)
}

func (f Finding) String() string { return f.ID + ": " + f.Detail() }

func finding(id string, c *tracer.Conversation, frame int, ts time.Time, actual string, expected ...string) Finding {
	return Finding{ID: id, Conversation: c.ID, Frame: frame, Time: ts, Expected: expected, Actual: actual}
}

// ServiceRules returns the rules of role service, in ID order.
func ServiceRules() []*Rule {
	rs := []*Rule{
		ruleTLSAccepted(), ruleTLSRefused("TLS-002", 0x0301), ruleTLSRefused("TLS-003", 0x0302), ruleTLSRefused("TLS-004", 0x0304),
		rulePlaintext(),
		ruleConnackFor("DPS-CONN-001", "a CONNECT of the documented form", documentedConnect, 0),
		ruleConnackFor("DPS-CONN-002", "a CONNECT whose username carries an SDK suffix (&ClientVersion=…) or another api-version", sdkUsernameConnect, 0),
		ruleConnackFor("DPS-CONN-003", "a CONNECT with keep-alive 0, a ClientId longer than 23 characters or a registration id holding '.', '_' or ':'", conn003Connect, 0),
		ruleConnackFor("DPS-CONN-004", "a CONNECT whose username is not of the DPS form", badUsernameConnect, packets.ConnackRefusedBadUsernameOrPassword),
		ruleConnackFor("DPS-CONN-005", "a CONNECT whose ClientId differs from the username's registration id", clientIDMismatchConnect, packets.ConnackRefusedIdentifierRejected),
		ruleCaseInsensitiveID(),
		ruleProtocolLevel(),
		ruleCleanSession0(),
		ruleSessionPresent(),
		ruleGrant("DPS-SUB-001", "a SUBSCRIBE to $dps/registrations/res/# at QoS 0 or 1", func(q byte) (packets.SubackCode, bool) { return packets.SubackCode(q), q <= 1 }),
		ruleGrant("DPS-SUB-002", "a SUBSCRIBE to $dps/registrations/res/# at QoS 2", func(q byte) (packets.SubackCode, bool) { return 1, q == 2 }),
		ruleDeliveryQoS(),
		ruleOtherFilters(),
		rulePubackFirst(),
		ruleRegister202(),
		rulePoll202(),
		ruleConcurrentRegister(),
		ruleRegisterThrottle(),
		ruleRIDEcho(),
		ruleAnswerTopicForm(),
		ruleUndocumentedTopic(),
		ruleOversize(),
		ruleRegistrationState(),
		ruleErrorBody(),
		rule401Close(),
		ruleThrottle("DPS-POLL-004", dps.Poll, "more than 5 polls of one device within 10 s"),
		ruleMalformedClose(),
	}
	slices.SortFunc(rs, func(a, b *Rule) int { return strings.Compare(a.ID, b.ID) })
	return rs
}

// CheckCapture applies rules to every conversation of a capture and returns
// the findings in conversation and frame order, and how often each rule
// applied.
//
// The MQTT of a conversation not wholly read (tracer.Conversation.Unseen:
// TLS not wholly decrypted, a gap in a TCP stream, a TLS record that failed
// to decrypt) is not judged: what could not be read (the server's
// answers, the poll a 200 answers) would look missing. Its TLS handshake,
// in the clear, still is.
func CheckCapture(c *tracer.Capture, rules []*Rule, env RuleEnv) ([]Finding, map[string]int) {
	c = handshakesOnly(c)
	var out []Finding
	applied := map[string]int{}
	for _, r := range rules {
		if r.CheckCapture != nil {
			n, f := r.CheckCapture(c, env)
			applied[r.ID] += n
			out = append(out, f...)
		}
	}
	for _, conv := range c.Conversations {
		for _, r := range rules {
			if r.CheckCapture != nil {
				continue
			}
			n, f := r.Check(conv, env)
			applied[r.ID] += n
			out = append(out, f...)
		}
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		if a.Conversation != b.Conversation {
			return a.Conversation - b.Conversation
		}
		return a.Frame - b.Frame
	})
	return out, applied
}

// handshakesOnly is c with the MQTT packets, and the problems of decoding
// them, of every conversation not wholly read left out (c itself when there
// is none).
func handshakesOnly(c *tracer.Capture) *tracer.Capture {
	var d *tracer.Capture
	for i, cv := range c.Conversations {
		if cv.Unseen() == "" || len(cv.Packets)+len(cv.Problems) == 0 {
			continue
		}
		if d == nil {
			cp := *c
			cp.Conversations = slices.Clone(c.Conversations)
			d = &cp
		}
		view := *cv
		view.Packets = nil
		view.Problems = slices.DeleteFunc(slices.Clone(cv.Problems), func(p tracer.Problem) bool {
			return p.Clause != "tls" && p.Clause != "ws" && p.Clause != tracer.ClauseUndecrypted
		})
		d.Conversations[i] = &view
	}
	if d == nil {
		return c
	}
	return d
}

// ---- helpers over a decoded conversation ----

// dir filters packets of one direction.
func pkts(c *tracer.Conversation, d tracer.Direction) []int {
	var idx []int
	for i := range c.Packets {
		if c.Packets[i].Dir == d {
			idx = append(idx, i)
		}
	}
	return idx
}

// firstAfter returns the index of the first packet of direction d after
// index i that satisfies ok, or -1.
func firstAfter(c *tracer.Conversation, i int, d tracer.Direction, ok func(packets.Packet) bool) int {
	for j := i + 1; j < len(c.Packets); j++ {
		if c.Packets[j].Dir == d && (ok == nil || ok(c.Packets[j].Packet)) {
			return j
		}
	}
	return -1
}

func isType[P packets.Packet](p packets.Packet) bool { _, ok := p.(P); return ok }

// connectOf returns the first CONNECT of the conversation and its index.
func connectOf(c *tracer.Conversation) (*packets.Connect, int) {
	for i := range c.Packets {
		if cp, ok := c.Packets[i].Packet.(*packets.Connect); ok && c.Packets[i].Dir == tracer.ClientToServer {
			return cp, i
		}
	}
	return nil, -1
}

// serverClosedAfter reports whether the server closed the connection after
// frame f, before the client did, with no packet of its own in between
// beyond those allowed.
func serverClosedFirst(c *tracer.Conversation) bool {
	s, cl := c.CloseFrame[tracer.ServerToClient], c.CloseFrame[tracer.ClientToServer]
	return c.Closed[tracer.ServerToClient] && (!c.Closed[tracer.ClientToServer] || s <= cl)
}

func describeClose(c *tracer.Conversation) string {
	switch {
	case serverClosedFirst(c):
		return fmt.Sprintf("the server closed the connection (frame %d)", c.CloseFrame[tracer.ServerToClient])
	case c.Closed[tracer.ClientToServer]:
		return fmt.Sprintf("the server kept the connection open until the client closed it (frame %d)", c.CloseFrame[tracer.ClientToServer])
	default:
		return "the connection was still open when the capture ended"
	}
}

func describe(p packets.Packet) string {
	switch p := p.(type) {
	case *packets.Connack:
		return fmt.Sprintf("CONNACK return code 0x%02x session-present %v", byte(p.ReturnCode), p.SessionPresent)
	case *packets.Suback:
		codes := make([]string, len(p.ReturnCodes))
		for i, c := range p.ReturnCodes {
			codes[i] = fmt.Sprintf("0x%02x", byte(c))
		}
		return fmt.Sprintf("SUBACK id %d granting [%s]", p.PacketID, strings.Join(codes, " "))
	case *packets.Publish:
		return fmt.Sprintf("PUBLISH %q QoS %d (%d-byte payload)", p.Topic, p.QoS, len(p.Payload))
	case *packets.Raw:
		// An MQTT 5 conversation's packets (tracer: undecoded).
		if p.Type() == packets.TypeConnack && len(p.Body) >= 2 {
			return fmt.Sprintf("CONNACK return code 0x%02x (MQTT 5)", p.Body[1])
		}
		return p.Type().String()
	case nil:
		return "nothing"
	default:
		return p.Type().String()
	}
}

// answer is a service PUBLISH on a response topic.
type answer struct {
	idx  int
	pkt  *tracer.Packet
	pub  *packets.Publish
	resp dps.Response
	err  error
}

// request is a device PUBLISH on a request topic.
type request struct {
	idx int
	pkt *tracer.Packet
	pub *packets.Publish
	req dps.Request
	err error
}

// eachPublish calls f for every PUBLISH of direction d, in capture order.
func eachPublish(c *tracer.Conversation, d tracer.Direction, f func(i int, p *tracer.Packet, pub *packets.Publish)) {
	for i := range c.Packets {
		p := &c.Packets[i]
		if pub, ok := p.Packet.(*packets.Publish); ok && p.Dir == d {
			f(i, p, pub)
		}
	}
}

func answers(c *tracer.Conversation) []answer {
	var out []answer
	eachPublish(c, tracer.ServerToClient, func(i int, p *tracer.Packet, pub *packets.Publish) {
		r, err := dps.ParseResponseTopic(string(pub.Topic))
		out = append(out, answer{idx: i, pkt: p, pub: pub, resp: r, err: err})
	})
	return out
}

func requests(c *tracer.Conversation) []request {
	var out []request
	eachPublish(c, tracer.ClientToServer, func(i int, p *tracer.Packet, pub *packets.Publish) {
		r, err := dps.ParseRequestTopic(string(pub.Topic))
		out = append(out, request{idx: i, pkt: p, pub: pub, req: r, err: err})
	})
	return out
}

// requestFor returns the request answer a answers: the last valid request
// before it with the same $rid or, when the $rid matches none (a fault
// DPS-REG-003 judges), the last valid request before it; nil if none.
func requestFor(reqs []request, a answer) *request {
	var same, last *request
	for i := range reqs {
		if reqs[i].idx < a.idx && reqs[i].err == nil {
			last = &reqs[i]
			if reqs[i].req.RID == a.resp.RID {
				same = &reqs[i]
			}
		}
	}
	if same != nil {
		return same
	}
	return last
}

// ---- CONNECT classification ----

func parsedUsername(cp *packets.Connect) (dps.Username, bool) {
	if cp.Username == nil {
		return dps.Username{}, false
	}
	u, err := dps.ParseUsername(string(cp.Username))
	return u, err == nil
}

// documentedConnect: the CONNECT of DPS-CONN-001, for a registration id of
// any length (up to 128 characters, Part A §11; a configured id is often
// longer than MQTT's 23). Keep-alive 0, which the C SDK sends, is left to
// DPS-CONN-003 (SHOULD).
func documentedConnect(cp *packets.Connect) bool {
	u, ok := parsedUsername(cp)
	return ok && cp.ProtocolLevel == 4 && u.ClientVersion == "" && u.APIVersion == dps.DefaultAPIVersion &&
		dps.EqualRegistrationID(u.RegistrationID, string(cp.ClientID)) && cp.CleanSession && cp.KeepAlive > 0
}

func sdkUsernameConnect(cp *packets.Connect) bool {
	u, ok := parsedUsername(cp)
	return ok && cp.ProtocolLevel == 4 && (u.ClientVersion != "" || u.APIVersion != dps.DefaultAPIVersion) &&
		dps.EqualRegistrationID(u.RegistrationID, string(cp.ClientID)) && cp.CleanSession
}

// conn003Connect: a CONNECT of DPS-CONN-003, with keep-alive 0, a ClientId
// longer than MQTT's 23 characters, or a registration id holding the
// punctuation Part A §11 allows besides '-' ('.', '_', ':').
func conn003Connect(cp *packets.Connect) bool {
	u, ok := parsedUsername(cp)
	return ok && cp.ProtocolLevel == 4 && dps.EqualRegistrationID(u.RegistrationID, string(cp.ClientID)) && cp.CleanSession &&
		(cp.KeepAlive == 0 || len(cp.ClientID) > 23 || strings.ContainsAny(u.RegistrationID, "._:"))
}

func badUsernameConnect(cp *packets.Connect) bool {
	_, ok := parsedUsername(cp)
	return cp.ProtocolLevel == 4 && !ok
}

func clientIDMismatchConnect(cp *packets.Connect) bool {
	u, ok := parsedUsername(cp)
	return ok && cp.ProtocolLevel == 4 && !dps.EqualRegistrationID(u.RegistrationID, string(cp.ClientID))
}

// caseOnly reports whether registration ids a and b differ only in letter
// case: the same registration (Part A §11), written otherwise.
func caseOnly(a, b string) bool { return a != b && dps.EqualRegistrationID(a, b) }

func caseOnlyClientIDConnect(cp *packets.Connect) bool {
	u, ok := parsedUsername(cp)
	return ok && cp.ProtocolLevel == 4 && caseOnly(string(cp.ClientID), u.RegistrationID)
}

// ruleCaseInsensitiveID judges DPS-CONN-007 (Part A §11: registration ids
// are compared case-insensitively): a CONNECT whose ClientId differs from
// the username's registration id only in letter case is accepted with
// CONNACK 0x00 (as ruleConnackFor judges it), and a register request whose
// body registrationId differs from the username's only in letter case is
// not answered 400 (Part A §7 keeps 400 for a body naming another device;
// a 409 or 429 is another rule's to judge).
func ruleCaseInsensitiveID() *Rule {
	const id = "DPS-CONN-007"
	connect := ruleConnackFor(id, "", caseOnlyClientIDConnect, 0)
	return &Rule{ID: id, Role: RoleService,
		Evidence: "a CONNECT whose ClientId, or a register request whose body registrationId, differs from the username's registration id only in letter case, and the server's answer",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			n, fs := connect.Check(c, env)
			cp, _ := connectOf(c)
			if cp == nil {
				return n, fs
			}
			u, ok := parsedUsername(cp)
			if !ok {
				return n, fs
			}
			reqs := requests(c)
			for _, a := range answers(c) {
				r := requestFor(reqs, a)
				if a.err != nil || r == nil || r.req.Kind != dps.Register {
					continue
				}
				dr, err := dps.ParseDeviceRegistration(r.pub.Payload)
				if err != nil || !caseOnly(dr.RegistrationID, u.RegistrationID) {
					continue
				}
				n++
				if a.resp.Status == 400 {
					fs = append(fs, finding(id, c, a.pkt.Frame, a.pkt.Time,
						fmt.Sprintf("the register with body registrationId %q (the username's %q) answered %q", dr.RegistrationID, u.RegistrationID, a.pub.Topic),
						"the answer to a register naming the connection's registration id (202), not 400"))
				}
			}
			return n, fs
		}}
}

// ruleConnackFor: a CONNECT selected by sel is answered with CONNACK code;
// a refusal (code non-zero) is then followed by the server closing the
// connection (Part A §2, §3; MQTT-3.2.2-5), judged as closeAfterRefusal
// does: not when the device closed, or the capture ended, less than
// RuleEnv.CloseGrace after the CONNACK.
func ruleConnackFor(id, what string, sel func(*packets.Connect) bool, code packets.ConnackCode) *Rule {
	want := fmt.Sprintf("CONNACK return code 0x%02x", byte(code))
	if code != 0 {
		want += " and the server closing the connection"
	}
	return &Rule{ID: id, Role: RoleService, Evidence: what + " and the server's answer",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			cp, i := connectOf(c)
			if cp == nil || !sel(cp) || c.PlainToTLSPort {
				// A plaintext CONNECT to a TLS port is owed no answer at
				// all: TLS-005's to judge.
				return 0, nil
			}
			j := firstAfter(c, i, tracer.ServerToClient, nil)
			if j < 0 {
				if undecided(c, c.Packets[i].Time, env) {
					return 0, nil // the device gave up (or the capture ends) before any answer
				}
				return 1, []Finding{finding(id, c, c.Packets[i].Frame, c.Packets[i].Time, "no CONNACK; "+describeClose(c), want)}
			}
			ack, ok := c.Packets[j].Packet.(*packets.Connack)
			if !ok || ack.ReturnCode != code {
				return 1, []Finding{finding(id, c, c.Packets[j].Frame, c.Packets[j].Time, describe(c.Packets[j].Packet), want)}
			}
			if code != 0 {
				return closeAfterRefusal(id, c, j, env, want)
			}
			// Accepted means usable: the server must not close the
			// session before the client's next packet is answered.
			if k := firstAfter(c, j, tracer.ClientToServer, nil); k >= 0 && firstAfter(c, k-1, tracer.ServerToClient, nil) < 0 && serverClosedFirst(c) {
				return 1, []Finding{finding(id, c, c.CloseFrame[tracer.ServerToClient], c.CloseTime[tracer.ServerToClient],
					"CONNACK 0x00, then the server closed the connection without answering "+describe(c.Packets[k].Packet),
					"CONNACK 0x00 and an open session")}
			}
			return 1, nil
		}}
}

// ---- TLS ----

func onlyOffered(c *tracer.Conversation, v uint16) bool {
	return c.TLS != nil && c.TLS.ClientHello && len(c.TLS.OfferedVersions) == 1 && c.TLS.OfferedVersions[0] == v
}

func ruleTLSAccepted() *Rule {
	return &Rule{ID: "TLS-001", Role: RoleService, Evidence: "a ClientHello offering only TLS 1.2 and only the suites DPS recommends",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			if !onlyOffered(c, 0x0303) || !onlyRecommendedSuites(c.TLS.OfferedSuites) {
				return 0, nil
			}
			if c.TLS.ServerHello && c.TLS.Version == 0x0303 {
				return 1, nil
			}
			return 1, []Finding{finding("TLS-001", c, c.FirstFrame(), c.Start, tlsOutcome(c), "a ServerHello choosing TLS 1.2")}
		}}
}

// onlyRecommendedSuites reports whether a ClientHello's suites are all of
// the ECDHE AES-GCM and AES-CBC suites DPS recommends (D-TLS; the two
// CBC-SHA384 suites crypto/tls lacks included), signalling values and
// GREASE aside, and there is at least one.
func onlyRecommendedSuites(suites []uint16) bool {
	n := 0
	for _, s := range suites {
		switch {
		case s == 0x00ff || s == 0x5600 || s&0x0f0f == 0x0a0a && s>>8 == s&0xff:
			// TLS_EMPTY_RENEGOTIATION_INFO_SCSV, TLS_FALLBACK_SCSV, GREASE
			// (RFC 8701): no suites.
		case recommendedSuite(s):
			n++
		default:
			return false
		}
	}
	return n > 0
}

// recommendedSuite reports whether s is one of the ECDHE AES-GCM and
// AES-CBC suites DPS recommends (D-TLS): transport.DPSCipherSuites and
// 0xc024, 0xc028 (ECDHE-ECDSA and ECDHE-RSA AES-256-CBC-SHA384, which
// crypto/tls lacks).
func recommendedSuite(s uint16) bool {
	return slices.Contains(transport.DPSCipherSuites(), s) || s == 0xc024 || s == 0xc028
}

func tlsOutcome(c *tracer.Conversation) string {
	switch {
	case c.TLS.ServerHello:
		return "the server chose " + tlstrace.VersionName(c.TLS.Version)
	case len(c.TLS.Alerts) > 0:
		return fmt.Sprintf("no ServerHello; alert %v", c.TLS.Alerts[0])
	default:
		return "no ServerHello; " + describeClose(c)
	}
}

func ruleTLSRefused(id string, v uint16) *Rule {
	return &Rule{ID: id, Role: RoleService, Evidence: "a ClientHello offering only " + tlstrace.VersionName(v),
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			if !onlyOffered(c, v) {
				return 0, nil
			}
			if c.TLS.ServerHello && c.TLS.Version == v {
				return 1, []Finding{finding(id, c, c.FirstFrame(), c.Start, "the server chose "+tlstrace.VersionName(v), "the handshake refused (alert or close, no ServerHello for "+tlstrace.VersionName(v)+")")}
			}
			return 1, nil
		}}
}

func rulePlaintext() *Rule {
	return &Rule{ID: "TLS-005", Role: RoleService, Evidence: "a plaintext MQTT CONNECT",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			if c.Transport != "mqtt" && c.Transport != "ws" || !env.Live && !c.PlainToTLSPort {
				// Only our own recordings, or a capture showing plaintext
				// on a TLS port, tell a plaintext connection from a
				// recorder's plaintext view of a TLS one (RuleEnv.Live).
				return 0, nil
			}
			cp, i := connectOf(c)
			if cp == nil {
				return 0, nil
			}
			if j := firstAfter(c, i, tracer.ServerToClient, isType[*packets.Connack]); j >= 0 {
				return 1, []Finding{finding("TLS-005", c, c.Packets[j].Frame, c.Packets[j].Time, "plaintext "+describe(c.Packets[j].Packet), "no MQTT answer without TLS")}
			}
			return 1, nil
		}}
}

// ---- CONNECT and session ----

func ruleProtocolLevel() *Rule {
	const id = "DPS-CONN-006"
	return &Rule{ID: id, Role: RoleService, Evidence: "a CONNECT with a protocol level other than 4 and the server's answer",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			if c.MQTTVersion == 0 || c.MQTTVersion == 4 {
				return 0, nil
			}
			first := -1
			for i := range c.Packets {
				if c.Packets[i].Dir == tracer.ServerToClient {
					first = i
					break
				}
			}
			want := []string{"CONNACK 0x01 and the server closing the connection"}
			if first < 0 {
				if undecided(c, c.Start, env) {
					return 0, nil
				}
				return 1, []Finding{finding(id, c, c.FirstFrame(), c.Start, "no CONNACK; "+describeClose(c), want...)}
			}
			p := &c.Packets[first]
			code, ok := connackCode(p)
			if !ok || code != 0x01 {
				return 1, []Finding{finding(id, c, p.Frame, p.Time, fmt.Sprintf("first answer %x", p.Raw), want...)}
			}
			return closeAfterRefusal(id, c, first, env, want[0])
		}}
}

// connackCode reads the return code of a CONNACK however it was decoded
// (an MQTT 5 conversation carries it as packets.Raw).
func connackCode(p *tracer.Packet) (byte, bool) {
	if a, ok := p.Packet.(*packets.Connack); ok {
		return byte(a.ReturnCode), true
	}
	if len(p.Raw) >= 4 && p.Raw[0] == 0x20 {
		return p.Raw[3], true
	}
	return 0, false
}

// ruleCleanSession0 judges the refusal of CleanSession=0 under dps-2019
// (Part A §2): a close before any CONNACK, or a non-zero CONNACK (0x02
// expected) and then the close, with nothing else from the server in
// between (closeAfterRefusal, MQTT-3.2.2-5). A refusal CONNACK with the
// connection left open is no refusal: it does not judge when the device
// closed, or the capture ended, less than RuleEnv.CloseGrace after the
// CONNACK.
func ruleCleanSession0() *Rule {
	const id = "DPS-SESS-001"
	const want = "a refusal: a non-zero CONNACK (0x02) and the server closing the connection, or a close before CONNACK"
	return &Rule{ID: id, Role: RoleService, Evidence: "a CONNECT with CleanSession=0 and the server's answer",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			cp, i := connectOf(c)
			if cp == nil || cp.CleanSession || cp.ProtocolLevel != 4 {
				return 0, nil
			}
			j := firstAfter(c, i, tracer.ServerToClient, nil)
			if j < 0 {
				if c.Closed[tracer.ServerToClient] {
					return 1, nil // closed before CONNACK: a refusal
				}
				return 0, nil
			}
			p := &c.Packets[j]
			a, ok := p.Packet.(*packets.Connack)
			if !ok || a.ReturnCode == 0 {
				return 1, []Finding{finding(id, c, p.Frame, p.Time, describe(p.Packet), want)}
			}
			return closeAfterRefusal(id, c, j, env, want)
		}}
}

// closeAfterRefusal judges what follows the refusal CONNACK at c.Packets[j]
// ([MQTT-3.2.2-5] If a server sends a CONNACK packet containing a non-zero
// return code it MUST then close the Network Connection): nothing more
// from the server, and the server closing the connection first. A refusal
// CONNACK with the connection left open is a finding (want says what would
// have passed); it does not judge (0, nil) when the device closed, or the
// capture ended, less than RuleEnv.CloseGrace after the CONNACK.
func closeAfterRefusal(id string, c *tracer.Conversation, j int, env RuleEnv, want string) (int, []Finding) {
	p := &c.Packets[j]
	if k := firstAfter(c, j, tracer.ServerToClient, nil); k >= 0 {
		return 1, []Finding{finding(id, c, c.Packets[k].Frame, c.Packets[k].Time, describe(p.Packet)+", then the server went on: "+describe(c.Packets[k].Packet), want)}
	}
	if undecided(c, p.Time, env) {
		return 0, nil
	}
	if !serverClosedFirst(c) {
		return 1, []Finding{finding(id, c, p.Frame, p.Time, describe(p.Packet)+", then "+describeClose(c), want)}
	}
	return 1, nil
}

func ruleSessionPresent() *Rule {
	const id = "DPS-SESS-003"
	return &Rule{ID: id, Role: RoleService, Evidence: "a CONNACK",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			n := 0
			var fs []Finding
			for i := range c.Packets {
				a, ok := c.Packets[i].Packet.(*packets.Connack)
				if !ok || c.Packets[i].Dir != tracer.ServerToClient {
					continue
				}
				n++
				if a.SessionPresent {
					fs = append(fs, finding(id, c, c.Packets[i].Frame, c.Packets[i].Time, describe(a), "session-present 0"))
				}
			}
			return n, fs
		}}
}

// ---- SUBSCRIBE ----

// subackFor returns the SUBACK answering the SUBSCRIBE at index i.
func subackFor(c *tracer.Conversation, i int) (*packets.Suback, int) {
	s := c.Packets[i].Packet.(*packets.Subscribe)
	j := firstAfter(c, i, tracer.ServerToClient, func(p packets.Packet) bool {
		a, ok := p.(*packets.Suback)
		return ok && a.PacketID == s.PacketID
	})
	if j < 0 {
		return nil, -1
	}
	return c.Packets[j].Packet.(*packets.Suback), j
}

func subscribes(c *tracer.Conversation) []int {
	var out []int
	for _, i := range pkts(c, tracer.ClientToServer) {
		if _, ok := c.Packets[i].Packet.(*packets.Subscribe); ok {
			out = append(out, i)
		}
	}
	return out
}

func ruleGrant(id, what string, want func(q byte) (packets.SubackCode, bool)) *Rule {
	return &Rule{ID: id, Role: RoleService, Evidence: what + " answered by a SUBACK",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			n := 0
			var fs []Finding
			for _, i := range subscribes(c) {
				s := c.Packets[i].Packet.(*packets.Subscribe)
				ack, j := subackFor(c, i)
				for k, sub := range s.Subscriptions {
					w, ok := want(sub.QoS)
					if !ok || string(sub.Filter) != dps.SubscribeFilter {
						continue
					}
					if ack == nil {
						if serverClosedFirst(c) {
							n++
							fs = append(fs, finding(id, c, c.Packets[i].Frame, c.Packets[i].Time, "no SUBACK; "+describeClose(c), fmt.Sprintf("SUBACK granting %d", w)))
						}
						continue
					}
					n++
					if k >= len(ack.ReturnCodes) || ack.ReturnCodes[k] != w {
						fs = append(fs, finding(id, c, c.Packets[j].Frame, c.Packets[j].Time, fmt.Sprintf("asked QoS %d, %s", sub.QoS, describe(ack)), fmt.Sprintf("SUBACK granting %d", w)))
					}
				}
			}
			return n, fs
		}}
}

func ruleDeliveryQoS() *Rule {
	const id = "DPS-SUB-003"
	return &Rule{ID: id, Role: RoleService, Evidence: "an answer PUBLISH after a SUBACK granting the response filter",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			granted := -1
			n := 0
			var fs []Finding
			for i := range c.Packets {
				p := &c.Packets[i]
				switch pk := p.Packet.(type) {
				case *packets.Subscribe:
					if ack, _ := subackFor(c, i); ack != nil {
						for k, sub := range pk.Subscriptions {
							if string(sub.Filter) == dps.SubscribeFilter && k < len(ack.ReturnCodes) && ack.ReturnCodes[k] != packets.SubackFailure {
								granted = int(ack.ReturnCodes[k])
							}
						}
					}
				case *packets.Publish:
					if p.Dir != tracer.ServerToClient || granted < 0 {
						continue
					}
					n++
					// Part A §6: min(granted QoS, 1), no more and no less.
					if want := min(granted, 1); int(pk.QoS) != want {
						fs = append(fs, finding(id, c, p.Frame, p.Time, fmt.Sprintf("%s after a grant of %d", describe(pk), granted), fmt.Sprintf("QoS %d", want)))
					}
				}
			}
			return n, fs
		}}
}

func ruleOtherFilters() *Rule {
	const id = "DPS-SUB-004"
	return &Rule{ID: id, Role: RoleService, Evidence: "a SUBSCRIBE to a filter other than $dps/registrations/res/# and the server's answer",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			n := 0
			var fs []Finding
			for _, i := range subscribes(c) {
				s := c.Packets[i].Packet.(*packets.Subscribe)
				ack, j := subackFor(c, i)
				for k, sub := range s.Subscriptions {
					if string(sub.Filter) == dps.SubscribeFilter {
						continue
					}
					if ack == nil {
						// Part A §9 refuses with SUBACK 0x80, and every
						// SUBSCRIBE gets a SUBACK (MQTT-3.8.4-1): a
						// server that closes instead breaks both. One
						// that neither answered nor closed was not given
						// the chance (the capture ended): not judged.
						if serverClosedFirst(c) {
							n++
							fs = append(fs, finding(id, c, c.Packets[i].Frame, c.Packets[i].Time, fmt.Sprintf("filter %q: no SUBACK; %s", sub.Filter, describeClose(c)), "SUBACK 0x80 for it"))
						}
						continue
					}
					n++
					// A SUBACK with no return code for the filter
					// (MQTT-3.9.3-1) refuses nothing either.
					if k >= len(ack.ReturnCodes) || ack.ReturnCodes[k] != packets.SubackFailure {
						fs = append(fs, finding(id, c, c.Packets[j].Frame, c.Packets[j].Time, fmt.Sprintf("filter %q: %s", sub.Filter, describe(ack)), "SUBACK 0x80 for it"))
					}
				}
			}
			return n, fs
		}}
}

// ---- requests and answers ----

// answerRule builds a rule that judges each answer PUBLISH, paired with the
// request it answers (nil if none): judge says whether the rule applies to
// it and what it finds, as connectRule's judge does.
func answerRule(id, evidence string, judge func(c *tracer.Conversation, a answer, r *request, reqs []request) (bool, []Finding)) *Rule {
	return answerRuleEnv(id, evidence, func(c *tracer.Conversation, a answer, r *request, reqs []request, _ RuleEnv) (bool, []Finding) {
		return judge(c, a, r, reqs)
	})
}

// answerRuleEnv is answerRule for a judge that reads the RuleEnv too.
func answerRuleEnv(id, evidence string, judge func(c *tracer.Conversation, a answer, r *request, reqs []request, env RuleEnv) (bool, []Finding)) *Rule {
	return &Rule{ID: id, Role: RoleService, Evidence: evidence,
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			reqs := requests(c)
			n := 0
			var fs []Finding
			for _, a := range answers(c) {
				ok, f := judge(c, a, requestFor(reqs, a), reqs, env)
				if !ok {
					continue
				}
				n++
				fs = append(fs, f...)
			}
			return n, fs
		}}
}

func rulePubackFirst() *Rule {
	const id = "DPS-REG-001"
	return answerRule(id, "a QoS 1 register or poll request and its answer",
		func(c *tracer.Conversation, a answer, r *request, _ []request) (bool, []Finding) {
			if a.err != nil || r == nil || r.pub.QoS != 1 {
				return false, nil
			}
			pid := r.pub.PacketID
			ack := firstAfter(c, r.idx, tracer.ServerToClient, func(p packets.Packet) bool {
				pa, ok := p.(*packets.Puback)
				return ok && pa.PacketID == pid
			})
			if ack < 0 || ack > a.idx {
				return true, []Finding{finding(id, c, a.pkt.Frame, a.pkt.Time, fmt.Sprintf("the answer %q came before the PUBACK of packet id %d", a.pub.Topic, pid), "PUBACK, then the answer")}
			}
			return true, nil
		})
}

// operationStatus decodes an answer's RegistrationOperationStatus body.
func operationStatus(a answer) (dps.RegistrationOperationStatus, error) {
	var st dps.RegistrationOperationStatus
	err := json.Unmarshal(a.pub.Payload, &st)
	return st, err
}

// answersRegister reports whether a is a well-formed answer with status to
// the register request r.
func answersRegister(a answer, r *request, status int) bool {
	return a.err == nil && a.resp.Status == status && r != nil && r.req.Kind == dps.Register
}

func ruleRegister202() *Rule {
	const id = "DPS-REG-002"
	return answerRule(id, "a register request answered 202",
		func(c *tracer.Conversation, a answer, r *request, _ []request) (bool, []Finding) {
			if !answersRegister(a, r, 202) {
				return false, nil
			}
			var fs []Finding
			if !a.resp.HasRetryAfter {
				fs = append(fs, finding(id, c, a.pkt.Frame, a.pkt.Time, fmt.Sprintf("topic %q", a.pub.Topic), "a retry-after in the topic"))
			}
			if st, err := operationStatus(a); err != nil || st.OperationID == "" || st.Status != dps.StatusAssigning {
				fs = append(fs, finding(id, c, a.pkt.Frame, a.pkt.Time, fmt.Sprintf("body %s", clip(a.pub.Payload)), `{"operationId":…,"status":"assigning"}`))
			}
			return true, fs
		})
}

// rulePoll202 judges the answers of DPS-POLL-001 that a capture can show
// on their own: a poll answered 202 carries a retry-after (D-MQTT: "keep
// polling ... after a delay equal to the retry-after period"; Part B §5)
// and the status assigning (Part A §6); a poll answered 200 carries a
// final status (assigned, or failed or disabled, which depend on the
// enrollment; Part A §8).
func rulePoll202() *Rule {
	const id = "DPS-POLL-001"
	return answerRule(id, "a poll answered 202 or 200",
		func(c *tracer.Conversation, a answer, r *request, _ []request) (bool, []Finding) {
			if a.err != nil || r == nil || r.req.Kind != dps.Poll || a.resp.Status != 202 && a.resp.Status != 200 {
				return false, nil
			}
			if a.resp.Status == 200 {
				// The operation's end: assigned, or failed or disabled
				// (Part A §6, §8), never a status that asks for more polls.
				switch st, err := operationStatus(a); {
				case err != nil, !st.Status.Final():
					return true, []Finding{finding(id, c, a.pkt.Frame, a.pkt.Time, fmt.Sprintf("the 200 answer to a poll has body %s", clip(a.pub.Payload)),
						`{"operationId":…,"status":"assigned" (or "failed", "disabled"),…}`)}
				}
				return true, nil
			}
			var fs []Finding
			if !a.resp.HasRetryAfter {
				fs = append(fs, finding(id, c, a.pkt.Frame, a.pkt.Time, fmt.Sprintf("the 202 answer to a poll on topic %q", a.pub.Topic), "a retry-after in the topic"))
			}
			// Part A §6: polls are answered 202 with
			// registrationState{registrationId, status:"assigning"} (Part
			// B §4.4, the EC source comment and I-393's trace); the
			// registrationId the connection's, compared without case.
			st, err := operationStatus(a)
			rs := st.RegistrationState
			regID := ""
			if cp, _ := connectOf(c); cp != nil {
				if u, ok := parsedUsername(cp); ok {
					regID = u.RegistrationID
				}
			}
			if err != nil || st.Status != dps.StatusAssigning || rs == nil || rs.Status != dps.StatusAssigning ||
				rs.RegistrationID == "" || regID != "" && !dps.EqualRegistrationID(rs.RegistrationID, regID) {
				want := "the connection's registration id"
				if regID != "" {
					want = strconv.Quote(regID)
				}
				fs = append(fs, finding(id, c, a.pkt.Frame, a.pkt.Time, fmt.Sprintf("the 202 answer to a poll has body %s", clip(a.pub.Payload)),
					`{"operationId":…,"status":"assigning","registrationState":{"registrationId":`+want+`,"status":"assigning"}}`))
			}
			return true, fs
		})
}

// ruleConcurrentRegister judges DPS-REG-009: a register sent while the
// device's earlier registration operation is still in progress is answered
// 409. The capture shows "in progress" in a way that cannot be argued with:
// the earlier operation is polled after the second register's answer, and
// that poll is answered 202 "assigning" (an operation never goes back to
// assigning). A register with no such poll after it is not judged, nor one
// refused for another reason (429 throttled, 4xx, 5xx): the violation is
// accepting it.
func ruleConcurrentRegister() *Rule {
	const id = "DPS-REG-009"
	return &Rule{ID: id, Role: RoleService, Evidence: "a second register, then a poll of the first registration's operation answered 202 assigning",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			reqs := requests(c)
			as := answers(c)
			// Each answer's request and body, decoded once.
			rs := make([]*request, len(as))
			sts := make([]dps.RegistrationOperationStatus, len(as))
			for i, a := range as {
				rs[i] = requestFor(reqs, a)
				sts[i], _ = operationStatus(a)
			}
			created := map[string]int{} // operation id → index of the register answer that gave it
			n := 0
			var fs []Finding
			for i, a := range as {
				r := rs[i]
				if a.err != nil || r == nil || r.req.Kind != dps.Register {
					continue
				}
				accepted := a.resp.Status < 300
				if !accepted && a.resp.Status != 409 {
					continue // refused for another reason
				}
				// Is an operation created before this register still
				// assigning when polled after its answer?
				for j := i + 1; j < len(as); j++ {
					later, lr := as[j], rs[j]
					if later.err != nil || lr == nil || lr.idx < a.idx || lr.req.Kind != dps.Poll || later.resp.Status != 202 {
						continue
					}
					at, ok := created[lr.req.OperationID]
					if !ok || at > r.idx || sts[j].Status != dps.StatusAssigning {
						continue
					}
					n++
					if accepted {
						fs = append(fs, finding(id, c, a.pkt.Frame, a.pkt.Time,
							fmt.Sprintf("%q, while operation %s was still assigning (polled at frame %d)", a.pub.Topic, lr.req.OperationID, later.pkt.Frame),
							"status 409"))
					}
					break
				}
				if op := sts[i].OperationID; op != "" && accepted {
					if _, ok := created[op]; !ok {
						created[op] = a.idx
					}
				}
			}
			return n, fs
		}}
}

// ruleRegisterThrottle judges DPS-REG-010 as far as a capture can: a
// register answered 429 (the registration budget spent) carries a
// retry-after. Whether a register was over the budget depends on the
// instance's budget and traffic, which the spec knows and a capture does
// not.
func ruleRegisterThrottle() *Rule {
	const id = "DPS-REG-010"
	return answerRule(id, "a register request answered 429",
		func(c *tracer.Conversation, a answer, r *request, _ []request) (bool, []Finding) {
			if !answersRegister(a, r, 429) {
				return false, nil
			}
			if !a.resp.HasRetryAfter {
				return true, []Finding{finding(id, c, a.pkt.Frame, a.pkt.Time, fmt.Sprintf("429 without retry-after: %q", a.pub.Topic), "429 with retry-after")}
			}
			return true, nil
		})
}

func clip(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%q…", b[:200])
	}
	return fmt.Sprintf("%q", b)
}

func ruleRIDEcho() *Rule {
	const id = "DPS-REG-003"
	return answerRule(id, "a request with a $rid and an answer",
		func(c *tracer.Conversation, a answer, _ *request, reqs []request) (bool, []Finding) {
			var rids []string // of the requests before the answer
			for _, r := range reqs {
				if r.idx < a.idx && r.err == nil {
					rids = append(rids, r.req.RID)
				}
			}
			switch {
			case len(rids) == 0:
				return false, nil
			case a.err != nil || slices.Contains(rids, a.resp.RID):
				return true, nil // an unparsable topic is judged by DPS-REG-004
			}
			return true, []Finding{finding(id, c, a.pkt.Frame, a.pkt.Time, fmt.Sprintf("$rid %q in %q", a.resp.RID, a.pub.Topic), fmt.Sprintf("the $rid of a request: %q", rids))}
		})
}

func ruleAnswerTopicForm() *Rule {
	const id = "DPS-REG-004"
	return answerRule(id, "an answer PUBLISH",
		func(c *tracer.Conversation, a answer, _ *request, _ []request) (bool, []Finding) {
			if a.err != nil {
				return true, []Finding{finding(id, c, a.pkt.Frame, a.pkt.Time, fmt.Sprintf("topic %q: %v", a.pub.Topic, a.err), "$dps/registrations/res/{status}/?$rid={rid}[&retry-after={n}]")}
			}
			ra := -1
			if a.resp.HasRetryAfter {
				ra = int(a.resp.RetryAfter / time.Second)
			}
			if want := dps.ResponseTopic(a.resp.Status, a.resp.RID, ra); string(a.pub.Topic) != want {
				return true, []Finding{finding(id, c, a.pkt.Frame, a.pkt.Time, fmt.Sprintf("topic %q", a.pub.Topic), fmt.Sprintf("%q", want))}
			}
			return true, nil
		})
}

// mustClose judges that the server closed the connection after the device
// packet at index idx (-1 when the packet is not decoded, e.g. a cut one):
// no PUBLISH of the server after it, and a close by the server before the
// device's. It does not judge (0 applied) when the device closed, or the
// capture ended, before the server had RuleEnv.CloseGrace after t. what
// names the packet in the finding ("PUBLISH \"…\"", "a 98419-byte packet").
func mustClose(id string, c *tracer.Conversation, idx, frame int, t time.Time, what string, env RuleEnv) (int, []Finding) {
	const want = "the server closing the connection"
	if idx >= 0 {
		if j := firstAfter(c, idx, tracer.ServerToClient, isType[*packets.Publish]); j >= 0 {
			return 1, []Finding{finding(id, c, c.Packets[j].Frame, c.Packets[j].Time, "after "+what+" the server went on: "+describe(c.Packets[j].Packet), want)}
		}
	}
	if undecided(c, t, env) {
		return 0, nil
	}
	if !serverClosedFirst(c) {
		return 1, []Finding{finding(id, c, frame, t, "after "+what+" "+describeClose(c), want)}
	}
	return 1, nil
}

func ruleUndocumentedTopic() *Rule {
	const id = "DPS-REG-007"
	return &Rule{ID: id, Role: RoleService, Evidence: "a PUBLISH to an undocumented topic",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			for _, r := range requests(c) {
				if r.err == nil || errors.Is(r.err, dps.ErrRIDWithoutDollar) {
					// "?rid=" for "?$rid=" is the device's mistake
					// (DPS-DEV-011); what a service does with it is not
					// documented.
					continue
				}
				return mustClose(id, c, r.idx, r.pkt.Frame, r.pkt.Time, fmt.Sprintf("PUBLISH %q", r.pub.Topic), env)
			}
			return 0, nil
		}}
}

// MaxMessageSize is the DPS message size limit (D-LIMITS: 96 KB).
const MaxMessageSize = 96 * 1024

func ruleOversize() *Rule {
	const id = "DPS-REG-008"
	return &Rule{ID: id, Role: RoleService, Evidence: "a device packet over 96 KB",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			// A sender cut off mid-packet (the server closed as soon as
			// the fixed header announced the size) shows as a problem.
			for _, pr := range c.Problems {
				if pr.Dir == tracer.ClientToServer && pr.PacketLen > MaxMessageSize {
					return mustClose(id, c, -1, pr.Frame, c.Start, fmt.Sprintf("a %d-byte packet", pr.PacketLen), env)
				}
			}
			for i := range c.Packets {
				p := &c.Packets[i]
				if p.Dir != tracer.ClientToServer || len(p.Raw) <= MaxMessageSize {
					continue
				}
				return mustClose(id, c, i, p.Frame, p.Time, fmt.Sprintf("a %d-byte packet", len(p.Raw)), env)
			}
			return 0, nil
		}}
}

func ruleRegistrationState() *Rule {
	const id = "DPS-POLL-002"
	return answerRuleEnv(id, "an answer 200 with status assigned",
		func(c *tracer.Conversation, a answer, _ *request, _ []request, env RuleEnv) (bool, []Finding) {
			var st dps.RegistrationOperationStatus
			if a.err != nil || a.resp.Status != 200 || json.Unmarshal(a.pub.Payload, &st) != nil || st.Status != dps.StatusAssigned {
				return false, nil
			}
			if missing := missingStateFields(st.RegistrationState); len(missing) > 0 {
				return true, []Finding{finding(id, c, a.pkt.Frame, a.pkt.Time, "registrationState lacks "+strings.Join(missing, ", "), "a complete registrationState")}
			}
			// Part A §6: the 200 answer's registrationState is the
			// device's (its registrationId the connection's, compared
			// without case) and says assigned (Part B §4.5: status, the
			// same enum as the operation's).
			var fs []Finding
			rs := st.RegistrationState
			if rs.Status != dps.StatusAssigned {
				fs = append(fs, finding(id, c, a.pkt.Frame, a.pkt.Time, fmt.Sprintf("registrationState.status %q in the 200 answer with status assigned", rs.Status), `"status":"assigned"`))
			}
			if cp, _ := connectOf(c); cp != nil {
				if u, ok := parsedUsername(cp); ok && u.RegistrationID != "" {
					if !dps.EqualRegistrationID(rs.RegistrationID, u.RegistrationID) {
						fs = append(fs, finding(id, c, a.pkt.Frame, a.pkt.Time, fmt.Sprintf("registrationState.registrationId %q in the 200 answer", rs.RegistrationID),
							fmt.Sprintf(`"registrationId":%q (the connection's, in any case)`, u.RegistrationID)))
					}
					// Part A §6, Part B §4.5: the attestation object names
					// the device's enrollment group, if any.
					if e, ok := env.enrollmentOf(cp, u.RegistrationID); ok {
						for _, p := range enrollmentGroupProblems(rs, e) {
							fs = append(fs, finding(id, c, a.pkt.Frame, a.pkt.Time, p.actual, p.expected))
						}
					}
				}
			}
			return true, fs
		})
}

// enrollmentGroupProblems judges the enrollmentGroupId of registrationState's
// attestation objects against the enrollment the device's token was signed
// for. Part A §6 gives the 200 "x509 or symmetricKey sub-objects", Part B
// §4.5 their members (symmetricKey {enrollmentGroupId}, x509
// {certificateInfo, enrollmentGroupId, signingCertificateInfo}); §9 gives
// an enrollment group, not an individual enrollment, an enrollmentGroupId.
// So a device of an individual enrollment is named no group, and a group
// device, when its group's id is known, none other than its own (compared
// without case, leniently: Part A §11 compares registration ids so, and no
// source says how group ids compare). Which object carries it is not
// judged: the body of §4.5 shows "x509":{} alone for a SAS device, and no
// source shows whether a group device's answer always names its group.
func enrollmentGroupProblems(rs *dps.DeviceRegistrationResult, e KnownEnrollment) []groupProblem {
	type object struct{ name, group string }
	var objs []object
	if rs.SymmetricKey != nil {
		objs = append(objs, object{"symmetricKey", rs.SymmetricKey.EnrollmentGroupID})
	}
	if rs.X509 != nil {
		objs = append(objs, object{"x509", rs.X509.EnrollmentGroupID})
	}
	var out []groupProblem
	for _, o := range objs {
		switch {
		case o.group == "":
		case e.RegistrationID != "":
			out = append(out, groupProblem{
				fmt.Sprintf("registrationState.%s.enrollmentGroupId %q for a device of the individual enrollment %q", o.name, o.group, e.RegistrationID),
				"no enrollmentGroupId (the device's token is signed with the key given as its individual enrollment's; if that key is a device key derived from a group's, give the group's key as --group-key instead)"})
		case e.GroupID != "" && !strings.EqualFold(o.group, e.GroupID):
			out = append(out, groupProblem{
				fmt.Sprintf("registrationState.%s.enrollmentGroupId %q for a device of the enrollment group %q", o.name, o.group, e.GroupID),
				fmt.Sprintf(`"enrollmentGroupId":%q (the group whose key the device's key is derived from), or none`, e.GroupID)})
		}
	}
	return out
}

// groupProblem is a finding of enrollmentGroupProblems: what was seen and
// what would have passed.
type groupProblem struct{ actual, expected string }

func missingStateFields(s *dps.DeviceRegistrationResult) []string {
	if s == nil {
		return []string{"everything (no registrationState)"}
	}
	var m []string
	for _, f := range []struct {
		name string
		ok   bool
	}{
		{"registrationId", s.RegistrationID != ""}, {"createdDateTimeUtc", s.CreatedDateTimeUTC != ""},
		{"assignedHub", s.AssignedHub != ""}, {"deviceId", s.DeviceID != ""}, {"status", s.Status != ""},
		{"substatus", s.Substatus != ""}, {"lastUpdatedDateTimeUtc", s.LastUpdatedDateTimeUTC != ""}, {"etag", s.ETag != ""},
		{"symmetricKey or x509", s.SymmetricKey != nil || s.X509 != nil},
	} {
		if !f.ok {
			m = append(m, f.name)
		}
	}
	return m
}

func ruleErrorBody() *Rule {
	const id = "DPS-ERR-001"
	return answerRule(id, "an error answer (4xx or 5xx)",
		func(c *tracer.Conversation, a answer, _ *request, _ []request) (bool, []Finding) {
			if a.err != nil || a.resp.Status < 400 {
				return false, nil
			}
			if problem := errorBodyProblem(a.pub.Payload, a.resp.Status); problem != "" {
				return true, []Finding{finding(id, c, a.pkt.Frame, a.pkt.Time, fmt.Sprintf("%d answer body %s: %s", a.resp.Status, clip(a.pub.Payload), problem),
					fmt.Sprintf(`{"errorCode":%d…,"trackingId":…,"message":…,"timestampUtc":…}`, a.resp.Status))}
			}
			return true, nil
		})
}

func errorBodyProblem(b []byte, status int) string {
	var e dps.ErrorBody
	if err := json.Unmarshal(b, &e); err != nil {
		return "not a JSON object: " + err.Error()
	}
	switch {
	case e.HTTPStatus() != status:
		return fmt.Sprintf("errorCode %d does not start with %d", e.ErrorCode, status)
	case e.TrackingID == "":
		return "no trackingId"
	case e.Message == "":
		return "no message"
	case e.TimestampUTC == "":
		return "no timestampUtc"
	}
	return ""
}

func rule401Close() *Rule {
	const id = "DPS-AUTH-007"
	return &Rule{ID: id, Role: RoleService, Evidence: "an answer 401",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			for _, a := range answers(c) {
				if a.err != nil || a.resp.Status != 401 {
					continue
				}
				return mustClose(id, c, a.idx, a.pkt.Frame, a.pkt.Time, "the 401", env)
			}
			return 0, nil
		}}
}

// ruleThrottle: the 6th request of kind within 10 s is answered 429 with a
// retry-after.
func ruleThrottle(id string, kind dps.RequestKind, what string) *Rule {
	return &Rule{ID: id, Role: RoleService, Evidence: what,
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			reqs := requests(c)
			var times []time.Time
			n := 0
			var fs []Finding
			for _, a := range answers(c) {
				r := requestFor(reqs, a)
				if a.err != nil || r == nil || r.req.Kind != kind {
					continue
				}
				times = append(times, r.pkt.Time)
				if len(times) < 6 || r.pkt.Time.Sub(times[len(times)-6]) >= 10*time.Second {
					if a.resp.Status == 429 && !a.resp.HasRetryAfter {
						fs = append(fs, finding(id, c, a.pkt.Frame, a.pkt.Time, fmt.Sprintf("429 without retry-after: %q", a.pub.Topic), "429 with retry-after"))
					}
					continue
				}
				n++
				times = times[:0] // a throttled window restarts the count
				if a.resp.Status != 429 || !a.resp.HasRetryAfter {
					fs = append(fs, finding(id, c, a.pkt.Frame, a.pkt.Time, fmt.Sprintf("6th request within 10 s answered %q", a.pub.Topic), "429 with retry-after"))
				}
			}
			return n, fs
		}}
}

func ruleMalformedClose() *Rule {
	const id = "MQTT-4.8.0-1"
	return &Rule{ID: id, Role: RoleService, Evidence: "a malformed or invalid packet from the device",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			frame, what := 0, ""
			var ts time.Time
			for _, p := range c.Problems {
				if p.Dir == tracer.ClientToServer && strings.HasPrefix(p.Clause, "MQTT-") {
					frame, what = p.Frame, fmt.Sprintf("malformed packet (%s): %s", p.Clause, p.Msg)
					break
				}
			}
			for i := range c.Packets {
				p := &c.Packets[i]
				if p.Dir == tracer.ClientToServer && len(p.Violations) > 0 && (frame == 0 || p.Frame < frame) {
					frame, what, ts = p.Frame, fmt.Sprintf("invalid %s (%s)", p.Packet.Type(), p.Violations[0].Clause), p.Time
					break
				}
			}
			if frame == 0 || c.MQTTVersion == 5 {
				return 0, nil
			}
			validConnect := false
			for i := range c.Packets {
				p := &c.Packets[i]
				if _, ok := p.Packet.(*packets.Connect); ok && p.Dir == tracer.ClientToServer && p.Frame < frame && len(p.Violations) == 0 {
					validConnect = true
				}
			}
			for i := range c.Packets {
				p := &c.Packets[i]
				if p.Dir == tracer.ServerToClient && p.Frame > frame {
					// A CONNACK may answer a valid CONNECT sent before the
					// bad packet, or refuse a bad CONNECT (a non-zero code).
					if ack, ok := p.Packet.(*packets.Connack); ok && (validConnect || ack.ReturnCode != 0) {
						continue
					}
					return 1, []Finding{finding(id, c, p.Frame, p.Time, "after a "+what+" the server sent "+describe(p.Packet), "the server closing the connection")}
				}
			}
			if ts.IsZero() {
				ts = c.Start
			}
			if undecided(c, ts, env) {
				return 0, nil
			}
			if !serverClosedFirst(c) {
				return 1, []Finding{finding(id, c, frame, ts, "after a "+what+" "+describeClose(c), "the server closing the connection")}
			}
			return 1, nil
		}}
}
