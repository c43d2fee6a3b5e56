package conformance

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	pahopackets "github.com/eclipse/paho.golang/packets"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/packets/packettest"
	"github.com/dps-conform/dps-conform/tracer/wstrace"
	"github.com/dps-conform/dps-conform/transport"
)

// registerServiceSpecs registers the service suite (ARCHITECTURE.md §1,
// role service). Each spec drives the target, then judges the decoded
// capture of what crossed the wire with t.Judge; the catalogue entry of its
// requirement ID says what it checks, and Faults names the emulator fault
// switches that must make it fail.
func registerServiceSpecs(r *registrar) {
	r.Describe("TLS", func() { tlsSpecs(r) })
	r.Describe("CONNECT", func() { connectSpecs(r) })
	r.Describe("authentication", func() { authSpecs(r) })
	r.Describe("SUBSCRIBE", func() { subscribeSpecs(r) })
	r.Describe("registration", func() { registerSpecs(r) })
	r.Describe("polling", func() { pollSpecs(r) })
	r.Describe("keep-alive", func() { keepAliveSpecs(r) })
	r.Describe("MQTT over WebSocket", func() { wsSpecs(r) })
	r.Describe("malformed packets", func() { malformedSpecs(r) })
}

type sctx = ginkgo.SpecContext

func tlsSpecs(r *registrar) {
	r.It("TLS-001", "accepts a TLS 1.2 handshake and MQTT over it", func(ctx sctx, t *T) {
		d := t.Device()
		// Only the suites DPS recommends (D-TLS): a server that accepts
		// TLS 1.2 with other suites only fails here.
		c, err := t.Dial(ctx, DialOptions{MinTLS: tls.VersionTLS12, MaxTLS: tls.VersionTLS12, Cert: d.Cert, CipherSuites: transport.DPSCipherSuites()})
		if err != nil {
			// The capture shows how the handshake was refused: TLS-001
			// judges it; a dial that failed otherwise (the server chose
			// TLS 1.2, then something else went wrong) fails below, saying
			// that the rule found nothing, so that the self-test can tell
			// the two apart.
			t.Judge(ctx)
			ginkgo.Fail(fmt.Sprintf("%s: connecting to %s with TLS 1.2: %v", notByRule, t.r.cfg.Target.Name, err))
		}
		c.MustConnect(ctx, d, nil)
		t.Judge(ctx)
	}, Faults("refuse-tls12"))
	for _, v := range []struct {
		id      string
		version uint16
		name    string
		faults  []string
	}{
		{"TLS-002", tls.VersionTLS10, "TLS 1.0", []string{"accept-tls10"}},
		{"TLS-003", tls.VersionTLS11, "TLS 1.1", []string{"accept-tls10"}},
		// A server refusing TLS 1.2 (refuse-tls12) accepts TLS 1.3.
		{"TLS-004", tls.VersionTLS13, "TLS 1.3", []string{"accept-tls13", "refuse-tls12"}},
	} {
		r.It(v.id, "refuses a "+v.name+" handshake", func(ctx sctx, t *T) {
			c, err := t.Dial(ctx, DialOptions{MinTLS: v.version, MaxTLS: v.version})
			if err == nil {
				// Handshake done: show MQTT works over it, for the evidence.
				c.Send(ctx, t.ConnectPacket(t.Device()))
				c.Next(ctx)
			}
			t.Judge(ctx)
		}, Faults(v.faults...))
	}
	r.It("TLS-005", "gives no MQTT answer to a plaintext CONNECT on its MQTT port", func(ctx sctx, t *T) {
		c, err := t.Dial(ctx, DialOptions{Plain: true})
		if err != nil {
			ginkgo.Fail(fmt.Sprintf("connecting to %s over TCP: %v", t.r.cfg.Target.MQTT.Addr(), err))
		}
		c.Send(ctx, t.ConnectPacket(t.Device()))
		c.WaitClose(ctx)
		t.Judge(ctx)
	}, Faults("accept-plaintext"))
}

