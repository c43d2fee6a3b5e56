package emulator

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
)

func TestRegisterPollAssigned(t *testing.T) {
	clock := newFakeClock()
	s, addr := startPlain(t, Config{RetryAfter: 3 * time.Second, Now: clock.Now})
	c := dialPlain(t, addr)
	c.ready("dev-1")

	// Part A §6: PUBACK first, then 202 + retry-after with operationId.
	acks, p := c.request(dps.RegisterTopic("req-7"), 1, `{"registrationId":"dev-1"}`)
	if len(acks) != 1 || acks[0].Type() != packets.TypePuback || acks[0].(*packets.Puback).PacketID != c.pid {
		t.Fatalf("before the answer got %v, want exactly the PUBACK of %d", acks, c.pid)
	}
	if p.QoS != 1 {
		t.Errorf("answer QoS %d, want min(granted 1, 1) = 1", p.QoS)
	}
	if want := "$dps/registrations/res/202/?$rid=req-7&retry-after=3"; string(p.Topic) != want {
		t.Fatalf("topic %q, want %q", p.Topic, want)
	}
	reg := parseAnswer(t, p)
	if reg.status.Status != dps.StatusAssigning || !dps.ValidOperationIDFormat(reg.status.OperationID) || reg.status.RegistrationState != nil {
		t.Fatalf("register body %s", reg.raw)
	}
	op := reg.status.OperationID

	// An early poll sees 202 with registrationState{registrationId, status}.
	early := c.call(dps.PollTopic("req-8", op), "")
	if early.resp.Status != 202 || early.resp.RID != "req-8" || !early.resp.HasRetryAfter || early.resp.RetryAfter != 3*time.Second {
		t.Fatalf("early poll answered %s", early.topic)
	}
	if rs := early.status.RegistrationState; early.status.OperationID != op || rs == nil || rs.RegistrationID != "dev-1" || rs.Status != dps.StatusAssigning {
		t.Fatalf("early poll body %s", early.raw)
	}

	// Even with the assignment finished, 202 until the retry-after passed.
	waitOpDone(t, s, op, "dev-1")
	if a := c.call(dps.PollTopic("req-8", op), ""); a.resp.Status != 202 {
		t.Fatalf("poll before the retry-after elapsed answered %s", a.topic)
	}
	clock.Advance(3 * time.Second)
	done := c.call(dps.PollTopic("req-9", op), " ")
	if done.topic != "$dps/registrations/res/200/?$rid=req-9" {
		t.Errorf("final topic %q has a retry-after or wrong $rid", done.topic)
	}
	rs := done.status.RegistrationState
	if done.status.Status != dps.StatusAssigned || done.status.OperationID != op || rs == nil ||
		rs.AssignedHub == "" || rs.DeviceID == "" || rs.Status != dps.StatusAssigned || rs.RegistrationID != "dev-1" {
		t.Fatalf("final body %s", done.raw)
	}
}

