package conformance_test

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
	"github.com/dps-conform/dps-conform/tracer/tlstrace"
)

// FuzzRules judges captures of arbitrary MQTT traffic with every service and
// device rule, as 'trace --check' judges a field engineer's pcap: no rule
// may panic, and every finding names a rule and a conversation and frame of
// the capture.
//
// Input: byte 0 sets the environment (bit 0 Live, bit 1 profile dps-2023,
// bit 2 HostileServer); then chunks of [header][length][bytes]: header bit 0
// is the direction (0 device to service), bit 1 the connection (two share
// the capture), bits 2-7 the time before the chunk in 100 ms steps.
func FuzzRules(f *testing.F) {
	for _, seed := range ruleSeeds() {
		f.Add(seed)
	}
	rules := append(conformance.ServiceRules(), conformance.DeviceRules()...)
	known := map[string]bool{}
	for _, r := range rules {
		known[r.ID] = true
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 || len(in) > 8192 {
			return
		}
		capt := recordChunks(t, in[1:])
		env := conformance.RuleEnv{Live: in[0]&1 != 0, Profile: "dps-2019", HostileServer: in[0]&4 != 0}
		if in[0]&2 != 0 {
			env.Profile = "dps-2023"
		}
		findings, _ := conformance.CheckCapture(capt, rules, env)
		convs := map[int]int{} // conversation ID → its last frame
		for _, c := range capt.Conversations {
			last := 0
			for _, p := range c.Packets {
				last = max(last, p.Frame)
			}
			convs[c.ID] = last
		}
		for _, fd := range findings {
			if !known[fd.ID] {
				t.Fatalf("finding of an unknown rule: %v", fd)
			}
			if _, ok := convs[fd.Conversation]; !ok && fd.Conversation != 0 {
				t.Fatalf("finding names conversation %d, not in the capture: %v", fd.Conversation, fd)
			}
			if fd.Frame < 0 || fd.Frame > capt.Frames {
				t.Fatalf("finding names frame %d of %d: %v", fd.Frame, capt.Frames, fd)
			}
		}
	})
}

