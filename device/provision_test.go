package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/transport"
)

const (
	opID         = "4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d"
	assigningOp  = `{"operationId":"` + opID + `","status":"assigning"}`
	assigningReg = `{"operationId":"` + opID + `","status":"assigning","registrationState":{"registrationId":"dev-1","status":"assigning"}}`
	assignedOp   = `{"operationId":"` + opID + `","status":"assigned","registrationState":{"x509":{},"registrationId":"dev-1","createdDateTimeUtc":"2020-04-10T03:11:13.0276997Z","assignedHub":"contoso.azure-devices.net","deviceId":"dev-1","status":"assigned","substatus":"initialAssignment","lastUpdatedDateTimeUtc":"2020-04-10T03:11:13.2096201Z","etag":"IjYxMDA4ZDQ2LTAwMDAtMDEwMC0wMDAwLTVlOGZlM2QxMDAwMCI="}}`
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestProvisionFlow checks every field the client sends on the documented
// path, the retry-after waits it asks for, and the result.
func TestProvisionFlow(t *testing.T) {
	var (
		connect           *packets.Connect
		sub               *packets.Subscribe
		reg, poll1, poll2 *packets.Publish
		r1, r2, r3        dps.Request
	)
	h, cfg := serve(t, func(f *fake) {
		connect = expect[*packets.Connect](f)
		f.send(&packets.Connack{})
		sub = expect[*packets.Subscribe](f)
		if sub != nil {
			f.send(&packets.Suback{PacketID: sub.PacketID, ReturnCodes: []packets.SubackCode{1}})
		}
		reg, r1 = f.request(dps.Register)
		f.puback(reg)
		f.answer(202, r1.RID, 3, assigningOp, 7)
		f.ackDelivery(7)
		poll1, r2 = f.request(dps.Poll)
		f.puback(poll1)
		f.answer(202, r2.RID, 1, assigningReg, 8)
		f.ackDelivery(8)
		poll2, r3 = f.request(dps.Poll)
		f.puback(poll2)
		f.answer(200, r3.RID, -1, assignedOp, 9)
		f.ackDelivery(9)
		f.expectDisconnect()
	})
	cfg.ClientVersion = "dps-conform/test"
	res, err := Provision(ctxT(t), cfg)
	h.wait()
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if t.Failed() {
		return
	}
	// CONNECT (DPS-PROTOCOL.md §1.1–§1.3).
	if string(connect.ClientID) != "dev-1" {
		t.Errorf("ClientID = %q", connect.ClientID)
	}
	if got, want := string(connect.Username), "0neFEEDC0DE/registrations/dev-1/api-version=2019-03-31&ClientVersion=dps-conform/test"; got != want {
		t.Errorf("Username = %q, want %q", got, want)
	}
	if !connect.CleanSession || connect.KeepAlive != 60 || connect.ProtocolLevel != 4 || string(connect.ProtocolName) != "MQTT" || connect.WillTopic != nil {
		t.Errorf("CONNECT flags: %s", Describe(connect))
	}
	tok, err := dps.ParseSASToken(string(connect.Password))
	if err != nil {
		t.Fatalf("password: %v", err)
	}
	v := dps.Verifier{Now: h.clock.Now}
	if err := v.Verify(tok, "0neFEEDC0DE", "dev-1", testKey); err != nil {
		t.Errorf("SAS token does not verify: %v", err)
	}
	if !strings.Contains(tok.Resource, "%2f") || tok.KeyName != "registration" {
		t.Errorf("token not in the documented form: sr=%q skn=%q", tok.Resource, tok.KeyName)
	}
	if got := tok.ExpiresAt.Sub(h.clock.Now().Add(-4 * time.Second)); got != time.Hour {
		t.Errorf("token lifetime = %v, want 1h from the start", got)
	}
	// SUBSCRIBE.
	if len(sub.Subscriptions) != 1 || string(sub.Subscriptions[0].Filter) != dps.SubscribeFilter || sub.Subscriptions[0].QoS != 1 {
		t.Errorf("SUBSCRIBE = %s", Describe(sub))
	}
	// Register and polls.
	if reg.QoS != 1 || r1.RID != "1" || string(reg.Payload) != `{"registrationId":"dev-1"}` {
		t.Errorf("register = %s", Describe(reg))
	}
	if r2.RID != "2" || r2.OperationID != opID || len(poll1.Payload) != 0 || r3.RID != "3" || r3.OperationID != opID {
		t.Errorf("polls = %s / %s", Describe(poll1), Describe(poll2))
	}
	if reg.PacketID == poll1.PacketID || poll1.PacketID == poll2.PacketID || reg.PacketID == sub.PacketID {
		t.Errorf("packet ids reused: sub %d reg %d polls %d %d", sub.PacketID, reg.PacketID, poll1.PacketID, poll2.PacketID)
	}
	// Waits: exactly the retry-after values, in order.
	if got, want := h.clock.Sleeps(), []time.Duration{3 * time.Second, time.Second}; !slices.Equal(got, want) {
		t.Errorf("sleeps = %v, want %v", got, want)
	}
	// Result.
	if res.Status != dps.StatusAssigned || res.OperationID != opID || res.Polls != 2 || res.Attempts != 1 {
		t.Errorf("result = %+v", res)
	}
	if res.RegistrationState == nil || res.RegistrationState.AssignedHub != "contoso.azure-devices.net" || res.RegistrationState.DeviceID != "dev-1" {
		t.Errorf("registrationState = %+v", res.RegistrationState)
	}
	if res.Elapsed != 4*time.Second {
		t.Errorf("Elapsed = %v, want 4s on the fake clock", res.Elapsed)
	}
	// Trace: every packet in order, with the waits.
	var kinds []string
	for _, e := range h.events {
		switch e.Dir {
		case Waited:
			kinds = append(kinds, "wait "+e.Wait.String())
		case Sent, Received:
			kinds = append(kinds, e.Dir.String()+" "+e.Packet.Type().String())
		}
	}
	want := []string{
		"sent CONNECT", "received CONNACK", "sent SUBSCRIBE", "received SUBACK",
		"sent PUBLISH", "received PUBACK", "received PUBLISH", "sent PUBACK", "wait 3s",
		"sent PUBLISH", "received PUBACK", "received PUBLISH", "sent PUBACK", "wait 1s",
		"sent PUBLISH", "received PUBACK", "received PUBLISH", "sent PUBACK", "sent DISCONNECT",
	}
	if !slices.Equal(kinds, want) {
		t.Errorf("trace:\n got %q\nwant %q", kinds, want)
	}
	for _, e := range h.events {
		if strings.Contains(e.String(), tok.Signature) || strings.Contains(e.String(), strings.ReplaceAll(tok.Signature, "=", "%3D")) {
			t.Errorf("trace line leaks the signature: %s", e)
		}
	}
}

// TestRetries checks the waits and re-sends after 429 and 5xx on register
// and on poll.
func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name string
		// regStatus/pollStatus are answered (with retryAfter; -1 none)
		// before the successful answer.
		regAnswers, pollAnswers [][2]int
		wantSleeps              []time.Duration
		wantAttempts, wantPolls int
	}{
		{"429 on register", [][2]int{{429, 5}}, nil, []time.Duration{5 * time.Second, 3 * time.Second}, 2, 1},
		{"429 on register without retry-after", [][2]int{{429, -1}}, nil, []time.Duration{2 * time.Second, 3 * time.Second}, 2, 1},
		{"429 on poll", nil, [][2]int{{429, 7}, {429, 0}}, []time.Duration{3 * time.Second, 7 * time.Second, 0}, 1, 3},
		{"5xx on register backs off exponentially", [][2]int{{500, -1}, {503, -1}, {500, -1}}, nil,
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 3 * time.Second}, 4, 1},
		{"5xx with retry-after honours it", [][2]int{{503, 9}}, nil, []time.Duration{9 * time.Second, 3 * time.Second}, 2, 1},
		{"5xx on poll", nil, [][2]int{{500, -1}, {502, -1}}, []time.Duration{3 * time.Second, time.Second, 2 * time.Second}, 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var regRIDs []string
			var pollOps []string
			h, cfg := serve(t, func(f *fake) {
				f.accept()
				for _, a := range tc.regAnswers {
					p, r := f.request(dps.Register)
					regRIDs = append(regRIDs, r.RID)
					f.puback(p)
					f.answer(a[0], r.RID, a[1], `{"errorCode":`+fmt.Sprint(a[0])+`000,"message":"x"}`, 0)
				}
				p, r := f.request(dps.Register)
				regRIDs = append(regRIDs, r.RID)
				f.puback(p)
				f.answer(202, r.RID, 3, assigningOp, 0)
				for _, a := range tc.pollAnswers {
					p, r := f.request(dps.Poll)
					pollOps = append(pollOps, r.OperationID)
					f.puback(p)
					f.answer(a[0], r.RID, a[1], "", 0)
				}
				p, r = f.request(dps.Poll)
				pollOps = append(pollOps, r.OperationID)
				f.puback(p)
				f.answer(200, r.RID, -1, assignedOp, 0)
				f.expectDisconnect()
			})
			res, err := Provision(ctxT(t), cfg)
			h.wait()
			if err != nil {
				t.Fatalf("Provision: %v", err)
			}
			if got := h.clock.Sleeps(); !slices.Equal(got, tc.wantSleeps) {
				t.Errorf("sleeps = %v, want %v", got, tc.wantSleeps)
			}
			if res.Attempts != tc.wantAttempts || res.Polls != tc.wantPolls {
				t.Errorf("attempts %d polls %d, want %d %d", res.Attempts, res.Polls, tc.wantAttempts, tc.wantPolls)
			}
			if len(slices.Compact(slices.Clone(regRIDs))) != len(regRIDs) {
				t.Errorf("register $rid values repeat: %q", regRIDs)
			}
			for _, op := range pollOps {
				if op != opID {
					t.Errorf("poll operationId %q, want %q", op, opID)
				}
			}
		})
	}
}

