package conformance

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
	"github.com/dps-conform/dps-conform/tracer/tlstrace"
)

// Defaults of the RuleEnv fields that device rules read.
const (
	DefaultPollTolerance = 250 * time.Millisecond
	DefaultWindow        = 10 * time.Second
)

// Device-rule limits (DPS-PROTOCOL.md Part B §1.3, §1.7, §8; D-LIMITS).
const (
	maxKeepAlive   = 1740
	pollsPerWindow = 5
	pollWindow     = 10 * time.Second
	// pubackWait is how long a device is given to acknowledge a QoS 1
	// delivery before the end of a capture counts as its answer.
	pubackWait = time.Second
)

// DeviceRules returns the rules of role device, in ID order: they judge a
// device under test from the conversations it had with the suite's server.
func DeviceRules() []*Rule {
	rs := []*Rule{
		ruleDevTLS12(), ruleDevSNI(),
		ruleDevClientID(), ruleDevUsername(), ruleDevSAS(), ruleDevX509Password(),
		ruleDevProtocol(), ruleDevCleanSession(), ruleDevKeepAlive(),
		ruleDevSubscribeFirst(), ruleDevRegisterTopic(), ruleDevRegisterBody(),
		ruleDevOperationID(),
		ruleDevWaitAfter("DPS-DEV-014", 202, "a poll", "a poll after a 202 answer with a retry-after", func(r request) bool {
			return strings.HasPrefix(string(r.pub.Topic), dps.PollPrefix)
		}),
		ruleDevPollRate(),
		ruleDevWaitAfter("DPS-DEV-016", 429, "a request", "a request after a 429 answer with a retry-after", func(request) bool { return true }),
		ruleDev401(),
		ruleDevBackoff(), ruleDevPuback(), ruleDevNoPollAfter200(), ruleDevHostileServer(),
		ruleDevReconnect(), ruleDevOneRegistration(), ruleDevStopOnFailure(), ruleDevSuites(),
		ruleDevMessageSize(), ruleDevCertificateCN(), ruleDevWSSubprotocol(),
	}
	slices.SortFunc(rs, func(a, b *Rule) int { return strings.Compare(a.ID, b.ID) })
	return rs
}

func (env RuleEnv) pollTolerance() time.Duration {
	if env.PollTolerance > 0 {
		return env.PollTolerance
	}
	return DefaultPollTolerance
}

func (env RuleEnv) window() time.Duration {
	if env.Window > 0 {
		return env.Window
	}
	return DefaultWindow
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// connectionRegID is the registration id a conversation is for: the
// username's, else the ClientId.
func connectionRegID(cp *packets.Connect) string {
	if u, ok := parsedUsername(cp); ok {
		return u.RegistrationID
	}
	return string(cp.ClientID)
}

// ---- TLS ----

func ruleDevTLS12() *Rule {
	const id = "DPS-DEV-001"
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a connection of the device (its ClientHello, or plaintext MQTT)",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			if c.Transport == "mqtt" || c.Transport == "ws" {
				if len(c.Packets) == 0 || !env.Live {
					// A field capture may be a recorder's plaintext view of
					// a TLS connection: only our own recordings tell.
					return 0, nil
				}
				p := &c.Packets[0]
				return 1, []Finding{finding(id, c, p.Frame, p.Time, "plaintext MQTT ("+c.Transport+"): "+p.Packet.Type().String()+" without TLS", "MQTT over TLS 1.2")}
			}
			if c.TLS == nil || !c.TLS.ClientHello {
				return 0, nil
			}
			if !slices.Contains(c.TLS.OfferedVersions, tls12) {
				names := make([]string, len(c.TLS.OfferedVersions))
				for i, v := range c.TLS.OfferedVersions {
					names[i] = tlstrace.VersionName(v)
				}
				return 1, []Finding{finding(id, c, c.FirstFrame(), c.Start, "ClientHello offers ["+strings.Join(names, ", ")+"]", "a ClientHello offering TLS 1.2")}
			}
			if c.TLS.ServerHello && c.TLS.Version != tls12 {
				return 0, nil // the server was not limited to TLS 1.2
			}
			if a, ok := clientAlert(c.TLS); ok && !env.HostileServer && !hasClientPacket(c) {
				if certificateAlert(a.Description) {
					// The device refused the server's certificate: trust,
					// which DPS-DEV-021 judges against a server that must
					// be refused; against one it was meant to trust, a
					// device not given the CA. Neither is about TLS 1.2.
					return 0, nil
				}
				return 1, []Finding{finding(id, c, c.FirstFrame(), c.Start, "the device aborted the handshake with alert "+a.String(), "a completed TLS 1.2 handshake")}
			}
			return 1, nil
		}}
}

// ruleDevSuites: the ClientHello offers at least one suite a DPS resource
// pinned to TLS 1.2 accepts (D-TLS: such a resource refuses handshakes
// without the recommended ECDHE AES-GCM/AES-CBC suites; Part B §6).
func ruleDevSuites() *Rule {
	const id = "DPS-DEV-025"
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a ClientHello offering TLS 1.2",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			if c.TLS == nil || !c.TLS.ClientHello || !slices.Contains(c.TLS.OfferedVersions, tls12) {
				return 0, nil // DPS-DEV-001
			}
			if slices.ContainsFunc(c.TLS.OfferedSuites, recommendedSuite) {
				return 1, nil
			}
			names := make([]string, len(c.TLS.OfferedSuites))
			for i, s := range c.TLS.OfferedSuites {
				names[i] = tls.CipherSuiteName(s)
			}
			return 1, []Finding{finding(id, c, c.FirstFrame(), c.Start, "ClientHello offers ["+strings.Join(names, ", ")+"]",
				"at least one ECDHE suite with AES-GCM or AES-CBC (TLS_ECDHE_{ECDSA,RSA}_WITH_AES_{128_GCM_SHA256,256_GCM_SHA384,128_CBC_SHA256,256_CBC_SHA384})")}
		}}
}

