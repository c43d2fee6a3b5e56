package conformance_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
	"github.com/dps-conform/dps-conform/tracer/tlstrace"
)

// cat joins recordChunks inputs.
func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// TestServiceRulesBothWays judges one service rule at a time on a
// hand-made capture, each violation next to the conforming answer, so that
// a rule that stops looking at a field, a code or a close is caught here
// rather than only by the emulator self-test (which cannot show, say, a
// TLS 1.0 ServerHello to a TLS 1.2 ClientHello).
func TestServiceRulesBothWays(t *testing.T) {
	const op = "4.0123456789abcdef.00000000-0000-4000-8000-000000000000"
	sub := func(qos byte) *packets.Subscribe {
		return &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: qos}}}
	}
	open := preamble(sub(1), []packets.SubackCode{1})
	reg := func(rid string) []byte {
		return chunk(0, &packets.Publish{QoS: 1, PacketID: 2, Topic: []byte(dps.RegisterTopic(rid)), Payload: []byte(`{"registrationId":"dev-1"}`)})
	}
	// ans is the PUBACK of packet 2 and an answer on topic with body.
	ans := func(topic, body string) []byte {
		return chunk(1, &packets.Puback{PacketID: 2}, &packets.Publish{QoS: 1, PacketID: 1, Topic: []byte(topic), Payload: []byte(body)})
	}
	bye := chunk(0, &packets.Puback{PacketID: 1}, &packets.Disconnect{})
	serverCloses := []byte{1, 0}
	clientClosesLater := []byte{20 << 2, 0} // 2 s later, well past CloseGrace
	connect := func(mod func(cp *packets.Connect)) []byte {
		cp := testConnect()
		mod(cp)
		return chunk(0, cp)
	}
	connack := func(code packets.ConnackCode) []byte { return chunk(1, &packets.Connack{ReturnCode: code}) }
	errBody := `{"errorCode":404201,"trackingId":"t","message":"Not found","timestampUtc":"2026-11-23T12:00:00Z"}`
	state := `{"registrationId":"dev-1","assignedHub":"h.azure-devices.net","deviceId":"dev-1","status":"assigned","symmetricKey":{"enrollmentGroupId":"g1"},"substatus":"initialAssignment","createdDateTimeUtc":"2026-11-23T12:00:00Z","lastUpdatedDateTimeUtc":"2026-11-23T12:00:00Z","etag":"x"}`
	assigned := func(st string) string {
		return `{"operationId":"` + op + `","status":"assigned","registrationState":` + st + `}`
	}
	polls := func(statuses ...int) []byte {
		var b []byte
		for i, st := range statuses {
			rid := string(rune('a' + i))
			ra := -1
			if st == 429 {
				ra = 3
			}
			b = append(b, chunk(0, &packets.Publish{Topic: []byte(dps.PollTopic(rid, op))})...)
			body := `{"operationId":"` + op + `","status":"assigning"}`
			if st == 429 {
				body = `{"errorCode":429001,"trackingId":"t","message":"Throttled","timestampUtc":"2026-11-23T12:00:00Z"}`
			}
			b = append(b, chunk(1, &packets.Publish{Topic: []byte(dps.ResponseTopic(st, rid, ra)), Payload: []byte(body)})...)
		}
		return b
	}
	rep := func(st int, n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = st
		}
		return out
	}
	// mqtt5 is a CONNECT at protocol level 5 (empty properties).
	mqtt5 := []byte{0, 20, 0x10, 18, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0, 0, 5, 'd', 'e', 'v', '-', '1'}
	connack01 := []byte{1, 4, 0x20, 2, 0, 1}
	big := &packets.Publish{QoS: 1, PacketID: 2, Topic: []byte(dps.RegisterTopic("1")), Payload: []byte(`{"registrationId":"dev-1","payload":"` + strings.Repeat("x", conformance.MaxMessageSize) + `"}`)}
	assigning := `{"operationId":"` + op + `","status":"assigning"}`
	assigning2 := strings.Replace(assigning, "-000000000000", "-000000000001", 1)
	reserved := connect(func(cp *packets.Connect) { cp.Reserved = true })
	punctID := func(cp *packets.Connect) {
		cp.ClientID = []byte("Dev.Lab_7:1")
		cp.Username = []byte("0ne00000001/registrations/Dev.Lab_7:1/api-version=2019-03-31")
	}
	caseReg := chunk(0, &packets.Publish{QoS: 1, PacketID: 2, Topic: []byte(dps.RegisterTopic("1")), Payload: []byte(`{"registrationId":"Dev-1"}`)})
	// signed opens the connection of dev-1 with a SAS token signed with
	// key; the enrollments below tell whose key that is (DPS-POLL-002).
	const indKey, indKey2 = "aW5kaXZpZHVhbC1wcmltYXJ5LWtleS0wMTIzNDU2Nzg=", "aW5kaXZpZHVhbC1zZWNvbmRhcnkta2V5LTAxMjM0NTY="
	const grpKey, grpKey2 = "Z3JvdXAtcHJpbWFyeS1rZXktMDEyMzQ1Njc4OWFiY2Q=", "Z3JvdXAtc2Vjb25kYXJ5LWtleS0wMTIzNDU2Nzg5YWI="
	signed := func(key string) []byte {
		tok, err := dps.BuildSASToken(dps.SASOptions{IDScope: "0ne00000001", RegistrationID: "dev-1", Key: key, Expiry: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		cp := testConnect()
		cp.Password = []byte(tok)
		in := append(chunk(0, cp), chunk(1, &packets.Connack{})...)
		return append(in, chunk(0, sub(1))...)
	}
	derived := func(groupKey string) string {
		k, err := dps.DeriveDeviceKey(groupKey, "dev-1")
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	subacked := chunk(1, &packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{1}})
	// withGroup is the final answer whose registrationState's attestation
	// objects are objs (JSON members).
	withGroup := func(objs string) string {
		return assigned(strings.Replace(state, `"symmetricKey":{"enrollmentGroupId":"g1"}`, objs, 1))
	}
	final := func(key, objs string) []byte {
		return cat(signed(key), subacked, reg("1"), ans(dps.ResponseTopic(200, "1", -1), withGroup(objs)), bye)
	}
	enrolled := func(groupID string) conformance.RuleEnv {
		return conformance.RuleEnv{Enrollments: []conformance.KnownEnrollment{
			{RegistrationID: "dev-9", Keys: []string{indKey, indKey2}}, // another device's
			{GroupID: groupID, Keys: []string{grpKey, grpKey2}},
		}}
	}
	individual := conformance.RuleEnv{Enrollments: []conformance.KnownEnrollment{{RegistrationID: "DEV-1", Keys: []string{indKey, indKey2}}, {GroupID: "g1", Keys: []string{grpKey}}}}

	for _, tc := range []struct {
		name    string
		rule    string
		env     conformance.RuleEnv
		in      []byte
		conv    *tracer.Conversation // instead of in: TLS facts
		applied int
		fails   bool
	}{
		{name: "TLS 1.2 offered, TLS 1.2 chosen", rule: "TLS-001", applied: 1, conv: &tracer.Conversation{Transport: "mqtts",
			TLS: &tlstrace.Facts{ClientHello: true, OfferedVersions: []uint16{0x0303}, OfferedSuites: []uint16{0xc02b}, ServerHello: true, Version: 0x0303}}},
		{name: "TLS 1.2 offered, TLS 1.0 chosen", rule: "TLS-001", applied: 1, fails: true, conv: &tracer.Conversation{Transport: "mqtts",
			TLS: &tlstrace.Facts{ClientHello: true, OfferedVersions: []uint16{0x0303}, OfferedSuites: []uint16{0xc02b}, ServerHello: true, Version: 0x0301}}},

		{name: "plaintext CONNECT answered", rule: "TLS-005", env: conformance.RuleEnv{Live: true}, applied: 1, fails: true,
			in: cat(chunk(0, testConnect()), connack(0), bye)},
		{name: "plaintext CONNECT not answered", rule: "TLS-005", env: conformance.RuleEnv{Live: true}, applied: 1,
			in: cat(chunk(0, testConnect()), serverCloses)},

		{name: "CONNACK 0, then closed without answering", rule: "DPS-CONN-001", applied: 1, fails: true,
			in: cat(chunk(0, testConnect()), connack(0), chunk(0, sub(1)), serverCloses)},
		{name: "CONNACK 0, then SUBACK", rule: "DPS-CONN-001", applied: 1,
			in: cat(open, bye)},

		// Part A §11: '.', '_' and ':' are registration id characters.
		{name: "registration id with '.', '_' and ':', accepted", rule: "DPS-CONN-003", applied: 1,
			in: cat(connect(punctID), connack(0), chunk(0, sub(1)), chunk(1, &packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{1}}), bye)},
		{name: "registration id with '.', '_' and ':', refused 0x02", rule: "DPS-CONN-003", applied: 1, fails: true,
			in: cat(connect(punctID), connack(2), serverCloses)},

		{name: "no username, accepted", rule: "DPS-CONN-004", applied: 1, fails: true,
			in: cat(connect(func(cp *packets.Connect) { cp.Username = nil }), connack(0), bye)},
		{name: "username not of the DPS form, accepted", rule: "DPS-CONN-004", applied: 1, fails: true,
			in: cat(connect(func(cp *packets.Connect) { cp.Username = []byte("dev-1") }), connack(0), bye)},
		{name: "username not of the DPS form, refused 0x04", rule: "DPS-CONN-004", applied: 1,
			in: cat(connect(func(cp *packets.Connect) { cp.Username = []byte("dev-1") }), connack(4), serverCloses)},
		// Part A §3 and MQTT-3.2.2-5: the refusal CONNACK is followed by
		// the close.
		{name: "username not of the DPS form, refused 0x04, connection kept open", rule: "DPS-CONN-004", applied: 1, fails: true,
			in: cat(connect(func(cp *packets.Connect) { cp.Username = []byte("dev-1") }), connack(4), clientClosesLater)},
		{name: "username not of the DPS form, refused 0x04, then a SUBACK", rule: "DPS-CONN-004", applied: 1, fails: true,
			in: cat(connect(func(cp *packets.Connect) { cp.Username = []byte("dev-1") }), connack(4), chunk(0, sub(1)), chunk(1, &packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{1}}), clientClosesLater)},
		{name: "username not of the DPS form, refused 0x04, the device closed at once", rule: "DPS-CONN-004", applied: 0,
			in: cat(connect(func(cp *packets.Connect) { cp.Username = []byte("dev-1") }), connack(4))},

		{name: "ClientId of another device, accepted", rule: "DPS-CONN-005", applied: 1, fails: true,
			in: cat(connect(func(cp *packets.Connect) { cp.ClientID = []byte("dev-2") }), connack(0), bye)},
		{name: "ClientId of another device, refused 0x02", rule: "DPS-CONN-005", applied: 1,
			in: cat(connect(func(cp *packets.Connect) { cp.ClientID = []byte("dev-2") }), connack(2), serverCloses)},
		{name: "ClientId of another device, refused 0x02, connection kept open", rule: "DPS-CONN-005", applied: 1, fails: true,
			in: cat(connect(func(cp *packets.Connect) { cp.ClientID = []byte("dev-2") }), connack(2), clientClosesLater)},
		{name: "ClientId of another device, refused 0x02, the device closed at once", rule: "DPS-CONN-005", applied: 0,
			in: cat(connect(func(cp *packets.Connect) { cp.ClientID = []byte("dev-2") }), connack(2))},
		// DPS compares registration ids without case (Part A §11, D-TERMS).
		{name: "ClientId differing in case only", rule: "DPS-CONN-005", applied: 0,
			in: cat(connect(func(cp *packets.Connect) { cp.ClientID = []byte("DEV-1") }), connack(0), bye)},
		{name: "ClientId differing in case only, accepted", rule: "DPS-CONN-007", applied: 1,
			in: cat(connect(func(cp *packets.Connect) { cp.ClientID = []byte("DEV-1") }), connack(0), chunk(0, sub(1)), chunk(1, &packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{1}}), bye)},
		{name: "ClientId differing in case only, refused 0x02", rule: "DPS-CONN-007", applied: 1, fails: true,
			in: cat(connect(func(cp *packets.Connect) { cp.ClientID = []byte("DEV-1") }), connack(2), serverCloses)},
		{name: "register body naming the device in other case, 202", rule: "DPS-CONN-007", applied: 1,
			in: cat(open, caseReg, ans(dps.ResponseTopic(202, "1", 3), assigning), bye)},
		{name: "register body naming the device in other case, 400", rule: "DPS-CONN-007", applied: 1, fails: true,
			in: cat(open, caseReg, ans(dps.ResponseTopic(400, "1", -1), errBody), bye)},
		{name: "register body naming the device as is", rule: "DPS-CONN-007", applied: 0,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(400, "1", -1), errBody), bye)},

		{name: "MQTT 5 refused 0x01, connection kept open", rule: "DPS-CONN-006", applied: 1, fails: true,
			in: cat(mqtt5, connack01, clientClosesLater)},
		{name: "MQTT 5 refused 0x01 and closed", rule: "DPS-CONN-006", applied: 1,
			in: cat(mqtt5, connack01, serverCloses)},
		{name: "MQTT 5 refused 0x01, then a PINGRESP", rule: "DPS-CONN-006", applied: 1, fails: true,
			in: cat(mqtt5, connack01, []byte{1, 2, 0xd0, 0}, serverCloses)},
		{name: "MQTT 5 refused 0x01, the device closed at once", rule: "DPS-CONN-006", applied: 0,
			in: cat(mqtt5, connack01)},

		{name: "CleanSession 0 accepted", rule: "DPS-SESS-001", applied: 1, fails: true,
			in: cat(connect(func(cp *packets.Connect) { cp.CleanSession = false }), connack(0), bye)},
		{name: "CleanSession 0 refused 0x02", rule: "DPS-SESS-001", applied: 1,
			in: cat(connect(func(cp *packets.Connect) { cp.CleanSession = false }), connack(2), serverCloses)},
		// Part A §2 and MQTT-3.2.2-5: the refusal CONNACK is followed by
		// the close.
		{name: "CleanSession 0 refused 0x02, connection kept open", rule: "DPS-SESS-001", applied: 1, fails: true,
			in: cat(connect(func(cp *packets.Connect) { cp.CleanSession = false }), connack(2), clientClosesLater)},
		{name: "CleanSession 0 refused 0x02, the device closed at once", rule: "DPS-SESS-001", applied: 0,
			in: cat(connect(func(cp *packets.Connect) { cp.CleanSession = false }), connack(2))},
		{name: "CleanSession 0 closed before CONNACK", rule: "DPS-SESS-001", applied: 1,
			in: cat(connect(func(cp *packets.Connect) { cp.CleanSession = false }), serverCloses)},

		{name: "CONNACK 0 with session present", rule: "DPS-SESS-003", applied: 1, fails: true,
			in: cat(chunk(0, testConnect()), chunk(1, &packets.Connack{SessionPresent: true}), bye)},

		{name: "QoS 1 asked, 1 granted", rule: "DPS-SUB-001", applied: 1, in: cat(preamble(sub(1), []packets.SubackCode{1}), bye)},
		{name: "QoS 1 asked, 0 granted", rule: "DPS-SUB-001", applied: 1, fails: true, in: cat(preamble(sub(1), []packets.SubackCode{0}), bye)},
		{name: "QoS 2 asked, 1 granted", rule: "DPS-SUB-002", applied: 1, in: cat(preamble(sub(2), []packets.SubackCode{1}), bye)},
		{name: "QoS 2 asked, 2 granted", rule: "DPS-SUB-002", applied: 1, fails: true, in: cat(preamble(sub(2), []packets.SubackCode{2}), bye)},

		{name: "answer with no PUBACK at all", rule: "DPS-REG-001", applied: 1, fails: true,
			in: cat(open, reg("1"), chunk(1, &packets.Publish{Topic: []byte(dps.ResponseTopic(202, "1", 3)), Payload: []byte(`{}`)}), bye)},

		{name: "register 202 without operationId", rule: "DPS-REG-002", applied: 1, fails: true,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(202, "1", 3), `{"status":"assigning"}`), bye)},
		{name: "register 202 with operationId", rule: "DPS-REG-002", applied: 1,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(202, "1", 3), `{"operationId":"`+op+`","status":"assigning"}`), bye)},

		{name: "register 429 without retry-after", rule: "DPS-REG-010", applied: 1, fails: true,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(429, "1", -1), `{}`), bye)},
		{name: "register 429 with retry-after", rule: "DPS-REG-010", applied: 1,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(429, "1", 3), `{}`), bye)},

		{name: "answer with another $rid", rule: "DPS-REG-003", applied: 1, fails: true,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(202, "2", 3), `{}`), bye)},
		{name: "answer with the request's $rid", rule: "DPS-REG-003", applied: 1,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(202, "1", 3), `{}`), bye)},

		// Keys are parsed without case (a device must cope) but the
		// service writes them as documented.
		{name: "answer with Retry-After capitalised", rule: "DPS-REG-004", applied: 1, fails: true,
			in: cat(open, reg("1"), ans("$dps/registrations/res/202/?$rid=1&Retry-After=3", `{}`), bye)},

		{name: "undocumented topic, then an answer", rule: "DPS-REG-007", applied: 1, fails: true,
			in: cat(open, chunk(0, &packets.Publish{QoS: 1, PacketID: 2, Topic: []byte("$dps/registrations/PUT/iotdps-unknown/?$rid=1"), Payload: []byte(`{}`)}),
				ans(dps.ResponseTopic(404, "1", -1), errBody), bye)},
		{name: "undocumented topic, then closed", rule: "DPS-REG-007", applied: 1,
			in: cat(open, chunk(0, &packets.Publish{QoS: 1, PacketID: 2, Topic: []byte("$dps/registrations/PUT/iotdps-unknown/?$rid=1"), Payload: []byte(`{}`)}), serverCloses)},

		{name: "packet just over 96 KB, connection kept open", rule: "DPS-REG-008", applied: 1, fails: true,
			in: cat(open, chunk(0, big), clientClosesLater)},
		{name: "packet just over 96 KB, closed", rule: "DPS-REG-008", applied: 1,
			in: cat(open, chunk(0, big), serverCloses)},

		{name: "assigned without etag", rule: "DPS-POLL-002", applied: 1, fails: true,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(200, "1", -1), assigned(strings.Replace(state, `,"etag":"x"`, "", 1))), bye)},
		{name: "assigned, complete", rule: "DPS-POLL-002", applied: 1,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(200, "1", -1), assigned(state)), bye)},
		// Part A §6: the final registrationState is the device's and says
		// assigned.
		{name: "assigned, registrationState status assigning", rule: "DPS-POLL-002", applied: 1, fails: true,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(200, "1", -1), assigned(strings.Replace(state, `"status":"assigned"`, `"status":"assigning"`, 1))), bye)},
		{name: "assigned, registrationState status failed", rule: "DPS-POLL-002", applied: 1, fails: true,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(200, "1", -1), assigned(strings.Replace(state, `"status":"assigned"`, `"status":"failed"`, 1))), bye)},
		{name: "assigned, registrationState of another device", rule: "DPS-POLL-002", applied: 1, fails: true,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(200, "1", -1), assigned(strings.Replace(state, `"registrationId":"dev-1"`, `"registrationId":"dev-2"`, 1))), bye)},
		{name: "assigned, registrationId in other case", rule: "DPS-POLL-002", applied: 1,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(200, "1", -1), assigned(strings.Replace(state, `"registrationId":"dev-1"`, `"registrationId":"DEV-1"`, 1))), bye)},
		// Part A §6, Part B §4.5: the attestation object's
		// enrollmentGroupId, if any, is the device's group; none for an
		// individual enrollment. The token tells which enrollment it is.
		{name: "group device, its group named", rule: "DPS-POLL-002", env: enrolled("g1"), applied: 1,
			in: final(derived(grpKey), `"symmetricKey":{"enrollmentGroupId":"g1"}`)},
		{name: "group device, its group named in other case", rule: "DPS-POLL-002", env: enrolled("G1"), applied: 1,
			in: final(derived(grpKey), `"symmetricKey":{"enrollmentGroupId":"g1"}`)},
		{name: "group device, no group named", rule: "DPS-POLL-002", env: enrolled("g1"), applied: 1,
			in: final(derived(grpKey), `"symmetricKey":{}`)},
		{name: "group device, an empty x509 object only (Part B §4.5's SAS sample)", rule: "DPS-POLL-002", env: enrolled("g1"), applied: 1,
			in: final(derived(grpKey), `"x509":{}`)},
		{name: "group device, an empty x509 object beside its group", rule: "DPS-POLL-002", env: enrolled("g1"), applied: 1,
			in: final(derived(grpKey), `"x509":{},"symmetricKey":{"enrollmentGroupId":"g1"}`)},
		{name: "group device, its registration id named as the group", rule: "DPS-POLL-002", env: enrolled("g1"), applied: 1, fails: true,
			in: final(derived(grpKey), `"symmetricKey":{"enrollmentGroupId":"dev-1"}`)},
		{name: "group device, another group named in x509", rule: "DPS-POLL-002", env: enrolled("g1"), applied: 1, fails: true,
			in: final(derived(grpKey), `"x509":{"enrollmentGroupId":"g2"},"symmetricKey":{"enrollmentGroupId":"g1"}`)},
		{name: "group device signing with the secondary's derived key, another group named", rule: "DPS-POLL-002", env: enrolled("g1"), applied: 1, fails: true,
			in: final(derived(grpKey2), `"symmetricKey":{"enrollmentGroupId":"dev-1"}`)},
		{name: "group device, group id not known", rule: "DPS-POLL-002", env: enrolled(""), applied: 1,
			in: final(derived(grpKey), `"symmetricKey":{"enrollmentGroupId":"dev-1"}`)},
		{name: "individual device, a group named", rule: "DPS-POLL-002", env: individual, applied: 1, fails: true,
			in: final(indKey, `"symmetricKey":{"enrollmentGroupId":"g1"}`)},
		{name: "individual device signing with its secondary key, a group named in x509", rule: "DPS-POLL-002", env: individual, applied: 1, fails: true,
			in: final(indKey2, `"x509":{"enrollmentGroupId":"g1"}`)},
		{name: "individual device, no group named", rule: "DPS-POLL-002", env: individual, applied: 1,
			in: final(indKey2, `"symmetricKey":{}`)},
		{name: "individual device, a group named, no enrollments known (a field capture)", rule: "DPS-POLL-002", applied: 1,
			in: final(indKey, `"symmetricKey":{"enrollmentGroupId":"g1"}`)},
		{name: "a token no known key signs, a group named", rule: "DPS-POLL-002", env: enrolled("g1"), applied: 1,
			in: final(derived(indKey), `"symmetricKey":{"enrollmentGroupId":"zz"}`)},

		{name: "404 body without trackingId", rule: "DPS-ERR-001", applied: 1, fails: true,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(404, "1", -1), strings.Replace(errBody, `"trackingId":"t",`, "", 1)), bye)},
		{name: "404 body complete", rule: "DPS-ERR-001", applied: 1,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(404, "1", -1), errBody), bye)},

		{name: "401, connection kept open", rule: "DPS-AUTH-007", applied: 1, fails: true,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(401, "1", -1), `{}`), clientClosesLater)},
		{name: "401, then closed", rule: "DPS-AUTH-007", applied: 1,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(401, "1", -1), `{}`), serverCloses)},

		{name: "5 polls answered 202", rule: "DPS-POLL-004", applied: 0, in: cat(open, polls(rep(202, 5)...), bye)},
		// The 6th is throttled; the count starts again, so the 12th is the
		// next 6th.
		{name: "12 polls, the 6th and 12th throttled", rule: "DPS-POLL-004", applied: 2,
			in: cat(open, polls(append(append(rep(202, 5), 429), append(rep(202, 5), 429)...)...), bye)},

		// Only a poll answered 202 "assigning" shows the first operation
		// still in progress when the second register was accepted.
		{name: "second register accepted, first operation still assigning", rule: "DPS-REG-009", applied: 1, fails: true,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(202, "1", 3), assigning), reg("2"), ans(dps.ResponseTopic(202, "2", 3), assigning2),
				chunk(0, &packets.Publish{Topic: []byte(dps.PollTopic("3", op))}), ans(dps.ResponseTopic(202, "3", 3), assigning), bye)},
		{name: "second register accepted, the poll's 202 not assigning", rule: "DPS-REG-009", applied: 0,
			in: cat(open, reg("1"), ans(dps.ResponseTopic(202, "1", 3), assigning), reg("2"), ans(dps.ResponseTopic(202, "2", 3), assigning2),
				chunk(0, &packets.Publish{Topic: []byte(dps.PollTopic("3", op))}), ans(dps.ResponseTopic(202, "3", 3), `{"operationId":"`+op+`","status":"assigned"}`), bye)},

		// A CONNACK 0 may not answer a CONNECT that is itself invalid.
		{name: "invalid CONNECT accepted, then closed", rule: "MQTT-4.8.0-1", applied: 1, fails: true,
			in: cat(reserved, connack(0), serverCloses)},
		{name: "invalid CONNECT refused, then closed", rule: "MQTT-4.8.0-1", applied: 1,
			in: cat(reserved, connack(2), serverCloses)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var capt *tracer.Capture
			if tc.conv != nil {
				c := *tc.conv
				c.ID = 1
				capt = &tracer.Capture{Conversations: []*tracer.Conversation{&c}}
			} else {
				capt = recordChunks(t, tc.in)
			}
			env := tc.env
			env.Profile = conformance.ProfileDPS2019
			fs, applied := conformance.CheckCapture(capt, serviceRule(t, tc.rule), env)
			if applied[tc.rule] != tc.applied || (len(fs) > 0) != tc.fails {
				t.Errorf("%s applied %d times (want %d), findings %v; want failing=%v\n%s", tc.rule, applied[tc.rule], tc.applied, fs, tc.fails, transcript(capt))
			}
		})
	}
}