// TestRetryBudget checks that 429/5xx retries stop at MaxAttempts/MaxPolls
// with a *StatusError that also wraps ErrLimit.
func TestRetryBudget(t *testing.T) {
	t.Run("register", func(t *testing.T) {
		h, cfg := serve(t, func(f *fake) {
			f.accept()
			for range 3 {
				p, r := f.request(dps.Register)
				f.puback(p)
				f.answer(503, r.RID, -1, `{"errorCode":503000,"message":"busy"}`, 0)
			}
			f.expectDisconnect()
		})
		cfg.MaxAttempts = 3
		res, err := Provision(ctxT(t), cfg)
		h.wait()
		var se *StatusError
		if !errors.As(err, &se) || se.Status != 503 || se.Body.ErrorCode != 503000 || !errors.Is(err, ErrLimit) {
			t.Fatalf("err = %v, want StatusError 503 and ErrLimit", err)
		}
		if res.Attempts != 3 {
			t.Errorf("Attempts = %d", res.Attempts)
		}
		if got, want := h.clock.Sleeps(), []time.Duration{time.Second, 2 * time.Second}; !slices.Equal(got, want) {
			t.Errorf("sleeps = %v, want %v", got, want)
		}
	})
	t.Run("poll", func(t *testing.T) {
		h, cfg := serve(t, func(f *fake) {
			f.accept()
			f.registered(1)
			for range 2 {
				p, r := f.request(dps.Poll)
				f.puback(p)
				f.answer(429, r.RID, 1, "", 0)
			}
			f.expectDisconnect()
		})
		cfg.MaxPolls = 2
		_, err := Provision(ctxT(t), cfg)
		h.wait()
		var se *StatusError
		if !errors.As(err, &se) || se.Status != 429 || se.Request != "poll" || !errors.Is(err, ErrLimit) {
			t.Fatalf("err = %v, want poll StatusError 429 and ErrLimit", err)
		}
	})
	t.Run("backoff is capped", func(t *testing.T) {
		b := Backoff{Initial: time.Second, Max: 5 * time.Second, Jitter: -1}
		var got []time.Duration
		for n := 1; n <= 5; n++ {
			got = append(got, b.Delay(n, 0.99))
		}
		if want := []time.Duration{1e9, 2e9, 4e9, 5e9, 5e9}; !slices.Equal(got, want) {
			t.Errorf("delays = %v, want %v", got, want)
		}
		j := Backoff{Initial: time.Second, Max: 5 * time.Second, Jitter: 0.5}
		if d := j.Delay(1, 0.5); d != 1250*time.Millisecond {
			t.Errorf("jittered delay = %v, want 1.25s", d)
		}
		if d := j.Delay(10, 0.999); d > 7500*time.Millisecond {
			t.Errorf("jittered delay %v exceeds Max·(1+Jitter)", d)
		}
	})
}

