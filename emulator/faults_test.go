package emulator

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/transport"
)

// probe observes one behaviour of a server and describes it as a string
// (no ids, no times), so runs against different servers compare.
type probe struct {
	name string
	run  func(p *prober) string
}

// prober runs probes against one server.
type prober struct {
	t     testing.TB
	srv   *Server
	addr  string
	clock *fakeClock
}

func (p *prober) dial() *testClient { return dialPlain(p.t, p.addr) }

// observe reads packets until the connection closes or goes quiet (a
// PINGREQ/PINGRESP round trip marks the end), and describes them.
func (p *prober) observe(c *testClient, n int) string {
	// A loopback server answers in milliseconds; a server that keeps a
	// connection open without answering (a fault) is told by the wait
	// running out, which need not be long.
	c.readWait = 2 * time.Second
	defer func() { c.readWait = 0 }()
	var out []string
	_ = c.sendRaw([]byte{0xc0, 0x00}) // PINGREQ; the server may have closed already
	for range n + 1 {
		got, err := c.read()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				out = append(out, "timeout")
			} else {
				out = append(out, "closed")
			}
			break
		}
		if got.Type() == packets.TypePingresp {
			out = append(out, "open")
			break
		}
		out = append(out, describe(got))
	}
	return strings.Join(out, " ")
}

// describe renders a packet without volatile values.
func describe(p packets.Packet) string {
	switch p := p.(type) {
	case *packets.Connack:
		return fmt.Sprintf("CONNACK(%d,sp=%v)", p.ReturnCode, p.SessionPresent)
	case *packets.Suback:
		return fmt.Sprintf("SUBACK%v", p.ReturnCodes)
	case *packets.Publish:
		s := fmt.Sprintf("PUBLISH(q%d,%s", p.QoS, p.Topic)
		if len(p.Payload) == 0 {
			s += ",empty"
		}
		return s + ")"
	default:
		return p.Type().String()
	}
}

// session opens a connection for id (CONNACK and SUBACK checked) with an
// optional change to the CONNECT.
func (p *prober) session(id string, edit func(*packets.Connect)) *testClient {
	c := p.dial()
	cp := connectPacket(p.t, id)
	if edit != nil {
		edit(cp)
	}
	if ack := c.connack(cp); ack.ReturnCode != 0 {
		p.t.Fatalf("%s: CONNACK %v", id, ack.ReturnCode)
	}
	c.subscribe(1, dps.SubscribeFilter)
	return c
}

// status publishes a request and returns the answer status.
func (p *prober) status(c *testClient, topic, body string) int {
	return c.call(topic, body).resp.Status
}

// final registers id and polls (advancing the clock past the retry-after)
// until the answer is not 202.
func (p *prober) final(c *testClient) dpsAnswer {
	op := c.call(dps.RegisterTopic("1"), regBody(c.regID)).status.OperationID
	p.waitAssigned(op, c.regID)
	p.clock.Advance(2 * time.Hour)
	return c.call(dps.PollTopic("2", op), "")
}

// waitAssigned waits for the assignment of op to finish; under never-assign
// it never starts, so there is nothing to wait for.
func (p *prober) waitAssigned(op, regID string) {
	if !p.srv.faults.has(FaultNeverAssign) {
		waitOpDone(p.t, p.srv, op, regID)
	}
}

// regBody is a register body naming id, as most SDKs send.
func regBody(id string) string { return `{"registrationId":"` + id + `"}` }

func connectObservation(p *prober, raw []byte) string {
	c := p.dial()
	if err := c.sendRaw(raw); err != nil {
		return "write error"
	}
	return p.observe(c, 2)
}

// connectAnswer sends cp and describes the CONNACK return code (not
// session-present, which has its own probe) and whether the connection
// stays open.
func connectAnswer(p *prober, cp *packets.Connect) string {
	c := p.dial()
	if err := c.sendRaw(encodeConnect(p.t, cp)); err != nil {
		return "write error"
	}
	got, err := c.read()
	if err != nil {
		return "closed"
	}
	ack, ok := got.(*packets.Connack)
	if !ok {
		return got.Type().String()
	}
	return fmt.Sprintf("CONNACK(%d) %s", ack.ReturnCode, p.observe(c, 1))
}