// certificateAlert reports whether an alert description refuses the
// peer's certificate (RFC 5246 §7.2.2, RFC 8446 §6.2): bad_certificate,
// unsupported_certificate, certificate_revoked, certificate_expired,
// certificate_unknown, unknown_ca, bad_certificate_status_response,
// bad_certificate_hash_value.
func certificateAlert(desc uint8) bool {
	switch desc {
	case 42, 43, 44, 45, 46, 48, 113, 114:
		return true
	}
	return false
}

const tls12 = 0x0303

// clientAlert returns the first fatal alert the client sent.
func clientAlert(f *tlstrace.Facts) (tlstrace.Alert, bool) {
	for _, a := range f.Alerts {
		if a.Dir == tlstrace.ClientToServer && a.Level == 2 {
			return a, true
		}
	}
	return tlstrace.Alert{}, false
}

func hasClientPacket(c *tracer.Conversation) bool {
	return slices.ContainsFunc(c.Packets, func(p tracer.Packet) bool { return p.Dir == tracer.ClientToServer })
}

func ruleDevSNI() *Rule {
	const id = "DPS-DEV-002"
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a ClientHello, and the host name the device was given",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			if env.ServerName == "" || c.TLS == nil || !c.TLS.ClientHello {
				return 0, nil
			}
			if strings.EqualFold(c.TLS.SNI, env.ServerName) {
				return 1, nil
			}
			got := "no server_name extension"
			if c.TLS.SNI != "" {
				got = fmt.Sprintf("SNI %q", c.TLS.SNI)
			}
			return 1, []Finding{finding(id, c, c.FirstFrame(), c.Start, got, fmt.Sprintf("SNI %q", env.ServerName))}
		}}
}

// ruleDevHostileServer: over a connection to a server whose certificate
// the device must refuse, no MQTT.
func ruleDevHostileServer() *Rule {
	const id = "DPS-DEV-021"
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a TLS connection to a server presenting a bad certificate",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			if !env.HostileServer || c.TLS == nil || !c.TLS.ClientHello {
				return 0, nil
			}
			for i := range c.Packets {
				if p := &c.Packets[i]; p.Dir == tracer.ClientToServer {
					return 1, []Finding{finding(id, c, p.Frame, p.Time, "the device accepted the certificate and sent "+describe(p.Packet),
						"the handshake aborted (an alert or a close), no MQTT")}
				}
			}
			if _, ok := clientAlert(c.TLS); !ok && !c.TLS.Decrypted && c.TLS.ServerHello {
				return 0, nil // encrypted and no key log: cannot tell
			}
			return 1, nil
		}}
}

// ---- CONNECT ----

// connectRule judges the first CONNECT of each conversation.
func connectRule(id, evidence string, judge func(c *tracer.Conversation, p *tracer.Packet, cp *packets.Connect, env RuleEnv) (bool, []Finding)) *Rule {
	return &Rule{ID: id, Role: RoleDevice, Evidence: evidence,
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			cp, i := connectOf(c)
			if cp == nil {
				return 0, nil
			}
			ok, fs := judge(c, &c.Packets[i], cp, env)
			if !ok {
				return 0, nil
			}
			return 1, fs
		}}
}

func ruleDevClientID() *Rule {
	const id = "DPS-DEV-003"
	return connectRule(id, "a CONNECT with a DPS username", func(c *tracer.Conversation, p *tracer.Packet, cp *packets.Connect, _ RuleEnv) (bool, []Finding) {
		u, ok := parsedUsername(cp)
		if !ok {
			return false, nil // DPS-DEV-004
		}
		if string(cp.ClientID) != u.RegistrationID {
			return true, []Finding{finding(id, c, p.Frame, p.Time, fmt.Sprintf("ClientId %q, the username names %q", cp.ClientID, u.RegistrationID),
				fmt.Sprintf("ClientId %q", u.RegistrationID))}
		}
		return true, nil
	})
}

func ruleDevUsername() *Rule {
	const id = "DPS-DEV-004"
	const want = "{idScope}/registrations/{ClientId}/api-version={version}[&ClientVersion={value}]"
	return connectRule(id, "a CONNECT", func(c *tracer.Conversation, p *tracer.Packet, cp *packets.Connect, _ RuleEnv) (bool, []Finding) {
		if cp.Username == nil {
			return true, []Finding{finding(id, c, p.Frame, p.Time, "no username", want)}
		}
		u, err := dps.ParseUsername(string(cp.Username))
		if err != nil {
			return true, []Finding{finding(id, c, p.Frame, p.Time, fmt.Sprintf("username %q: %v", cp.Username, err), want)}
		}
		if !dps.EqualRegistrationID(u.RegistrationID, string(cp.ClientID)) {
			return true, []Finding{finding(id, c, p.Frame, p.Time, fmt.Sprintf("username %q names %q, the ClientId is %q", cp.Username, u.RegistrationID, cp.ClientID), want)}
		}
		return true, nil
	})
}

// x509Connection reports that the device presented a client certificate.
func x509Connection(c *tracer.Conversation) bool {
	return c.TLS != nil && c.TLS.ClientCertificate
}

// x509Attested reports whether the CONNECT of c attests by its client
// certificate: the client presented one, and the device is not known to be
// a symmetric-key device (the device role gives its key in env; a field
// capture does not say, and a certificate then means X.509).
func x509Attested(c *tracer.Conversation, env RuleEnv) bool {
	return x509Connection(c) && env.SymmetricKey == ""
}