func connectSpecs(r *registrar) {
	r.It("DPS-CONN-001", "accepts the documented CONNECT and keeps the session open", func(ctx sctx, t *T) {
		d := t.Device()
		c := t.MustDial(ctx, DialOptions{})
		c.MustSend(ctx, t.ConnectPacket(d))
		c.Next(ctx)
		c.Subscribe(ctx, dps.SubscribeFilter, 1)
		t.Judge(ctx)
	}, Faults("close-after-connack"))
	for _, v := range []struct{ name, apiVersion, clientVersion string }{
		{"the Node SDK's &ClientVersion suffix, percent-escaped", dps.DefaultAPIVersion, "azure-iot-provisioning-device%2F1.9.1"},
		{"the C SDK's api-version 2021-06-01 with a raw ClientVersion", "2021-06-01", "1.15.0"},
	} {
		r.It("DPS-CONN-002", "accepts a username with "+v.name, func(ctx sctx, t *T) {
			d := t.Device()
			cp := t.ConnectPacket(d)
			cp.Username = []byte(dps.Username{IDScope: t.r.cfg.Target.IDScope, RegistrationID: d.RegistrationID, APIVersion: v.apiVersion, ClientVersion: v.clientVersion}.String())
			c := t.MustDial(ctx, DialOptions{})
			c.MustSend(ctx, cp)
			c.Next(ctx)
			t.Judge(ctx)
		}, Faults("refuse-client-version"))
	}
	r.It("DPS-CONN-003", "accepts keep-alive 0, as the C SDK sends", func(ctx sctx, t *T) {
		d := t.Device()
		cp := t.ConnectPacket(d)
		cp.KeepAlive = 0
		c := t.MustDial(ctx, DialOptions{})
		c.MustSend(ctx, cp)
		c.Next(ctx)
		t.Judge(ctx)
	}, Faults("refuse-keepalive-0"))
	r.It("DPS-CONN-003", "accepts a registration id of 128 characters as ClientId", func(ctx sctx, t *T) {
		if !t.r.cfg.Target.Local {
			ginkgo.Skip("needs a fresh 128-character registration id: runs against local targets only")
		}
		d := t.Device()
		d.RegistrationID += "-" + strings.Repeat("x", dps.MaxRegistrationIDLen-len(d.RegistrationID)-1)
		key, err := dps.DeriveDeviceKey(t.r.cfg.Target.Credentials.GroupKey, d.RegistrationID)
		t.NoError(err, "deriving the device key of the 128-character id")
		d.Key = key
		c := t.MustDial(ctx, DialOptions{})
		c.MustSend(ctx, t.ConnectPacket(d))
		c.Next(ctx)
		t.Judge(ctx)
	}, Faults("max-client-id-23"))
	// Part A §11: registration ids are letters, digits and - . _ :; the
	// last character a letter or digit (D-TERMS wants it alphanumeric or
	// '-', SPEC no punctuation at either end).
	r.It("DPS-CONN-003", "accepts and assigns a registration id holding '.', '_', ':' and letters of both cases", func(ctx sctx, t *T) {
		if !t.r.cfg.Target.Local {
			ginkgo.Skip("needs a fresh registration id of its own: runs against local targets only")
		}
		if t.r.cfg.Target.Credentials.GroupKey == "" {
			ginkgo.Skip("needs a symmetric key enrollment group (--group-key) to derive the device's key")
		}
		// A fresh id of at most 23 characters (so that only the characters
		// are on trial, not the length): dpsc-<run>-<seq>-<n> becomes
		// Dpsc.<run>_<seq>:<n>.
		d := t.Device()
		id := "D" + d.RegistrationID[1:]
		for _, sep := range []string{".", "_", ":"} {
			id = strings.Replace(id, "-", sep, 1)
		}
		d.RegistrationID = id
		key, err := dps.DeriveDeviceKey(t.r.cfg.Target.Credentials.GroupKey, d.RegistrationID)
		t.NoError(err, "deriving the device key of "+d.RegistrationID)
		d.Key = key
		c := t.MustDial(ctx, DialOptions{})
		c.dev = d.RegistrationID
		c.MustSend(ctx, t.ConnectPacket(d))
		var as []Answer
		if c.NextConnack(ctx) {
			as = c.Provision(ctx, "1", RegisterBody(d.RegistrationID), 5)
		}
		// The rule judges the CONNACK; the assignment is asserted after.
		t.Judge(ctx)
		t.Expect(as).NotTo(gomega.BeEmpty(), "no register was answered for %q", d.RegistrationID)
		last := as[len(as)-1]
		t.Expect(last.Resp.Status).To(gomega.Equal(200), "the last answer %q for %q: %s", last.Topic, d.RegistrationID, last.Body)
		t.Expect(last.Status.Status).To(gomega.Equal(dps.StatusAssigned), "the last answer for %q: %s", d.RegistrationID, last.Body)
	}, Faults("narrow-registration-id"))
	for _, v := range []struct{ name, username string }{
		{"without api-version", "%s/registrations/%s"},
		{"with 'registration' for 'registrations'", "%s/registration/%s/api-version=2019-03-31"},
		{"with an extra path segment", "%s/registrations/%s/x/api-version=2019-03-31"},
		{"that is an IoT Hub username", "%[1]s.azure-devices.net/%[2]s/?api-version=2021-04-12"},
	} {
		r.It("DPS-CONN-004", "refuses a username "+v.name+" with CONNACK 0x04 and a close", func(ctx sctx, t *T) {
			d := t.Device()
			cp := t.ConnectPacket(d)
			cp.Username = []byte(fmt.Sprintf(v.username, t.r.cfg.Target.IDScope, d.RegistrationID))
			c := t.MustDial(ctx, DialOptions{})
			c.MustSend(ctx, cp)
			// The refusal must be followed by the close (Part A §3,
			// MQTT-3.2.2-5).
			c.NextConnack(ctx)
			t.Judge(ctx)
		}, Faults("accept-bad-username", "no-close-after-refusal"))
	}
	r.It("DPS-CONN-005", "refuses a ClientId that differs from the username's registration id with CONNACK 0x02 and a close", func(ctx sctx, t *T) {
		d := t.Device()
		cp := t.ConnectPacket(d)
		cp.ClientID = []byte(d.RegistrationID + "-other")
		c := t.MustDial(ctx, DialOptions{})
		c.MustSend(ctx, cp)
		// The refusal must be followed by the close (Part A §3,
		// MQTT-3.2.2-5).
		c.NextConnack(ctx)
		t.Judge(ctx)
	}, Faults("accept-clientid-mismatch", "no-close-after-refusal"))
	r.It("DPS-CONN-006", "refuses a genuine MQTT 5 CONNECT (built with paho.golang) with CONNACK 0x01 and a close", func(ctx sctx, t *T) {
		d := t.Device()
		cp := t.ConnectPacket(d)
		v5 := &pahopackets.Connect{
			ProtocolName: "MQTT", ProtocolVersion: 5, CleanStart: true, KeepAlive: 60,
			ClientID: d.RegistrationID, Username: string(cp.Username), UsernameFlag: true,
			Password: cp.Password, PasswordFlag: true, Properties: &pahopackets.Properties{},
		}
		var b bytes.Buffer
		if _, err := v5.WriteTo(&b); err != nil {
			ginkgo.Fail(fmt.Sprintf("paho.golang could not encode the MQTT 5 CONNECT: %v", err))
		}
		c := t.MustDial(ctx, DialOptions{})
		t.NoError(c.SendRaw(ctx, b.Bytes()), "sending the MQTT 5 CONNECT")
		c.WaitClose(ctx)
		ev := t.Judge(ctx)
		t.Expect(ev.Conversation(0).MQTTVersion).To(gomega.Equal(5), "the tracer decodes the CONNECT as MQTT 5")
	}, Faults("accept-mqtt5", "no-close-after-refusal"))
	// Part A §11: registration ids are compared case-insensitively, so a
	// ClientId and a register body naming the device in other letter case
	// name the device itself (DPS-CONN-005 and DPS-REG-006 refuse only
	// another device).
	r.It("DPS-CONN-007", "accepts a ClientId that differs from the username's registration id only in letter case", func(ctx sctx, t *T) {
		d := t.Device()
		cp := t.ConnectPacket(d)
		cp.ClientID = []byte(otherCase(d.RegistrationID))
		c := t.MustDial(ctx, DialOptions{})
		c.MustSend(ctx, cp)
		if c.NextConnack(ctx) {
			// Accepted means usable: the rule judges that the
			// SUBSCRIBE is answered.
			c.Subscribe(ctx, dps.SubscribeFilter, 1)
		}
		t.Judge(ctx)
	}, Faults("case-sensitive-registration-id"))
	r.It("DPS-CONN-007", "answers a register body naming the device's registration id in other letter case as one naming it as is", func(ctx sctx, t *T) {
		d := t.Device()
		c := t.Connect(ctx, d, nil, DialOptions{})
		c.Subscribe(ctx, dps.SubscribeFilter, 1)
		a := c.Request(ctx, dps.RegisterTopic("1"), RegisterBody(otherCase(d.RegistrationID)), 1)
		if a.Resp.Status == 429 {
			ginkgo.Skip(fmt.Sprintf("the target throttled the register (%q): nothing to judge", a.Topic))
		}
		t.Judge(ctx)
		t.Expect(a.Resp.Status).To(gomega.BeElementOf(200, 202), "the answer %q to a register whose body names %q: %s", a.Topic, otherCase(d.RegistrationID), a.Body)
	}, Faults("case-sensitive-registration-id"))
	r.It("DPS-SESS-001", "refuses CleanSession=0 with a refusal CONNACK (0x02 expected) and a close, or a close alone", func(ctx sctx, t *T) {
		d := t.Device()
		cp := t.ConnectPacket(d)
		cp.CleanSession = false
		c := t.MustDial(ctx, DialOptions{})
		c.MustSend(ctx, cp)
		// A refusal CONNACK must be followed by the close (Part A §2,
		// MQTT-3.2.2-5): give the server the close wait to close.
		c.NextConnack(ctx)
		t.Judge(ctx)
	}, Faults("accept-clean-session-0", "no-close-after-refusal"))
	r.It("DPS-SESS-002", "accepts CleanSession=0 with session-present 0 and carries no state", func(ctx sctx, t *T) {
		d := t.Device()
		persistent := func() *packets.Connect {
			cp := t.ConnectPacket(d)
			cp.CleanSession = false
			return cp
		}
		// unsubscribedAnswer registers on c, which never subscribed, and
		// returns the topic of an answer that reaches it anyway ("" if
		// none within the close wait).
		unsubscribedAnswer := func(c *Conn) string {
			c.MustSend(ctx, &packets.Publish{QoS: 1, PacketID: c.PacketID(), Topic: []byte(dps.RegisterTopic("1")), Payload: RegisterBody(d.RegistrationID)})
			end := time.Now().Add(t.r.cfg.CloseWait)
			for i := 0; i < 16 && time.Now().Before(end); i++ {
				p, err := c.next(ctx, time.Until(end))
				if err != nil {
					break
				}
				if pub, ok := p.(*packets.Publish); ok {
					return string(pub.Topic)
				}
			}
			return ""
		}
		// The control: does the target answer a connection that never
		// subscribed at all? No document says (Part B §2 leaves other
		// filters and no filter open); if it does, an answer below proves
		// nothing about state carried over.
		control := t.Connect(ctx, d, nil, DialOptions{})
		answersAll := unsubscribedAnswer(control)
		control.raw.Close()
		// The first connection subscribes and leaves.
		first := t.Connect(ctx, d, persistent(), DialOptions{})
		first.Subscribe(ctx, dps.SubscribeFilter, 1)
		first.raw.Close()
		// The second does not subscribe: an answer to its register shows
		// the first connection's subscription carried over.
		c := t.Connect(ctx, d, persistent(), DialOptions{})
		if topic := unsubscribedAnswer(c); topic != "" {
			if answersAll == "" {
				ginkgo.Fail(fmt.Sprintf("the answer %q reached a connection that never subscribed, after an earlier CleanSession=0 connection subscribed: its subscription was carried over (a clean connection that never subscribed got no answer)", topic))
			}
			ginkgo.AddReportEntry("subscription state", fmt.Sprintf("not judged: the target answers connections that never subscribed (%q on a clean session)", answersAll))
		}
		ev := t.Judge(ctx)
		for _, conv := range ev.Capture.Conversations {
			for _, p := range conv.Packets {
				if a, ok := p.Packet.(*packets.Connack); ok {
					t.Expect(a.SessionPresent).To(gomega.BeFalse(), "frame %d: session-present", p.Frame)
				}
			}
		}
	}, Faults("session-present", "keep-subscription"))
	r.It("DPS-SESS-003", "answers CONNACK with session-present 0", func(ctx sctx, t *T) {
		t.Connect(ctx, t.Device(), nil, DialOptions{})
		t.Judge(ctx)
	}, Faults("session-present"))
}

