package emulator

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
)

func TestRegisterBodies(t *testing.T) {
	tests := []struct {
		name   string
		faults []Fault
		body   string
		want   int
	}{
		{"empty (CS v1)", nil, "", 202},
		{"registrationId (EC, C, N, J)", nil, `{"registrationId":"dev-1"}`, 202},
		{"registrationId in other case", nil, `{"registrationId":"DEV-1"}`, 202},
		{"payload only (CS v1)", nil, `{"payload":{"modelId":"dtmi:x;1"}}`, 202},
		{"payload null with spaces (Python)", nil, `{"payload": null, "registrationId": "dev-1"}`, 202},
		{"unknown member (csr preview)", nil, `{"registrationId":"dev-1","clientCertificateCsr":"MIIB"}`, 202},
		{"other registrationId", nil, `{"registrationId":"dev-2"}`, 400},
		{"fault accept-registration-id-mismatch", []Fault{FaultAcceptRegistrationIDMismatch}, `{"registrationId":"dev-2"}`, 202},
		{"bad JSON", nil, `{"registrationId":`, 400},
		{"payload not an object", nil, `{"payload":5}`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startPlain(t, Config{Faults: tt.faults})
			c := dialPlain(t, addr)
			c.ready("dev-1")
			a := c.call(dps.RegisterTopic("r"), tt.body)
			if a.resp.Status != tt.want {
				t.Fatalf("answer %s %s, want %d", a.topic, a.raw, tt.want)
			}
			if tt.want == 400 && (a.err.ErrorCode/1000 != 400 || a.err.Message == "") {
				t.Fatalf("400 error body %s", a.raw)
			}
			// A 400 does not close the connection.
			c.send(&packets.Pingreq{})
			if got := c.next(); got.Type() != packets.TypePingresp {
				t.Fatalf("got %v, want PINGRESP", got.Type())
			}
		})
	}
}

func TestPollErrors(t *testing.T) {
	t.Run("unknown operation 404", func(t *testing.T) {
		_, addr := startPlain(t, Config{})
		c := dialPlain(t, addr)
		c.ready("dev-1")
		a := c.call(dps.PollTopic("p", "4.0000000000000000.00000000-0000-4000-8000-000000000000"), "")
		if a.resp.Status != 404 || a.err.ErrorCode/1000 != 404 || a.resp.HasRetryAfter {
			t.Fatalf("answer %s %s, want 404 with error body", a.topic, a.raw)
		}
	})
	t.Run("operation of another device is 404", func(t *testing.T) {
		_, addr := startPlain(t, Config{})
		c1 := dialPlain(t, addr)
		c1.ready("dev-1")
		op := c1.call(dps.RegisterTopic("1"), "").status.OperationID
		c2 := dialPlain(t, addr)
		c2.ready("dev-2")
		if a := c2.call(dps.PollTopic("2", op), ""); a.resp.Status != 404 {
			t.Fatalf("dev-2 polling dev-1's operation got %s %s, want 404", a.topic, a.raw)
		}
	})
	t.Run("fault no-404-unknown-operation", func(t *testing.T) {
		_, addr := startPlain(t, Config{Faults: []Fault{FaultNo404UnknownOperation}})
		c := dialPlain(t, addr)
		c.ready("dev-1")
		if a := c.call(dps.PollTopic("p", "4.0000000000000000.00000000-0000-4000-8000-000000000000"), ""); a.resp.Status != 202 {
			t.Fatalf("answer %s, want 202 under the fault", a.topic)
		}
	})
	t.Run("assignment error is 500", func(t *testing.T) {
		b := newFakeBackend("dev-1")
		b.fail = errors.New("disk on fire")
		s, addr := startPlain(t, Config{backend: b})
		c := dialPlain(t, addr)
		c.ready("dev-1")
		op := c.call(dps.RegisterTopic("1"), "").status.OperationID
		waitOpDone(t, s, op, "dev-1")
		a := c.call(dps.PollTopic("2", op), "")
		if a.resp.Status != 500 || a.err.ErrorCode/1000 != 500 || strings.Contains(a.raw, "disk") {
			t.Fatalf("answer %s %s, want 500 without internals", a.topic, a.raw)
		}
	})
}