func ruleDevSAS() *Rule {
	const id = "DPS-DEV-005"
	return connectRule(id, "a CONNECT with a password and no client certificate", func(c *tracer.Conversation, p *tracer.Packet, cp *packets.Connect, env RuleEnv) (bool, []Finding) {
		if len(cp.Password) == 0 || x509Attested(c, env) {
			return false, nil
		}
		fail := func(actual string, expected ...string) []Finding {
			return []Finding{finding(id, c, p.Frame, p.Time, actual, expected...)}
		}
		tok, err := dps.ParseSASToken(string(cp.Password))
		if err != nil {
			return true, fail("the password is not a SAS token: "+err.Error(), "SharedAccessSignature sr=…&sig=…&se=…&skn=registration")
		}
		var fs []Finding
		if u, ok := parsedUsername(cp); ok {
			if err := tok.CheckResource(u.IDScope, u.RegistrationID); err != nil {
				fs = append(fs, fail(err.Error(), fmt.Sprintf("sr = URL-encoded %q", u.IDScope+"/registrations/"+u.RegistrationID))...)
			}
		}
		// No maximum lifetime: DPS documents none (Part B §8).
		if life := tok.ExpiresAt.Sub(p.Time); life <= 0 {
			fs = append(fs, fail(fmt.Sprintf("se=%s expired %s before the CONNECT", tok.Expiry, secs(-life)), "an expiry after the CONNECT")...)
		}
		if err := tok.CheckKeyName(); err != nil {
			fs = append(fs, fail(err.Error(), "skn=registration, empty or absent")...)
		}
		if env.SymmetricKey != "" {
			if err := tok.CheckSignature(env.SymmetricKey); err != nil {
				fs = append(fs, fail(err.Error(), "sig = base64(HMAC-SHA256(the device's key, raw sr + \"\\n\" + se)), the key the device was given")...)
			}
		}
		return true, fs
	})
}

func ruleDevX509Password() *Rule {
	const id = "DPS-DEV-006"
	return connectRule(id, "a CONNECT over TLS with a client certificate, or from a device given one", func(c *tracer.Conversation, p *tracer.Packet, cp *packets.Connect, env RuleEnv) (bool, []Finding) {
		if env.SymmetricKey != "" && !env.X509 {
			return false, nil // a symmetric-key device (DPS-DEV-005)
		}
		if !x509Connection(c) {
			// A device that was given a certificate must present it; a
			// TLS 1.3 handshake without its keys does not tell.
			if env.X509 && c.TLS != nil && c.TLS.ClientCertificateKnown {
				return true, []Finding{finding(id, c, p.Frame, p.Time, "a CONNECT on a TLS connection whose handshake carried no client certificate",
					"the device's client certificate in the TLS handshake")}
			}
			return false, nil
		}
		if len(cp.Password) > 0 {
			return true, []Finding{finding(id, c, p.Frame, p.Time, fmt.Sprintf("a client certificate and a %d-byte password", len(cp.Password)), "no password, or an empty one")}
		}
		return true, nil
	})
}

// ruleDevCertificateCN: an X.509 device's leaf certificate names its
// registration id as subject CN (Part B §1.6, D-MQTT, D-TERMS: "the
// registration ID in the username must match the CN"), compared without
// case as DPS compares registration ids (Part A §11).
func ruleDevCertificateCN() *Rule {
	const id = "DPS-DEV-027"
	return connectRule(id, "a CONNECT over TLS whose client certificate is visible", func(c *tracer.Conversation, p *tracer.Packet, cp *packets.Connect, env RuleEnv) (bool, []Finding) {
		if c.TLS == nil || len(c.TLS.ClientCertificates) == 0 || !x509Attested(c, env) {
			return false, nil
		}
		leaf, err := x509.ParseCertificate(c.TLS.ClientCertificates[0])
		if err != nil {
			return false, nil // not a certificate the rule can read
		}
		regID := connectionRegID(cp)
		if dps.EqualRegistrationID(leaf.Subject.CommonName, regID) {
			return true, nil
		}
		return true, []Finding{finding(id, c, p.Frame, p.Time, fmt.Sprintf("client certificate subject CN %q, the connection's registration id is %q", leaf.Subject.CommonName, regID),
			fmt.Sprintf("a client certificate with subject CN %q", regID))}
	})
}

func ruleDevProtocol() *Rule {
	const id = "DPS-DEV-007"
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a CONNECT",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			if c.MQTTVersion == 0 {
				return 0, nil
			}
			i := slices.IndexFunc(c.Packets, func(p tracer.Packet) bool { return p.Dir == tracer.ClientToServer })
			if i < 0 {
				return 0, nil
			}
			p := &c.Packets[i]
			if c.MQTTVersion != 4 {
				return 1, []Finding{finding(id, c, p.Frame, p.Time, fmt.Sprintf("CONNECT protocol level %d", c.MQTTVersion), `protocol name "MQTT", level 4`)}
			}
			if cp, ok := p.Packet.(*packets.Connect); ok && string(cp.ProtocolName) != packets.ProtocolName311 {
				return 1, []Finding{finding(id, c, p.Frame, p.Time, fmt.Sprintf("CONNECT protocol name %q", cp.ProtocolName), `protocol name "MQTT", level 4`)}
			}
			return 1, nil
		}}
}

func ruleDevCleanSession() *Rule {
	const id = "DPS-DEV-008"
	return connectRule(id, "a CONNECT", func(c *tracer.Conversation, p *tracer.Packet, cp *packets.Connect, env RuleEnv) (bool, []Finding) {
		if env.Profile == ProfileDPS2023 {
			return true, nil // either value
		}
		if !cp.CleanSession {
			return true, []Finding{finding(id, c, p.Frame, p.Time, "CONNECT with CleanSession 0 under "+ProfileDPS2019, "CleanSession 1")}
		}
		return true, nil
	})
}

func ruleDevKeepAlive() *Rule {
	const id = "DPS-DEV-009"
	return connectRule(id, "a CONNECT", func(c *tracer.Conversation, p *tracer.Packet, cp *packets.Connect, _ RuleEnv) (bool, []Finding) {
		if cp.KeepAlive > maxKeepAlive {
			return true, []Finding{finding(id, c, p.Frame, p.Time, fmt.Sprintf("keep-alive %d s", cp.KeepAlive), fmt.Sprintf("a keep-alive between 0 and %d s", maxKeepAlive))}
		}
		return true, nil
	})
}