// recordChunks writes the chunks of in as two plaintext MQTT connections to
// an in-memory pcapng and decodes it. A chunk of length 0 closes its side
// of its flow (a FIN); what that side sends later is dropped.
func recordChunks(t *testing.T, in []byte) *tracer.Capture {
	t.Helper()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	rec, err := tracer.NewRecorder(&buf, tracer.RecorderOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var flows [2]*tracer.Flow
	for i := range flows {
		client := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(40000+i))
		server := netip.MustParseAddrPort("10.0.0.2:1883")
		if flows[i], err = rec.Flow(client, server, tracer.FlowOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var finned [2][2]bool // [flow][side]
	for len(in) >= 2 {
		hdr, n := in[0], int(in[1])
		in = in[2:]
		n = min(n, len(in))
		now = now.Add(time.Duration(hdr>>2) * 100 * time.Millisecond)
		fl, side := hdr>>1&1, hdr&1
		switch {
		case finned[fl][side]:
		case n == 0:
			finned[fl][side] = true
			if err := flows[fl].Fin(tracer.Side(side)); err != nil {
				t.Fatal(err)
			}
		default:
			if err := flows[fl].Send(tracer.Side(side), in[:n], tracer.SegOpts{}); err != nil {
				t.Fatal(err)
			}
		}
		in = in[n:]
	}
	for fl := range flows {
		for side := range 2 {
			if !finned[fl][side] {
				if err := flows[fl].Fin(tracer.Side(side)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	capt, err := tracer.Decode(&buf, tracer.Options{})
	if err != nil {
		t.Fatalf("decoding the recorder's own capture: %v", err)
	}
	return capt
}

// chunk is the recordChunks input that sends ps (encoded, invalid ones
// too) with header hdr: bit 0 the side (1: server), bit 1 the flow, the
// rest the time before it in 100 ms.
func chunk(hdr byte, ps ...packets.Packet) []byte {
	var b []byte
	for _, p := range ps {
		b, _ = packets.Encode(b, p, packets.EncodeOptions{AllowInvalid: true})
	}
	var out []byte
	for len(b) > 0 {
		n := min(len(b), 255)
		out = append(out, hdr, byte(n))
		out = append(out, b[:n]...)
		b = b[n:]
		hdr &^= 0xfc // time passes before the first piece only
	}
	return out
}

// testConnect is the CONNECT of device dev-1 in the rule tests: ClientId
// and username of the documented form, no password.
func testConnect() *packets.Connect {
	return &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, KeepAlive: 60, ClientID: []byte("dev-1"),
		Username: []byte("0ne00000001/registrations/dev-1/api-version=2019-03-31")}
}

// preamble is the chunks of flow 0 that open a connection: testConnect,
// CONNACK, sub and a SUBACK with codes (none when codes is nil).
func preamble(sub *packets.Subscribe, codes []packets.SubackCode) []byte {
	in := append(chunk(0, testConnect()), chunk(1, &packets.Connack{})...)
	in = append(in, chunk(0, sub)...)
	if codes != nil {
		in = append(in, chunk(1, &packets.Suback{PacketID: sub.PacketID, ReturnCodes: codes})...)
	}
	return in
}

// ruleSeeds are whole DPS conversations in the chunk format: a registration
// answered 202 then 200, a 401 and close, a 409 after a poll, a throttled
// poll.
func ruleSeeds() [][]byte {
	const op = "4.0123456789abcdef.00000000-0000-4000-8000-000000000000"
	connect := testConnect()
	connect.Password = []byte("SharedAccessSignature sr=0ne00000001%2fregistrations%2fdev-1&sig=AAAA&se=4102444800&skn=registration")
	sub := &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 1}}}
	reg := func(rid string, pid uint16) *packets.Publish {
		return &packets.Publish{QoS: 1, PacketID: pid, Topic: []byte(dps.RegisterTopic(rid)), Payload: []byte(`{"registrationId":"dev-1"}`)}
	}
	poll := func(rid string, pid uint16) *packets.Publish {
		return &packets.Publish{QoS: 1, PacketID: pid, Topic: []byte(dps.PollTopic(rid, op))}
	}
	answer := func(status int, rid string, pid uint16, body string) []packets.Packet {
		return []packets.Packet{&packets.Puback{PacketID: pid},
			&packets.Publish{QoS: 1, PacketID: pid, Topic: []byte(dps.ResponseTopic(status, rid, 3)), Payload: []byte(body)}}
	}
	assigning := `{"operationId":"` + op + `","status":"assigning"}`
	assigned := `{"operationId":"` + op + `","status":"assigned","registrationState":{"registrationId":"dev-1","assignedHub":"h.azure-devices.net","deviceId":"dev-1","status":"assigned","symmetricKey":{"enrollmentGroupId":"g1"},"substatus":"initialAssignment","createdDateTimeUtc":"2026-11-23T12:00:00Z","lastUpdatedDateTimeUtc":"2026-11-23T12:00:00Z","etag":"x"}}`
	var seeds [][]byte
	flow := func(parts ...[]byte) {
		s := []byte{1}
		for _, p := range parts {
			s = append(s, p...)
		}
		seeds = append(seeds, s)
	}
	open := append(chunk(0, connect), chunk(1, &packets.Connack{})...)
	open = append(open, chunk(0, sub)...)
	open = append(open, chunk(1, &packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{1}})...)
	flow(open, chunk(0, reg("1", 2)), chunk(1, answer(202, "1", 2, assigning)...),
		chunk(3<<2, poll("2", 3)), chunk(1, answer(200, "2", 3, assigned)...), chunk(0, &packets.Disconnect{}))
	flow(open, chunk(0, reg("1", 2)), chunk(1, answer(401, "1", 2, `{"errorCode":401002,"trackingId":"t","message":"Unauthorized","timestampUtc":"2026-11-23T12:00:00Z"}`)...),
		chunk(2<<2|2, connect))
	flow(open, chunk(0, reg("1", 2)), chunk(1, answer(202, "1", 2, assigning)...), chunk(0, poll("2", 3)),
		chunk(1, answer(202, "2", 3, assigning)...), chunk(0, reg("3", 4)),
		chunk(1, answer(409, "3", 4, `{"errorCode":409203,"trackingId":"t","message":"Precondition failed.","timestampUtc":"2026-11-23T12:00:00Z"}`)...),
		chunk(0, poll("4", 5)), chunk(1, answer(202, "4", 5, assigning)...))
	var polls []byte
	for i := range 7 {
		rid := string(rune('2' + i))
		polls = append(polls, chunk(0, poll(rid, uint16(3+i)))...)
		polls = append(polls, chunk(1, answer(202, rid, uint16(3+i), assigning)...)...)
	}
	flow(open, chunk(0, reg("1", 2)), chunk(1, answer(202, "1", 2, assigning)...), polls)
	return seeds
}

// TestRuleSeeds keeps the fuzz seeds honest (each applies the rules it is
// there for, passing or failing as it was written to) and judges
// DPS-REG-009's rule on a synthetic capture both ways: the seed's 409
// passes, the same flow with a 202 fails.
func TestRuleSeeds(t *testing.T) {
	seeds := ruleSeeds()
	rules := append(conformance.ServiceRules(), conformance.DeviceRules()...)
	for _, tc := range []struct {
		seed  int
		rule  string
		fails bool
	}{
		{0, "DPS-REG-002", false},
		{0, "DPS-POLL-002", false},
		{1, "DPS-DEV-017", true}, // reconnects 0.2 s after the 401
		{2, "DPS-REG-009", false},
		{3, "DPS-POLL-004", true}, // the 6th poll in 10 s answered 202
	} {
		fs, applied := conformance.CheckCapture(recordChunks(t, seeds[tc.seed][1:]), rules, conformance.RuleEnv{Profile: "dps-2019"})
		n := 0
		for _, f := range fs {
			if f.ID == tc.rule {
				n++
			}
		}
		if applied[tc.rule] == 0 || (n > 0) != tc.fails {
			t.Errorf("seed %d: %s applied %d times with %d findings, want failing=%v: %v", tc.seed, tc.rule, applied[tc.rule], n, tc.fails, fs)
		}
	}
	// The service answers the second register 202: a finding at that
	// answer naming the operation still assigning.
	bad := bytes.Replace(seeds[2], []byte("res/409/"), []byte("res/202/"), 1)
	fs, applied := conformance.CheckCapture(recordChunks(t, bad[1:]), rules, conformance.RuleEnv{Live: true})
	var got []conformance.Finding
	for _, f := range fs {
		if f.ID == "DPS-REG-009" {
			got = append(got, f)
		}
	}
	if applied["DPS-REG-009"] != 1 || len(got) != 1 || !bytes.Contains([]byte(got[0].Actual), []byte("still assigning")) {
		t.Fatalf("DPS-REG-009 applied %d times, findings %v", applied["DPS-REG-009"], got)
	}
	// A second register refused for another reason (429, the budget) is
	// not DPS-REG-009's to judge.
	throttled := bytes.Replace(seeds[2], []byte("res/409/"), []byte("res/429/"), 1)
	fs, applied = conformance.CheckCapture(recordChunks(t, throttled[1:]), rules, conformance.RuleEnv{Live: true})
	for _, f := range fs {
		if f.ID == "DPS-REG-009" {
			t.Errorf("a throttled second register judged: %v", f)
		}
	}
	if applied["DPS-REG-009"] != 0 {
		t.Errorf("DPS-REG-009 applied %d times to a throttled second register", applied["DPS-REG-009"])
	}
}

// TestRuleOtherFilters: DPS-SUB-004 wants SUBACK 0x80 for every filter
// but the DPS one; a SUBACK granting it, or one short of return codes
// (which has none for it, MQTT-3.9.3-1), is a finding; 0x80 passes.
func TestRuleOtherFilters(t *testing.T) {
	sub := &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 1}, {Filter: []byte("devices/dev-1/#"), QoS: 1}}}
	rules := serviceRule(t, "DPS-SUB-004")
	for _, tc := range []struct {
		name  string
		codes []packets.SubackCode
		fails bool
	}{
		{"refused", []packets.SubackCode{1, packets.SubackFailure}, false},
		{"granted", []packets.SubackCode{1, 1}, true},
		{"no return code for it", []packets.SubackCode{1}, true},
		{"closed instead", nil, true},
	} {
		in := preamble(sub, tc.codes)
		if tc.codes == nil {
			in = append(in, 1, 0) // the server closes its side of flow 0
		}
		in = append(in, chunk(0, &packets.Disconnect{})...)
		fs, applied := conformance.CheckCapture(recordChunks(t, in), rules, conformance.RuleEnv{Profile: "dps-2019"})
		if applied["DPS-SUB-004"] != 1 || (len(fs) > 0) != tc.fails {
			t.Errorf("%s: applied %d times, findings %v; want failing=%v", tc.name, applied["DPS-SUB-004"], fs, tc.fails)
		}
	}
}