func TestConnectRules(t *testing.T) {
	good := func(t testing.TB) *packets.Connect { return connectPacket(t, "dev-1") }
	tests := []struct {
		name    string
		profile Profile
		faults  []Fault
		edit    func(c *packets.Connect)
		raw     func(t testing.TB) []byte // instead of edit
		code    packets.ConnackCode
		noAck   bool // closed without CONNACK
		open    bool // connection stays open
		sp      bool
	}{
		{name: "accepted", edit: func(*packets.Connect) {}, code: 0, open: true},
		{name: "keep-alive 0 accepted", edit: func(c *packets.Connect) { c.KeepAlive = 0 }, code: 0, open: true},
		{name: "ClientVersion suffix accepted", edit: func(c *packets.Connect) {
			c.Username = append(c.Username, "&ClientVersion=azure-iot-provisioning-device%2F1.9.2"...)
		}, code: 0, open: true},
		{name: "other api-version accepted", edit: func(c *packets.Connect) {
			c.Username = []byte(dps.Username{IDScope: testScope, RegistrationID: "dev-1", APIVersion: "2021-06-01"}.String())
		}, code: 0, open: true},
		{name: "128-character registration id (ClientId over 23 bytes)", edit: func(c *packets.Connect) {
			id := strings.Repeat("a1-.:_", 21) + "ab"
			c.ClientID = []byte(id)
			c.Username = []byte(dps.Username{IDScope: testScope, RegistrationID: id}.String())
		}, code: 0, open: true},
		{name: "will message ignored", edit: func(c *packets.Connect) { c.WillTopic, c.WillMessage = []byte("w"), []byte("x") }, code: 0, open: true},
		{name: "username not DPS form", edit: func(c *packets.Connect) { c.Username = []byte("dev-1") }, code: packets.ConnackRefusedBadUsernameOrPassword},
		{name: "no username", edit: func(c *packets.Connect) { c.Username, c.Password = nil, nil }, code: packets.ConnackRefusedBadUsernameOrPassword},
		{name: "fault accept-bad-username", faults: []Fault{FaultAcceptBadUsername}, edit: func(c *packets.Connect) { c.Username = []byte("dev-1") }, code: 0, open: true},
		{name: "ClientId mismatch", edit: func(c *packets.Connect) { c.ClientID = []byte("dev-2") }, code: packets.ConnackRefusedIdentifierRejected},
		{name: "ClientId differs only in case", edit: func(c *packets.Connect) { c.ClientID = []byte("DEV-1") }, code: 0, open: true},
		{name: "fault accept-clientid-mismatch", faults: []Fault{FaultAcceptClientIDMismatch}, edit: func(c *packets.Connect) { c.ClientID = []byte("dev-2") }, code: 0, open: true},
		{name: "CleanSession 0 under dps-2019", edit: func(c *packets.Connect) { c.CleanSession = false }, code: packets.ConnackRefusedIdentifierRejected},
		{name: "CleanSession 0 under dps-2023", profile: ProfileDPS2023, edit: func(c *packets.Connect) { c.CleanSession = false }, code: 0, open: true},
		{name: "fault accept-clean-session-0", faults: []Fault{FaultAcceptCleanSession0}, edit: func(c *packets.Connect) { c.CleanSession = false }, code: 0, open: true},
		{name: "fault session-present", faults: []Fault{FaultSessionPresent}, edit: func(*packets.Connect) {}, code: 0, open: true, sp: true},
		{name: "MQTT 3.1 (level 3)", edit: func(c *packets.Connect) { c.ProtocolName, c.ProtocolLevel = []byte("MQIsdp"), 3 }, code: packets.ConnackRefusedProtocolVersion},
		{name: "MQTT 5 (level 5)", raw: mqtt5Connect, code: packets.ConnackRefusedProtocolVersion},
		{name: "fault accept-mqtt5", faults: []Fault{FaultAcceptMQTT5}, raw: mqtt5Connect, code: 0, open: true},
		{name: "reserved flag set", raw: func(t testing.TB) []byte {
			raw, err := packets.ToRaw(good(t), packets.EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			raw.Body[7] |= 1 // connect flags: after name (2+4) and level (1)
			b, _ := raw.Append(nil)
			return b
		}, noAck: true},
		{name: "first packet not CONNECT", raw: func(testing.TB) []byte { return []byte{0xc0, 0x00} }, noAck: true},
		{name: "garbage", raw: func(testing.TB) []byte { return []byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x01} }, noAck: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startPlain(t, Config{Profile: tt.profile, Faults: tt.faults})
			c := dialPlain(t, addr)
			var b []byte
			if tt.raw != nil {
				b = tt.raw(t)
			} else {
				p := good(t)
				tt.edit(p)
				var err error
				if b, err = packets.Encode(nil, p, packets.EncodeOptions{AllowInvalid: true}); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.sendRaw(b); err != nil {
				t.Fatal(err)
			}
			if tt.noAck {
				c.expectClosed()
				return
			}
			got := c.next()
			ack, ok := got.(*packets.Connack)
			if !ok {
				t.Fatalf("got %v, want CONNACK", got.Type())
			}
			if ack.ReturnCode != tt.code || ack.SessionPresent != tt.sp {
				t.Fatalf("CONNACK code %v session-present %v, want %v %v", ack.ReturnCode, ack.SessionPresent, tt.code, tt.sp)
			}
			if !tt.open {
				c.expectClosed()
				return
			}
			c.send(&packets.Pingreq{})
			if got := c.next(); got.Type() != packets.TypePingresp {
				t.Fatalf("after CONNACK 0 PINGREQ got %v", got.Type())
			}
		})
	}
}

// mqtt5Connect is an MQTT 5 CONNECT (level 5, empty properties).
func mqtt5Connect(t testing.TB) []byte {
	var body []byte
	body = append(body, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0) // name, level 5, clean start, keep alive, no properties
	body = append(body, 0, 5, 'd', 'e', 'v', '-', '1')
	return append([]byte{0x10, byte(len(body))}, body...)
}

