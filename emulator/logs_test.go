package emulator

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
)

// lockedBuffer is a bytes.Buffer for concurrent log writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogsRedactSecrets drives good and bad flows with debug logging and
// checks no password, signature or key reaches the log.
func TestLogsRedactSecrets(t *testing.T) {
	var logs lockedBuffer
	s, addr := startPlain(t, Config{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	good := connectPacket(t, "dev-1")
	c := dialPlain(t, addr)
	c.connack(good)
	c.subscribe(1, dps.SubscribeFilter)
	c.call(dps.RegisterTopic("1"), "")

	bad := connectPacket(t, "dev-2")
	bad.Password = []byte(sasToken(t, testScope, "dev-2", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", time.Now().Add(-time.Hour)))
	c2 := dialPlain(t, addr)
	c2.connack(bad)
	c2.subscribe(1, dps.SubscribeFilter)
	if a := c2.call(dps.RegisterTopic("1"), ""); a.resp.Status != 401 {
		t.Fatalf("bad token answered %d", a.resp.Status)
	}
	// A token put in the username must not be echoed either.
	c3 := dialPlain(t, addr)
	u := connectPacket(t, "dev-3")
	u.Username = u.Password
	c3.connack(u)
	s.Close()

	out := logs.String()
	if !strings.Contains(out, "registration accepted") || !strings.Contains(out, "attestation failed") {
		t.Fatalf("expected log lines missing:\n%s", out)
	}
	for _, secret := range []string{string(good.Password), string(bad.Password), "sig=", testKey, "SharedAccessSignature"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
}

// TestNoStateAcrossConnections (dps-2023, CleanSession 0): a subscription
// does not survive the connection, so answers on a new connection need a new
// SUBSCRIBE (Part A §1, §2).
func TestNoStateAcrossConnections(t *testing.T) {
	_, addr := startPlain(t, Config{Profile: ProfileDPS2023})
	cp := connectPacket(t, "dev-1")
	cp.CleanSession = false
	c := dialPlain(t, addr)
	if ack := c.connack(cp); ack.ReturnCode != 0 || ack.SessionPresent {
		t.Fatalf("CONNACK %+v", ack)
	}
	c.subscribe(1, dps.SubscribeFilter)
	c.send(&packets.Disconnect{})
	c.expectClosed()

	c = dialPlain(t, addr)
	if ack := c.connack(cp); ack.SessionPresent {
		t.Fatal("session-present 1 on reconnect")
	}
	c.send(&packets.Publish{QoS: 1, PacketID: 4, Topic: []byte(dps.RegisterTopic("1"))})
	if got := c.next(); got.Type() != packets.TypePuback {
		t.Fatalf("got %v", got.Type())
	}
	c.send(&packets.Pingreq{})
	if got := c.next(); got.Type() != packets.TypePingresp {
		t.Fatalf("got %v (%+v): an answer was delivered without a subscription on this connection", got.Type(), got)
	}
}

// TestPollBodiesIgnored: the C SDK repeats the registration JSON as the
// poll body, Node and Python send " ", others nothing (§5).
func TestPollBodiesIgnored(t *testing.T) {
	_, addr := startPlain(t, Config{})
	c := dialPlain(t, addr)
	c.ready("dev-1")
	op := c.call(dps.RegisterTopic("1"), "").status.OperationID
	for _, body := range []string{"", " ", `{"registrationId":"dev-1"}`, "not json"} {
		if a := c.call(dps.PollTopic("2", op), body); a.resp.Status != 200 && a.resp.Status != 202 {
			t.Fatalf("poll with body %q: %s %s", body, a.topic, a.raw)
		}
	}
}

// TestPollAttested: a poll on a connection with bad credentials is 401 and
// closes, like a register.
func TestPollAttested(t *testing.T) {
	_, addr := startPlain(t, Config{})
	c := dialPlain(t, addr)
	cp := connectPacket(t, "dev-1")
	cp.Password = []byte("SharedAccessSignature sr=x&sig=AAAA&se=1")
	c.connack(cp)
	c.subscribe(1, dps.SubscribeFilter)
	if a := c.call(dps.PollTopic("1", "4.0000000000000000.00000000-0000-4000-8000-000000000000"), ""); a.resp.Status != 401 {
		t.Fatalf("poll answered %s", a.topic)
	}
	c.expectClosed()
}

// TestLogsNameTheLimit: a 409 or 429 answer is logged at the default level
// with the device and which limit it hit; the two 429s (the device's poll
// window, the service's registration budget) share one error body, so the
// log is where an operator tells them apart.
func TestLogsNameTheLimit(t *testing.T) {
	var logs lockedBuffer
	_, addr := startPlain(t, Config{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		RetryAfter: time.Hour, Limits: Limits{PollsPerWindow: 1, RegistrationsPerMinute: 2}})
	c := dialPlain(t, addr)
	c.connack(connectPacket(t, "dev-1"))
	c.subscribe(1, dps.SubscribeFilter)
	a := c.call(dps.RegisterTopic("1"), "")
	if a.resp.Status != 202 {
		t.Fatalf("register answered %d", a.resp.Status)
	}
	if a := c.call(dps.RegisterTopic("2"), ""); a.resp.Status != 409 {
		t.Fatalf("second register answered %d, want 409", a.resp.Status)
	}
	op := a.status.OperationID
	c.call(dps.PollTopic("3", op), "")
	if a := c.call(dps.PollTopic("4", op), ""); a.resp.Status != 429 {
		t.Fatalf("second poll answered %d, want 429", a.resp.Status)
	}
	c2 := dialPlain(t, addr)
	c2.connack(connectPacket(t, "dev-2"))
	c2.subscribe(1, dps.SubscribeFilter)
	if a := c2.call(dps.RegisterTopic("1"), ""); a.resp.Status != 429 {
		t.Fatalf("third register answered %d, want 429 (budget 2)", a.resp.Status)
	}
	out := logs.String()
	for _, want := range [][2]string{
		{"register refused: a registration of the device is in progress (409)", "registrationId=dev-1"},
		{"poll throttled: the device's polls per window are spent (429)", "registrationId=dev-1 polls=1 window=10s"},
		{"register throttled: the per-minute registration budget is spent (429)", "registrationId=dev-2 budget=2"},
	} {
		found := false
		for _, l := range strings.Split(out, "\n") {
			found = found || strings.Contains(l, "level=INFO msg=\""+want[0]) && strings.Contains(l, want[1])
		}
		if !found {
			t.Errorf("the log has no INFO line %q with %q:\n%s", want[0], want[1], out)
		}
	}
}

// TestLogsDeviceLeavingBeforeConnect: a device that closes its connection
// before (or in the middle of) CONNECT ended it, not the emulator: no INFO
// line "closed by the emulator" (TCP health checks and port probes would
// fill the log with them). A CONNECT timeout is the emulator's limit and
// stays at INFO.
func TestLogsDeviceLeavingBeforeConnect(t *testing.T) {
	var logs lockedBuffer
	s, addr := startPlain(t, Config{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Limits: Limits{ConnectTimeout: 200 * time.Millisecond}})
	dialPlain(t, addr).conn.Close() // nothing sent
	half := dialPlain(t, addr)
	b, err := connectPacket(t, "dev-1").Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := half.sendRaw(b[:5]); err != nil {
		t.Fatal(err)
	}
	half.conn.Close() // in the middle of CONNECT
	waitFor(t, "the connections to be released", func() bool { return s.liveConns() == 0 })
	if out := logs.String(); strings.Contains(out, "closed by the emulator") {
		t.Errorf("a device leaving before CONNECT was logged as the emulator's close:\n%s", out)
	}
	slow := dialPlain(t, addr)
	slow.expectClosed() // the CONNECT timeout
	waitFor(t, "the CONNECT timeout to be logged", func() bool {
		return strings.Contains(logs.String(), `level=INFO msg="connection closed by the emulator"`) &&
			strings.Contains(logs.String(), "timeout")
	})
}