// otherCase returns id with the letter case of its ASCII letters swapped:
// the same registration id to DPS (Part A §11), other bytes on the wire.
// An id without letters has no other case: a suite bug, since the suite's
// devices are named dpsc-….
func otherCase(id string) string {
	ginkgo.GinkgoHelper()
	b := []byte(id)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
	}
	if string(b) == id {
		ginkgo.Fail(fmt.Sprintf("suite bug: the registration id %q has no letters to write in other case", id))
	}
	return string(b)
}

// expectErrorCode requires a's body to be an error body with errorCode
// code.
func expectErrorCode(t *T, a Answer, code int) {
	ginkgo.GinkgoHelper()
	var eb dps.ErrorBody
	jerr := json.Unmarshal(a.Body, &eb)
	t.Expect(eb.ErrorCode).To(gomega.Equal(code), "the errorCode of the answer %q, body %q (decoding: %v)", a.Topic, a.Body, jerr)
}

// registerWith connects as d with the CONNECT cp, subscribes and
// registers, and returns the register answer (or the error: a close
// counts).
func registerWith(ctx sctx, t *T, d Device, cp *packets.Connect) (Answer, error) {
	c := t.Connect(ctx, d, cp, DialOptions{})
	c.Subscribe(ctx, dps.SubscribeFilter, 1)
	return c.TryRequest(ctx, dps.RegisterTopic("1"), RegisterBody(d.RegistrationID), 1)
}

// answerStatuses lists the statuses of the service answers in the capture.
func answerStatuses(ev *Evidence) []int {
	var out []int
	for _, c := range ev.Capture.Conversations {
		for _, a := range answers(c) {
			if a.err == nil {
				out = append(out, a.resp.Status)
			}
		}
	}
	return out
}

// withoutSASField returns tok, a token in the documented field order,
// without its field name. When key is given, sig is computed again with it
// over what is left of sr + "\n" + se (for a token without se: sr and a
// newline).
func withoutSASField(tok, name, key string) string {
	ginkgo.GinkgoHelper()
	p, err := dps.ParseSASToken(tok)
	if err != nil {
		ginkgo.Fail(fmt.Sprintf("suite bug: the token built does not parse: %v", err))
	}
	fields := strings.Split(strings.TrimPrefix(tok, dps.SASPrefix), "&")
	kept := fields[:0]
	for _, f := range fields {
		if n, _, _ := strings.Cut(f, "="); n != name {
			kept = append(kept, f)
		}
	}
	if len(kept) == len(fields) {
		ginkgo.Fail(fmt.Sprintf("suite bug: the token %s has no field %s", tok, name))
	}
	if key != "" {
		se := p.Expiry
		if name == "se" {
			se = ""
		}
		sig, err := dps.SignString(key, p.Resource+"\n"+se)
		if err != nil {
			ginkgo.Fail(fmt.Sprintf("suite bug: signing: %v", err))
		}
		for i, f := range kept {
			if strings.HasPrefix(f, "sig=") {
				kept[i] = "sig=" + url.QueryEscape(sig)
			}
		}
	}
	return dps.SASPrefix + strings.Join(kept, "&")
}

// expectTokenAccepted registers d on a connection opened with cp (its
// password the token on trial) and requires the register accepted: a 200
// or 202 among the capture's answers.
func expectTokenAccepted(ctx sctx, t *T, d Device, cp *packets.Connect) {
	ginkgo.GinkgoHelper()
	a, err := registerWith(ctx, t, d, cp)
	t.NoError(err, "register with the token")
	ev := t.Judge(ctx)
	st := answerStatuses(ev)
	t.Expect(slices.ContainsFunc(st, func(s int) bool { return s == 200 || s == 202 })).To(gomega.BeTrue(),
		"expected the register accepted (200 or 202); actual: the register answer %q, the capture's answers %v", a.Topic, st)
}