// ---- SUBSCRIBE and requests ----

// ruleDevSubscribeFirst: on each connection, a SUBSCRIBE to the response
// filter (and to no other) before the first PUBLISH. Per connection, not
// once per device: DPS keeps no session (Part A §1, §2), so a device that
// connects again and resends its poll unsubscribed (the Python SDK over
// paho-mqtt with CleanSession 0) never gets the answer.
func ruleDevSubscribeFirst() *Rule {
	const id = "DPS-DEV-010"
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a SUBSCRIBE or a PUBLISH of the device",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			n := 0
			var fs []Finding
			subscribed, published := false, false
			for i := range c.Packets {
				p := &c.Packets[i]
				if p.Dir != tracer.ClientToServer {
					continue
				}
				switch pk := p.Packet.(type) {
				case *packets.Subscribe:
					n = 1
					for _, s := range pk.Subscriptions {
						if string(s.Filter) == dps.SubscribeFilter {
							subscribed = true
							continue
						}
						fs = append(fs, finding(id, c, p.Frame, p.Time, fmt.Sprintf("SUBSCRIBE to %q", s.Filter), "SUBSCRIBE to "+dps.SubscribeFilter+" only"))
					}
				case *packets.Publish:
					n = 1
					if !published && !subscribed {
						fs = append(fs, finding(id, c, p.Frame, p.Time, fmt.Sprintf("PUBLISH %q before any SUBSCRIBE to %s", pk.Topic, dps.SubscribeFilter),
							"SUBSCRIBE to "+dps.SubscribeFilter+" on this connection before its first request"))
					}
					published = true
				}
			}
			return n, fs
		}}
}

func ruleDevRegisterTopic() *Rule {
	const id = "DPS-DEV-011"
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a PUBLISH of the device other than a poll",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			n := 0
			var fs []Finding
			for _, r := range requests(c) {
				if strings.HasPrefix(string(r.pub.Topic), dps.PollPrefix) {
					continue // DPS-DEV-013
				}
				n++
				if r.err != nil {
					fs = append(fs, finding(id, c, r.pkt.Frame, r.pkt.Time, fmt.Sprintf("topic %q: %v", r.pub.Topic, r.err), `"$dps/registrations/PUT/iotdps-register/?$rid={rid}"`))
				}
			}
			return n, fs
		}}
}

func ruleDevRegisterBody() *Rule {
	const id = "DPS-DEV-012"
	const want = `an empty body or a JSON DeviceRegistration object {"registrationId":…}`
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a register request",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			cp, _ := connectOf(c)
			n := 0
			var fs []Finding
			for _, r := range requests(c) {
				if r.err != nil || r.req.Kind != dps.Register {
					continue
				}
				n++
				body := bytes.TrimSpace(r.pub.Payload)
				if len(body) == 0 {
					continue
				}
				fail := func(actual string, expected string) {
					fs = append(fs, finding(id, c, r.pkt.Frame, r.pkt.Time, actual, expected))
				}
				if body[0] != '{' || !json.Valid(body) {
					fail("body "+clip(r.pub.Payload)+" is not a JSON object", want)
					continue
				}
				dr, err := dps.ParseDeviceRegistration(body)
				if err != nil {
					fail("body "+clip(r.pub.Payload)+": "+err.Error(), want)
					continue
				}
				if cp != nil && dr.RegistrationID != "" && !dps.EqualRegistrationID(dr.RegistrationID, connectionRegID(cp)) {
					fail(fmt.Sprintf("registrationId %q, the connection's is %q", dr.RegistrationID, connectionRegID(cp)), fmt.Sprintf("registrationId %q or none", connectionRegID(cp)))
				}
			}
			return n, fs
		}}
}

// operationIDs are the operationIds of the 202 and 200 answers of a
// capture, with the frame that first gave each.
func operationIDs(capt *tracer.Capture) map[string]int {
	ops := map[string]int{}
	for _, c := range capt.Conversations {
		for _, a := range answers(c) {
			if a.err != nil || (a.resp.Status != 200 && a.resp.Status != 202) {
				continue
			}
			var st dps.RegistrationOperationStatus
			if json.Unmarshal(a.pub.Payload, &st) != nil || st.OperationID == "" {
				continue
			}
			if f, ok := ops[st.OperationID]; !ok || a.pkt.Frame < f {
				ops[st.OperationID] = a.pkt.Frame
			}
		}
	}
	return ops
}

func ruleDevOperationID() *Rule {
	const id = "DPS-DEV-013"
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a poll of the device",
		CheckCapture: func(capt *tracer.Capture, env RuleEnv) (int, []Finding) {
			ops := operationIDs(capt)
			n := 0
			var fs []Finding
			for _, c := range capt.Conversations {
				for _, r := range requests(c) {
					if !strings.HasPrefix(string(r.pub.Topic), dps.PollPrefix) {
						continue
					}
					n++
					if r.err != nil {
						fs = append(fs, finding(id, c, r.pkt.Frame, r.pkt.Time, fmt.Sprintf("topic %q: %v", r.pub.Topic, r.err),
							`"$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={operationId}"`))
						continue
					}
					if f, ok := ops[r.req.OperationID]; ok && f < r.pkt.Frame {
						continue
					}
					var known []string
					for op, f := range ops {
						if f < r.pkt.Frame {
							known = append(known, op)
						}
					}
					slices.Sort(known)
					want := "the operationId of an earlier 202 or 200 answer (none was given)"
					if len(known) > 0 {
						want = fmt.Sprintf("the operationId of an earlier 202 or 200 answer: %q", known)
					}
					fs = append(fs, finding(id, c, r.pkt.Frame, r.pkt.Time, fmt.Sprintf("poll $rid=%s with operationId %q", r.req.RID, r.req.OperationID), want))
				}
			}
			return n, fs
		}}
}