// TestErrorStatuses checks that final error statuses are typed.
func TestErrorStatuses(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   int
		onPoll bool
	}{
		{401, 401000, false}, {401, 401002, false}, {400, 400000, false},
		{404, 404201, false}, {409, 409203, false}, {404, 404000, true}, {412, 412000, false},
	} {
		t.Run(fmt.Sprintf("%d-poll=%t", tc.status, tc.onPoll), func(t *testing.T) {
			body := fmt.Sprintf(`{"errorCode":%d,"trackingId":"t","message":"m%d","timestampUtc":"2020-04-10T05:24:22.4718526Z"}`, tc.code, tc.code)
			h, cfg := serve(t, func(f *fake) {
				f.accept()
				f.answerLast(tc.onPoll, tc.status, -1, body)
				f.expectDisconnect()
			})
			_, err := Provision(ctxT(t), cfg)
			h.wait()
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want *StatusError", err)
			}
			wantReq := "register"
			if tc.onPoll {
				wantReq = "poll"
			}
			if se.Status != tc.status || se.Body.ErrorCode != tc.code || se.Request != wantReq || !errors.Is(err, ErrStatus) || errors.Is(err, ErrLimit) {
				t.Errorf("err = %#v", se)
			}
			if se.Retriable() {
				t.Errorf("status %d reported retriable", tc.status)
			}
		})
	}
}

// TestStatusErrorSaysWhat: the error text of an error answer names what
// support needs: status, errorCode, message and trackingId; a body that is
// not an error JSON is quoted (bounded) instead.
func TestStatusErrorSaysWhat(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		want   []string
	}{
		{401, `{"errorCode":401002,"trackingId":"8ad0463c-6427-4479-9dfa-3e8bb7003e9b","message":"Invalid certificate.","timestampUtc":"2020-04-10T05:24:22.4718526Z"}`,
			[]string{"status 401", "401002", `"Invalid certificate."`, `trackingId "8ad0463c-6427-4479-9dfa-3e8bb7003e9b"`}},
		{400, `Bad Request: no such scope`, []string{"status 400", `body "Bad Request: no such scope"`}},
		{404, strings.Repeat("x", 1000), []string{"status 404", `body "` + strings.Repeat("x", 200) + `"…`}},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			h, cfg := serve(t, func(f *fake) {
				f.accept()
				p, r := f.request(dps.Register)
				f.puback(p)
				f.answer(tc.status, r.RID, -1, tc.body, 0)
				f.expectDisconnect()
			})
			_, err := Provision(ctxT(t), cfg)
			h.wait()
			if !errors.Is(err, ErrStatus) {
				t.Fatalf("err = %v, want ErrStatus", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v\nwant it to contain %s", err, w)
				}
			}
			if strings.Contains(err.Error(), strings.Repeat("x", 201)) {
				t.Errorf("body quoted unbounded: %d bytes", len(err.Error()))
			}
		})
	}
}