func encodeConnect(t testing.TB, cp *packets.Connect) []byte {
	b, err := packets.Encode(nil, cp, packets.EncodeOptions{AllowInvalid: true})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var probes = []probe{
	{"connect-mqtt5", func(p *prober) string { return connectObservation(p, mqtt5Connect(p.t)) }},
	{"connect-invalid", func(p *prober) string {
		// CONNECT with the reserved connect flag set [MQTT-3.1.2-3].
		b := encodeConnect(p.t, connectPacket(p.t, "dev-1"))
		b[bytes.Index(b, []byte("MQTT"))+5] |= 0x01 // the connect flags byte
		return connectObservation(p, b)
	}},
	{"connect-bad-username", func(p *prober) string {
		cp := connectPacket(p.t, "dev-1")
		cp.Username = []byte("nonsense")
		return connectObservation(p, encodeConnect(p.t, cp))
	}},
	{"connect-clientid-mismatch", func(p *prober) string {
		cp := connectPacket(p.t, "dev-1")
		cp.ClientID = []byte("dev-2")
		return connectObservation(p, encodeConnect(p.t, cp))
	}},
	{"connect-clean-session-0", func(p *prober) string {
		cp := connectPacket(p.t, "dev-1")
		cp.CleanSession = false
		return connectObservation(p, encodeConnect(p.t, cp))
	}},
	{"connect-session-present", func(p *prober) string {
		return connectObservation(p, encodeConnect(p.t, connectPacket(p.t, "dev-1")))
	}},
	{"connect-no-password", func(p *prober) string {
		cp := connectPacket(p.t, "dev-1")
		cp.Password = nil
		return connectAnswer(p, cp)
	}},
	{"connect-client-version", func(p *prober) string {
		cp := connectPacket(p.t, "dev-1")
		cp.Username = []byte(dps.Username{IDScope: testScope, RegistrationID: "dev-1", ClientVersion: "azure-iot-provisioning-devicesdk/1.0"}.String())
		return connectAnswer(p, cp)
	}},
	{"connect-keepalive-0", func(p *prober) string {
		cp := connectPacket(p.t, "dev-1")
		cp.KeepAlive = 0
		return connectAnswer(p, cp)
	}},
	{"connect-long-clientid", func(p *prober) string {
		return connectAnswer(p, connectPacket(p.t, strings.Repeat("d", 128)))
	}},
	{"connect-regid-chars", func(p *prober) string {
		// Part A §11: letters of both cases, digits and - . _ :
		return connectAnswer(p, connectPacket(p.t, "Dev-1.Lab_7:Unit9"))
	}},
	{"auth-bad-signature", func(p *prober) string {
		c := p.session("sig", func(cp *packets.Connect) {
			cp.Password = []byte(sasToken(p.t, testScope, "sig", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", time.Now().Add(time.Hour)))
		})
		return fmt.Sprint(p.status(c, dps.RegisterTopic("1"), ""))
	}},
	{"auth-expired", func(p *prober) string {
		c := p.session("exp", func(cp *packets.Connect) {
			cp.Password = []byte(sasToken(p.t, testScope, "exp", testKey, time.Now().Add(-time.Hour)))
		})
		return fmt.Sprint(p.status(c, dps.RegisterTopic("1"), ""))
	}},
	{"auth-skew", func(p *prober) string {
		// Part A §4: a token expired 2 minutes ago is within the 5-minute
		// clock skew.
		c := p.session("skew", func(cp *packets.Connect) {
			cp.Password = []byte(sasToken(p.t, testScope, "skew", testKey, time.Now().Add(-2*time.Minute)))
		})
		return fmt.Sprint(p.status(c, dps.RegisterTopic("1"), regBody("skew")))
	}},
	{"auth-secondary-key", func(p *prober) string {
		// Part A §4: the primary, then the secondary key. The token is
		// signed with the device's secondary key.
		c := p.session("second", func(cp *packets.Connect) {
			cp.Password = []byte(sasToken(p.t, testScope, "second", testSecondaryKey, time.Now().Add(time.Hour)))
		})
		return fmt.Sprint(p.status(c, dps.RegisterTopic("1"), regBody("second")))
	}},
	{"auth-no-se", func(p *prober) string {
		// Part A §4: se is required. The token has none, and its
		// signature is over sr and a newline, so that only the missing
		// se is on trial.
		c := p.session("nose", func(cp *packets.Connect) {
			cp.Password = []byte(sasForm(p.t, "nose", func(sr, _, _ string) string {
				sig, err := dps.SignString(testKey, sr+"\n")
				if err != nil {
					p.t.Fatal(err)
				}
				return "sr=" + sr + "&sig=" + url.QueryEscape(sig) + "&skn=" + dps.DefaultKeyName
			}))
		})
		return fmt.Sprint(p.status(c, dps.RegisterTopic("1"), regBody("nose")))
	}},
	{"auth-other-device", func(p *prober) string {
		c := p.session("other", func(cp *packets.Connect) {
			cp.Password = []byte(sasToken(p.t, testScope, "dev-1", testKey, time.Now().Add(time.Hour)))
		})
		return fmt.Sprint(p.status(c, dps.RegisterTopic("1"), ""))
	}},
	{"auth-wrong-skn", func(p *prober) string {
		c := p.session("skn", func(cp *packets.Connect) {
			tok, err := dps.BuildSASToken(dps.SASOptions{IDScope: testScope, RegistrationID: "skn", Key: testKey, Expiry: time.Now().Add(time.Hour), KeyName: "owner"})
			if err != nil {
				p.t.Fatal(err)
			}
			cp.Password = []byte(tok)
		})
		return fmt.Sprint(p.status(c, dps.RegisterTopic("1"), ""))
	}},
	{"auth-sas-forms", func(p *prober) string {
		// Forms the SDKs send besides the documented one; each verifies.
		forms := []struct {
			id   string
			edit func(sr, sig, se string) string
		}{
			{"sas-lower", func(sr, sig, se string) string { return "sr=" + sr + "&sig=" + sig + "&se=" + se + "&skn=registration" }},
			{"sas-upper", nil},
			{"sas-raw", nil},
			{"sas-no-skn", func(sr, sig, se string) string { return "sr=" + sr + "&sig=" + sig + "&se=" + se }},
			{"sas-empty-skn", func(sr, sig, se string) string { return "sr=" + sr + "&sig=" + sig + "&se=" + se + "&skn=" }},
			{"sas-order", func(sr, sig, se string) string { return "sig=" + sig + "&se=" + se + "&skn=registration&sr=" + sr }},
		}
		var out []string
		for _, f := range forms {
			c := p.session(f.id, func(cp *packets.Connect) {
				cp.Password = []byte(sasForm(p.t, f.id, f.edit))
			})
			out = append(out, fmt.Sprintf("%s=%d", f.id, p.status(c, dps.RegisterTopic("1"), regBody(f.id))))
		}
		return strings.Join(out, " ")
	}},
	{"auth-wrong-scope", func(p *prober) string {
		c := p.session("scope", func(cp *packets.Connect) {
			cp.Username = []byte(dps.Username{IDScope: "0neOTHER", RegistrationID: "scope"}.String())
		})
		return fmt.Sprint(p.status(c, dps.RegisterTopic("1"), ""))
	}},
	{"close-after-401", func(p *prober) string {
		c := p.session("nopass", func(cp *packets.Connect) { cp.Password = []byte("not a token") })
		// QoS 1 (QoS 0 requests have their own probe): the 401 and the
		// PUBACK, in either order, then what follows.
		c.send(&packets.Publish{QoS: 1, PacketID: 5, Topic: []byte(dps.RegisterTopic("1"))})
		c.next()
		c.next()
		return p.observe(c, 1)
	}},
	{"suback-qos2", func(p *prober) string {
		c := p.dial()
		c.connack(connectPacket(p.t, "dev-1"))
		return fmt.Sprint(c.subscribe(2, dps.SubscribeFilter).ReturnCodes)
	}},
	{"suback-qos1", func(p *prober) string {
		c := p.dial()
		c.connack(connectPacket(p.t, "dev-1"))
		return fmt.Sprint(c.subscribe(1, dps.SubscribeFilter).ReturnCodes)
	}},
	{"subscribe-other-filter", func(p *prober) string {
		c := p.dial()
		c.connack(connectPacket(p.t, "dev-1"))
		c.send(&packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte("devices/dev-1/messages/devicebound/#"), QoS: 1}}})
		return p.observe(c, 1)
	}},
	{"delivery-qos", func(p *prober) string {
		c := p.session("qos", nil)
		c.send(&packets.Publish{QoS: 1, PacketID: 5, Topic: []byte(dps.RegisterTopic("1"))})
		got := c.next()
		if got.Type() == packets.TypePuback {
			got = c.next()
		}
		if pub, ok := got.(*packets.Publish); ok {
			return fmt.Sprint(pub.QoS)
		}
		return got.Type().String()
	}},
	{"undocumented-topic", func(p *prober) string {
		c := p.session("undoc", nil)
		c.send(&packets.Publish{Topic: []byte("devices/undoc/messages/events/")})
		return p.observe(c, 1)
	}},
	{"qos2-publish", func(p *prober) string {
		c := p.session("q2pub", nil)
		c.send(&packets.Publish{QoS: 2, PacketID: 3, Topic: []byte(dps.PollTopic("1", "x"))})
		return p.observe(c, 2)
	}},
	{"puback-order", func(p *prober) string {
		c := p.session("order", nil)
		c.send(&packets.Publish{QoS: 1, PacketID: 3, Topic: []byte(dps.PollTopic("1", "x"))})
		return c.next().Type().String()
	}},
	{"register-topic", func(p *prober) string {
		c := p.session("topic", nil)
		_, pub := c.request(dps.RegisterTopic("7"), 1, regBody("topic"))
		return string(pub.Topic)
	}},
	{"early-poll", func(p *prober) string {
		c := p.session("early", nil)
		op := c.call(dps.RegisterTopic("1"), regBody("early")).status.OperationID
		p.waitAssigned(op, "early")
		return fmt.Sprint(p.status(c, dps.PollTopic("2", op), ""))
	}},
	{"poll-202-status", func(p *prober) string {
		c := p.session("p202", nil)
		op := c.call(dps.RegisterTopic("1"), regBody("p202")).status.OperationID
		a := c.call(dps.PollTopic("2", op), "") // before the retry-after
		if rs := a.status.RegistrationState; rs != nil {
			return fmt.Sprintf("%d %s registrationState=%s/%s", a.resp.Status, a.status.Status, rs.RegistrationID, rs.Status)
		}
		return fmt.Sprintf("%d %s no registrationState", a.resp.Status, a.status.Status)
	}},
	{"final-state", func(p *prober) string {
		c := p.session("final", nil)
		a := p.final(c)
		if rs := a.status.RegistrationState; rs != nil {
			sk := "none"
			if rs.SymmetricKey != nil {
				sk = fmt.Sprintf("{group=%q}", rs.SymmetricKey.EnrollmentGroupID)
			}
			return fmt.Sprintf("%d %s reg=%q state=%s dev=%q hub=%q created=%v updated=%v etag=%v sub=%q symmetricKey=%s", a.resp.Status, a.status.Status,
				rs.RegistrationID, rs.Status, rs.DeviceID, rs.AssignedHub, rs.CreatedDateTimeUTC != "", rs.LastUpdatedDateTimeUTC != "", rs.ETag != "", rs.Substatus, sk)
		}
		return fmt.Sprint(a.resp.Status)
	}},
	{"disabled", func(p *prober) string {
		a := p.final(p.session("disabled", nil))
		return fmt.Sprintf("%d %s", a.resp.Status, a.status.Status)
	}},
	{"body-no-registration-id", func(p *prober) string {
		var out []int
		for id, body := range map[string]string{"nobody": "", "payloadonly": `{"payload":{"a":1}}`} {
			out = append(out, p.status(p.session(id, nil), dps.RegisterTopic("1"), body))
		}
		return fmt.Sprint(out)
	}},
	{"body-registration-id", func(p *prober) string {
		c := p.session("body", nil)
		return fmt.Sprint(p.status(c, dps.RegisterTopic("1"), `{"registrationId":"dev-9"}`))
	}},
	{"error-body", func(p *prober) string {
		c := p.session("errbody", nil)
		a := c.call(dps.RegisterTopic("1"), "{")
		return fmt.Sprintf("%d code=%d", a.resp.Status, a.err.ErrorCode)
	}},
	{"poll-body", func(p *prober) string {
		c := p.session("pbody", nil)
		op := c.call(dps.RegisterTopic("1"), regBody("pbody")).status.OperationID
		var out []int
		for _, body := range []string{"", " ", regBody("pbody")} {
			out = append(out, p.status(c, dps.PollTopic("2", op), body))
		}
		return fmt.Sprint(out)
	}},
	{"qos0-request", func(p *prober) string {
		c := p.session("q0req", nil)
		c.send(&packets.Publish{Topic: []byte(dps.RegisterTopic("1")), Payload: []byte(regBody("q0req"))})
		// Whether an answer comes, not its form (other probes judge that).
		if obs := p.observe(c, 2); !strings.HasPrefix(obs, "PUBLISH(") {
			return "unanswered: " + obs
		}
		return "answered"
	}},
	{"unknown-operation", func(p *prober) string {
		c := p.session("unknown", nil)
		return fmt.Sprint(p.status(c, dps.PollTopic("1", "4.0000000000000000.00000000-0000-4000-8000-000000000000"), ""))
	}},
	{"poll-throttle", func(p *prober) string {
		c := p.session("pthr", nil)
		var out []bool
		for range 6 {
			out = append(out, p.status(c, dps.PollTopic("1", "x"), "") == 429)
		}
		return fmt.Sprint(out)
	}},
	{"concurrent-registration", func(p *prober) string {
		c := p.session("conc", nil)
		p.status(c, dps.RegisterTopic("1"), regBody("conc"))
		return fmt.Sprint(p.status(c, dps.RegisterTopic("2"), regBody("conc")))
	}},
	{"size-limit", func(p *prober) string {
		c := p.session("big", nil)
		body := `{"payload":{"a":"` + strings.Repeat("a", 100*1024) + `"}}`
		c.send(&packets.Publish{Topic: []byte(dps.RegisterTopic("1")), Payload: []byte(body)})
		return p.observe(c, 2)
	}},
	{"malformed", func(p *prober) string {
		c := p.session("malformed", nil)
		// SUBSCRIBE with fixed-header flags 0 instead of 2 [MQTT-3.8.1-1].
		if err := c.sendRaw([]byte{0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00}); err != nil {
			return "write error"
		}
		return p.observe(c, 1)
	}},
	{"registration-id-case", func(p *prober) string {
		// Part A §11: the ClientId and the body's registrationId match
		// the username's registration id case-insensitively.
		cp := connectPacket(p.t, "case")
		cp.ClientID = []byte("CASE")
		c := p.session("casebody", nil)
		return connectAnswer(p, cp) + "; body " + fmt.Sprint(p.status(c, dps.RegisterTopic("1"), regBody("CaseBody")))
	}},
	// Last: it uses up the registration budget.
	{"register-throttle", func(p *prober) string {
		c := p.session("rthr", nil)
		for range 40 {
			if p.status(c, dps.RegisterTopic("1"), regBody("rthr")) == 429 {
				return "429"
			}
		}
		return "no 429"
	}},
}