func TestPollThrottle(t *testing.T) {
	for _, fault := range []bool{false, true} {
		clock := newFakeClock()
		cfg := Config{Now: clock.Now, RetryAfter: time.Hour}
		if fault {
			cfg.Faults = []Fault{FaultNoPollThrottle}
		}
		_, addr := startPlain(t, cfg)
		c := dialPlain(t, addr)
		c.ready("dev-1")
		op := c.call(dps.RegisterTopic("1"), "").status.OperationID
		for i := range 5 {
			if a := c.call(dps.PollTopic("p", op), ""); a.resp.Status != 202 {
				t.Fatalf("poll %d: %s, want 202", i+1, a.topic)
			}
			clock.Advance(time.Second)
		}
		// 5 polls in 4 s; the 6th within 10 s of the first is over the limit.
		a := c.call(dps.PollTopic("p6", op), "")
		if fault {
			if a.resp.Status != 202 {
				t.Fatalf("fault no-poll-throttle: 6th poll %s, want 202", a.topic)
			}
			continue
		}
		if a.resp.Status != 429 || a.resp.RID != "p6" || !a.resp.HasRetryAfter || a.resp.RetryAfter != 5*time.Second || a.err.ErrorCode/1000 != 429 {
			t.Fatalf("6th poll %s %s, want 429 retry-after=5 (first poll leaves the window at +10 s, now +5 s)", a.topic, a.raw)
		}
		clock.Advance(5 * time.Second)
		if a := c.call(dps.PollTopic("p7", op), ""); a.resp.Status != 202 {
			t.Fatalf("poll after the window %s, want 202", a.topic)
		}
		// Another device has its own budget.
		c2 := dialPlain(t, addr)
		c2.ready("dev-2")
		if a := c2.call(dps.PollTopic("x", op), ""); a.resp.Status != 404 {
			t.Fatalf("dev-2 poll %s, want 404 (own budget, foreign op)", a.topic)
		}
	}
}

func TestRegisterThrottle(t *testing.T) {
	for _, fault := range []bool{false, true} {
		clock := newFakeClock()
		cfg := Config{Now: clock.Now, Limits: Limits{RegistrationsPerMinute: 2}, Faults: []Fault{FaultNo409}}
		if fault {
			cfg.Faults = append(cfg.Faults, FaultNoRegisterThrottle)
		}
		_, addr := startPlain(t, cfg)
		c := dialPlain(t, addr)
		c.ready("dev-1")
		for i := range 2 {
			if a := c.call(dps.RegisterTopic("r"), ""); a.resp.Status != 202 {
				t.Fatalf("register %d: %s", i, a.topic)
			}
			clock.Advance(10 * time.Second)
		}
		a := c.call(dps.RegisterTopic("r3"), "")
		if fault {
			if a.resp.Status != 202 {
				t.Fatalf("fault no-register-throttle: 3rd register %s, want 202", a.topic)
			}
			continue
		}
		if a.resp.Status != 429 || a.resp.RetryAfter != 40*time.Second || a.err.ErrorCode != 429000 {
			t.Fatalf("3rd register %s %s, want 429 retry-after=40", a.topic, a.raw)
		}
	}
}