// ---- timing ----

// event is an answer or a request of a conversation, in capture order.
type event struct {
	ans *answer
	req *request
}

func timeline(c *tracer.Conversation) []event {
	var ev []event
	as, rs := answers(c), requests(c)
	for i := range as {
		if as[i].err == nil {
			ev = append(ev, event{ans: &as[i]})
		}
	}
	for i := range rs {
		ev = append(ev, event{req: &rs[i]})
	}
	idx := func(e event) int {
		if e.ans != nil {
			return e.ans.idx
		}
		return e.req.idx
	}
	slices.SortFunc(ev, func(a, b event) int { return idx(a) - idx(b) })
	return ev
}

func describeRequest(r *request) string {
	if r.err != nil {
		return fmt.Sprintf("PUBLISH %q", r.pub.Topic)
	}
	return fmt.Sprintf("%s $rid=%s", r.req.Kind, r.req.RID)
}

// ruleDevWaitAfter: a request sel selects that follows an answer of status
// with a retry-after comes no earlier than the retry-after, less
// RuleEnv.PollTolerance.
func ruleDevWaitAfter(id string, status int, what, evidence string, sel func(request) bool) *Rule {
	return &Rule{ID: id, Role: RoleDevice, Evidence: evidence,
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			tol := env.pollTolerance()
			n := 0
			var fs []Finding
			var last *answer
			for _, e := range timeline(c) {
				if e.ans != nil {
					last = e.ans
					continue
				}
				r := e.req
				if last == nil || last.resp.Status != status || !last.resp.HasRetryAfter || !sel(*r) {
					continue
				}
				n++
				ra := last.resp.RetryAfter
				if gap := r.pkt.Time.Sub(last.pkt.Time); gap < ra-tol {
					fs = append(fs, finding(id, c, r.pkt.Frame, r.pkt.Time,
						fmt.Sprintf("%s %s after the %d answer (frame %d) with retry-after=%d s", describeRequest(r), secs(gap), status, last.pkt.Frame, int(ra/time.Second)),
						fmt.Sprintf("%s no earlier than %s (tolerance %s)", what, secs(ra), secs(tol))))
				}
			}
			return n, fs
		}}
}

// ruleDevPollRate judges DPS-DEV-015, the service's poll quota (D-LIMITS:
// 5 per 10 s per device) as a pace the device keeps on its own. A poll
// that came no earlier than the retry-after of the answer before it (less
// RuleEnv.PollTolerance) was paced by the server: a device that follows a
// retry-after of 0 or 1 s does what DPS-DEV-014 requires and is not
// blamed for the sixth poll in a window (the service answers 429 when it
// minds). Polls after an answer without a retry-after, or before its
// retry-after, are the device's own pace.
func ruleDevPollRate() *Rule {
	const id = "DPS-DEV-015"
	return &Rule{ID: id, Role: RoleDevice, Evidence: "polls of the device",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			tol := env.pollTolerance()
			var polls []*request
			paced := map[*request]bool{}
			var last *answer
			for _, e := range timeline(c) {
				if e.ans != nil {
					last = e.ans
					continue
				}
				if r := e.req; strings.HasPrefix(string(r.pub.Topic), dps.PollPrefix) {
					polls = append(polls, r)
					paced[r] = last != nil && last.resp.HasRetryAfter && r.pkt.Time.Sub(last.pkt.Time) >= last.resp.RetryAfter-tol
					last = nil // an answer paces one poll, not a burst after it
				}
			}
			var fs []Finding
			for i := pollsPerWindow; i < len(polls); i++ {
				first, r := polls[i-pollsPerWindow], polls[i]
				if span := r.pkt.Time.Sub(first.pkt.Time); span < pollWindow && !paced[r] {
					fs = append(fs, finding(id, c, r.pkt.Frame, r.pkt.Time,
						fmt.Sprintf("%d polls within %s (frames %d to %d), the last not paced by a retry-after", pollsPerWindow+1, secs(span), first.pkt.Frame, r.pkt.Frame),
						fmt.Sprintf("at most %d polls in any %s, unless the service's retry-after asks for more", pollsPerWindow, secs(pollWindow))))
				}
			}
			return len(polls), fs
		}}
}

// reconnectsWithin finds the CONNECTs with cp's username, on conversations
// of capt other than c, that came less than win after at (the answer the
// device should have stopped at, which what names; why says what kind of
// answer it was): DPS-DEV-017 and DPS-DEV-024's "no reconnect with the same
// credentials".
func reconnectsWithin(id string, capt *tracer.Capture, c *tracer.Conversation, cp *packets.Connect, at time.Time, win time.Duration, what, why string) []Finding {
	var fs []Finding
	for _, o := range capt.Conversations {
		ocp, oi := connectOf(o)
		if o == c || ocp == nil || !bytes.Equal(ocp.Username, cp.Username) {
			continue
		}
		p := &o.Packets[oi]
		if d := p.Time.Sub(at); d > 0 && d <= win {
			fs = append(fs, finding(id, o, p.Frame, p.Time,
				fmt.Sprintf("CONNECT with the same username %s after %s", secs(d), what),
				fmt.Sprintf("no reconnect with the same credentials within %s of %s", secs(win), why)))
		}
	}
	return fs
}

// ruleDev401: after a 401 answer, no further request on the connection and
// no new CONNECT with the same username within RuleEnv.Window.
func ruleDev401() *Rule {
	const id = "DPS-DEV-017"
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a 401 answer to the device",
		CheckCapture: func(capt *tracer.Capture, env RuleEnv) (int, []Finding) {
			win := env.window()
			n := 0
			var fs []Finding
			for _, c := range capt.Conversations {
				cp, _ := connectOf(c)
				if cp == nil {
					continue
				}
				for _, a := range answers(c) {
					if a.err != nil || a.resp.Status != 401 {
						continue
					}
					n++
					if j := firstAfter(c, a.idx, tracer.ClientToServer, isType[*packets.Publish]); j >= 0 {
						p := &c.Packets[j]
						fs = append(fs, finding(id, c, p.Frame, p.Time, fmt.Sprintf("%s %s after the 401 answer (frame %d)", describe(p.Packet), secs(p.Time.Sub(a.pkt.Time)), a.pkt.Frame),
							"no further request after a 401"))
					}
					fs = append(fs, reconnectsWithin(id, capt, c, cp, a.pkt.Time, win,
						fmt.Sprintf("the 401 answer (conversation %d, frame %d)", c.ID, a.pkt.Frame), "a 401")...)
				}
			}
			return n, fs
		}}
}