// faultProbe maps each fault to the probe that must see it. "tls" faults
// are seen by TestTLSPolicy, TestAcceptPlaintextFault and
// TestWebSocketPathsAndSubprotocols and must leave every MQTT probe
// unchanged; "own" faults change every session and are seen by their own
// test (TestSessionFaults).
var faultProbe = map[Fault]string{
	FaultAcceptMQTT5:                  "connect-mqtt5",
	FaultAcceptBadUsername:            "connect-bad-username",
	FaultAcceptClientIDMismatch:       "connect-clientid-mismatch",
	FaultAcceptCleanSession0:          "connect-clean-session-0",
	FaultSessionPresent:               "connect-session-present",
	FaultAcceptBadSignature:           "auth-bad-signature",
	FaultAcceptExpiredToken:           "auth-expired",
	FaultAcceptOtherDeviceToken:       "auth-other-device",
	FaultAcceptWrongSKN:               "auth-wrong-skn",
	FaultAcceptWrongScope:             "auth-wrong-scope",
	FaultNoCloseAfter401:              "close-after-401",
	FaultGrantQoS2:                    "suback-qos2",
	FaultDeliverQoS2:                  "delivery-qos",
	FaultDeliverQoS0:                  "delivery-qos",
	FaultCloseOnOtherFilter:           "subscribe-other-filter",
	FaultPoll202Assigned:              "poll-202-status",
	FaultAcceptAnyFilter:              "subscribe-other-filter",
	FaultAcceptUndocumentedTopic:      "undocumented-topic",
	FaultAcceptQoS2Publish:            "qos2-publish",
	FaultNoPubackFirst:                "puback-order",
	FaultOmitRetryAfter:               "register-topic",
	FaultWrongRID:                     "register-topic",
	FaultRIDNotFirst:                  "register-topic",
	FaultUpperCaseRetryAfter:          "register-topic",
	FaultAssignBeforeRetryAfter:       "early-poll",
	FaultIncompleteRegistrationState:  "final-state",
	FaultAcceptRegistrationIDMismatch: "body-registration-id",
	FaultNoErrorBody:                  "error-body",
	FaultNo404UnknownOperation:        "unknown-operation",
	FaultNoPollThrottle:               "poll-throttle",
	FaultNoRegisterThrottle:           "register-throttle",
	FaultNo409:                        "concurrent-registration",
	FaultNoSizeLimit:                  "size-limit",
	FaultIgnoreMalformed:              "malformed",
	FaultAcceptInvalidConnect:         "connect-invalid",
	FaultAcceptTLS10:                  "tls",
	FaultAcceptTLS13:                  "tls",
	FaultRefuseTLS12:                  "tls",
	FaultAcceptPlaintext:              "tls",
	FaultRequirePassword:              "connect-no-password",
	FaultWSStrictPath:                 "tls",
	FaultWSStrictSubprotocol:          "tls",
	FaultWSNoSubprotocol:              "tls",
	FaultWSPacketPerMessage:           "tls",
	FaultRefuseClientVersion:          "connect-client-version",
	FaultRefuseKeepAlive0:             "connect-keepalive-0",
	FaultMaxClientID23:                "connect-long-clientid",
	FaultStrictSAS:                    "auth-sas-forms",
	FaultCloseAfterConnack:            "own",
	FaultAssignDisabled:               "disabled",
	FaultRequireRegistrationIDBody:    "body-no-registration-id",
	FaultNeverAssign:                  "final-state",
	FaultGrantQoS0:                    "suback-qos1",
	FaultStrictPollBody:               "poll-body",
	FaultIgnoreQoS0Requests:           "qos0-request",
	// The probes end their observations with a PINGREQ: TestSessionFaults.
	FaultNoPingresp: "own",
	// Only under dps-2023, which the probes do not run: TestSessionFaults.
	FaultKeepSubscription:            "own",
	FaultCaseSensitiveRegistrationID: "registration-id-case",
	// It refuses the CONNECT of every auth-* probe, which p.session
	// requires accepted: TestSessionFaults.
	FaultAuthAtConnect: "own",
	// CONNACK 0x02 as before, then the probe's PINGREQ goes unanswered
	// (timeout) instead of the close; the other refusals alike
	// (faultAlsoChanges).
	FaultNoCloseAfterRefusal:  "connect-clean-session-0",
	FaultNoClockSkew:          "auth-skew",
	FaultAcceptTokenWithoutSE: "auth-no-se",
	// registrationState gone from the 202: TestFaultsChangeExactlyTheirBehaviour.
	FaultPoll202NoRegistrationState: "poll-202-status",
	FaultNarrowRegistrationID:       "connect-regid-chars",
	// registrationState.status assigning in the 200: the final-state probe
	// now shows it.
	FaultAssignedStateStatus: "final-state",
	FaultPrimaryKeyOnly:      "auth-secondary-key",
	// symmetricKey.enrollmentGroupId the registration id in the 200: the
	// final-state probe shows it.
	FaultWrongEnrollmentGroupID: "final-state",
}