func TestSubscribeRules(t *testing.T) {
	tests := []struct {
		name    string
		faults  []Fault
		qos     byte
		filters []string
		want    []packets.SubackCode
	}{
		{"documented filter QoS 0", nil, 0, []string{dps.SubscribeFilter}, []packets.SubackCode{0}},
		{"documented filter QoS 1", nil, 1, []string{dps.SubscribeFilter}, []packets.SubackCode{1}},
		{"QoS 2 granted 1", nil, 2, []string{dps.SubscribeFilter}, []packets.SubackCode{1}},
		{"fault grant-qos2", []Fault{FaultGrantQoS2}, 2, []string{dps.SubscribeFilter}, []packets.SubackCode{2}},
		{"other filters refused", nil, 1, []string{"$dps/registrations/res/+", "#", "devices/dev-1/messages/devicebound/#", dps.SubscribeFilter},
			[]packets.SubackCode{0x80, 0x80, 0x80, 1}},
		{"fault accept-any-filter", []Fault{FaultAcceptAnyFilter}, 1, []string{"#", dps.SubscribeFilter}, []packets.SubackCode{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startPlain(t, Config{Faults: tt.faults})
			c := dialPlain(t, addr)
			c.connack(connectPacket(t, "dev-1"))
			sa := c.subscribe(tt.qos, tt.filters...)
			if !bytes.Equal(codesBytes(sa.ReturnCodes), codesBytes(tt.want)) {
				t.Fatalf("SUBACK %v, want %v", sa.ReturnCodes, tt.want)
			}
		})
	}
}

func codesBytes(cs []packets.SubackCode) []byte {
	b := make([]byte, len(cs))
	for i, c := range cs {
		b[i] = byte(c)
	}
	return b
}

func TestDeliveryQoS(t *testing.T) {
	tests := []struct {
		name    string
		faults  []Fault
		sub     byte
		wantQoS byte
	}{
		{"granted 0", nil, 0, 0},
		{"granted 1", nil, 1, 1},
		{"granted 2 → delivered 1", []Fault{FaultGrantQoS2}, 2, 1},
		{"fault deliver-qos2", []Fault{FaultDeliverQoS2}, 1, 2},
		{"fault deliver-qos0", []Fault{FaultDeliverQoS0}, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startPlain(t, Config{Faults: tt.faults})
			c := dialPlain(t, addr)
			c.connack(connectPacket(t, "dev-1"))
			c.subscribe(tt.sub, dps.SubscribeFilter)
			_, p := c.request(dps.RegisterTopic("1"), 0, "")
			if p.QoS != tt.wantQoS {
				t.Fatalf("answer at QoS %d, want %d", p.QoS, tt.wantQoS)
			}
			if p.QoS == 2 {
				c.send(&packets.Pubrec{PacketID: p.PacketID})
				if got := c.next(); got.Type() != packets.TypePubrel {
					t.Fatalf("after PUBREC got %v, want PUBREL", got.Type())
				}
			}
		})
	}
}

func TestUnsubscribeStopsAnswers(t *testing.T) {
	_, addr := startPlain(t, Config{})
	c := dialPlain(t, addr)
	c.ready("dev-1")
	c.send(&packets.Unsubscribe{PacketID: 9, Filters: [][]byte{[]byte(dps.SubscribeFilter)}})
	if got := c.next(); got.Type() != packets.TypeUnsuback || got.(*packets.Unsuback).PacketID != 9 {
		t.Fatalf("got %v, want UNSUBACK 9", got)
	}
	c.send(&packets.Publish{QoS: 1, PacketID: 10, Topic: []byte(dps.RegisterTopic("1"))})
	if got := c.next(); got.Type() != packets.TypePuback {
		t.Fatalf("got %v, want PUBACK", got.Type())
	}
	// No answer is delivered: the next packet is the PINGRESP.
	c.send(&packets.Pingreq{})
	if got := c.next(); got.Type() != packets.TypePingresp {
		t.Fatalf("got %v (%+v), want PINGRESP and no answer", got.Type(), got)
	}
}

func TestPublishRules(t *testing.T) {
	tests := []struct {
		name   string
		faults []Fault
		pub    *packets.Publish
		closed bool
	}{
		{"undocumented topic closes", nil, &packets.Publish{QoS: 1, PacketID: 5, Topic: []byte("devices/dev-1/messages/events/")}, true},
		{"unknown query parameter closes", nil, &packets.Publish{QoS: 0, Topic: []byte(dps.RegisterTopic("1") + "&x=1")}, true},
		{"fault accept-undocumented-topic", []Fault{FaultAcceptUndocumentedTopic}, &packets.Publish{QoS: 1, PacketID: 5, Topic: []byte("devices/dev-1/messages/events/")}, false},
		{"QoS 2 request closes", nil, &packets.Publish{QoS: 2, PacketID: 5, Topic: []byte(dps.RegisterTopic("1"))}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startPlain(t, Config{Faults: tt.faults})
			c := dialPlain(t, addr)
			c.ready("dev-1")
			c.send(tt.pub)
			if tt.closed {
				c.expectClosed()
				return
			}
			if got := c.next(); got.Type() != packets.TypePuback {
				t.Fatalf("got %v, want PUBACK", got.Type())
			}
			c.send(&packets.Pingreq{})
			if got := c.next(); got.Type() != packets.TypePingresp {
				t.Fatalf("got %v, want PINGRESP", got.Type())
			}
		})
	}
}