// TestRulePoll202: DPS-POLL-001 wants every poll answered 202 to carry a
// retry-after, the status assigning and registrationState{registrationId
// (the connection's, in any case), status assigning}, and one answered 200 a final
// status (assigned, failed, disabled); a register answered 202 is
// DPS-REG-002's.
func TestRulePoll202(t *testing.T) {
	const op = "4.0123456789abcdef.00000000-0000-4000-8000-000000000000"
	sub := &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 1}}}
	assigning := `{"operationId":"` + op + `","status":"assigning","registrationState":{"registrationId":"dev-1","status":"assigning"}}`
	rules := serviceRule(t, "DPS-POLL-001")
	for _, tc := range []struct {
		name    string
		request string
		topic   string
		body    string
		applied int
		fails   bool
	}{
		{"202 with retry-after", dps.PollTopic("2", op), dps.ResponseTopic(202, "2", 0), assigning, 1, false},
		{"202 without retry-after", dps.PollTopic("2", op), dps.ResponseTopic(202, "2", -1), assigning, 1, true},
		{"202 assigned", dps.PollTopic("2", op), dps.ResponseTopic(202, "2", 1), strings.Replace(assigning, `"status":"assigning"`, `"status":"assigned"`, 1), 1, true},
		{"202 not JSON", dps.PollTopic("2", op), dps.ResponseTopic(202, "2", 1), "", 1, true},
		{"202 without registrationState", dps.PollTopic("2", op), dps.ResponseTopic(202, "2", 0), `{"operationId":"` + op + `","status":"assigning"}`, 1, true},
		{"202 registrationState assigned", dps.PollTopic("2", op), dps.ResponseTopic(202, "2", 0), strings.Replace(assigning, `"status":"assigning"}}`, `"status":"assigned"}}`, 1), 1, true},
		{"202 registrationState of another device", dps.PollTopic("2", op), dps.ResponseTopic(202, "2", 0), strings.Replace(assigning, `"dev-1"`, `"dev-2"`, 1), 1, true},
		{"202 registrationState id in other case", dps.PollTopic("2", op), dps.ResponseTopic(202, "2", 0), strings.Replace(assigning, `"dev-1"`, `"DEV-1"`, 1), 1, false},
		{"202 registrationState without registrationId", dps.PollTopic("2", op), dps.ResponseTopic(202, "2", 0), strings.Replace(assigning, `"registrationId":"dev-1",`, ``, 1), 1, true},
		{"200 disabled", dps.PollTopic("2", op), dps.ResponseTopic(200, "2", -1), `{"operationId":"` + op + `","status":"disabled"}`, 1, false},
		{"200 assigned", dps.PollTopic("2", op), dps.ResponseTopic(200, "2", -1), `{"operationId":"` + op + `","status":"assigned","registrationState":{"registrationId":"dev-1","status":"assigned"}}`, 1, false},
		{"200 assigning", dps.PollTopic("2", op), dps.ResponseTopic(200, "2", -1), assigning, 1, true},
		{"200 not JSON", dps.PollTopic("2", op), dps.ResponseTopic(200, "2", -1), "", 1, true},
		{"register 202 without retry-after", dps.RegisterTopic("2"), dps.ResponseTopic(202, "2", -1), assigning, 0, false},
		{"poll 404", dps.PollTopic("2", op), dps.ResponseTopic(404, "2", -1), `{}`, 0, false},
	} {
		in := preamble(sub, []packets.SubackCode{1})
		in = append(in, chunk(0, &packets.Publish{QoS: 1, PacketID: 2, Topic: []byte(tc.request)})...)
		in = append(in, chunk(1, &packets.Puback{PacketID: 2}, &packets.Publish{QoS: 1, PacketID: 1, Topic: []byte(tc.topic), Payload: []byte(tc.body)})...)
		in = append(in, chunk(0, &packets.Puback{PacketID: 1}, &packets.Disconnect{})...)
		fs, applied := conformance.CheckCapture(recordChunks(t, in), rules, conformance.RuleEnv{Profile: "dps-2019"})
		if applied["DPS-POLL-001"] != tc.applied || (len(fs) > 0) != tc.fails {
			t.Errorf("%s: applied %d times (want %d), findings %v; want failing=%v", tc.name, applied["DPS-POLL-001"], tc.applied, fs, tc.fails)
		}
	}
}