// faultAlsoChanges lists probes a fault may change besides its own, where
// the change follows from the one broken behaviour.
var faultAlsoChanges = map[Fault][]string{
	// Granted QoS 0, answers are delivered at QoS 0 (min(granted, 1)).
	FaultGrantQoS0: {"suback-qos2", "delivery-qos"},
	// No operation ever ends, so the disabled answer never comes either.
	FaultNeverAssign: {"disabled"},
	// poll-body polls at once, before the retry-after: 200 under this fault.
	FaultAssignBeforeRetryAfter: {"poll-body", "poll-202-status"},
	// Every refusal CONNACK is followed by no close, not only CleanSession=0's.
	FaultNoCloseAfterRefusal: {"connect-mqtt5", "connect-bad-username", "connect-clientid-mismatch"},
}

// sasForm builds a valid SAS token for id in a given form: edit gets the
// lower-case encoded sr, the percent-encoded sig and se and returns the
// fields; nil edit means the id names the form (sas-upper, sas-raw).
func sasForm(t testing.TB, id string, edit func(sr, sig, se string) string) string {
	t.Helper()
	enc := dps.SRLower
	switch id {
	case "sas-upper":
		enc = dps.SRUpper
	case "sas-raw":
		enc = dps.SRRaw
	}
	tok, err := dps.BuildSASToken(dps.SASOptions{IDScope: testScope, RegistrationID: id, Key: testKey, Expiry: time.Now().Add(time.Hour), Encoding: enc})
	if err != nil {
		t.Fatal(err)
	}
	if edit == nil {
		return tok
	}
	parsed, err := dps.ParseSASToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	return dps.SASPrefix + edit(parsed.Resource, url.QueryEscape(parsed.Signature), parsed.Expiry)
}