// ruleDevBackoff: after a 5xx answer, the next request waits its
// retry-after or, without one, longer than the previous retry did.
func ruleDevBackoff() *Rule {
	const id = "DPS-DEV-018"
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a request after a 5xx answer",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			tol := env.pollTolerance()
			n := 0
			var fs []Finding
			var last *answer
			prev := time.Duration(-1) // the previous wait in a run of 5xx answers without retry-after
			for _, e := range timeline(c) {
				if e.ans != nil {
					last = e.ans
					if last.resp.Status < 500 || last.resp.HasRetryAfter {
						prev = -1
					}
					continue
				}
				r := e.req
				if last == nil || last.resp.Status < 500 {
					continue
				}
				n++
				gap := r.pkt.Time.Sub(last.pkt.Time)
				after := fmt.Sprintf("%s %s after the %d answer (frame %d)", describeRequest(r), secs(gap), last.resp.Status, last.pkt.Frame)
				if ra := last.resp.RetryAfter; last.resp.HasRetryAfter {
					if gap < ra-tol {
						fs = append(fs, finding(id, c, r.pkt.Frame, r.pkt.Time, after+fmt.Sprintf(" with retry-after=%d s", int(ra/time.Second)),
							fmt.Sprintf("a retry no earlier than %s (tolerance %s)", secs(ra), secs(tol))))
					}
					last = nil
					continue
				}
				if notGrowing(prev, gap) {
					fs = append(fs, finding(id, c, r.pkt.Frame, r.pkt.Time, after+", the retry before waited "+secs(prev),
						fmt.Sprintf("a wait longer than %s (a growing back-off)", secs(prev))))
				}
				prev = gap
				last = nil
			}
			return n, fs
		}}
}

// backoffCapFloor is the shortest wait DPS-DEV-018 and DPS-DEV-022 accept
// as a capped back-off that no longer grows (DPS-PROTOCOL.md §4, EC:
// exponential back-off up to 100 s; the reference device caps at 30 s).
const backoffCapFloor = 30 * time.Second

// notGrowing reports that wait, the back-off after one of prev (negative:
// no wait before it), does not grow. Equal waits differ by scheduling
// noise: a wait must be 5 % longer than the one before to count as longer.
// A back-off may stop growing at its cap (the C SDK's docs suggest 100 s,
// the Azure SDKs cap theirs): a wait of at least backoffCapFloor and at
// least three quarters of the wait before (jitter around the cap, not a
// drop) passes.
func notGrowing(prev, wait time.Duration) bool {
	if prev < 0 || wait > prev+prev/20 {
		return false
	}
	return wait < backoffCapFloor || wait < prev*3/4
}

func ruleDevPuback() *Rule {
	const id = "DPS-DEV-019"
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a QoS 1 PUBLISH to the device",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			n := 0
			var fs []Finding
			eachPublish(c, tracer.ServerToClient, func(i int, p *tracer.Packet, pub *packets.Publish) {
				if pub.QoS != 1 {
					return
				}
				pid := pub.PacketID
				if firstAfter(c, i, tracer.ClientToServer, func(q packets.Packet) bool {
					a, ok := q.(*packets.Puback)
					return ok && a.PacketID == pid
				}) >= 0 {
					n++
					return
				}
				// A DISCONNECT ends the session: no PUBACK can follow.
				if firstAfter(c, i, tracer.ClientToServer, isType[*packets.Disconnect]) < 0 {
					if serverClosedFirst(c) && c.CloseTime[tracer.ServerToClient].Sub(p.Time) < pubackWait {
						return // the server left before the device could answer
					}
					if !c.Closed[tracer.ClientToServer] && c.End.Sub(p.Time) < pubackWait {
						return // the capture ends too soon to tell
					}
				}
				n++
				fs = append(fs, finding(id, c, p.Frame, p.Time, fmt.Sprintf("no PUBACK for %s (packet id %d); %s", describe(pub), pid, describeClose(c)),
					fmt.Sprintf("PUBACK %d", pid)))
			})
			return n, fs
		}}
}

func ruleDevNoPollAfter200() *Rule {
	const id = "DPS-DEV-020"
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a 200 answer to the device",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			reqs := requests(c)
			done := map[string]*answer{} // operationId → its 200 answer
			n := 0
			var fs []Finding
			for _, e := range timeline(c) {
				if a := e.ans; a != nil {
					if a.resp.Status != 200 {
						continue
					}
					n++
					var st dps.RegistrationOperationStatus
					if json.Unmarshal(a.pub.Payload, &st) == nil && st.OperationID != "" {
						done[st.OperationID] = a
					}
					if r := requestFor(reqs, *a); r != nil && r.req.OperationID != "" {
						done[r.req.OperationID] = a
					}
					continue
				}
				r := e.req
				if r.err != nil || r.req.Kind != dps.Poll {
					continue
				}
				if a, ok := done[r.req.OperationID]; ok {
					fs = append(fs, finding(id, c, r.pkt.Frame, r.pkt.Time,
						fmt.Sprintf("poll $rid=%s for operation %q %s after its 200 answer (frame %d)", r.req.RID, r.req.OperationID, secs(r.pkt.Time.Sub(a.pkt.Time)), a.pkt.Frame),
						"no poll after the 200 answer"))
				}
			}
			return n, fs
		}}
}