// TestRuleDeliveryQoS: DPS-SUB-003 wants answers delivered at exactly
// min(granted QoS, 1) (Part A §6): above it and below it are findings.
func TestRuleDeliveryQoS(t *testing.T) {
	rules := serviceRule(t, "DPS-SUB-003")
	for _, tc := range []struct {
		granted, delivered byte
		fails              bool
	}{
		{0, 0, false}, {1, 1, false}, {2, 1, false},
		{0, 1, true}, {1, 0, true}, {2, 2, true}, {2, 0, true},
	} {
		sub := &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: tc.granted}}}
		answer := &packets.Publish{QoS: tc.delivered, Topic: []byte(dps.ResponseTopic(202, "1", 0)), Payload: []byte(`{}`)}
		if tc.delivered > 0 {
			answer.PacketID = 7
		}
		in := preamble(sub, []packets.SubackCode{packets.SubackCode(min(tc.granted, 2))})
		in = append(in, chunk(0, &packets.Publish{Topic: []byte(dps.RegisterTopic("1"))})...)
		in = append(in, chunk(1, answer)...)
		in = append(in, chunk(0, &packets.Disconnect{})...)
		fs, applied := conformance.CheckCapture(recordChunks(t, in), rules, conformance.RuleEnv{Profile: "dps-2019"})
		if applied["DPS-SUB-003"] != 1 || (len(fs) > 0) != tc.fails {
			t.Errorf("granted %d, delivered %d: applied %d times, findings %v; want failing=%v", tc.granted, tc.delivered, applied["DPS-SUB-003"], fs, tc.fails)
		}
	}
}