// runProbes starts a server with faults and runs every probe.
func runProbes(t *testing.T, faults []Fault) map[string]string {
	clock := newFakeClock()
	ids := []string{"dev-1", "dev-2", "sig", "exp", "other", "skn", "scope", "nopass", "qos", "undoc", "q2pub", "order", "topic",
		"early", "p202", "final", "body", "errbody", "unknown", "pthr", "rthr", "conc", "big", "malformed", "disabled", "nobody", "payloadonly",
		"sas-lower", "sas-upper", "sas-raw", "sas-no-skn", "sas-empty-skn", "sas-order", "pbody", "q0req", "case", "casebody", "skew", "nose", "second"}
	b := newFakeBackend(ids...)
	b.secondary = map[string]string{"second": testSecondaryKey}
	b.disabled = map[string]bool{"disabled": true}
	s, addr := startPlain(t, Config{
		backend:    b,
		Faults:     faults,
		Now:        clock.Now,
		RetryAfter: time.Hour,
		Limits:     Limits{RegistrationsPerMinute: 30},
	})
	p := &prober{t: t, srv: s, addr: addr, clock: clock}
	out := map[string]string{}
	for _, pr := range probes {
		start := time.Now()
		out[pr.name] = pr.run(p)
		if d := time.Since(start); d > time.Second {
			t.Logf("probe %s took %v", pr.name, d)
		}
	}
	return out
}