func TestConcurrentRegistration409(t *testing.T) {
	for _, fault := range []bool{false, true} {
		b := newFakeBackend("dev-1")
		b.gate = make(chan struct{})
		cfg := Config{backend: b}
		if fault {
			cfg.Faults = []Fault{FaultNo409}
		}
		s, addr := startPlain(t, cfg)
		c1 := dialPlain(t, addr)
		c1.ready("dev-1")
		op := c1.call(dps.RegisterTopic("1"), "").status.OperationID
		c2 := dialPlain(t, addr)
		c2.ready("dev-1")
		a := c2.call(dps.RegisterTopic("2"), "")
		want := 409
		if fault {
			want = 202
		}
		if a.resp.Status != want {
			t.Fatalf("second registration while the first is assigning: %s %s, want %d", a.topic, a.raw, want)
		}
		if !fault && a.err.ErrorCode != dps.ErrorCodePreconditionFailed {
			t.Fatalf("409 body %s, want errorCode 409203", a.raw)
		}
		close(b.gate)
		// Once the first is final, a new registration is accepted again.
		waitOpDone(t, s, op, "dev-1")
		if p := c1.call(dps.PollTopic("p", op), ""); p.resp.Status != 200 {
			t.Fatalf("first operation after its assignment: %s", p.topic)
		}
		if a := c2.call(dps.RegisterTopic("3"), ""); a.resp.Status != 202 {
			t.Fatalf("registration after the first finished: %s", a.topic)
		}
	}
}

func TestEarlyPollUnderFault(t *testing.T) {
	clock := newFakeClock()
	s, addr := startPlain(t, Config{Now: clock.Now, RetryAfter: time.Hour, Faults: []Fault{FaultAssignBeforeRetryAfter}})
	c := dialPlain(t, addr)
	c.ready("dev-1")
	op := c.call(dps.RegisterTopic("1"), "").status.OperationID
	waitOpDone(t, s, op, "dev-1")
	if a := c.call(dps.PollTopic("p", op), ""); a.resp.Status != 200 {
		t.Fatalf("fault assign-before-retry-after: poll %s, want 200 before the retry-after", a.topic)
	}
}

func TestResponseTopicFaults(t *testing.T) {
	tests := []struct {
		fault Fault
		want  string
	}{
		{"", "$dps/registrations/res/202/?$rid=ab&retry-after=3"},
		{FaultOmitRetryAfter, "$dps/registrations/res/202/?$rid=ab"},
		{FaultWrongRID, "$dps/registrations/res/202/?$rid=ab0&retry-after=3"},
		{FaultRIDNotFirst, "$dps/registrations/res/202/?retry-after=3&$rid=ab"},
		{FaultUpperCaseRetryAfter, "$dps/registrations/res/202/?$rid=ab&Retry-After=3"},
	}
	for _, tt := range tests {
		t.Run(string(tt.fault), func(t *testing.T) {
			var faults []Fault
			if tt.fault != "" {
				faults = []Fault{tt.fault}
			}
			_, addr := startPlain(t, Config{Faults: faults, RetryAfter: 2500 * time.Millisecond})
			c := dialPlain(t, addr)
			c.ready("dev-1")
			_, p := c.request(dps.RegisterTopic("ab"), 1, "")
			if string(p.Topic) != tt.want {
				t.Fatalf("topic %q, want %q", p.Topic, tt.want)
			}
		})
	}
}

// TestOmitRetryAfterScope pins what the omit-retry-after fault bends: the
// retry-after of 202 answers (Part A §5, §6) and of 429 answers (Part A §8),
// which its help text names, and nothing else. A 503 (operation table full)
// keeps its retry-after under the fault.
func TestOmitRetryAfterScope(t *testing.T) {
	_, addr := startPlain(t, Config{
		Faults:     []Fault{FaultOmitRetryAfter},
		RetryAfter: 2500 * time.Millisecond,
		Limits:     Limits{MaxOperations: 1, RegistrationsPerMinute: 2},
	})
	c := dialPlain(t, addr)
	c.ready("dev-1")
	if a := c.call(dps.RegisterTopic("1"), ""); a.topic != "$dps/registrations/res/202/?$rid=1" {
		t.Fatalf("register under omit-retry-after: %s, want a 202 without retry-after", a.topic)
	}
	c2 := dialPlain(t, addr)
	c2.ready("dev-2")
	if a := c2.call(dps.RegisterTopic("2"), ""); a.topic != "$dps/registrations/res/503/?$rid=2&retry-after=3" {
		t.Fatalf("register over MaxOperations under omit-retry-after: %s, want a 503 that keeps its retry-after", a.topic)
	}
	c3 := dialPlain(t, addr)
	c3.ready("dev-3")
	if a := c3.call(dps.RegisterTopic("3"), ""); a.resp.Status != 429 || a.topic != "$dps/registrations/res/429/?$rid=3" {
		t.Fatalf("register over the budget under omit-retry-after: %s, want a 429 without retry-after", a.topic)
	}
}