// TestUnauthorizedThenClose is the field log of DPS-PROTOCOL.md: 401 on the
// response topic, then the service closes the connection.
func TestUnauthorizedThenClose(t *testing.T) {
	h, cfg := serve(t, func(f *fake) {
		f.accept()
		p, r := f.request(dps.Register)
		f.puback(p)
		// At QoS 1: the client's PUBACK can no longer be written, and the
		// 401 must still be the outcome.
		f.answer(401, r.RID, -1, `{"errorCode":401002,"trackingId":"x","message":"CA certificate not found.","timestampUtc":"x"}`, 5)
		f.conn.Close()
	})
	_, err := Provision(ctxT(t), cfg)
	h.wait()
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 401 || se.Body.Message != "CA certificate not found." {
		t.Fatalf("err = %v", err)
	}
}

func TestNotAssigned(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		status     dps.Status
		code       int
	}{
		{"failed", `{"operationId":"` + opID + `","status":"failed","registrationState":{"registrationId":"dev-1","status":"failed","errorCode":400207,"errorMessage":"Custom allocation failed with status code: 400"}}`, dps.StatusFailed, 400207},
		{"disabled", `{"operationId":"","status":"disabled","registrationState":{"registrationId":"dev-1","status":"disabled"}}`, dps.StatusDisabled, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, cfg := serve(t, func(f *fake) {
				f.accept()
				p, r := f.request(dps.Register)
				f.puback(p)
				f.answer(200, r.RID, -1, tc.body, 0)
				f.expectDisconnect()
			})
			res, err := Provision(ctxT(t), cfg)
			h.wait()
			var ae *AssignmentError
			if !errors.As(err, &ae) || !errors.Is(err, ErrNotAssigned) || ae.Status != tc.status || ae.ErrorCode != tc.code {
				t.Fatalf("err = %v", err)
			}
			if res == nil || res.Status != tc.status || res.RegistrationState == nil || res.Polls != 0 {
				t.Errorf("result = %+v", res)
			}
		})
	}
}

