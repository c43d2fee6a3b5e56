package emulator

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
)

// liveConns is the number of MQTT connections the server tracks.
func (s *Server) liveConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// waitOpDone waits until operation id of regID has finished its assignment.
func waitOpDone(t testing.TB, s *Server, id, regID string) {
	t.Helper()
	waitFor(t, "operation "+id+" to finish", func() bool {
		st, ok := s.ops.lookup(id, regID)
		return ok && st.done
	})
}

// waitFor polls cond every 5 ms for up to 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for range 2000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestConnectByteAtATime(t *testing.T) {
	_, addr := startPlain(t, Config{})
	c := dialPlain(t, addr)
	c.conn.(*net.TCPConn).SetNoDelay(true)
	b, _ := connectPacket(t, "dev-1").Append(nil)
	for i := range b {
		if err := c.sendRaw(b[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if ack, ok := c.next().(*packets.Connack); !ok || ack.ReturnCode != 0 {
		t.Fatalf("CONNACK %+v", ack)
	}
}

func TestConnectTimeout(t *testing.T) {
	for _, tt := range []struct {
		name string
		send []byte
	}{
		{"nothing sent", nil},
		{"half a CONNECT (slowloris)", func() []byte { b, _ := connectPacket(t, "dev-1").Append(nil); return b[:10] }()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, addr := startPlain(t, Config{Limits: Limits{ConnectTimeout: 100 * time.Millisecond}})
			c := dialPlain(t, addr)
			if tt.send != nil {
				if err := c.sendRaw(tt.send); err != nil {
					t.Fatal(err)
				}
			}
			c.expectClosed()
			waitFor(t, "the connection to be released", func() bool { return s.liveConns() == 0 })
		})
	}
}

// TestKeepAliveTimeout: a device silent for 1.5 × keep-alive is
// disconnected then, not before and not much later (MQTT-3.1.2-24); one
// that pings every 1.2 × keep-alive (late, but within 1.5 ×) stays. The
// test once only checked that the silent one was closed within 7 s, so a
// limit of 1 × or 4 × keep-alive passed it. Keep-alive is 2 s, not 1 s,
// so that the conforming side of each bound has half a second or more to
// spare on a loaded machine (-race, 2 cores): the pinger's 2.4 s against
// the 3 s limit, the silent device's 3 s against the lower bound 2.5 s.
func TestKeepAliveTimeout(t *testing.T) {
	_, addr := startPlain(t, Config{})
	silent := dialPlain(t, addr)
	cp := connectPacket(t, "dev-1")
	cp.KeepAlive = 2
	silent.connack(cp)
	silentSince := time.Now()
	closedAfter := make(chan time.Duration, 1)
	go func() {
		_ = silent.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var b [1]byte
		_, err := silent.conn.Read(b[:])
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			closedAfter <- -1
			return
		}
		closedAfter <- time.Since(silentSince)
	}()
	pinger := dialPlain(t, addr)
	cp2 := connectPacket(t, "dev-2")
	cp2.KeepAlive = 2
	pinger.connack(cp2)
	for range 2 {
		time.Sleep(2400 * time.Millisecond)
		pinger.send(&packets.Pingreq{})
		if got := pinger.next(); got.Type() != packets.TypePingresp {
			t.Fatalf("got %v", got.Type())
		}
	}
	switch d := <-closedAfter; {
	case d < 0:
		t.Fatal("a device silent for 10 s with keep-alive 2 s is still connected")
	// Generous margins: the CONNACK reaches the test after the server
	// armed its deadline, and a loaded machine (-race, 2 cores) fires
	// timers late; 1 × is caught by the pinger, 3 × by the upper bound.
	case d < 2500*time.Millisecond || d > 5800*time.Millisecond:
		t.Fatalf("a device silent with keep-alive 2 s was disconnected after %v, want 3 s", d)
	}
}