func authSpecs(r *registrar) {
	for _, v := range []struct {
		name string
		opts dps.SASOptions
		// edit rewrites the token built from opts (nil keeps it).
		edit func(tok string) string
	}{
		{"an upper-case percent-encoded sr (Python, .NET)", dps.SASOptions{Encoding: dps.SRUpper}, nil},
		{"a raw sr (Node, Java)", dps.SASOptions{Encoding: dps.SRRaw}, nil},
		{"no skn (Python, embedded C)", dps.SASOptions{OmitKeyName: true}, nil},
		{"the Node field order sr, sig, skn, se", dps.SASOptions{Encoding: dps.SRRaw}, func(tok string) string {
			return reorderSAS(tok, []string{"sr", "sig", "skn", "se"})
		}},
		// Java's format ends "&skn=" with nothing after it (Part B §1.3);
		// Part A §4 accepts skn absent, empty or registration. The sr is
		// the documented lower-case one (Java's raw sr is the spec above),
		// so that only the empty skn is on trial.
		{"an empty skn (Java)", dps.SASOptions{}, func(tok string) string {
			return strings.Replace(tok, "&skn="+dps.DefaultKeyName, "&skn=", 1)
		}},
	} {
		r.It("DPS-AUTH-001", "accepts a SAS token with "+v.name, func(ctx sctx, t *T) {
			d := t.Device()
			cp := t.ConnectPacket(d)
			tok := t.Token(d, v.opts)
			if v.edit != nil {
				built := tok
				if tok = v.edit(built); tok == built {
					ginkgo.Fail(fmt.Sprintf("suite bug: the token edit for %s changed nothing in %s", v.name, built))
				}
			}
			cp.Password = []byte(tok)
			expectTokenAccepted(ctx, t, d, cp)
		}, Faults("strict-sas"))
	}
	for _, v := range []struct {
		id, text, fault string
		token           func(t *T, d Device) string
		username        func(t *T, d Device) string
		// errorCode, when not 0, is the errorCode the 401 body must
		// carry (Part A §3: 401000 bad or expired token); extra is a
		// fault that breaks only that.
		errorCode int
		extra     string
	}{
		{"DPS-AUTH-002", "answers a SAS token with a bad signature with 401 and errorCode 401000", "accept-bad-signature",
			func(t *T, d Device) string {
				return t.Token(d, dps.SASOptions{Key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="})
			}, nil, 401000, "no-error-body"},
		// Part A §3 names the errorCode of an expired token (401000),
		// and of a bad one: a token whose sr names another device, or
		// whose skn is not registration, fails the proof of possession
		// the token is (Part A §4), as a bad signature does.
		{"DPS-AUTH-003", "answers an expired SAS token with 401 and errorCode 401000", "accept-expired-token",
			func(t *T, d Device) string {
				return t.Token(d, dps.SASOptions{Expiry: time.Now().Add(-10 * time.Minute)})
			}, nil, 401000, "no-error-body"},
		{"DPS-AUTH-004", "answers a SAS token for another device with 401 and errorCode 401000", "accept-other-device-token",
			func(t *T, d Device) string {
				return t.Token(d, dps.SASOptions{RegistrationID: d.RegistrationID + "-other"})
			}, nil, 401000, "no-error-body"},
		{"DPS-AUTH-005", "answers a SAS token with skn=iothubowner with 401 and errorCode 401000", "accept-wrong-skn",
			func(t *T, d Device) string { return t.Token(d, dps.SASOptions{KeyName: "iothubowner"}) }, nil, 401000, "no-error-body"},
		// Part A §4: sig, se and sr are required (the reference
		// parser's rule, Part B §1.3). Each token is the documented one
		// less that field; the one without se is signed over sr and a
		// newline, so that only the missing expiry is on trial (a
		// service reading it as a token that never expires accepts it,
		// fault accept-token-without-se).
		{"DPS-AUTH-011", "answers a SAS token without se with 401 and errorCode 401000", "accept-token-without-se",
			func(t *T, d Device) string {
				return withoutSASField(t.Token(d, dps.SASOptions{}), "se", d.Key)
			}, nil, 401000, "no-error-body"},
		{"DPS-AUTH-011", "answers a SAS token without sig with 401 and errorCode 401000", "",
			func(t *T, d Device) string {
				return withoutSASField(t.Token(d, dps.SASOptions{}), "sig", "")
			}, nil, 401000, "no-error-body"},
		{"DPS-AUTH-011", "answers a SAS token without sr with 401 and errorCode 401000", "",
			func(t *T, d Device) string {
				return withoutSASField(t.Token(d, dps.SASOptions{}), "sr", "")
			}, nil, 401000, "no-error-body"},
		// No errorCode here: Part A §3 names one for a failed proof of
		// possession (401000 bad or expired token, 401002 bad
		// certificate); an id scope the service does not serve is
		// neither, and no source names its code.
		{"DPS-AUTH-008", "answers a device of an id scope it does not serve with 401", "accept-wrong-scope",
			func(t *T, d Device) string { return t.Token(d, dps.SASOptions{}) },
			func(t *T, d Device) string {
				return dps.Username{IDScope: "0ne00000000", RegistrationID: d.RegistrationID, APIVersion: dps.DefaultAPIVersion}.String()
			}, 0, ""},
	} {
		r.It(v.id, v.text, func(ctx sctx, t *T) {
			d := t.Device()
			cp := t.ConnectPacket(d)
			cp.Password = []byte(v.token(t, d))
			if v.username != nil {
				cp.Username = []byte(v.username(t, d))
			}
			a, err := registerWith(ctx, t, d, cp)
			ev := t.Judge(ctx)
			t.Expect(answerStatuses(ev)).To(gomega.Equal([]int{401}), "the answers to the register request")
			if v.errorCode != 0 {
				t.NoError(err, "the answer to the register request")
				expectErrorCode(t, a, v.errorCode)
			}
			// auth-at-connect refuses the CONNECT (0x05) instead: the
			// register is never answered, and the spec fails there.
		}, Faults(slices.DeleteFunc([]string{v.fault, v.extra, "auth-at-connect"}, func(f string) bool { return f == "" })...))
	}
	// Part A §4: 5 minutes of clock skew. A token that expired 2 minutes
	// ago (by the suite's clock) is still good: a target without the skew,
	// or whose clock is more than 3 minutes ahead, refuses it.
	r.It("DPS-AUTH-010", "accepts a SAS token that expired 2 minutes ago (5 minutes of clock skew)", func(ctx sctx, t *T) {
		d := t.Device()
		cp := t.ConnectPacket(d)
		cp.Password = []byte(t.Token(d, dps.SASOptions{Expiry: time.Now().Add(-2 * time.Minute)}))
		expectTokenAccepted(ctx, t, d, cp)
	}, Faults("no-clock-skew"))
	// Part A §4: the service tries the primary, then the secondary key
	// (Part B §1.3: the reference verifier compares the signature with
	// both); a group device's key is derived from the group's key, either
	// of them. A device signing with the secondary key must be assigned.
	for _, v := range []struct {
		text   string
		device func(t *T) Device
	}{
		{"accepts and assigns a device whose SAS token is signed with its individual enrollment's secondary key", (*T).SecondaryKeyDevice},
		{"accepts and assigns a group device whose SAS token is signed with the key derived from the group's secondary key", (*T).GroupSecondaryKeyDevice},
	} {
		r.It("DPS-AUTH-012", v.text, func(ctx sctx, t *T) {
			d := v.device(t)
			c := t.Connect(ctx, d, nil, DialOptions{})
			as := c.Provision(ctx, "1", RegisterBody(d.RegistrationID), 5)
			ev := t.Judge(ctx)
			var topics []string
			for _, a := range as {
				topics = append(topics, a.Topic)
			}
			t.Expect(answerStatuses(ev)).To(gomega.ContainElement(200), "the answers to the register and polls: %q", topics)
			t.Expect(as[len(as)-1].Status.Status).To(gomega.Equal(dps.StatusAssigned), "the status of the last answer %q", as[len(as)-1].Topic)
		}, Faults("primary-key-only"))
	}
	r.It("DPS-AUTH-006", "accepts and assigns an X.509 device that sends no password", func(ctx sctx, t *T) {
		d := t.X509Device()
		cp := t.ConnectPacket(d)
		c := t.Connect(ctx, d, cp, DialOptions{})
		as := c.Provision(ctx, "1", RegisterBody(d.RegistrationID), 5)
		ev := t.Judge(ctx)
		t.Expect(cp.Password).To(gomega.BeNil(), "the spec's own CONNECT carries no password")
		t.Expect(answerStatuses(ev)).To(gomega.ContainElement(200), "answers %v", as)
		t.Expect(as[len(as)-1].Status.Status).To(gomega.Equal(dps.StatusAssigned))
	}, Faults("require-password"))
	r.It("DPS-AUTH-009", "answers an X.509 device whose certificate chains to no enrollment with 401 and errorCode 401002", func(ctx sctx, t *T) {
		// The enrolled device's registration id, in a certificate of a CA
		// the service has never seen: the handshake must succeed (the TLS
		// layer accepts any client certificate) and the register fail.
		d := t.X509Device()
		now := time.Now()
		ca, err := transport.NewCA("dps-conform unenrolled CA", transport.ECDSAP256, now.Add(-time.Hour), 24*time.Hour)
		t.NoError(err, "a CA for the unenrolled certificate")
		cert, err := ca.IssueClient(d.RegistrationID, transport.ECDSAP256, now.Add(-time.Hour), 24*time.Hour)
		t.NoError(err, "the unenrolled certificate")
		d.Cert = &cert
		a, err := registerWith(ctx, t, d, t.ConnectPacket(d))
		ev := t.Judge(ctx)
		t.NoError(err, "the answer to the register request")
		t.Expect(answerStatuses(ev)).To(gomega.Equal([]int{401}), "the answers to the register request")
		expectErrorCode(t, a, 401002)
		// require-password refuses the X.509 device's CONNECT, and
		// auth-at-connect refuses the unenrolled certificate's: the spec
		// cannot reach the register, and fails there.
	}, Faults("accept-bad-signature", "no-error-body", "require-password", "auth-at-connect"))
	r.It("DPS-AUTH-007", "closes the connection after answering 401", func(ctx sctx, t *T) {
		d := t.Device()
		cp := t.ConnectPacket(d)
		// A well-formed SAS token with a bad signature, as DPS-AUTH-002's:
		// proof of possession is judged at the register and answered 401
		// (Part A §3). (A password that is no token at all could as well
		// be a syntax error refused at CONNECT, which no document settles.)
		cp.Password = []byte(t.Token(d, dps.SASOptions{Key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}))
		// Connected by hand, not t.Connect: a target that judges the
		// token at CONNECT (0x05) fails DPS-AUTH-002, and has no 401 for
		// this spec to judge.
		c := t.MustDial(ctx, DialOptions{Cert: d.Cert})
		c.dev = d.RegistrationID
		c.MustSend(ctx, cp)
		if p := c.MustNext(ctx, "CONNACK"); p.Type() != packets.TypeConnack || p.(*packets.Connack).ReturnCode != packets.ConnackAccepted {
			ginkgo.Skip(fmt.Sprintf("the CONNECT with a bad signature was answered %s, not CONNACK 0x00 (DPS-AUTH-002 judges that): no 401 to close after", describe(p)))
		}
		c.Subscribe(ctx, dps.SubscribeFilter, 1)
		a, err := c.TryRequest(ctx, dps.RegisterTopic("1"), RegisterBody(d.RegistrationID), 1)
		if err == nil && a.Resp.Status != 401 {
			ginkgo.Skip(fmt.Sprintf("the register with a bad signature was answered %q, not 401 (DPS-AUTH-002 judges that): no 401 to close after", a.Topic))
		}
		c.WaitClose(ctx)
		t.Judge(ctx)
	}, Faults("no-close-after-401"))
}

// reorderSAS rewrites a SAS token with its fields in order (nil keeps it).
func reorderSAS(tok string, order []string) string {
	if order == nil {
		return tok
	}
	body := strings.TrimPrefix(tok, dps.SASPrefix)
	fields := map[string]string{}
	for _, kv := range strings.Split(body, "&") {
		k, _, _ := strings.Cut(kv, "=")
		fields[k] = kv
	}
	var out []string
	for _, k := range order {
		if f, ok := fields[k]; ok {
			out = append(out, f)
		}
	}
	return dps.SASPrefix + strings.Join(out, "&")
}

func subscribeSpecs(r *registrar) {
	r.It("DPS-SUB-001", "grants QoS 0 and QoS 1 subscriptions to the response filter as asked", func(ctx sctx, t *T) {
		c := t.Connect(ctx, t.Device(), nil, DialOptions{})
		c.Subscribe(ctx, dps.SubscribeFilter, 0)
		c.Subscribe(ctx, dps.SubscribeFilter, 1)
		t.Judge(ctx)
	}, Faults("grant-qos0"))
	r.It("DPS-SUB-002", "grants QoS 1 to a SUBSCRIBE asking for QoS 2", func(ctx sctx, t *T) {
		c := t.Connect(ctx, t.Device(), nil, DialOptions{})
		c.Subscribe(ctx, dps.SubscribeFilter, 2)
		t.Judge(ctx)
	}, Faults("grant-qos2", "grant-qos0"))
	r.It("DPS-SUB-003", "delivers answers at QoS 1 after granting a QoS 2 subscription", func(ctx sctx, t *T) {
		d := t.Device()
		c := t.Connect(ctx, d, nil, DialOptions{})
		c.Subscribe(ctx, dps.SubscribeFilter, 2)
		c.Request(ctx, dps.RegisterTopic("1"), RegisterBody(d.RegistrationID), 1)
		t.Judge(ctx)
	}, Faults("deliver-qos2", "deliver-qos0"))
	for _, filter := range []string{"#", "$dps/#", "$dps/registrations/res/+", "$dps/registrations/res/202/#", "devices/dev/messages/devicebound/#"} {
		r.It("DPS-SUB-004", fmt.Sprintf("refuses the filter %q", filter), func(ctx sctx, t *T) {
			c := t.Connect(ctx, t.Device(), nil, DialOptions{})
			c.Subscribe(ctx, filter, 1)
			t.Judge(ctx)
		}, Faults("accept-any-filter", "close-on-other-filter"))
	}
}

func registerSpecs(r *registrar) {
	r.It("DPS-REG-001", "acknowledges a QoS 1 register request before answering it", func(ctx sctx, t *T) {
		d := t.Device()
		c := t.Connect(ctx, d, nil, DialOptions{})
		c.Provision(ctx, "1", RegisterBody(d.RegistrationID), 5)
		t.Judge(ctx)
	}, Faults("no-puback-first"))
	r.It("DPS-REG-002", "answers register with 202, a retry-after and an operation id", func(ctx sctx, t *T) {
		d := t.Device()
		c := t.Connect(ctx, d, nil, DialOptions{})
		c.Subscribe(ctx, dps.SubscribeFilter, 1)
		c.Request(ctx, dps.RegisterTopic("1"), RegisterBody(d.RegistrationID), 1)
		t.Judge(ctx)
	}, Faults("omit-retry-after"))
	for _, rid := range []struct{ name, rid string }{
		{"numeric (a counter)", "42"},
		{"constant (embedded C)", "1"},
		{"UUID (Node, Python)", "6f0b3a6e-5c1e-4c47-9a8e-0e0f2d1f3b7a"},
	} {
		r.It("DPS-REG-003", "echoes a "+rid.name+" $rid byte for byte", func(ctx sctx, t *T) {
			d := t.Device()
			c := t.Connect(ctx, d, nil, DialOptions{})
			c.Provision(ctx, rid.rid, RegisterBody(d.RegistrationID), 5)
			t.Judge(ctx)
		}, Faults("wrong-rid"))
	}
	r.It("DPS-REG-004", "writes answer topics with $rid first and a lower-case retry-after after it", func(ctx sctx, t *T) {
		d := t.Device()
		c := t.Connect(ctx, d, nil, DialOptions{})
		c.Provision(ctx, "7", RegisterBody(d.RegistrationID), 5)
		t.Judge(ctx)
	}, Faults("rid-not-first", "upper-case-retry-after"))
	r.It("DPS-REG-005", "accepts the register bodies SDKs send", func(ctx sctx, t *T) {
		for _, body := range []string{"", `{"payload":{"modelId":"dtmi:x;1"}}`, `{"payload": null, "registrationId": "%s"}`, `{"registrationId":"%s"}`} {
			d := t.Device()
			if strings.Contains(body, "%s") {
				body = fmt.Sprintf(body, d.RegistrationID)
			}
			c := t.Connect(ctx, d, nil, DialOptions{})
			c.Subscribe(ctx, dps.SubscribeFilter, 1)
			a := c.Request(ctx, dps.RegisterTopic("1"), []byte(body), 1)
			t.Expect(a.Resp.Status).To(gomega.BeElementOf(200, 202), "the answer to body %q: %q %s", body, a.Topic, a.Body)
		}
		ev := t.Judge(ctx)
		st := answerStatuses(ev)
		t.Expect(len(st) > 0 && !slices.ContainsFunc(st, func(s int) bool { return s != 200 && s != 202 })).To(gomega.BeTrue(),
			"expected every register accepted (200 or 202); actual: the capture's answers %v", st)
	}, Faults("require-registration-id-body"))
	r.It("DPS-REG-006", "answers a register body naming another registration id with 400", func(ctx sctx, t *T) {
		d := t.Device()
		c := t.Connect(ctx, d, nil, DialOptions{})
		c.Subscribe(ctx, dps.SubscribeFilter, 1)
		c.TryRequest(ctx, dps.RegisterTopic("1"), RegisterBody(d.RegistrationID+"-other"), 1)
		ev := t.Judge(ctx)
		t.Expect(answerStatuses(ev)).To(gomega.Equal([]int{400}))
	}, Faults("accept-registration-id-mismatch"))
	r.It("DPS-REG-007", "closes the connection after a PUBLISH to an undocumented topic", func(ctx sctx, t *T) {
		d := t.Device()
		c := t.Connect(ctx, d, nil, DialOptions{})
		c.Subscribe(ctx, dps.SubscribeFilter, 1)
		c.Send(ctx, &packets.Publish{QoS: 1, PacketID: c.PacketID(), Topic: []byte("$dps/registrations/PUT/iotdps-unknown/?$rid=1"), Payload: []byte("{}")})
		c.WaitClose(ctx)
		t.Judge(ctx)
	}, Faults("accept-undocumented-topic"))
	r.It("DPS-REG-009", "answers 409 to a register while the device's registration is in progress", func(ctx sctx, t *T) {
		d := t.SlowDevice()
		c := t.Connect(ctx, d, nil, DialOptions{})
		op := t.StartRegistration(ctx, c, d)
		ops := []string{op}
		// On a target that is not local the device's id is not the spec's
		// alone: whatever the outcome, leave no registration in progress
		// for the next spec to register over.
		settle := func() {
			if !t.r.cfg.Target.Local {
				for i, o := range ops {
					c.AwaitFinal(ctx, fmt.Sprint(90+i), o)
				}
			}
		}
		const slow = "give an enrollment group whose assignment takes a second or more (--slow-group-key, or slowGroup in --config)"
		// Poll at once (not after retry-after): the operation must be seen
		// assigning before the second register, and again after its answer,
		// for the capture to show the register was concurrent.
		stillAssigning := func(rid, otherwise string) {
			a := c.Request(ctx, dps.PollTopic(rid, op), nil, 1)
			switch {
			case a.Resp.Status == 429:
				settle()
				ginkgo.Skip(fmt.Sprintf("the target throttled a poll (%q): nothing to judge", a.Topic))
			case a.Resp.Status != 202 || a.Status.Status != dps.StatusAssigning:
				settle()
				ginkgo.Skip(otherwise + slow)
			}
		}
		stillAssigning("2", "the target assigned the first registration before a second register could find it in progress: ")
		second, err := c.requestOnce(ctx, dps.RegisterTopic("3"), RegisterBody(d.RegistrationID), 1)
		t.NoError(err, "the answer to the second register")
		if op2 := second.Status.OperationID; op2 != "" && op2 != op {
			ops = append(ops, op2)
		}
		if st := second.Resp.Status; st >= 300 && st != 409 {
			settle()
			ginkgo.Skip(fmt.Sprintf("the second register was refused for another reason (%q): nothing for DPS-REG-009 to judge", second.Topic))
		}
		stillAssigning("4", "the first registration was assigned while the second register was answered: nothing shows the two were concurrent; ")
		settle()
		t.Judge(ctx)
	}, Faults("no-409"), Timeout(2*time.Minute))
	r.It("DPS-REG-011", "serves register and poll requests at QoS 0 on a QoS 0 subscription (as C, Java and FreeRTOS publish, FreeRTOS and NetX subscribe)", func(ctx sctx, t *T) {
		d := t.Device()
		c := t.Connect(ctx, d, nil, DialOptions{})
		as := c.ProvisionQoS(ctx, "1", RegisterBody(d.RegistrationID), 5, 0)
		a := as[len(as)-1]
		if a.Resp.Status == 429 {
			ginkgo.Skip("the target throttled the register (429) for longer than the spec can wait")
		}
		t.Judge(ctx)
		t.Expect(a.Resp.Status).To(gomega.Equal(200), "the last answer %q: %s", a.Topic, a.Body)
		t.Expect(a.Status.Status).To(gomega.Equal(dps.StatusAssigned), "the last answer %s", a.Body)
	}, Faults("ignore-qos0-requests", "never-assign"))
	r.It("DPS-REG-010", "answers registers beyond the per-minute registration budget with 429 and retry-after", func(ctx sctx, t *T) {
		tg := t.r.cfg.Target
		budget := tg.RegistrationBudget
		if budget == 0 {
			ginkgo.Skip("needs the target's per-minute registration budget (--registration-budget N, registrationBudget in --config)")
		}
		d := t.Device()
		c := t.Connect(ctx, d, nil, DialOptions{Budget: true})
		c.Subscribe(ctx, dps.SubscribeFilter, 1)
		// budget+1 registers, at most registerWindow unanswered at a time
		// (neither side's buffers fill while the other writes), until the
		// first 429 or a minute has passed.
		const registerWindow = 64
		start := time.Now()
		statuses := map[int]int{}
		var retryAfter time.Duration
		lastOp := ""
		for sent, answered := 0, 0; answered < budget+1 && statuses[429] == 0 && time.Since(start) < time.Minute; answered++ {
			for ; sent < budget+1 && sent-answered < registerWindow; sent++ {
				c.MustSend(ctx, &packets.Publish{QoS: 1, PacketID: c.PacketID(), Topic: []byte(dps.RegisterTopic(fmt.Sprint(sent + 1))), Payload: RegisterBody(d.RegistrationID)})
			}
			// The PUBACKs of every outstanding register may come first.
			a, err := c.ReadAnswerWithin(ctx, registerWindow+16)
			if err != nil {
				ginkgo.Fail(fmt.Sprintf("register %d of %d: %v", answered+1, budget+1, err))
			}
			statuses[a.Resp.Status]++
			if a.Resp.Status == 429 {
				retryAfter = a.Resp.RetryAfter
			}
			if a.Resp.Status < 300 && a.Status.OperationID != "" {
				lastOp = a.Status.OperationID
			}
		}
		took := time.Since(start)
		if statuses[429] == 0 && (took >= time.Minute || statuses[409] > 0) {
			if !tg.Local && lastOp != "" {
				c.AwaitFinal(ctx, "settle", lastOp) // the device's id is shared
			}
			if took >= time.Minute {
				ginkgo.Skip(fmt.Sprintf("a minute passed before %d registers were answered: nothing to judge", budget+1))
			}
			ginkgo.Skip(fmt.Sprintf("%d of the registers were answered 409 (a registration in progress, DPS-REG-009) and none 429: whether those count against the budget is not documented", statuses[409]))
		}
		t.Expect(statuses[429]).To(gomega.BeNumerically(">", 0), "the answers, by status, to %d registers within %v with a budget of %d: %v", budget+1, took.Round(time.Millisecond), budget, statuses)
		t.Judge(ctx)
		if tg.BudgetMQTT.Scheme == "" && retryAfter > 0 {
			// The spec spent the budget the other specs register with: wait
			// out the throttle, as the service asked, as far as the spec's
			// time allows.
			wait := min(retryAfter, t.timeLeft()-5*time.Second)
			if wait > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
			}
		}
	}, Faults("no-register-throttle", "omit-retry-after"), Quota(), Timeout(3*time.Minute))
	r.It("DPS-REG-008", "closes the connection after a message over 96 KB", func(ctx sctx, t *T) {
		d := t.Device()
		c := t.Connect(ctx, d, nil, DialOptions{})
		c.Subscribe(ctx, dps.SubscribeFilter, 1)
		body := fmt.Sprintf(`{"registrationId":%q,"payload":{"pad":"%s"}}`, d.RegistrationID, strings.Repeat("x", MaxMessageSize))
		c.Send(ctx, &packets.Publish{QoS: 1, PacketID: c.PacketID(), Topic: []byte(dps.RegisterTopic("1")), Payload: []byte(body)})
		c.WaitClose(ctx)
		t.Judge(ctx)
	}, Faults("no-size-limit"))
}

func pollSpecs(r *registrar) {
	r.It("DPS-POLL-001", "answers polls 202 with retry-after until the final 200 assigned", func(ctx sctx, t *T) {
		// A registration of the slow group is still assigning when it is
		// polled at once: its 202 answer is in the capture for the rule to
		// judge (retry-after, status assigning) even on a target that
		// assigns the others before their first poll.
		if t.r.cfg.Target.Credentials.SlowGroupKey != "" {
			sd := t.SlowDevice()
			sc := t.Connect(ctx, sd, nil, DialOptions{})
			a := t.Register(ctx, sc, sd)
			// A throttled register (429) leaves nothing to poll here; the
			// flow below is judged all the same.
			if op := a.Status.OperationID; a.Resp.Status == 202 && op != "" {
				sc.Request(ctx, dps.PollTopic("2", op), nil, 1)
				if !t.r.cfg.Target.Local {
					// Leave no registration of the shared slow device in
					// progress for DPS-REG-009.
					sc.AwaitFinal(ctx, "3", op)
				}
			}
		}
		d := t.Device()
		c := t.Connect(ctx, d, nil, DialOptions{})
		as := c.Provision(ctx, "1", RegisterBody(d.RegistrationID), 4)
		t.Judge(ctx)
		last := as[len(as)-1]
		t.Expect(last.Resp.Status).To(gomega.Equal(200), "the last answer %q after %d polls", last.Topic, len(as)-1)
		t.Expect(last.Status.Status).To(gomega.Equal(dps.StatusAssigned))
		for _, a := range as[:len(as)-1] {
			// 429 is the service throttling the device; it is honoured.
			t.Expect(a.Resp.Status).To(gomega.BeElementOf(202, 429), "a non-final answer %q", a.Topic)
		}
	}, Faults("never-assign", "omit-retry-after", "poll-202-assigned", "poll-202-no-registration-state"), Timeout(2*time.Minute))
	r.It("DPS-POLL-002", "ends with a complete registrationState", func(ctx sctx, t *T) {
		// A device of each symmetric key enrollment kind the target has:
		// the rule wants no enrollmentGroupId for the individual
		// enrollment's device, and none but its group's for a group's.
		devs := []Device{t.Device()}
		if d, ok := t.individualDevice(); ok && d.RegistrationID != devs[0].RegistrationID {
			devs = append(devs, d)
		}
		for _, d := range devs {
			c := t.Connect(ctx, d, nil, DialOptions{})
			c.Provision(ctx, "1", RegisterBody(d.RegistrationID), 5)
		}
		t.Judge(ctx)
	}, Faults("incomplete-registration-state", "assigned-state-status", "wrong-enrollment-group-id"))
	r.It("DPS-POLL-003", "answers a poll for an unknown operation id with 404", func(ctx sctx, t *T) {
		d := t.Device()
		c := t.Connect(ctx, d, nil, DialOptions{})
		c.Subscribe(ctx, dps.SubscribeFilter, 1)
		c.TryRequest(ctx, dps.PollTopic("1", "4.0123456789abcdef.00000000-0000-4000-8000-000000000000"), nil, 1)
		ev := t.Judge(ctx)
		t.Expect(answerStatuses(ev)).To(gomega.Equal([]int{404}))
	}, Faults("no-404-unknown-operation"))
	r.It("DPS-POLL-004", "throttles more than 5 polls in 10 s with 429 and retry-after", func(ctx sctx, t *T) {
		// The rule counts this connection's polls: a shared device's
		// earlier polls in the window would draw the 429 before the sixth.
		d := t.deviceWithPolls(pollsPerWindow)
		c := t.Connect(ctx, d, nil, DialOptions{})
		op := t.StartRegistration(ctx, c, d)
		for i := 0; i < 6; i++ {
			if a := c.Request(ctx, dps.PollTopic(fmt.Sprint(i+2), op), nil, 1); a.Resp.Status == 429 {
				break
			}
		}
		t.Judge(ctx)
	}, Faults("no-poll-throttle", "omit-retry-after"), Quota())
	r.It("DPS-POLL-005", "ends the registration of a disabled enrollment with status disabled", func(ctx sctx, t *T) {
		d := t.DisabledDevice()
		c := t.Connect(ctx, d, nil, DialOptions{})
		as := c.Provision(ctx, "1", RegisterBody(d.RegistrationID), 5)
		t.Judge(ctx)
		last := as[len(as)-1]
		t.Expect(last.Resp.Status).To(gomega.Equal(200), "the final answer %q %s", last.Topic, last.Body)
		t.Expect(last.Status.Status).To(gomega.Equal(dps.StatusDisabled), "the final answer %s", last.Body)
	}, Faults("assign-disabled"))
	r.It("DPS-POLL-006", "answers polls whatever body SDKs send (none, a space, the registration JSON)", func(ctx sctx, t *T) {
		d := t.Device()
		c := t.Connect(ctx, d, nil, DialOptions{})
		op := t.StartRegistration(ctx, c, d)
		// Polled at once, one after the other: each answer is 202 or 200
		// (or 429 on a target that throttles sooner), never 400.
		var got []string
		for i, body := range [][]byte{nil, []byte(" "), RegisterBody(d.RegistrationID)} {
			a := c.Request(ctx, dps.PollTopic(fmt.Sprint(i+2), op), body, 1)
			got = append(got, fmt.Sprintf("body %q: %d", body, a.Resp.Status))
			t.Expect(a.Resp.Status).To(gomega.BeElementOf(200, 202, 429), "the answer %q to a poll with body %q: %s", a.Topic, body, a.Body)
		}
		t.Judge(ctx)
		ginkgo.AddReportEntry("poll answers", strings.Join(got, "; "))
	}, Faults("strict-poll-body"))
	r.It("DPS-ERR-001", "sends error answers with the documented error body", func(ctx sctx, t *T) {
		d := t.Device()
		c := t.Connect(ctx, d, nil, DialOptions{})
		c.Subscribe(ctx, dps.SubscribeFilter, 1)
		c.TryRequest(ctx, dps.PollTopic("1", "4.0123456789abcdef.00000000-0000-4000-8000-000000000000"), nil, 1)
		c.TryRequest(ctx, dps.RegisterTopic("2"), RegisterBody(d.RegistrationID+"-other"), 1)
		t.Judge(ctx)
	}, Faults("no-error-body"))
}

func wsSpecs(r *registrar) {
	// wsFlow provisions over WSS; the upgrade's answer is judged from the
	// capture, also when the dial failed on it (transport.Dial refuses an
	// upgrade without the subprotocol it offered), before the dial's error.
	wsFlow := func(ctx sctx, t *T, path, sub string) {
		d := t.Device()
		c, err := t.Dial(ctx, DialOptions{WebSocket: true, Path: path, Subprotocol: sub, Cert: d.Cert})
		var as []Answer
		if err == nil {
			c.MustConnect(ctx, d, nil)
			as = c.Provision(ctx, "1", RegisterBody(d.RegistrationID), 5)
		}
		ev := t.Judge(ctx)
		if err != nil && len(ev.Capture.Conversations) == 0 {
			// Nothing reached the upgrade (refused, TLS failed): the dial's
			// error says why, the empty capture would not.
			ginkgo.Fail(fmt.Sprintf("connecting over WSS: %v (the capture %s shows no WebSocket connection)", err, ev.Path))
		}
		conv := ev.Conversation(0)
		t.Expect(conv.WS).NotTo(gomega.BeNil(), "the capture shows a WebSocket connection")
		t.Expect(conv.WS.Status).To(gomega.Equal(101), "the status of the upgrade's answer")
		t.Expect(conv.WS.Subprotocol).To(gomega.Equal(sub), "Sec-WebSocket-Protocol of the 101 response")
		t.NoError(err, "connecting over WSS")
		t.Expect(as[len(as)-1].Status.Status).To(gomega.Equal(dps.StatusAssigned))
	}
	r.It("DPS-WS-001", "provisions over WSS on /$iothub/websocket and selects the mqtt subprotocol", func(ctx sctx, t *T) {
		wsFlow(ctx, t, "/$iothub/websocket", "mqtt")
	}, Faults("ws-no-subprotocol"))
	for _, v := range []struct{ name, path, sub, fault string }{
		{"on the path / (.NET)", "/", "mqtt", "ws-strict-path"},
		{"on the path /mqtt (Java)", "/mqtt", "mqtt", "ws-strict-path"},
		{"with the subprotocol MQTT (C)", "/$iothub/websocket", "MQTT", "ws-strict-subprotocol"},
	} {
		r.It("DPS-WS-002", "provisions over WSS "+v.name, func(ctx sctx, t *T) {
			wsFlow(ctx, t, v.path, v.sub)
		}, Faults(v.fault, "ws-no-subprotocol"))
	}
	// Part A §10: frames are a byte stream. The dial refuses an upgrade
	// without the subprotocol it offered ([MQTT-6.0.0-4]), so, like every
	// WSS flow, this one fails under ws-no-subprotocol too.
	r.It("DPS-WS-003", "provisions over WSS with its packets cut across frames: CONNECT one field per frame, packets coalesced, headers cut", func(ctx sctx, t *T) {
		d := t.Device()
		c := t.MustDial(ctx, DialOptions{WebSocket: true, Cert: d.Cert})
		c.dev = d.RegistrationID
		pieces := 0 // WebSocket messages the spec cut the stream into
		send := func(what string, cut func([]byte) [][]byte, ps ...packets.Packet) {
			ginkgo.GinkgoHelper()
			counted := func(b []byte) [][]byte {
				out := cut(b)
				pieces += len(out)
				return out
			}
			if err := c.SendFramed(ctx, counted, ps...); err != nil {
				if strings.HasPrefix(err.Error(), "suite bug") {
					ginkgo.Fail(err.Error())
				}
				ginkgo.Fail(fmt.Sprintf("sending %s: %v (expected the frames read as one byte stream and the packets answered)", what, err))
			}
		}
		closedOr := func(err error) string {
			if errors.Is(err, io.EOF) {
				return "the server closed the connection"
			}
			return err.Error()
		}

		// The CONNECT as mqtt.js writes it: every length prefix and field
		// in its own frame, the remaining length apart from the type byte.
		cp := t.ConnectPacket(d)
		send("the CONNECT one field per frame", connectFields(cp), cp)
		p, err := c.Next(ctx)
		if err != nil {
			ginkgo.Fail(fmt.Sprintf("the CONNECT sent one field per frame got no CONNACK: %s", closedOr(err)))
		}
		if ack, ok := p.(*packets.Connack); !ok || ack.ReturnCode != packets.ConnackAccepted {
			ginkgo.Fail(fmt.Sprintf("the CONNECT sent one field per frame was refused: expected CONNACK 0x00; actual: %s", describe(p)))
		}

		// SUBSCRIBE and the register whole in one frame, which ends
		// inside a PINGREQ; the PINGREQ's last byte in the next frame.
		// A UUID $rid (as some SDKs send) makes each poll's remaining
		// length two bytes long, so the polls' cut falls inside it too.
		const rid = "6f1c2a4e-8b3d-4e5f-9a7b-0c1d2e3f4a5b"
		sub := &packets.Subscribe{PacketID: c.PacketID(), Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 1}}}
		reg := &packets.Publish{QoS: 1, PacketID: c.PacketID(), Topic: []byte(dps.RegisterTopic(rid)), Payload: RegisterBody(d.RegistrationID)}
		send("SUBSCRIBE, the register and a PINGREQ in two frames", func(b []byte) [][]byte {
			return [][]byte{b[:len(b)-1], b[len(b)-1:]}
		}, sub, reg, &packets.Pingreq{})
		p, err = c.Next(ctx)
		if err != nil {
			ginkgo.Fail(fmt.Sprintf("the SUBSCRIBE sent in one frame with the register got no SUBACK: %s", closedOr(err)))
		}
		if ack, ok := p.(*packets.Suback); !ok || len(ack.ReturnCodes) != 1 || ack.ReturnCodes[0] > 1 {
			ginkgo.Fail(fmt.Sprintf("the SUBSCRIBE sent in one frame with the register: expected SUBACK granting QoS 0 or 1; actual: %s", describe(p)))
		}
		a, err := c.ReadAnswer(ctx) // PUBACK and PINGRESP skipped
		if err != nil {
			ginkgo.Fail(fmt.Sprintf("the register sent in one frame with SUBSCRIBE: %v", err))
		}
		if a.Resp.Status == 429 {
			ginkgo.Skip(fmt.Sprintf("the target throttled the register (%q): nothing to judge", a.Topic))
		}
		op := a.Status.OperationID
		for i := 0; i < 5 && op != "" && (a.Resp.Status == 202 || a.Resp.Status == 429); i++ {
			wait := a.Resp.RetryAfter
			if !a.Resp.HasRetryAfter {
				wait = 2 * time.Second // as Provision: the Node SDK's default
				if t.r.cfg.Target.Local {
					wait = 50 * time.Millisecond
				}
			}
			select {
			case <-ctx.Done():
				ginkgo.Fail("spec timed out while waiting retry-after")
			case <-time.After(wait):
			}
			poll := &packets.Publish{QoS: 1, PacketID: c.PacketID(), Topic: []byte(dps.PollTopic(rid, op))}
			send("a poll cut inside its fixed header", fixedHeaderBytes, poll)
			if a, err = c.ReadAnswer(ctx); err != nil {
				ginkgo.Fail(fmt.Sprintf("the poll cut inside its fixed header: %v", err))
			}
		}
		ev := t.Judge(ctx)
		conv := ev.Conversation(0)
		t.Expect(conv.WS).NotTo(gomega.BeNil(), "the capture shows a WebSocket connection")
		// The capture must show the cuts, or the spec proved nothing.
		if n := conv.WS.Frames[wstrace.ClientToServer]; n < pieces {
			ginkgo.Fail(fmt.Sprintf("suite bug: the spec cut its packets into %d WebSocket messages, but the capture %s shows %d client frames", pieces, ev.Path, n))
		}
		ginkgo.AddReportEntry("frames", fmt.Sprintf("the spec's packets went out in %d WebSocket messages; the capture shows %d client frames in all", pieces, conv.WS.Frames[wstrace.ClientToServer]))
		t.Expect(a.Status.Status).To(gomega.Equal(dps.StatusAssigned), "the last answer %q: %s", a.Topic, a.Body)
	}, Faults("ws-packet-per-message", "ws-no-subprotocol"))
}