// TestMatching checks $rid matching: other answers are skipped (and acked),
// the PUBACK may come after the answer, and the skip count is bounded.
func TestMatching(t *testing.T) {
	t.Run("other rid and puback after answer", func(t *testing.T) {
		var acks []uint16
		h, cfg := serve(t, func(f *fake) {
			f.accept()
			p, r := f.request(dps.Register)
			f.answer(202, "99", 3, `{"operationId":"4.0000000000000000.00000000-0000-0000-0000-000000000000","status":"assigning"}`, 21)
			acks = append(acks, expect[*packets.Puback](f).PacketID)
			f.send(&packets.Publish{Topic: []byte("$dps/registrations/res/garbage"), Payload: []byte("x")})
			f.answer(202, r.RID, 2, assigningOp, 22)
			acks = append(acks, expect[*packets.Puback](f).PacketID)
			f.puback(p) // after the answer
			p, r = f.request(dps.Poll)
			f.answer(200, r.RID, -1, assignedOp, 0)
			f.puback(p)
			f.expectDisconnect()
		})
		res, err := Provision(ctxT(t), cfg)
		h.wait()
		if err != nil {
			t.Fatal(err)
		}
		if res.OperationID != opID {
			t.Errorf("operation id %q: an answer to another $rid was taken", res.OperationID)
		}
		if !slices.Equal(acks, []uint16{21, 22}) {
			t.Errorf("client PUBACKs = %v", acks)
		}
		if got := h.clock.Sleeps(); !slices.Equal(got, []time.Duration{2 * time.Second}) {
			t.Errorf("sleeps = %v", got)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		h, cfg := serve(t, func(f *fake) {
			f.accept()
			_, _ = f.request(dps.Register)
			for i := range 4 {
				f.answer(202, fmt.Sprint(100+i), 3, assigningOp, 0)
			}
			f.expectDisconnect()
		})
		cfg.MaxIgnored = 3
		_, err := Provision(ctxT(t), cfg)
		h.wait()
		if !errors.Is(err, ErrLimit) {
			t.Fatalf("err = %v, want ErrLimit", err)
		}
	})
}

func TestConnackRefused(t *testing.T) {
	for code := packets.ConnackRefusedProtocolVersion; code <= packets.ConnackRefusedNotAuthorized; code++ {
		t.Run(code.String(), func(t *testing.T) {
			h, cfg := serve(t, func(f *fake) {
				expect[*packets.Connect](f)
				f.send(&packets.Connack{ReturnCode: code})
			})
			_, err := Provision(ctxT(t), cfg)
			h.wait()
			var ce *ConnectRefusedError
			if !errors.As(err, &ce) || ce.ReturnCode != code || !errors.Is(err, ErrRefused) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	t.Run("not a CONNACK", func(t *testing.T) {
		h, cfg := serve(t, func(f *fake) {
			expect[*packets.Connect](f)
			f.send(&packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{1}})
		})
		_, err := Provision(ctxT(t), cfg)
		h.wait()
		var ue *UnexpectedPacketError
		if !errors.As(err, &ue) || ue.Got != packets.TypeSuback || !errors.Is(err, ErrProtocol) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("closed before CONNACK", func(t *testing.T) {
		h, cfg := serve(t, func(f *fake) {
			expect[*packets.Connect](f)
			f.conn.Close()
		})
		_, err := Provision(ctxT(t), cfg)
		h.wait()
		if !errors.Is(err, ErrConnectionClosed) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestSubackRefused(t *testing.T) {
	h, cfg := serve(t, func(f *fake) {
		expect[*packets.Connect](f)
		f.send(&packets.Connack{})
		s := expect[*packets.Subscribe](f)
		if s != nil {
			f.send(&packets.Suback{PacketID: s.PacketID, ReturnCodes: []packets.SubackCode{packets.SubackFailure}})
		}
		f.expectDisconnect()
	})
	_, err := Provision(ctxT(t), cfg)
	h.wait()
	var se *SubscribeRefusedError
	if !errors.As(err, &se) || se.Code != packets.SubackFailure || se.Filter != dps.SubscribeFilter {
		t.Fatalf("err = %v", err)
	}
}

// TestClosedMidPoll: the service drops the connection while the client waits
// for a poll answer; Provision must fail promptly, not hang.
func TestClosedMidPoll(t *testing.T) {
	h, cfg := serve(t, func(f *fake) {
		f.accept()
		f.registered(1)
		f.request(dps.Poll)
		f.conn.Close()
	})
	cfg.ResponseTimeout = -1 // only the connection end can stop the wait
	res, err := Provision(ctxT(t), cfg)
	h.wait()
	if !errors.Is(err, ErrConnectionClosed) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrConnectionClosed", err)
	}
	if res.Polls != 1 || res.OperationID != opID {
		t.Errorf("result = %+v", res)
	}
}

func TestResponseTimeout(t *testing.T) {
	h, cfg := serve(t, func(f *fake) {
		f.accept()
		f.request(dps.Register)
		f.expectDisconnect()
	})
	cfg.ResponseTimeout = 50 * time.Millisecond
	_, err := Provision(ctxT(t), cfg)
	h.wait()
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
}

func TestRetryAfterTooLong(t *testing.T) {
	h, cfg := serve(t, func(f *fake) {
		f.accept()
		f.registered(600)
		f.expectDisconnect()
	})
	_, err := Provision(ctxT(t), cfg)
	h.wait()
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "10m0s") {
		t.Fatalf("err = %v", err)
	}
	if len(h.clock.Sleeps()) != 0 {
		t.Errorf("slept %v", h.clock.Sleeps())
	}
}

// TestRetryAfterTooLongSaysWhich: a retry-after above MaxRetryAfter names
// the request and the status that asked for it.
func TestRetryAfterTooLongSaysWhich(t *testing.T) {
	for _, tc := range []struct {
		status int
		onPoll bool
		want   string
	}{
		{429, false, "the register answer (status 429) asks to retry after 10m0s"},
		{503, true, "the poll answer (status 503) asks to retry after 10m0s"},
		{202, true, "the poll answer (status 202) asks to retry after 10m0s"},
		{202, false, "the register answer (status 202) asks to retry after 10m0s"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			h, cfg := serve(t, func(f *fake) {
				f.accept()
				f.answerLast(tc.onPoll, tc.status, 600, assigningOp)
				f.expectDisconnect()
			})
			// No deadline: a 429/5xx wait beyond one is ErrBeyondDeadline.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := Provision(ctx, cfg)
			h.wait()
			if !errors.Is(err, ErrLimit) || errors.Is(err, ErrStatus) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrLimit naming %q", err, tc.want)
			}
		})
	}
}

// TestKeepAliveDuringWait: a retry-after longer than the keep-alive is
// slept in keep-alive chunks with PINGREQ in between.
func TestKeepAliveDuringWait(t *testing.T) {
	pings := 0
	h, cfg := serve(t, func(f *fake) {
		c := f.accept()
		if c != nil && c.KeepAlive != 10 {
			f.t.Errorf("keepalive = %d", c.KeepAlive)
		}
		f.registered(25)
		for range 2 {
			expect[*packets.Pingreq](f)
			f.send(&packets.Pingresp{})
			pings++
		}
		p, r := f.request(dps.Poll)
		f.puback(p)
		f.answer(200, r.RID, -1, assignedOp, 0)
		f.expectDisconnect()
	})
	cfg.KeepAlive = 10 * time.Second
	if _, err := Provision(ctxT(t), cfg); err != nil {
		t.Fatal(err)
	}
	h.wait()
	if got, want := h.clock.Sleeps(), []time.Duration{10e9, 10e9, 5e9}; !slices.Equal(got, want) {
		t.Errorf("sleeps = %v, want %v", got, want)
	}
	if pings != 2 {
		t.Errorf("pings = %d", pings)
	}
}

// TestKeepAlivePingrespsNotIgnored: the PINGRESPs answering the client's
// own keep-alive PINGREQs are not "other packets" counted against
// MaxIgnored, however long the wait was.
func TestKeepAlivePingrespsNotIgnored(t *testing.T) {
	h, cfg := serve(t, func(f *fake) {
		f.accept()
		f.registered(10)
		for range 9 {
			expect[*packets.Pingreq](f)
			f.send(&packets.Pingresp{})
		}
		p, r := f.request(dps.Poll)
		f.puback(p)
		f.answer(200, r.RID, -1, assignedOp, 0)
		f.expectDisconnect()
	})
	cfg.KeepAlive = time.Second
	cfg.MaxIgnored = 5
	_, err := Provision(ctxT(t), cfg)
	h.wait()
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
}

// TestOptions covers the CONNECT/publish knobs: group key, X.509 (no
// password, id from the certificate), QoS 0, UUID $rid, payload, persistent
// session.
func TestOptions(t *testing.T) {
	groupKey := "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
	for _, tc := range []struct {
		name  string
		setup func(*Config)
		check func(t *testing.T, c *packets.Connect, sub *packets.Subscribe, reg *packets.Publish, rid string)
	}{
		{"group key", func(c *Config) { c.SymmetricKey = ""; c.GroupKey = groupKey }, func(t *testing.T, c *packets.Connect, _ *packets.Subscribe, _ *packets.Publish, _ string) {
			tok, err := dps.ParseSASToken(string(c.Password))
			if err != nil {
				t.Fatal(err)
			}
			dk, _ := dps.DeriveDeviceKey(groupKey, "dev-1")
			if err := (dps.Verifier{Now: func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) }}).Verify(tok, "0neFEEDC0DE", "dev-1", dk); err != nil {
				t.Errorf("derived-key token: %v", err)
			}
		}},
		{"x509", func(c *Config) {
			c.SymmetricKey = ""
			c.RegistrationID = ""
			c.Dial.TLSConfig = testClientTLS(t, "cert-device-7")
		}, func(t *testing.T, c *packets.Connect, _ *packets.Subscribe, reg *packets.Publish, _ string) {
			if c.Password != nil || string(c.ClientID) != "cert-device-7" || !strings.HasPrefix(string(c.Username), "0neFEEDC0DE/registrations/cert-device-7/") {
				t.Errorf("CONNECT = %s", Describe(c))
			}
			if string(reg.Payload) != `{"registrationId":"cert-device-7"}` {
				t.Errorf("body = %s", reg.Payload)
			}
		}},
		{"qos0 uuid payload persistent", func(c *Config) {
			c.SubscribeQoS, c.PublishQoS = QoS0, QoS0
			c.RequestID = UUIDRequestID
			c.Payload = json.RawMessage(`{"modelId":"dtmi:x;1"}`)
			c.PersistentSession = true
			c.APIVersion = "2021-06-01"
			c.SREncoding = dps.SRUpper
			c.OmitKeyName = true
		}, func(t *testing.T, c *packets.Connect, sub *packets.Subscribe, reg *packets.Publish, rid string) {
			if c.CleanSession || !strings.HasSuffix(string(c.Username), "api-version=2021-06-01") {
				t.Errorf("CONNECT = %s", Describe(c))
			}
			tok, _ := dps.ParseSASToken(string(c.Password))
			if tok == nil || tok.HasKeyName || !strings.Contains(tok.Resource, "%2F") {
				t.Errorf("token = %+v", tok)
			}
			if sub.Subscriptions[0].QoS != 0 || reg.QoS != 0 {
				t.Errorf("QoS: sub %d publish %d", sub.Subscriptions[0].QoS, reg.QoS)
			}
			if len(rid) != 36 || rid[14] != '4' {
				t.Errorf("rid %q is not a UUID v4", rid)
			}
			if string(reg.Payload) != `{"registrationId":"dev-1","payload":{"modelId":"dtmi:x;1"}}` {
				t.Errorf("body = %s", reg.Payload)
			}
		}},
		{"bodies and key name", func(c *Config) {
			c.RegisterBody = []byte{}
			c.PollBody = []byte(" ")
			c.KeyName = "custom"
		}, func(t *testing.T, c *packets.Connect, _ *packets.Subscribe, reg *packets.Publish, _ string) {
			if len(reg.Payload) != 0 {
				t.Errorf("register body = %q, want empty", reg.Payload)
			}
			tok, _ := dps.ParseSASToken(string(c.Password))
			if tok == nil || tok.KeyName != "custom" {
				t.Errorf("token = %+v", tok)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				c   *packets.Connect
				sub *packets.Subscribe
				reg *packets.Publish
				rid string
			)
			h, cfg := serve(t, func(f *fake) {
				c = expect[*packets.Connect](f)
				f.send(&packets.Connack{})
				sub = expect[*packets.Subscribe](f)
				if sub != nil {
					f.send(&packets.Suback{PacketID: sub.PacketID, ReturnCodes: []packets.SubackCode{0}})
				}
				var r dps.Request
				reg, r = f.request(dps.Register)
				rid = r.RID
				f.puback(reg)
				f.answer(200, r.RID, -1, assignedOp, 0)
				f.expectDisconnect()
			})
			tc.setup(&cfg)
			if _, err := Provision(ctxT(t), cfg); err != nil {
				t.Fatal(err)
			}
			h.wait()
			if t.Failed() {
				return
			}
			tc.check(t, c, sub, reg, rid)
		})
	}
}

func TestConfigErrors(t *testing.T) {
	base := Config{Target: transport.Target{Scheme: "mqtts", Host: "127.0.0.1", Port: 8883}, IDScope: "0ne1", RegistrationID: "r", SymmetricKey: testKey}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no target", func(c *Config) { c.Target = transport.Target{} }, "Target is empty"},
		{"no scope", func(c *Config) { c.IDScope = "" }, "IDScope is empty"},
		{"no registration id", func(c *Config) { c.RegistrationID = "" }, "RegistrationID is empty"},
		{"both keys", func(c *Config) { c.GroupKey = testKey }, "mutually exclusive"},
		{"bad key", func(c *Config) { c.SymmetricKey = "not*base64" }, "SymmetricKey"},
		{"bad group key", func(c *Config) { c.SymmetricKey = ""; c.GroupKey = "%%%" }, "GroupKey"},
		{"bad payload", func(c *Config) { c.Payload = json.RawMessage(`{`) }, "Payload is not valid JSON"},
		{"keepalive too long", func(c *Config) { c.KeepAlive = 100000 * time.Second }, "KeepAlive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mod(&c)
			err := c.Validate()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrConfig mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "not*base64") || strings.Contains(err.Error(), testKey) {
				t.Errorf("error leaks the key: %v", err)
			}
			if _, err := Provision(context.Background(), c); !errors.Is(err, ErrConfig) {
				t.Errorf("Provision err = %v", err)
			}
		})
	}
	if err := base.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestRedaction(t *testing.T) {
	tok, err := dps.BuildSASToken(dps.SASOptions{IDScope: "0ne1", RegistrationID: "r", Key: testKey, Expiry: time.Unix(1578941692, 0)})
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := dps.ParseSASToken(tok)
	line := Event{Dir: Sent, Packet: &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, ClientID: []byte("r"), Username: []byte("u"), Password: []byte(tok)}}.String()
	sigEnc := tok[strings.Index(tok, "sig=")+4 : strings.Index(tok, "&se=")]
	if strings.Contains(line, sigEnc) || strings.Contains(line, parsed.Signature) {
		t.Errorf("signature in %q", line)
	}
	if !strings.Contains(line, "sig=[redacted]") || !strings.Contains(line, "se=1578941692") {
		t.Errorf("line = %q", line)
	}
	if got := redactPassword([]byte("hunter2")); got != "[redacted 7 bytes]" {
		t.Errorf("plain password: %q", got)
	}
}