// TestFaultsChangeExactlyTheirBehaviour runs every probe against the
// fault-free server and against a server with each fault: the fault's own
// probe must change and every other probe must not.
func TestFaultsChangeExactlyTheirBehaviour(t *testing.T) {
	base := runProbes(t, nil)
	for name, obs := range base {
		t.Logf("baseline %-26s %s", name, obs)
	}
	for _, f := range Faults() {
		want, ok := faultProbe[f.Name]
		if !ok {
			t.Errorf("fault %s has no probe in faultProbe", f.Name)
			continue
		}
		if want == "own" {
			continue
		}
		// TLS faults (checked by TestTLSPolicy) must change no MQTT probe.
		t.Run(string(f.Name), func(t *testing.T) {
			// Each fault has its own server; most of a run is waiting
			// (a probe whose close never comes waits out its deadline).
			t.Parallel()
			got := runProbes(t, []Fault{f.Name})
			if want != "tls" {
				t.Logf("%s under the fault: %s", want, got[want])
			}
			for _, pr := range probes {
				changed := got[pr.name] != base[pr.name]
				switch {
				case pr.name == want && !changed:
					t.Errorf("probe %s unchanged by the fault: %s", pr.name, got[pr.name])
				case pr.name != want && changed && !slices.Contains(faultAlsoChanges[f.Name], pr.name):
					t.Errorf("probe %s changed: %s, baseline %s", pr.name, got[pr.name], base[pr.name])
				}
			}
		})
	}
}

func TestParseFault(t *testing.T) {
	seen := map[Fault]bool{}
	for _, f := range Faults() {
		got, err := ParseFault(string(f.Name))
		if err != nil || got != f.Name {
			t.Errorf("ParseFault(%q) = %q, %v", f.Name, got, err)
		}
		if seen[f.Name] {
			t.Errorf("fault %s listed twice", f.Name)
		}
		seen[f.Name] = true
		if f.Breaks == "" || f.Description == "" || strings.ToLower(string(f.Name)) != string(f.Name) || strings.ContainsAny(string(f.Name), " _") {
			t.Errorf("fault %+v: want kebab-case name, Breaks and Description", f)
		}
	}
	if _, err := ParseFault("grant-qos3"); err == nil || !strings.Contains(err.Error(), "grant-qos2") {
		t.Errorf("unknown fault error %v, want it to list the known ones", err)
	}
	if _, err := New(Config{backend: newFakeBackend(), InsecurePlainAddr: "127.0.0.1:0", Faults: []Fault{"nope"}}); err == nil {
		t.Error("New accepted an unknown fault")
	}
}

// TestFaultTableDocumented keeps the fault table of docs/emulator.md (the
// rows "| `name` | …") the same set as Faults(): none missing, none
// unknown, none twice.
func TestFaultTableDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/emulator.md")
	if err != nil {
		t.Fatalf("docs/emulator.md: %v", err)
	}
	_, table, ok := strings.Cut(string(doc), "\n## Fault switches\n")
	if !ok {
		t.Fatal(`docs/emulator.md has no "## Fault switches" section`)
	}
	table, _, _ = strings.Cut(table, "\n## ")
	rows := map[string]int{}
	for _, line := range strings.Split(table, "\n") {
		if name, ok := strings.CutPrefix(line, "| `"); ok {
			if name, _, ok = strings.Cut(name, "`"); ok {
				rows[name]++
			}
		}
	}
	for _, f := range Faults() {
		if rows[string(f.Name)] != 1 {
			t.Errorf("docs/emulator.md: fault %s has %d rows in the fault table, want 1 (%s: %s)", f.Name, rows[string(f.Name)], f.Breaks, f.Description)
		}
		delete(rows, string(f.Name))
	}
	for name := range rows {
		t.Errorf("docs/emulator.md: the fault table has a row for %q, which is no fault", name)
	}
}

