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