func TestRequestIDs(t *testing.T) {
	if CounterRequestID(3) != "3" || ConstantRequestID("1")(9) != "1" {
		t.Error("counter/constant")
	}
	a, b := UUIDRequestID(1), UUIDRequestID(1)
	if a == b || len(a) != 36 || a[8] != '-' || a[14] != '4' || !strings.ContainsAny(a[19:20], "89ab") {
		t.Errorf("UUIDs %q %q", a, b)
	}
}

// TestRetryAfterBeyondDeadline: a 429 whose retry-after outlasts the
// caller's deadline ends at once with that 429 (and ErrLimit), instead of
// starting a wait that can only end in "context deadline exceeded".
func TestRetryAfterBeyondDeadline(t *testing.T) {
	h, cfg := serve(t, func(f *fake) {
		f.accept()
		p, r := f.request(dps.Register)
		f.puback(p)
		f.answer(429, r.RID, 60, `{"errorCode":429001,"message":"throttled"}`, 0)
		f.expectDisconnect()
	})
	ctx, cancel := context.WithTimeout(ctxT(t), 20*time.Second)
	defer cancel()
	_, err := Provision(ctx, cfg)
	h.wait()
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 429 || se.Request != "register" || se.RetryAfter != time.Minute || !errors.Is(err, ErrLimit) || !errors.Is(err, ErrBeyondDeadline) {
		t.Fatalf("err = %v, want register StatusError 429 retry-after 1m, ErrLimit and ErrBeyondDeadline", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v: the deadline was not reached, the wait was refused", err)
	}
	if !strings.Contains(err.Error(), "retry after 1m0s") {
		t.Errorf("err = %q, want the retry-after named", err)
	}
	if got := h.clock.Sleeps(); len(got) != 0 {
		t.Errorf("slept %v before giving up", got)
	}
}

// TestResponseTimeoutNamesSkipped: a service that answers with the wrong
// $rid leaves the client waiting; the timeout names the answer it skipped,
// or the cause would read as "no answer".
func TestResponseTimeoutNamesSkipped(t *testing.T) {
	h, cfg := serve(t, func(f *fake) {
		f.accept()
		p, r := f.request(dps.Register)
		f.puback(p)
		f.answer(202, r.RID+"9", 1, assigningOp, 0)
		f.expectDisconnect()
	})
	cfg.ResponseTimeout = 50 * time.Millisecond
	_, err := Provision(ctxT(t), cfg)
	h.wait()
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), `skipped 1 other publish(es), the first on "$dps/registrations/res/202/?$rid=19&retry-after=1"`) {
		t.Fatalf("err = %v, want ErrTimeout naming the skipped answer", err)
	}
}