// TestSessionFaults covers faults that change every session, so the probe
// matrix cannot isolate them: each case runs one scenario without and with
// the fault.
func TestSessionFaults(t *testing.T) {
	tests := []struct {
		name       string
		fault      Fault
		profile    Profile
		retryAfter time.Duration
		run        func(p *prober) string
		want       string // without the fault
		wantFault  string // with it
	}{
		{
			name: "documented CONNECT opens a session", fault: FaultCloseAfterConnack, retryAfter: time.Hour,
			run: func(p *prober) string {
				return connectObservation(p, encodeConnect(p.t, connectPacket(p.t, "dev-1")))
			},
			want: "CONNACK(0,sp=false) open", wantFault: "CONNACK(0,sp=false) closed",
		},
		{
			// With retry-after 0 the assignment normally completes before
			// the 202 goes out; never-assign must keep it assigning.
			name: "polls end in 200 (retry-after 0)", fault: FaultNeverAssign,
			run: func(p *prober) string {
				c := p.session("dev-1", nil)
				op := c.call(dps.RegisterTopic("1"), regBody("dev-1")).status.OperationID
				var out []string
				for i := range 3 {
					a := c.call(dps.PollTopic(fmt.Sprint(i+2), op), "")
					out = append(out, fmt.Sprintf("%d %s", a.resp.Status, a.status.Status))
					if a.resp.Status != 202 {
						break
					}
					p.clock.Advance(time.Second)
				}
				return strings.Join(out, ", ")
			},
			want: "200 assigned", wantFault: "202 assigning, 202 assigning, 202 assigning",
		},
		{
			// Part A §3: a bad signature is answered 401 at the register,
			// after CONNACK 0x00; a valid token registers either way.
			name: "proof of possession judged at the register request", fault: FaultAuthAtConnect, retryAfter: time.Hour,
			run: func(p *prober) string {
				var out []string
				for _, v := range []struct{ id, key string }{{"dev-1", testKey}, {"dev-2", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}} {
					c := p.dial()
					cp := connectPacket(p.t, v.id)
					cp.Password = []byte(sasToken(p.t, testScope, v.id, v.key, time.Now().Add(time.Hour)))
					if ack := c.connack(cp); ack.ReturnCode != 0 {
						out = append(out, fmt.Sprintf("%s CONNACK(%d)", v.id, ack.ReturnCode))
						continue
					}
					c.subscribe(1, dps.SubscribeFilter)
					out = append(out, fmt.Sprintf("%s CONNACK(0) %d", v.id, c.call(dps.RegisterTopic("1"), regBody(v.id)).resp.Status))
				}
				return strings.Join(out, ", ")
			},
			want: "dev-1 CONNACK(0) 202, dev-2 CONNACK(0) 401", wantFault: "dev-1 CONNACK(0) 202, dev-2 CONNACK(5)",
		},
		{
			// A SUBSCRIBE after the PINGREQ: its SUBACK comes first when
			// the PINGREQ goes unanswered.
			name: "PINGREQ answered", fault: FaultNoPingresp,
			run: func(p *prober) string {
				c := p.dial()
				c.connack(connectPacket(p.t, "dev-1"))
				_ = c.sendRaw([]byte{0xc0, 0x00})
				c.send(&packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 1}}})
				return c.next().Type().String()
			},
			want: "PINGRESP", wantFault: "SUBACK",
		},
		{
			// Two CleanSession=0 connections of one device; the second
			// does not subscribe, so its register gets no answer unless
			// the first one's subscription was kept.
			name: "no subscription carried over (dps-2023)", fault: FaultKeepSubscription, profile: ProfileDPS2023, retryAfter: time.Hour,
			run: func(p *prober) string {
				persistent := func(cp *packets.Connect) { cp.CleanSession = false }
				first := p.session("dev-1", persistent)
				first.conn.Close()
				c := p.dial()
				cp := connectPacket(p.t, "dev-1")
				persistent(cp)
				c.connack(cp)
				c.send(&packets.Publish{QoS: 1, PacketID: 3, Topic: []byte(dps.RegisterTopic("1")), Payload: []byte(regBody("dev-1"))})
				_ = c.sendRaw([]byte{0xc0, 0x00}) // PINGREQ: its PINGRESP ends the observation
				var got []string
				for range 4 {
					pk := c.next()
					got = append(got, pk.Type().String())
					if pk.Type() == packets.TypePingresp {
						break
					}
				}
				return strings.Join(got, " ")
			},
			want: "PUBACK PINGRESP", wantFault: "PUBACK PUBLISH PINGRESP",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, faults := range [][]Fault{nil, {tt.fault}} {
				clock := newFakeClock()
				s, addr := startPlain(t, Config{Faults: faults, Now: clock.Now, RetryAfter: tt.retryAfter, Profile: tt.profile})
				got := tt.run(&prober{t: t, srv: s, addr: addr, clock: clock})
				want := tt.want
				if faults != nil {
					want = tt.wantFault
				}
				if got != want {
					t.Errorf("faults %v: got %q, want %q", faults, got, want)
				}
			}
		})
	}
}