// ruleDevReconnect: after a CONNECT that got no CONNACK, or CONNACK 0x03
// (server unavailable), the device reconnects (with the same username)
// after at least a second, and each further wait is longer than the one
// before: an exponential back-off (EC mqtt_state_machine.md: min 1 s, max
// 100 s, jitter; D-TROUBLE), which may level off at its cap as
// DPS-DEV-018's may (notGrowing). A device that does not reconnect gives no
// evidence.
func ruleDevReconnect() *Rule {
	const id = "DPS-DEV-022"
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a reconnect after a CONNECT that got no CONNACK (or 0x03)",
		CheckCapture: func(capt *tracer.Capture, env RuleEnv) (int, []Finding) {
			tol := env.pollTolerance()
			convs := slices.Clone(capt.Conversations)
			slices.SortFunc(convs, func(a, b *tracer.Conversation) int { return a.Start.Compare(b.Start) })
			n := 0
			var fs []Finding
			prev := time.Duration(-1)
			for i, c := range convs {
				cp, ci := connectOf(c)
				if cp == nil || !unanswered(c, ci) {
					prev = -1
					continue
				}
				var next *tracer.Conversation
				var nextIdx int
				for _, o := range convs[i+1:] {
					if ocp, oi := connectOf(o); ocp != nil && bytes.Equal(ocp.Username, cp.Username) {
						next, nextIdx = o, oi
						break
					}
				}
				if next == nil {
					continue
				}
				n++
				end := c.End
				if c.Closed[tracer.ClientToServer] {
					end = c.CloseTime[tracer.ClientToServer]
				}
				p := &next.Packets[nextIdx]
				wait := p.Time.Sub(end)
				switch {
				case wait < time.Second-tol:
					fs = append(fs, finding(id, next, p.Frame, p.Time, fmt.Sprintf("CONNECT %s after the unanswered attempt of conversation %d ended", secs(wait), c.ID),
						"a reconnect no sooner than 1 s (exponential back-off)"))
				case notGrowing(prev, wait):
					fs = append(fs, finding(id, next, p.Frame, p.Time, fmt.Sprintf("CONNECT %s after the unanswered attempt of conversation %d ended; the attempt before waited %s", secs(wait), c.ID, secs(prev)),
						fmt.Sprintf("a wait longer than %s (a growing back-off)", secs(prev))))
				}
				prev = wait
			}
			return n, fs
		}}
}

// unanswered reports that the CONNECT at index ci got no CONNACK, or got
// 0x03 (server unavailable, the code clients retry).
func unanswered(c *tracer.Conversation, ci int) bool {
	j := firstAfter(c, ci, tracer.ServerToClient, nil)
	if j < 0 {
		return true
	}
	a, ok := c.Packets[j].Packet.(*packets.Connack)
	return ok && a.ReturnCode == packets.ConnackRefusedServerUnavailable
}

// ---- one registration at a time ----

// pendingOp is an operation a conversation's 202 answer left in
// progress, from the answer until the next answer of the conversation or
// its end.
type pendingOp struct {
	id         string
	ans        *answer
	start, end time.Time
}

// pendingOps walks c's timeline and calls onRegister for each register
// request with the operation in progress on c at that moment (nil when
// none); it returns the spans during which an operation was in progress.
// An operation is in progress from a 202 answer that gives an operationId
// and a status that is not final until any other answer: a 200, or an
// error, after which a device may start over (EC mqtt_state_machine.md:
// after a retriable error it may "restart from register"), or a 202
// without an operationId (the same note).
func pendingOps(c *tracer.Conversation, onRegister func(r *request, cur *pendingOp)) []pendingOp {
	var spans []pendingOp
	var cur *pendingOp
	end := func(t time.Time) {
		if cur != nil {
			cur.end = t
			spans = append(spans, *cur)
			cur = nil
		}
	}
	for _, e := range timeline(c) {
		if a := e.ans; a != nil {
			end(a.pkt.Time)
			if a.resp.Status != 202 {
				continue
			}
			var st dps.RegistrationOperationStatus
			if json.Unmarshal(a.pub.Payload, &st) == nil && st.OperationID != "" && !st.Status.Final() {
				cur = &pendingOp{id: st.OperationID, ans: a, start: a.pkt.Time}
			}
			continue
		}
		r := e.req
		// A QoS 1 retransmission (DUP) is the same request again.
		if r.err != nil || r.req.Kind != dps.Register || r.pub.Dup {
			continue
		}
		if onRegister != nil {
			onRegister(r, cur)
		}
	}
	end(conversationEnd(c))
	return spans
}

// conversationEnd is when c ended: its first close, else its last packet.
func conversationEnd(c *tracer.Conversation) time.Time {
	end := c.End
	for _, d := range []tracer.Direction{tracer.ClientToServer, tracer.ServerToClient} {
		if c.Closed[d] && c.CloseTime[d].Before(end) {
			end = c.CloseTime[d]
		}
	}
	return end
}