// TestAPIVersionReachesRegistry: the api-version of the CONNECT username is
// passed to the registry, whose substatus for a device registering again on
// its hub depends on it (registry.Credentials.APIVersion).
func TestAPIVersionReachesRegistry(t *testing.T) {
	b := newFakeBackend("dev-1", "dev-2")
	_, addr := startPlain(t, Config{backend: b})
	for _, tt := range []struct{ id, apiVersion string }{{"dev-1", ""}, {"dev-2", "2021-06-01"}} {
		c := dialPlain(t, addr)
		p := connectPacket(t, tt.id)
		p.Username = []byte(dps.Username{IDScope: testScope, RegistrationID: tt.id, APIVersion: tt.apiVersion}.String())
		if ack := c.connack(p); ack.ReturnCode != 0 {
			t.Fatalf("CONNACK %+v", ack)
		}
		c.subscribe(1, dps.SubscribeFilter)
		c.call(dps.RegisterTopic("1"), "")
		want := tt.apiVersion
		if want == "" {
			want = dps.DefaultAPIVersion
		}
		b.mu.Lock()
		got := b.lastAPI
		b.mu.Unlock()
		if got != want {
			t.Errorf("registry saw api-version %q, want %q", got, want)
		}
	}
}

func TestRIDEchoedByteForByte(t *testing.T) {
	_, addr := startPlain(t, Config{})
	c := dialPlain(t, addr)
	c.ready("dev-1")
	for _, rid := range []string{"1", "65535", "3f1c1d2e-8b7a-4c55-9d0e-0123456789ab", "%41b", "a%2Fb"} {
		_, p := c.request(dps.RegisterTopic(rid), 0, "")
		if want := "$dps/registrations/res/"; !strings.HasPrefix(string(p.Topic), want) {
			t.Fatalf("topic %q", p.Topic)
		}
		a := parseAnswer(t, p)
		if a.resp.RID != rid {
			t.Errorf("$rid %q echoed as %q", rid, a.resp.RID)
		}
		// Registrations of one device while one is in progress get 409;
		// the echo is what matters here.
	}
}

func TestPubackOrderFault(t *testing.T) {
	_, addr := startPlain(t, Config{Faults: []Fault{FaultNoPubackFirst}})
	c := dialPlain(t, addr)
	c.ready("dev-1")
	c.send(&packets.Publish{QoS: 1, PacketID: 77, Topic: []byte(dps.RegisterTopic("1"))})
	if got := c.next(); got.Type() != packets.TypePublish {
		t.Fatalf("first packet %v, want the answer PUBLISH under no-puback-first", got.Type())
	}
	if got := c.next(); got.Type() != packets.TypePuback || got.(*packets.Puback).PacketID != 77 {
		t.Fatalf("second packet %v, want PUBACK 77", got)
	}
}