// TestReconnect: with ConnectAttempts, a CONNECT that got no CONNACK or
// CONNACK 0x03 is retried on a new connection after a growing back-off
// (DPS-DEV-022); other refusals are not, and the last failure is returned
// once the attempts are spent.
func TestReconnect(t *testing.T) {
	withhold := func(f *fake) { expect[*packets.Connect](f) } // then drains: no CONNACK
	refuse := func(code packets.ConnackCode) func(f *fake) {
		return func(f *fake) {
			expect[*packets.Connect](f)
			f.send(&packets.Connack{ReturnCode: code})
		}
	}
	hangUp := func(f *fake) {
		expect[*packets.Connect](f)
		f.conn.Close()
	}
	assign := func(f *fake) {
		f.accept()
		f.answerLast(false, 200, -1, assignedOp)
		f.expectDisconnect()
	}
	for _, tc := range []struct {
		name       string
		attempts   int
		scripts    []func(f *fake)
		wantSleeps []time.Duration
		// wantErr is nil for an assignment, else what err must match.
		wantErr func(error) bool
	}{
		{"no CONNACK twice, then assigned", 3, []func(f *fake){withhold, withhold, assign},
			[]time.Duration{time.Second, 2 * time.Second}, nil},
		{"0x03, closed before CONNACK, then assigned", 3, []func(f *fake){refuse(packets.ConnackRefusedServerUnavailable), hangUp, assign},
			[]time.Duration{time.Second, 2 * time.Second}, nil},
		{"attempts spent", 2, []func(f *fake){refuse(packets.ConnackRefusedServerUnavailable), withhold},
			[]time.Duration{time.Second}, func(err error) bool { return errors.Is(err, ErrLimit) && errors.Is(err, ErrTimeout) }},
		{"0x05 is not retried", 3, []func(f *fake){refuse(packets.ConnackRefusedNotAuthorized)},
			nil, func(err error) bool {
				var ce *ConnectRefusedError
				return errors.As(err, &ce) && ce.ReturnCode == packets.ConnackRefusedNotAuthorized && !errors.Is(err, ErrLimit)
			}},
		{"default: one attempt", 0, []func(f *fake){withhold},
			nil, func(err error) bool { return errors.Is(err, ErrTimeout) && !errors.Is(err, ErrLimit) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, cfg := serveSeq(t, tc.scripts...)
			cfg.ConnectAttempts = tc.attempts
			cfg.ResponseTimeout = 100 * time.Millisecond
			res, err := Provision(ctxT(t), cfg)
			h.wait()
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Provision: %v", err)
			case tc.wantErr == nil && res.Status != dps.StatusAssigned:
				t.Fatalf("status %q, want assigned", res.Status)
			case tc.wantErr != nil && !tc.wantErr(err):
				t.Fatalf("err = %v", err)
			}
			if got := h.clock.Sleeps(); !slices.Equal(got, tc.wantSleeps) {
				t.Errorf("sleeps = %v, want %v", got, tc.wantSleeps)
			}
			var waits []time.Duration
			for _, e := range h.events {
				if e.Dir == Waited {
					waits = append(waits, e.Wait)
				}
			}
			if !slices.Equal(waits, tc.wantSleeps) {
				t.Errorf("traced waits = %v, want %v", waits, tc.wantSleeps)
			}
		})
	}
}

// TestReconnectBeyondDeadline: a reconnect back-off longer than the time
// ctx leaves is not begun (as a 429/5xx wait is not): the error says so,
// with the connection failure, at once.
func TestReconnectBeyondDeadline(t *testing.T) {
	h, cfg := serveSeq(t, func(f *fake) { expect[*packets.Connect](f) })
	cfg.ConnectAttempts = 3
	cfg.ResponseTimeout = 100 * time.Millisecond
	cfg.Backoff = Backoff{Initial: time.Minute, Jitter: -1}
	_, err := Provision(ctxT(t), cfg) // 10 s left
	h.wait()
	if !errors.Is(err, ErrBeyondDeadline) || !errors.Is(err, ErrLimit) || !errors.Is(err, ErrTimeout) ||
		!strings.Contains(err.Error(), "reconnecting after 1m0s") {
		t.Fatalf("err = %v, want ErrBeyondDeadline, ErrLimit and the CONNACK timeout", err)
	}
	if got := h.clock.Sleeps(); len(got) != 0 {
		t.Errorf("slept %v, want no wait begun", got)
	}
}
