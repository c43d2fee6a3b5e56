package device

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/transport"
)

func TestPollEdgeCases(t *testing.T) {
	t.Run("MaxPolls without a final status", func(t *testing.T) {
		h, cfg := serve(t, func(f *fake) {
			f.accept()
			f.registered(1)
			for range 2 {
				p, r := f.request(dps.Poll)
				f.puback(p)
				f.answer(202, r.RID, 1, assigningReg, 0)
			}
			f.expectDisconnect()
		})
		cfg.MaxPolls = 2
		res, err := Provision(ctxT(t), cfg)
		h.wait()
		if !errors.Is(err, ErrLimit) || errors.Is(err, ErrStatus) {
			t.Fatalf("err = %v", err)
		}
		if res.Polls != 2 || res.Status != dps.StatusAssigning {
			t.Errorf("result = %+v", res)
		}
		if got := h.clock.Sleeps(); !slices.Equal(got, []time.Duration{time.Second, time.Second}) {
			t.Errorf("sleeps = %v", got)
		}
	})
	t.Run("answer without operationId reuses the last", func(t *testing.T) {
		var ops []string
		h, cfg := serve(t, func(f *fake) {
			f.accept()
			f.registered(0)
			p, r := f.request(dps.Poll)
			ops = append(ops, r.OperationID)
			if p != nil && string(p.Payload) != " " {
				f.t.Errorf("poll body %q, want PollBody", p.Payload)
			}
			f.puback(p)
			f.answer(202, r.RID, 0, `{"operationId":"","status":"unassigned"}`, 0)
			p, r = f.request(dps.Poll)
			ops = append(ops, r.OperationID)
			f.puback(p)
			f.answer(200, r.RID, -1, assignedOp, 0)
			f.expectDisconnect()
		})
		cfg.PollBody = []byte(" ")
		if _, err := Provision(ctxT(t), cfg); err != nil {
			t.Fatal(err)
		}
		h.wait()
		if !slices.Equal(ops, []string{opID, opID}) {
			t.Errorf("polled %q", ops)
		}
		if got := h.clock.Sleeps(); !slices.Equal(got, []time.Duration{0, 0}) {
			t.Errorf("retry-after 0 must be a zero wait: sleeps = %v", got)
		}
	})
	for _, tc := range []struct{ name, body, want string }{
		{"unknown status", `{"operationId":"x","status":"weird"}`, `unknown status "weird"`},
		{"not json", `not json`, "not a RegistrationOperationStatus"},
		{"no operation id", `{"status":"assigning"}`, "without an operationId"},
		{"assigned without registrationState", `{"operationId":"x","status":"assigned"}`, "assigned without registrationState.assignedHub"},
		{"assigned without deviceId", `{"operationId":"x","status":"assigned","registrationState":{"registrationId":"r","status":"assigned","assignedHub":"h.azure-devices.net"}}`, "assigned without registrationState.assignedHub and deviceId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, cfg := serve(t, func(f *fake) {
				f.accept()
				p, r := f.request(dps.Register)
				f.puback(p)
				f.answer(202, r.RID, 1, tc.body, 0)
				f.expectDisconnect()
			})
			_, err := Provision(ctxT(t), cfg)
			h.wait()
			var me *MalformedResponseError
			if !errors.As(err, &me) || !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want MalformedResponseError %q", err, tc.want)
			}
		})
	}
}