// serviceRule returns the service rule of requirement id, alone.
func serviceRule(t *testing.T, id string) []*conformance.Rule {
	t.Helper()
	for _, r := range conformance.ServiceRules() {
		if r.ID == id {
			return []*conformance.Rule{r}
		}
	}
	t.Fatalf("no service rule %s", id)
	return nil
}

// TestCheckCaptureUndecrypted: the MQTT of a conversation whose TLS was
// decrypted only in part, or which has a gap, is not judged (here the server's CONNACK, in the
// half that could not be read, would look missing: DPS-CONN-001), while
// the TLS handshake of a conversation never decrypted still is (a server
// choosing TLS 1.0: TLS-002).
func TestCheckCaptureUndecrypted(t *testing.T) {
	undecrypted := tracer.Problem{Clause: tracer.ClauseUndecrypted, Msg: "key log has no traffic secret 0 for s2c: decryption of s2c stops"}

	partial := recordChunks(t, append(chunk(0, testConnect()), 20<<2, 0)) // the device closes 2 s later
	rules := serviceRule(t, "DPS-CONN-001")
	if fs, _ := conformance.CheckCapture(partial, rules, conformance.RuleEnv{Profile: "dps-2019"}); len(fs) != 1 {
		t.Fatalf("a CONNECT without CONNACK, all decrypted: findings %v, want DPS-CONN-001's", fs)
	}
	partial.Conversations[0].Problems = append(partial.Conversations[0].Problems, undecrypted)
	if fs, applied := conformance.CheckCapture(partial, rules, conformance.RuleEnv{Profile: "dps-2019"}); len(fs) != 0 || applied["DPS-CONN-001"] != 0 {
		t.Errorf("decrypted in part: findings %v, applied %v; want the MQTT not judged", fs, applied)
	}
	if len(partial.Conversations[0].Packets) == 0 {
		t.Error("CheckCapture changed the capture it was given")
	}
	// Nor is that of a conversation with a gap: the CONNACK may be in it.
	partial.Conversations[0].Problems = nil
	partial.Conversations[0].Gaps = []tracer.Gap{{Dir: tracer.ServerToClient, Frame: 3, Len: 6}}
	if fs, applied := conformance.CheckCapture(partial, rules, conformance.RuleEnv{Profile: "dps-2019"}); len(fs) != 0 || applied["DPS-CONN-001"] != 0 {
		t.Errorf("a gap: findings %v, applied %v; want the MQTT not judged", fs, applied)
	}

	tls10 := &tracer.Capture{Conversations: []*tracer.Conversation{{ID: 1, Transport: "mqtts",
		TLS:      &tlstrace.Facts{ClientHello: true, OfferedVersions: []uint16{0x0301}, ServerHello: true, Version: 0x0301},
		Problems: []tracer.Problem{undecrypted}}}}
	if fs, _ := conformance.CheckCapture(tls10, serviceRule(t, "TLS-002"), conformance.RuleEnv{Profile: "dps-2019"}); len(fs) != 1 {
		t.Errorf("TLS 1.0 chosen, nothing decrypted: findings %v, want TLS-002's", fs)
	}
}