// connectFields cuts the stream of one CONNECT (without a will) the way the
// Node SDK's mqtt.js writes it, each piece its own WebSocket frame: the type
// byte, the remaining length, then every length prefix and every field
// (protocol name, level, flags, keep-alive, client id, username, password).
// Pieces that do not add up to the stream are caught by SendFramed.
func connectFields(cp *packets.Connect) func([]byte) [][]byte {
	return func(b []byte) [][]byte {
		sizes := []int{1, fixedHeaderLen(b) - 1, 2, len(cp.ProtocolName), 1, 1, 2, 2, len(cp.ClientID)}
		if cp.Username != nil {
			sizes = append(sizes, 2, len(cp.Username))
		}
		if cp.Password != nil {
			sizes = append(sizes, 2, len(cp.Password))
		}
		var out [][]byte
		off := 0
		for _, n := range sizes {
			if n == 0 || off+n > len(b) {
				continue
			}
			out = append(out, b[off:off+n])
			off += n
		}
		return out
	}
}

// fixedHeaderBytes cuts the stream of one packet into one frame per byte of
// its fixed header (type byte, each remaining-length byte), then the rest.
func fixedHeaderBytes(b []byte) [][]byte {
	hl := fixedHeaderLen(b)
	out := make([][]byte, 0, hl+1)
	for i := range hl {
		out = append(out, b[i:i+1])
	}
	return append(out, b[hl:])
}