func TestIdleTimeoutWithKeepAliveZero(t *testing.T) {
	_, addr := startPlain(t, Config{Limits: Limits{IdleTimeout: 100 * time.Millisecond}})
	c := dialPlain(t, addr)
	cp := connectPacket(t, "dev-1")
	cp.KeepAlive = 0
	c.connack(cp)
	c.expectClosed()
}

func TestMaxConnections(t *testing.T) {
	s, addr := startPlain(t, Config{Limits: Limits{MaxConnections: 2}})
	a, b := dialPlain(t, addr), dialPlain(t, addr)
	a.connack(connectPacket(t, "dev-1"))
	b.connack(connectPacket(t, "dev-2"))
	third := dialPlain(t, addr)
	third.expectClosed()
	a.conn.Close()
	waitFor(t, "a slot to free", func() bool { return s.liveConns() < 2 })
	again := dialPlain(t, addr)
	if ack := again.connack(connectPacket(t, "dev-3")); ack.ReturnCode != 0 {
		t.Fatalf("CONNACK %v after a slot freed", ack.ReturnCode)
	}
}

func TestMaxPacketSizeConfigurable(t *testing.T) {
	_, addr := startPlain(t, Config{Limits: Limits{MaxPacketSize: 512}})
	c := dialPlain(t, addr)
	c.ready("dev-1")
	if a := c.call(dps.RegisterTopic("1"), `{"payload":{"a":"`+string(make([]byte, 0))+`"}}`); a.resp.Status != 202 {
		t.Fatalf("small register: %s", a.topic)
	}
	big := make([]byte, 600)
	for i := range big {
		big[i] = 'a'
	}
	c.send(&packets.Publish{Topic: []byte(dps.RegisterTopic("2")), Payload: big})
	c.expectClosed()
}