// TestRuleConnectForms: DPS-CONN-001 judges every CONNECT of the
// documented form, whatever the length of its registration id (up to 128
// characters, Part A §11: a vendor's configured id is often longer than
// MQTT's 23-character minimum); DPS-CONN-003 (SHOULD) judges those longer
// than 23 characters and those with keep-alive 0, which DPS-CONN-001
// leaves to it.
func TestRuleConnectForms(t *testing.T) {
	long := "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"
	for _, tc := range []struct {
		name      string
		id        string
		keepAlive uint16
		code      packets.ConnackCode
		applied   map[string]int
		fails     bool
	}{
		{"short id accepted", "dev-1", 60, 0, map[string]int{"DPS-CONN-001": 1, "DPS-CONN-003": 0}, false},
		{"short id refused", "dev-1", 60, 5, map[string]int{"DPS-CONN-001": 1, "DPS-CONN-003": 0}, true},
		{"long id accepted", long, 60, 0, map[string]int{"DPS-CONN-001": 1, "DPS-CONN-003": 1}, false},
		{"long id refused", long, 60, 2, map[string]int{"DPS-CONN-001": 1, "DPS-CONN-003": 1}, true},
		{"keep-alive 0 accepted", "dev-1", 0, 0, map[string]int{"DPS-CONN-001": 0, "DPS-CONN-003": 1}, false},
		{"keep-alive 0 refused", "dev-1", 0, 2, map[string]int{"DPS-CONN-001": 0, "DPS-CONN-003": 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := testConnect()
			cp.ClientID = []byte(tc.id)
			cp.Username = []byte("0ne00000001/registrations/" + tc.id + "/api-version=2019-03-31")
			cp.KeepAlive = tc.keepAlive
			in := append(chunk(0, cp), chunk(1, &packets.Connack{ReturnCode: tc.code})...)
			if tc.code == 0 {
				in = append(in, chunk(4, &packets.Disconnect{})...)
			} else {
				in = append(in, 1, 0) // the server closes after refusing
			}
			rules := append(serviceRule(t, "DPS-CONN-001"), serviceRule(t, "DPS-CONN-003")...)
			fs, applied := conformance.CheckCapture(recordChunks(t, in), rules, conformance.RuleEnv{Profile: "dps-2019"})
			for id, n := range tc.applied {
				if applied[id] != n {
					t.Errorf("%s applied %d times, want %d", id, applied[id], n)
				}
			}
			if (len(fs) > 0) != tc.fails {
				t.Errorf("findings %v; want failing=%v", fs, tc.fails)
			}
		})
	}
}

// TestRuleTLS12Accepted: TLS-001 judges a ClientHello offering only TLS
// 1.2 and only the suites DPS recommends (signalling values and GREASE
// aside): the server must choose TLS 1.2. A ClientHello offering other
// suites too (ChaCha20, as Go's defaults do) is not its evidence.
func TestRuleTLS12Accepted(t *testing.T) {
	const (
		gcm    = 0xc02b // ECDHE-ECDSA-AES128-GCM-SHA256
		cbc384 = 0xc028 // ECDHE-RSA-AES256-CBC-SHA384 (not in crypto/tls)
		chacha = 0xcca9 // ECDHE-ECDSA-CHACHA20-POLY1305
		scsv   = 0x00ff
		grease = 0x3a3a
	)
	for _, tc := range []struct {
		name    string
		suites  []uint16
		chosen  uint16 // 0: no ServerHello (refused)
		applied int
		fails   bool
	}{
		{"recommended, TLS 1.2 chosen", []uint16{gcm, cbc384, scsv, grease}, 0x0303, 1, false},
		{"recommended, refused", []uint16{gcm}, 0, 1, true},
		{"ChaCha20 offered too", []uint16{gcm, chacha}, 0, 0, false},
		{"no suite but signalling", []uint16{scsv}, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &tlstrace.Facts{ClientHello: true, OfferedVersions: []uint16{0x0303}, OfferedSuites: tc.suites}
			if tc.chosen != 0 {
				f.ServerHello, f.Version, f.Suite = true, tc.chosen, gcm
			}
			capt := &tracer.Capture{Conversations: []*tracer.Conversation{{ID: 1, Transport: "mqtts", TLS: f}}}
			fs, applied := conformance.CheckCapture(capt, serviceRule(t, "TLS-001"), conformance.RuleEnv{Profile: "dps-2019"})
			if applied["TLS-001"] != tc.applied || (len(fs) > 0) != tc.fails {
				t.Errorf("applied %d times (want %d), findings %v; want failing=%v", applied["TLS-001"], tc.applied, fs, tc.fails)
			}
		})
	}
}