// fixedHeaderLen is the length of the fixed header that starts b.
func fixedHeaderLen(b []byte) int {
	n := 2
	for n <= len(b) && n < 5 && b[n-1]&0x80 != 0 {
		n++
	}
	return min(n, len(b))
}

// malformedVectors are the packettest vectors of device packets that a
// server must treat as malformed or invalid and that the tracer flags.
func malformedVectors() []packettest.Vector {
	var out []packettest.Vector
	for _, v := range packettest.OfKind(packettest.Malformed, packettest.Invalid) {
		if len(v.Raw) == 0 {
			continue
		}
		switch packets.Type(v.Raw[0] >> 4) {
		case packets.TypePublish, packets.TypePuback, packets.TypePubrec, packets.TypePubrel, packets.TypePubcomp, packets.TypeSubscribe, packets.TypeUnsubscribe, packets.TypePingreq:
		default:
			continue // CONNECT is judged by the CONNECT specs, DISCONNECT closes anyway, the rest are server packets
		}
		if _, _, err := packets.Decode(v.Raw, packets.DecodeOptions{Lenient: true}); err == nil {
			continue
		}
		if v.Clause == "MQTT-2.2.3" {
			// A broken remaining length cannot be framed, so no server can
			// skip the packet and go on: no fault could make the spec fail.
			continue
		}
		out = append(out, v)
	}
	return out
}