// TestMassDisconnect drops most connections abruptly, some in the middle of
// a packet, while the others keep being served.
func TestMassDisconnect(t *testing.T) {
	ids := []string{"keep-0", "keep-1", "keep-2"}
	var drop []string
	for i := range 40 {
		drop = append(drop, "drop-"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	b := newFakeBackend(append(ids, drop...)...)
	s, addr := startPlain(t, Config{backend: b})
	var keep []*testClient
	for _, id := range ids {
		c := dialPlain(t, addr)
		c.ready(id)
		keep = append(keep, c)
	}
	var wg sync.WaitGroup
	for i, id := range drop {
		wg.Go(func() {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			c := newTestClient(t, conn)
			pkt, _ := connectPacket(t, id).Append(nil)
			switch i % 3 {
			case 0: // mid-CONNECT
				_ = c.sendRaw(pkt[:len(pkt)/2])
			case 1: // after CONNECT, mid-PUBLISH
				_ = c.sendRaw(pkt)
				pub, _ := (&packets.Publish{Topic: []byte(dps.RegisterTopic("1")), Payload: []byte("{}")}).Append(nil)
				_ = c.sendRaw(pub[:5])
			default: // after a registration
				_ = c.sendRaw(pkt)
				pub, _ := (&packets.Publish{Topic: []byte(dps.RegisterTopic("1"))}).Append(nil)
				_ = c.sendRaw(pub)
			}
			conn.(*net.TCPConn).SetLinger(0) // RST, not FIN
			conn.Close()
		})
	}
	wg.Wait()
	for i, c := range keep {
		if a := c.call(dps.RegisterTopic("k"), ""); a.resp.Status != 202 {
			t.Fatalf("%s: register after the mass disconnect: %s", ids[i], a.topic)
		}
	}
	waitFor(t, "dropped connections to be released", func() bool { return s.liveConns() == len(keep) })
}

// TestCloseWithActiveWork closes the server while connections are open and
// an assignment is blocked; Close must return and leave no goroutine
// (TestMain checks leaks).
func TestCloseWithActiveWork(t *testing.T) {
	b := newFakeBackend("dev-1", "dev-2")
	b.gate = make(chan struct{}) // never opened: Assign waits for the server context
	s, addr := startPlain(t, Config{backend: b})
	c := dialPlain(t, addr)
	c.ready("dev-1")
	c.call(dps.RegisterTopic("1"), "")
	idle := dialPlain(t, addr)
	idle.connack(connectPacket(t, "dev-2"))
	half := dialPlain(t, addr)
	_ = half.sendRaw([]byte{0x10})
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	c.expectClosed()
	idle.expectClosed()
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

func TestStartContextCancelCloses(t *testing.T) {
	s, err := New(Config{backend: newFakeBackend("dev-1"), InsecurePlainAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c := dialPlain(t, s.Ready().Plain)
	c.connack(connectPacket(t, "dev-1"))
	cancel()
	c.expectClosed()
	s.Close() // waits for the close started by cancel
	if _, err := net.DialTimeout("tcp", s.Ready().Plain, time.Second); err == nil {
		t.Fatal("listener still accepting after the context was cancelled")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	fb := newFakeBackend()
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"no registry", Config{InsecurePlainAddr: "127.0.0.1:0"}},
		{"TLS listener without TLSConfig", Config{backend: fb, MQTTAddr: "127.0.0.1:0"}},
		{"no MQTT listener", Config{backend: fb, AdminAddr: "127.0.0.1:0"}},
		{"negative retry-after", Config{backend: fb, InsecurePlainAddr: "127.0.0.1:0", RetryAfter: -time.Second}},
		{"unknown profile", Config{backend: fb, InsecurePlainAddr: "127.0.0.1:0", Profile: "dps-1999"}},
	} {
		if _, err := New(tt.cfg); err == nil {
			t.Errorf("%s: New accepted it", tt.name)
		}
	}
	// A port in use is an error naming the address.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := New(Config{backend: fb, InsecurePlainAddr: l.Addr().String(), AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil {
		s.Close()
		t.Fatal("Start on a busy port succeeded")
	}
	s.Close()
}

// TestIdleTimeoutUnderAcceptMQTT5: a connection the accept-mqtt5 fault
// accepts (its CONNECT unparsed, so no keep-alive) still ends after
// IdleTimeout; it once waited for its next packet without a deadline.
func TestIdleTimeoutUnderAcceptMQTT5(t *testing.T) {
	_, addr := startPlain(t, Config{Faults: []Fault{FaultAcceptMQTT5}, Limits: Limits{IdleTimeout: 100 * time.Millisecond}})
	c := dialPlain(t, addr)
	if err := c.sendRaw(mqtt5Connect(t)); err != nil {
		t.Fatal(err)
	}
	if ack, ok := c.next().(*packets.Connack); !ok || ack.ReturnCode != 0 {
		t.Fatalf("CONNACK %+v, want 0 under accept-mqtt5", ack)
	}
	c.expectClosed()
}

// adminFake is a backend with an admin API that reads the whole body.
type adminFake struct{ *fakeBackend }

func (adminFake) AdminHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "reading the body failed", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// TestAdminSlowClient: an admin client that sends its headers and then
// never its body is cut off after the admin read timeout; it held its
// connection and a handler as long as it liked.
func TestAdminSlowClient(t *testing.T) {
	old := adminReadTimeout
	adminReadTimeout = 300 * time.Millisecond
	t.Cleanup(func() { adminReadTimeout = old })
	s, err := New(Config{backend: adminFake{newFakeBackend()}, InsecurePlainAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, tc := range []struct{ name, req string }{
		{"body never sent", "PUT /enrollments/d HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"},
		{"body cut short", "PUT /enrollments/d HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"a\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(s.Ready().Admin, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			start := time.Now()
			_, err = io.Copy(io.Discard, c)
			if err != nil {
				t.Fatalf("the server kept the connection open: %v after %v", err, time.Since(start))
			}
		})
	}
}