func TestQoS2RequestUnderFault(t *testing.T) {
	_, addr := startPlain(t, Config{Faults: []Fault{FaultAcceptQoS2Publish}})
	c := dialPlain(t, addr)
	c.ready("dev-1")
	acks, p := c.request(dps.RegisterTopic("1"), 2, "")
	if len(acks) != 1 || acks[0].Type() != packets.TypePubrec {
		t.Fatalf("got %v before the answer, want PUBREC", acks)
	}
	if a := parseAnswer(t, p); a.resp.Status != 202 {
		t.Fatalf("answer %s", a.topic)
	}
	c.send(&packets.Pubrel{PacketID: c.pid})
	if got := c.next(); got.Type() != packets.TypePubcomp {
		t.Fatalf("got %v, want PUBCOMP", got.Type())
	}
}

func TestAuthFailure401(t *testing.T) {
	tests := []struct {
		name     string
		faults   []Fault
		password func(t testing.TB) string
		username string
		want     int // 0 = accepted (202)
		open     bool
	}{
		{name: "bad signature", password: func(t testing.TB) string {
			return sasToken(t, testScope, "dev-1", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", time.Now().Add(time.Hour))
		}, want: 401},
		{name: "fault accept-bad-signature", faults: []Fault{FaultAcceptBadSignature}, password: func(t testing.TB) string {
			return sasToken(t, testScope, "dev-1", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", time.Now().Add(time.Hour))
		}, open: true},
		{name: "expired", password: func(t testing.TB) string {
			return sasToken(t, testScope, "dev-1", testKey, time.Now().Add(-time.Hour))
		}, want: 401},
		{name: "fault accept-expired-token", faults: []Fault{FaultAcceptExpiredToken}, password: func(t testing.TB) string {
			return sasToken(t, testScope, "dev-1", testKey, time.Now().Add(-time.Hour))
		}, open: true},
		{name: "token of another device", password: func(t testing.TB) string {
			return sasToken(t, testScope, "dev-2", testKey, time.Now().Add(time.Hour))
		}, want: 401},
		{name: "fault accept-other-device-token", faults: []Fault{FaultAcceptOtherDeviceToken}, password: func(t testing.TB) string {
			return sasToken(t, testScope, "dev-2", testKey, time.Now().Add(time.Hour))
		}, open: true},
		{name: "no password", password: func(testing.TB) string { return "" }, want: 401},
		{name: "wrong scope in username", username: dps.Username{IDScope: "0neOTHER", RegistrationID: "dev-1"}.String(), want: 401},
		{name: "fault accept-wrong-scope", faults: []Fault{FaultAcceptWrongScope}, username: dps.Username{IDScope: "0neOTHER", RegistrationID: "dev-1"}.String(), open: true},
		{name: "fault no-close-after-401", faults: []Fault{FaultNoCloseAfter401}, password: func(testing.TB) string { return "x" }, want: 401, open: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startPlain(t, Config{Faults: tt.faults})
			c := dialPlain(t, addr)
			cp := connectPacket(t, "dev-1")
			if tt.password != nil {
				cp.Password = []byte(tt.password(t))
			}
			if tt.username != "" {
				cp.Username = []byte(tt.username)
			}
			if ack := c.connack(cp); ack.ReturnCode != 0 {
				t.Fatalf("CONNACK %v: credentials are judged at register, not CONNECT (Part A §3)", ack.ReturnCode)
			}
			c.subscribe(1, dps.SubscribeFilter)
			a := c.call(dps.RegisterTopic("rid-1"), "")
			if tt.want == 0 {
				if a.resp.Status != 202 {
					t.Fatalf("answer %s %s, want 202", a.topic, a.raw)
				}
			} else {
				if a.resp.Status != tt.want || a.err.ErrorCode != 401000 || a.err.TrackingID == "" || a.err.TimestampUTC == "" || a.err.Message == "" {
					t.Fatalf("answer %s %s, want %d with error body 401000", a.topic, a.raw, tt.want)
				}
				if strings.Contains(a.raw, "sig=") {
					t.Fatalf("error body leaks the token: %s", a.raw)
				}
			}
			if !tt.open {
				c.expectClosed()
				return
			}
			c.send(&packets.Pingreq{})
			if got := c.next(); got.Type() != packets.TypePingresp {
				t.Fatalf("got %v, want PINGRESP", got.Type())
			}
		})
	}
}