// ruleDevOneRegistration: no register request while a registration of
// the same device is in progress, on the same connection or on another one
// open at the time (Part A §8: the service answers a second concurrent
// registration 409; Part B §4.7 409203 "Precondition failed.").
func ruleDevOneRegistration() *Rule {
	const id = "DPS-DEV-023"
	const want = "no new register request while an operation is in progress (the service answers 409): poll it to a final answer"
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a register request of the device",
		CheckCapture: func(capt *tracer.Capture, env RuleEnv) (int, []Finding) {
			type span struct {
				c *tracer.Conversation
				pendingOp
			}
			spans := map[string][]span{} // registration id (folded) → spans
			n := 0
			var fs []Finding
			for _, c := range capt.Conversations {
				cp, _ := connectOf(c)
				if cp == nil {
					continue
				}
				for _, p := range pendingOps(c, func(r *request, cur *pendingOp) {
					n++
					if cur != nil {
						fs = append(fs, finding(id, c, r.pkt.Frame, r.pkt.Time,
							fmt.Sprintf("register $rid=%s %s after the 202 answer (frame %d) that left operation %q in progress", r.req.RID, secs(r.pkt.Time.Sub(cur.start)), cur.ans.pkt.Frame, cur.id), want))
					}
				}) {
					k := strings.ToLower(connectionRegID(cp))
					spans[k] = append(spans[k], span{c, p})
				}
			}
			// Another connection of the same device, open at the time.
			for _, c := range capt.Conversations {
				cp, _ := connectOf(c)
				if cp == nil {
					continue
				}
				for _, r := range requests(c) {
					if r.err != nil || r.req.Kind != dps.Register || r.pub.Dup {
						continue
					}
					for _, s := range spans[strings.ToLower(connectionRegID(cp))] {
						if s.c == c || !r.pkt.Time.After(s.start) || !r.pkt.Time.Before(s.end) {
							continue
						}
						fs = append(fs, finding(id, c, r.pkt.Frame, r.pkt.Time,
							fmt.Sprintf("register $rid=%s while operation %q, left in progress by the 202 answer of conversation %d (frame %d), was still open there", r.req.RID, s.id, s.c.ID, s.ans.pkt.Frame), want))
						break
					}
				}
			}
			return n, fs
		}}
}

// ruleDevStopOnFailure: after an answer whose status is failed or
// disabled (final: Part A §8, Part B §4.4), no further register request on
// the connection and no new CONNECT with the same username within
// RuleEnv.Window (DPS-DEV-017's window). Polls after it are DPS-DEV-020's.
func ruleDevStopOnFailure() *Rule {
	const id = "DPS-DEV-024"
	return &Rule{ID: id, Role: RoleDevice, Evidence: `an answer with status "failed" or "disabled"`,
		CheckCapture: func(capt *tracer.Capture, env RuleEnv) (int, []Finding) {
			win := env.window()
			n := 0
			var fs []Finding
			for _, c := range capt.Conversations {
				cp, _ := connectOf(c)
				if cp == nil {
					continue
				}
				reqs := requests(c)
				for _, a := range answers(c) {
					if a.err != nil || a.resp.Status >= 300 {
						continue
					}
					var st dps.RegistrationOperationStatus
					if json.Unmarshal(a.pub.Payload, &st) != nil || (st.Status != dps.StatusFailed && st.Status != dps.StatusDisabled) {
						continue
					}
					n++
					after := fmt.Sprintf("the %d answer with status %q (frame %d)", a.resp.Status, st.Status, a.pkt.Frame)
					for _, r := range reqs {
						if r.idx > a.idx && r.err == nil && r.req.Kind == dps.Register {
							fs = append(fs, finding(id, c, r.pkt.Frame, r.pkt.Time, fmt.Sprintf("register $rid=%s %s after %s", r.req.RID, secs(r.pkt.Time.Sub(a.pkt.Time)), after),
								"no new register request after a final failed or disabled status"))
							break
						}
					}
					fs = append(fs, reconnectsWithin(id, capt, c, cp, a.pkt.Time, win,
						fmt.Sprintf("%s of conversation %d", after, c.ID), "a final failed or disabled status")...)
				}
			}
			return n, fs
		}}
}

// ruleDevMessageSize: every packet of the device fits DPS's message size
// (MaxMessageSize, measured as the emulator and DPS-REG-008 measure it:
// the whole MQTT packet, fixed header included). A packet the server cut
// off once its fixed header announced the size shows as a problem with
// that size (Part A §7: larger ones close the connection).
func ruleDevMessageSize() *Rule {
	const id = "DPS-DEV-026"
	want := fmt.Sprintf("packets of at most %d bytes (96 KB, D-LIMITS)", MaxMessageSize)
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a packet of the device",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			n := 0
			var fs []Finding
			for i := range c.Packets {
				p := &c.Packets[i]
				if p.Dir != tracer.ClientToServer {
					continue
				}
				n = 1
				if size := len(p.Raw); size > MaxMessageSize {
					fs = append(fs, finding(id, c, p.Frame, p.Time, fmt.Sprintf("%s: a %d-byte packet", describe(p.Packet), size), want))
				}
			}
			for _, pr := range c.Problems {
				if pr.Dir == tracer.ClientToServer && pr.PacketLen > MaxMessageSize {
					n = 1
					fs = append(fs, finding(id, c, pr.Frame, c.Start, fmt.Sprintf("a %d-byte packet announced (%s)", pr.PacketLen, pr.Msg), want))
				}
			}
			return n, fs
		}}
}

// ruleDevWSSubprotocol: a device's WebSocket upgrade request offers the
// subprotocol mqtt (D-MQTT: "subprotocol mqtt, RFC 6455"; Part B §7).
// The case is not judged: the C SDK sends MQTT, and DPS accepts it (Part
// A §10).
func ruleDevWSSubprotocol() *Rule {
	const id = "DPS-DEV-028"
	return &Rule{ID: id, Role: RoleDevice, Evidence: "a WebSocket upgrade request of the device",
		Check: func(c *tracer.Conversation, env RuleEnv) (int, []Finding) {
			if c.WS == nil || c.WS.Path == "" && len(c.WS.OfferedSubprotocols) == 0 {
				return 0, nil // no upgrade request seen
			}
			if slices.ContainsFunc(c.WS.OfferedSubprotocols, func(p string) bool { return strings.EqualFold(p, "mqtt") }) {
				return 1, nil
			}
			got := "no Sec-WebSocket-Protocol"
			if len(c.WS.OfferedSubprotocols) > 0 {
				got = fmt.Sprintf("Sec-WebSocket-Protocol %q", c.WS.OfferedSubprotocols)
			}
			return 1, []Finding{finding(id, c, c.FirstFrame(), c.Start, "WebSocket upgrade request to "+c.WS.Path+" with "+got, "Sec-WebSocket-Protocol: mqtt")}
		}}
}