func TestIncompleteRegistrationStateFault(t *testing.T) {
	for _, fault := range []bool{false, true} {
		cfg := Config{}
		if fault {
			cfg.Faults = []Fault{FaultIncompleteRegistrationState}
		}
		s, addr := startPlain(t, cfg)
		c := dialPlain(t, addr)
		c.ready("dev-1")
		op := c.call(dps.RegisterTopic("1"), "").status.OperationID
		waitOpDone(t, s, op, "dev-1")
		a := c.call(dps.PollTopic("2", op), "")
		rs := a.status.RegistrationState
		if a.resp.Status != 200 || rs == nil {
			t.Fatalf("final %s %s", a.topic, a.raw)
		}
		complete := rs.DeviceID != "" && rs.CreatedDateTimeUTC != "" && rs.LastUpdatedDateTimeUTC != "" && rs.ETag != "" && rs.Substatus != ""
		if complete == fault {
			t.Fatalf("fault=%v: registrationState %s", fault, a.raw)
		}
	}
}

func TestNoErrorBodyFault(t *testing.T) {
	_, addr := startPlain(t, Config{Faults: []Fault{FaultNoErrorBody}})
	c := dialPlain(t, addr)
	c.ready("dev-1")
	a := c.call(dps.RegisterTopic("1"), "{")
	if a.resp.Status != 400 || a.raw != "" {
		t.Fatalf("answer %s %q, want 400 with an empty body", a.topic, a.raw)
	}
}

// TestStrictPollBodyRefusesFirst: under strict-poll-body a poll with a
// body is refused (400) before it is served, so it counts toward no poll
// throttle: after 5 refused polls, 5 bodiless ones in the same 10 s are
// all answered 202.
func TestStrictPollBodyRefusesFirst(t *testing.T) {
	clock := newFakeClock()
	_, addr := startPlain(t, Config{Now: clock.Now, RetryAfter: time.Hour, Faults: []Fault{FaultStrictPollBody}})
	c := dialPlain(t, addr)
	c.ready("dev-1")
	op := c.call(dps.RegisterTopic("1"), "").status.OperationID
	for i := range 5 {
		if a := c.call(dps.PollTopic("b", op), " "); a.resp.Status != 400 {
			t.Fatalf("poll %d with a body: %s, want 400", i+1, a.topic)
		}
	}
	for i := range 5 {
		if a := c.call(dps.PollTopic("p", op), ""); a.resp.Status != 202 {
			t.Fatalf("bodiless poll %d after 5 refused ones: %s, want 202 (the refused ones counted toward the throttle)", i+1, a.topic)
		}
	}
}

// TestAPIVersionOfBadUsername: under accept-bad-username, a username not
// of the DPS form that still names an api-version (the wrong path
// segment, an extra segment, an IoT Hub username's "?api-version=") has it
// passed to the registry, as a good username's is; one that names none
// passes "" (current), and so does one whose api-version value is no
// api-version.
func TestAPIVersionOfBadUsername(t *testing.T) {
	b := newFakeBackend("dev-1")
	_, addr := startPlain(t, Config{backend: b, Faults: []Fault{FaultAcceptBadUsername}})
	for _, tt := range []struct{ username, want string }{
		{testScope + "/registration/dev-1/api-version=2019-03-31", "2019-03-31"},
		{testScope + "/registrations/dev-1/x/api-version=2018-11-01&ClientVersion=c%2F1", "2018-11-01"},
		{"hub.azure-devices.net/dev-1/?api-version=2021-04-12", "2021-04-12"},
		{testScope + "/registrations/dev-1", ""},
		{"dev-1", ""},
		{testScope + "/registrations/dev-1/api-version=2019 03 31", ""},
	} {
		c := dialPlain(t, addr)
		p := connectPacket(t, "dev-1")
		p.Username = []byte(tt.username)
		if ack := c.connack(p); ack.ReturnCode != 0 {
			t.Fatalf("%q: CONNACK %+v", tt.username, ack)
		}
		c.subscribe(1, dps.SubscribeFilter)
		c.call(dps.RegisterTopic("1"), "")
		b.mu.Lock()
		got := b.lastAPI
		b.mu.Unlock()
		if got != tt.want {
			t.Errorf("username %q: registry saw api-version %q, want %q", tt.username, got, tt.want)
		}
	}
}