// malformedConnects are the packettest CONNECT vectors a server must refuse
// (MQTT-3.1.4-1: validate the CONNECT, close without CONNACK 0), but for
// protocol levels other than 4 (DPS-CONN-006 judges those).
func malformedConnects() []packettest.Vector {
	var out []packettest.Vector
	for _, v := range packettest.OfKind(packettest.Malformed, packettest.Invalid) {
		if len(v.Raw) == 0 || packets.Type(v.Raw[0]>>4) != packets.TypeConnect || v.Clause == "MQTT-3.1.2-2" {
			continue
		}
		if v.Clause == "MQTT-3.1.2-1" {
			// A CONNECT naming another protocol ("MQTX") does not sniff as
			// MQTT, so the decoded capture could never show the packet.
			continue
		}
		if _, _, err := packets.Decode(v.Raw, packets.DecodeOptions{Lenient: true}); err == nil {
			continue
		}
		out = append(out, v)
	}
	return out
}

// keepAliveSpecs: a device that waits out a retry-after keeps its
// connection alive with PINGREQ (SDK keep-alives are 60 to 240 s).
func keepAliveSpecs(r *registrar) {
	r.It("MQTT-3.12.4-1", "answers PINGREQ with PINGRESP, before and during a registration", func(ctx sctx, t *T) {
		d := t.Device()
		c := t.Connect(ctx, d, nil, DialOptions{})
		ping := func(when string) {
			c.MustSend(ctx, &packets.Pingreq{})
			// Acknowledgements or deliveries still on their way may come
			// first; the PINGRESP must follow.
			var seen []string
			for range 4 {
				p := c.MustNext(ctx, "PINGRESP")
				if p.Type() == packets.TypePingresp {
					return
				}
				seen = append(seen, describe(p))
			}
			ginkgo.Fail(fmt.Sprintf("no PINGRESP to a PINGREQ %s, only %s", when, strings.Join(seen, ", ")))
		}
		ping("after CONNACK")
		// Any answer will do, a 429 included: a 202 leaves the
		// registration pending, and what is judged is the PINGRESP.
		t.Register(ctx, c, d)
		ping("after the register was answered")
		t.Judge(ctx)
	}, Faults("no-pingresp"))
}