func TestMisbehave(t *testing.T) {
	t.Run("IgnoreRetryAfter and NoPuback", func(t *testing.T) {
		var afterAnswer packets.Packet
		h, cfg := serve(t, func(f *fake) {
			f.accept()
			p, r := f.request(dps.Register)
			f.puback(p)
			f.answer(202, r.RID, 3, assigningOp, 40)
			afterAnswer = f.next() // a well-behaved client would PUBACK 40 here
			if pub, ok := afterAnswer.(*packets.Publish); ok {
				req, _ := dps.ParseRequestTopic(string(pub.Topic))
				f.puback(pub)
				f.answer(200, req.RID, -1, assignedOp, 0)
			}
			f.expectDisconnect()
		})
		cfg.Misbehave = Misbehave{IgnoreRetryAfter: true, NoPuback: true}
		if _, err := Provision(ctxT(t), cfg); err != nil {
			t.Fatal(err)
		}
		h.wait()
		if _, ok := afterAnswer.(*packets.Publish); !ok {
			t.Errorf("after the answer the client sent %s, want the poll PUBLISH", Describe(afterAnswer))
		}
		if len(h.clock.Sleeps()) != 0 {
			t.Errorf("slept %v", h.clock.Sleeps())
		}
	})
	t.Run("overrides and SkipSubscribe", func(t *testing.T) {
		var c *packets.Connect
		var first packets.Packet
		h, cfg := serve(t, func(f *fake) {
			c = expect[*packets.Connect](f)
			f.send(&packets.Connack{})
			first = f.next()
			if pub, ok := first.(*packets.Publish); ok {
				req, _ := dps.ParseRequestTopic(string(pub.Topic))
				f.puback(pub)
				f.answer(200, req.RID, -1, assignedOp, 0)
			}
			f.expectDisconnect()
		})
		id, user, pw := "other", "bad-user", "hunter2"
		cfg.Misbehave = Misbehave{ClientID: &id, Username: &user, Password: &pw, SkipSubscribe: true}
		if _, err := Provision(ctxT(t), cfg); err != nil {
			t.Fatal(err)
		}
		h.wait()
		if string(c.ClientID) != id || string(c.Username) != user || string(c.Password) != pw {
			t.Errorf("CONNECT = %s", Describe(c))
		}
		if first == nil || first.Type() != packets.TypePublish {
			t.Errorf("first packet after CONNACK: %v", first)
		}
	})
}