// TestWebSocketSubprotocolSelected: the 101 answer selects the subprotocol
// the device offered (RFC 6455 §4.2.2), unless ws-no-subprotocol; the
// session works either way.
func TestWebSocketSubprotocolSelected(t *testing.T) {
	tests := []struct {
		faults []Fault
		sub    string
		want   string
	}{
		{nil, "mqtt", "mqtt"},
		{nil, "MQTT", "MQTT"},
		{[]Fault{FaultWSNoSubprotocol}, "mqtt", ""},
		{[]Fault{FaultWSNoSubprotocol}, "MQTT", ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.faults, tt.sub), func(t *testing.T) {
			s, pool := startTLS(t, Config{Faults: tt.faults})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, Subprotocols: []string{tt.sub}}
			ws, resp, err := d.DialContext(ctx, "wss://"+s.Ready().WSS+transport.DefaultWSPath, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			conn := transport.NewWSConn(ws)
			defer conn.Close()
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != tt.want {
				t.Errorf("Sec-WebSocket-Protocol %q, want %q", got, tt.want)
			}
			if ack := newTestClient(t, conn).connack(connectPacket(t, "dev-1")); ack.ReturnCode != 0 {
				t.Errorf("CONNACK %v", ack.ReturnCode)
			}
		})
	}
}

// TestWebSocketPacketPerMessageFault: MQTT over WebSocket is a byte stream
// (Part A §10, MQTT-6.0.0-2), so a CONNECT sent one field per message, as
// the Node SDK sends it, and a SUBSCRIBE coalesced with a PINGREQ in one
// message are served; under ws-packet-per-message the first message that
// is not one whole packet closes the connection. Whole packets, one per
// message, are served either way.
func TestWebSocketPacketPerMessageFault(t *testing.T) {
	tests := []struct {
		faults []Fault
		split  bool
		want   string
	}{
		{nil, false, "CONNACK(0,sp=false) SUBACK[Success - Maximum QoS 1] PINGRESP"},
		{nil, true, "CONNACK(0,sp=false) SUBACK[Success - Maximum QoS 1] PINGRESP"},
		{[]Fault{FaultWSPacketPerMessage}, false, "CONNACK(0,sp=false) SUBACK[Success - Maximum QoS 1] PINGRESP"},
		{[]Fault{FaultWSPacketPerMessage}, true, "closed"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.faults, " split=", tt.split), func(t *testing.T) {
			s, pool := startTLS(t, Config{Faults: tt.faults})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, Subprotocols: []string{"mqtt"}}
			ws, resp, err := d.DialContext(ctx, "wss://"+s.Ready().WSS+transport.DefaultWSPath, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			conn := transport.NewWSConn(ws) // each Write is one message
			defer conn.Close()
			c := newTestClient(t, conn)
			cp := encodeConnect(t, connectPacket(t, "dev-1"))
			sub, err := packets.Encode(nil, &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 1}}}, packets.EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ping := []byte{0xc0, 0x00}
			messages := [][]byte{cp, sub, ping}
			if tt.split {
				// Fixed header, protocol name, level and flags, keep-alive,
				// the rest; then SUBSCRIBE and PINGREQ in one message.
				hl := 2 // fixed header: type byte, remaining length
				for cp[hl-1]&0x80 != 0 {
					hl++
				}
				messages = [][]byte{cp[:hl], cp[hl : hl+6], cp[hl+6 : hl+8], cp[hl+8 : hl+10], cp[hl+10:], append(bytes.Clone(sub), ping...)}
			}
			var got []string
			for _, m := range messages {
				if c.sendRaw(m) != nil {
					break
				}
			}
			for range 3 {
				p, err := c.read()
				if err != nil {
					got = append(got, "closed")
					break
				}
				got = append(got, describe(p))
			}
			if s := strings.Join(got, " "); s != tt.want {
				t.Errorf("got %s, want %s", s, tt.want)
			}
		})
	}
}

// TestAcceptPlaintextFault: a plaintext CONNECT on the MQTT/TLS port fails
// the handshake (D-MQTT: no non-secure connections), unless
// accept-plaintext; TLS clients are served either way.
func TestAcceptPlaintextFault(t *testing.T) {
	tests := []struct {
		faults []Fault
		want   string
	}{
		{nil, "no CONNACK"},
		{[]Fault{FaultAcceptPlaintext}, "CONNACK 0"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.faults), func(t *testing.T) {
			s, pool := startTLS(t, Config{Faults: tt.faults})
			c := dialPlain(t, s.Ready().MQTT)
			got := "no CONNACK"
			if err := c.sendRaw(encodeConnect(t, connectPacket(t, "dev-1"))); err == nil {
				if p, err := c.read(); err == nil {
					if ack, ok := p.(*packets.Connack); ok {
						got = fmt.Sprintf("CONNACK %d", ack.ReturnCode)
					}
				}
			}
			if got != tt.want {
				t.Errorf("plaintext CONNECT on the TLS port: %s, want %s", got, tt.want)
			}
			if v, err := handshake(t, s.Ready().MQTT, pool, tls.VersionTLS12, tls.VersionTLS12, nil); err != nil || v != tls.VersionTLS12 {
				t.Errorf("TLS 1.2 handshake: %x, %v", v, err)
			}
		})
	}
}