func malformedSpecs(r *registrar) {
	for _, v := range malformedConnects() {
		faults := []string{"accept-invalid-connect"}
		if v.Clause == "MQTT-3.1.3-7" {
			// A zero-byte ClientId with CleanSession 0 is answered with
			// CONNACK 0x02 before the close (MQTT-3.1.3-8): a server
			// that keeps the connection after a refusal fails here too.
			faults = append(faults, "no-close-after-refusal")
		}
		r.It("MQTT-4.8.0-1", "closes the connection after the first packet "+v.Name, func(ctx sctx, t *T) {
			c := t.MustDial(ctx, DialOptions{})
			t.NoError(c.SendRaw(ctx, v.Raw), "sending the malformed CONNECT")
			c.WaitClose(ctx)
			t.Judge(ctx)
		}, Faults(faults...), Labels("clause:"+v.Clause))
	}
	for _, v := range malformedVectors() {
		r.It("MQTT-4.8.0-1", "closes the connection after "+v.Name, func(ctx sctx, t *T) {
			d := t.Device()
			c := t.Connect(ctx, d, nil, DialOptions{})
			t.NoError(c.SendRaw(ctx, v.Raw), "sending the malformed packet")
			c.WaitClose(ctx)
			t.Judge(ctx)
		}, Faults("ignore-malformed"), Labels("clause:"+v.Clause))
	}
}