// TestSessionAPI drives a session by hand, as the suite does.
func TestSessionAPI(t *testing.T) {
	h, cfg := serve(t, func(f *fake) {
		expect[*packets.Connect](f)
		// CONNACK with a reserved bit set: decoded leniently, reported.
		raw, _ := packets.ToRaw(&packets.Connack{}, packets.EncodeOptions{})
		raw.Body[0] |= 0x02
		f.send(raw)
		p := expect[*packets.Publish](f)
		if p != nil && string(p.Topic) != "custom/topic" {
			f.t.Errorf("topic %q", p.Topic)
		}
		f.answer(404, "abc", -1, `{"errorCode":404000,"message":"nope"}`, 3)
		expect[*packets.Puback](f)
		f.send(&packets.Pingresp{})
		expect[*packets.Pingreq](f)
		expect[*packets.Disconnect](f)
	})
	ctx := ctxT(t)
	s, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Send(ctx, &packets.Publish{Topic: []byte("custom/topic"), Payload: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Await(ctx, "abc")
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 404 || r.Error == nil || r.Error.ErrorCode != 404000 || r.QoS != 1 || r.RID != "abc" {
		t.Errorf("response = %+v", r)
	}
	p, err := s.Next(ctx)
	if err != nil || p.Type() != packets.TypePingresp {
		t.Fatalf("Next = %v, %v", p, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	h.wait()
	if _, err := s.Next(ctx); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Next after Close = %v", err)
	}
	if s.Connack == nil || s.Connack.Reserved == 0 {
		t.Errorf("Connack = %+v", s.Connack)
	}
	var sawViolation bool
	for _, e := range h.events {
		if e.Dir == Received && e.Packet.Type() == packets.TypeConnack && len(e.Violations) > 0 {
			sawViolation = true
		}
	}
	if !sawViolation {
		t.Error("CONNACK reserved bit not reported in the trace")
	}
}

func TestCancelDuringWait(t *testing.T) {
	h, cfg := serve(t, func(f *fake) {
		f.accept()
		f.registered(3)
		f.expectDisconnect()
	})
	ctx, cancel := context.WithCancel(ctxT(t))
	cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		cancel()
		<-ctx.Done()
		return ctx.Err()
	}
	_, err := Provision(ctx, cfg)
	h.wait()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func BenchmarkProvision(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() { defer close(done); benchDPS(server) }()
		_, err := Provision(context.Background(), Config{
			IDScope: "0ne1", RegistrationID: "r", SymmetricKey: testKey,
			DialFunc: func(context.Context) (net.Conn, error) { return client, nil },
			Sleep:    func(context.Context, time.Duration) error { return nil },
		})
		if err != nil {
			b.Fatal(err)
		}
		<-done
	}
}

// benchDPS answers register with 202 and the poll with 200.
func benchDPS(conn net.Conn) {
	defer conn.Close()
	r := packets.NewReader(conn, packets.DecodeOptions{})
	for {
		p, err := r.ReadPacket()
		if err != nil {
			return
		}
		switch p := p.(type) {
		case *packets.Connect:
			packets.WritePacket(conn, &packets.Connack{})
		case *packets.Subscribe:
			packets.WritePacket(conn, &packets.Suback{PacketID: p.PacketID, ReturnCodes: []packets.SubackCode{1}})
		case *packets.Publish:
			req, _ := dps.ParseRequestTopic(string(p.Topic))
			packets.WritePacket(conn, &packets.Puback{PacketID: p.PacketID})
			if req.Kind == dps.Register {
				packets.WritePacket(conn, &packets.Publish{Topic: []byte(dps.ResponseTopic(202, req.RID, 0)), Payload: []byte(assigningOp)})
			} else {
				packets.WritePacket(conn, &packets.Publish{Topic: []byte(dps.ResponseTopic(200, req.RID, -1)), Payload: []byte(assignedOp)})
			}
		case *packets.Disconnect:
			return
		}
	}
}

// TestWriteBounded: a service that stops reading cannot block a write past
// ResponseTimeout, even with a context that has no deadline.
func TestWriteBounded(t *testing.T) {
	h, cfg := serve(t, func(f *fake) {
		f.accept()
		// Read nothing more: the register PUBLISH write blocks on the pipe.
		time.Sleep(300 * time.Millisecond)
	})
	cfg.ResponseTimeout = 50 * time.Millisecond
	_, err := Provision(context.Background(), cfg)
	h.wait()
	if !errors.Is(err, ErrConnectionClosed) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want a write deadline error", err)
	}
}

// strictConn reports deadlines set after Close: some transports (a WebSocket
// conn with stopped timers) block forever on that.
type strictConn struct {
	net.Conn
	closed atomic.Bool
	bad    atomic.Int32
}

func (c *strictConn) Close() error { c.closed.Store(true); return c.Conn.Close() }

func (c *strictConn) SetWriteDeadline(t time.Time) error {
	if c.closed.Load() {
		c.bad.Add(1)
	}
	return c.Conn.SetWriteDeadline(t)
}

// TestNoDeadlineAfterClose: the service answers and closes at once; the
// client must not touch the closed connection's deadlines when it tries to
// DISCONNECT.
func TestNoDeadlineAfterClose(t *testing.T) {
	for range 20 {
		h, cfg := serve(t, func(f *fake) {
			f.accept()
			p, r := f.request(dps.Register)
			f.puback(p)
			f.answer(200, r.RID, -1, assignedOp, 0)
			f.conn.Close()
		})
		var sc *strictConn
		dial := cfg.DialFunc
		cfg.DialFunc = func(ctx context.Context) (net.Conn, error) {
			c, err := dial(ctx)
			sc = &strictConn{Conn: c}
			return sc, err
		}
		if _, err := Provision(ctxT(t), cfg); err != nil {
			t.Fatal(err)
		}
		h.wait()
		if n := sc.bad.Load(); n != 0 {
			t.Fatalf("%d write deadlines set after Close", n)
		}
	}
}

// TestMisbehaveSwitches covers the switches that prove the device rules
// DPS-DEV-007, -011, -013, -015, -017, -020 and -021.
func TestMisbehaveSwitches(t *testing.T) {
	t.Run("ProtocolName and ProtocolLevel", func(t *testing.T) {
		var c *packets.Connect
		h, cfg := serve(t, func(f *fake) {
			f.conn.SetReadDeadline(time.Now().Add(fakeWait))
			p, err := packets.ReadPacket(f.r, packets.DecodeOptions{Lenient: true})
			var v packets.Violations
			if err != nil && !errors.As(err, &v) {
				t.Errorf("fake service: reading CONNECT: %v", err)
				return
			}
			c, _ = p.(*packets.Connect)
			f.send(&packets.Connack{ReturnCode: packets.ConnackRefusedProtocolVersion})
		})
		name := "MQIsdp"
		cfg.Misbehave.ProtocolName = &name
		cfg.Misbehave.ProtocolLevel = 3
		_, err := Provision(ctxT(t), cfg)
		var re *ConnectRefusedError
		if !errors.As(err, &re) || re.ReturnCode != packets.ConnackRefusedProtocolVersion {
			t.Errorf("err = %v, want CONNACK 0x01", err)
		}
		h.wait()
		if c == nil || string(c.ProtocolName) != "MQIsdp" || c.ProtocolLevel != 3 {
			t.Errorf("CONNECT = %s, want protocol MQIsdp level 3", Describe(c))
		}
	})
	t.Run("RIDWithoutDollar", func(t *testing.T) {
		var topics []string
		h, cfg := serve(t, func(f *fake) {
			f.accept()
			for _, a := range []struct {
				status int
				body   string
			}{{202, assigningOp}, {200, assignedOp}} {
				p := expect[*packets.Publish](f)
				if p == nil {
					return
				}
				topics = append(topics, string(p.Topic))
				f.puback(p)
				f.answer(a.status, fmt.Sprint(len(topics)), 0, a.body, 0)
			}
			f.expectDisconnect()
		})
		cfg.Misbehave.RIDWithoutDollar = true
		if _, err := Provision(ctxT(t), cfg); err != nil {
			t.Fatal(err)
		}
		h.wait()
		want := []string{"$dps/registrations/PUT/iotdps-register/?rid=1", "$dps/registrations/GET/iotdps-get-operationstatus/?rid=2&operationId=" + opID}
		if !slices.Equal(topics, want) {
			t.Errorf("topics %q, want %q", topics, want)
		}
	})
	t.Run("PollOperationID", func(t *testing.T) {
		const other = "4.0000000000000000.00000000-0000-4000-8000-000000000000"
		var polled string
		h, cfg := serve(t, func(f *fake) {
			f.accept()
			f.registered(0)
			p, r := f.request(dps.Poll)
			polled = r.OperationID
			f.puback(p)
			f.answer(404, r.RID, -1, `{"errorCode":404006,"message":"Operation not found."}`, 0)
			f.expectDisconnect()
		})
		cfg.Misbehave.PollOperationID = other
		_, err := Provision(ctxT(t), cfg)
		var se *StatusError
		if !errors.As(err, &se) || se.Status != 404 {
			t.Errorf("err = %v, want the 404", err)
		}
		h.wait()
		if polled != other {
			t.Errorf("polled operationId %q, want %q (not the given %q)", polled, other, opID)
		}
	})
	t.Run("PollAfterAssigned", func(t *testing.T) {
		var polled []string
		h, cfg := serve(t, func(f *fake) {
			f.accept()
			f.registered(0)
			for range 2 {
				p, r := f.request(dps.Poll)
				polled = append(polled, r.OperationID)
				f.puback(p)
				f.answer(200, r.RID, -1, assignedOp, 0)
			}
			f.expectDisconnect()
		})
		cfg.Misbehave.PollAfterAssigned = true
		res, err := Provision(ctxT(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		h.wait()
		if !slices.Equal(polled, []string{opID, opID}) || res.Polls != 2 {
			t.Errorf("polled %q (Result.Polls %d), want %q twice: once more after the 200", polled, res.Polls, opID)
		}
	})
	t.Run("PollInterval", func(t *testing.T) {
		h, cfg := serve(t, func(f *fake) {
			f.accept()
			f.registered(3)
			p, r := f.request(dps.Poll)
			f.puback(p)
			f.answer(202, r.RID, 3, assigningReg, 0)
			p, r = f.request(dps.Poll)
			f.puback(p)
			f.answer(200, r.RID, -1, assignedOp, 0)
			f.expectDisconnect()
		})
		cfg.Misbehave.PollInterval = 50 * time.Millisecond
		if _, err := Provision(ctxT(t), cfg); err != nil {
			t.Fatal(err)
		}
		h.wait()
		if got := h.clock.Sleeps(); !slices.Equal(got, []time.Duration{50 * time.Millisecond, 50 * time.Millisecond}) {
			t.Errorf("sleeps = %v, want the poll interval, not retry-after 3 s", got)
		}
	})
	t.Run("RetryAfter401", func(t *testing.T) {
		var connects [2]*packets.Connect
		script := func(n int) func(f *fake) {
			return func(f *fake) {
				connects[n] = f.accept()
				p, r := f.request(dps.Register)
				f.puback(p)
				f.answer(401, r.RID, -1, `{"errorCode":401002,"message":"Unauthorized"}`, 0)
				if n == 1 {
					f.expectDisconnect()
				}
			}
		}
		h1, cfg := serve(t, script(0))
		h2, cfg2 := serve(t, script(1))
		dials := 0
		first := cfg.DialFunc
		cfg.DialFunc = func(ctx context.Context) (net.Conn, error) {
			dials++
			if dials == 1 {
				return first(ctx)
			}
			return cfg2.DialFunc(ctx)
		}
		cfg.Misbehave.RetryAfter401 = true
		_, err := Provision(ctxT(t), cfg)
		var se *StatusError
		if !errors.As(err, &se) || se.Status != 401 {
			t.Fatalf("err = %v, want the 401", err)
		}
		h1.wait()
		h2.wait()
		if dials != 2 {
			t.Fatalf("dialed %d times, want 2", dials)
		}
		if connects[0] == nil || connects[1] == nil || string(connects[0].Username) != string(connects[1].Username) || string(connects[0].Password) != string(connects[1].Password) {
			t.Errorf("CONNECTs %s and %s: want the same credentials", Describe(connects[0]), Describe(connects[1]))
		}
	})
	t.Run("AcceptAnyServerCert", func(t *testing.T) {
		for _, accept := range []bool{false, true} {
			t.Run(fmt.Sprint(accept), func(t *testing.T) {
				srvTLS := testClientTLS(t, "not-the-host") // self-signed, for another name
				ln, err := tls.Listen("tcp", "127.0.0.1:0", srvTLS)
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				served := make(chan error, 1)
				go func() {
					c, err := ln.Accept()
					if err != nil {
						served <- err
						return
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(fakeWait))
					if _, err := packets.ReadPacket(c, packets.DecodeOptions{}); err != nil {
						served <- err
						return
					}
					served <- packets.WritePacket(c, &packets.Connack{})
				}()
				target, err := transport.ParseTarget("mqtts://" + ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				cfg := Config{Target: target, Dial: transport.DialOptions{TLSConfig: &tls.Config{ServerName: "localhost"}},
					IDScope: "0neFEEDC0DE", RegistrationID: "dev-1", SymmetricKey: testKey, ResponseTimeout: fakeWait}
				cfg.Misbehave.AcceptAnyServerCert = accept
				s, err := Connect(ctxT(t), cfg)
				if s != nil {
					s.Close()
				}
				serr := <-served
				switch {
				case accept && (err != nil || serr != nil):
					t.Errorf("Connect: %v; server: %v", err, serr)
				case !accept && err == nil:
					t.Errorf("Connect to a server with a bad certificate succeeded")
				}
			})
		}
	})
}

// TestNextAfterCloseWithPacketInHand: Close while the reader holds a
// packet it cannot queue (the queue is full) must still make Next fail
// with net.ErrClosed once the queue is drained, never return (nil, nil).
func TestNextAfterCloseWithPacketInHand(t *testing.T) {
	sent := make(chan struct{})
	h, cfg := serve(t, func(f *fake) {
		expect[*packets.Connect](f)
		f.send(&packets.Connack{})
		for i := range 17 { // 16 queued, one in the reader's hand
			f.answer(202, fmt.Sprint(i), -1, "{}", 0)
		}
		close(sent)
	})
	ctx := ctxT(t)
	s, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; len(s.in) < cap(s.in); i++ {
		if i == 500 {
			t.Fatalf("queue holds %d of %d packets", len(s.in), cap(s.in))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The fake's writes end only when the reader has read them (net.Pipe
	// is synchronous): once the fake has sent all 17, the reader holds the
	// 17th packet, which the full queue cannot take.
	select {
	case <-sent:
	case <-ctx.Done():
		t.Fatal("the fake did not send its 17 answers")
	}
	s.Close()
	h.wait()
	for i := 0; ; i++ {
		if i > cap(s.in)+1 {
			t.Fatal("Next kept returning packets after Close")
		}
		p, err := s.Next(ctx)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("Next after Close = %v, want net.ErrClosed", err)
			}
			break
		}
		if p == nil {
			t.Fatalf("Next after Close = (nil, nil) after %d packets", i)
		}
	}
}
