package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator/registry"
	"github.com/dps-conform/dps-conform/packets"
)

const (
	testScope = "0ne00000001"
	testKey   = "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg="
	// testSecondaryKey is the secondary key of the devices in
	// fakeBackend.secondary.
	testSecondaryKey = "c2Vjb25kYXJ5LWtleS1vZi10aGUtZmFrZS1iYWNrZW5k"
)

// fakeBackend judges SAS tokens with the dps package against one key per
// device and assigns every device to one hub. Assign can be held back with
// gate to make operations stay in progress.
type fakeBackend struct {
	keys map[string]string // registration id (lower case) → key
	// secondary holds the secondary key of some devices (registration id,
	// lower case), tried after keys' (Part A §4).
	secondary map[string]string

	mu      sync.Mutex
	gate    chan struct{} // when non-nil, Assign waits for it to close
	delay   time.Duration // Assign takes this long from its call
	assigns int
	fail    error // Assign returns it when set
	// inline makes AssignMayWait false: Assign is then taken as CPU work
	// only, which the emulator runs inline under retry-after 0.
	inline  bool
	lastOpt registry.AttestOptions
	lastAPI string // Credentials.APIVersion of the last Attest

	disabled       map[string]bool // registration ids (lower case) whose enrollment is disabled; set before use
	ignoreDisabled map[string]bool // AttestOptions.IgnoreDisabled of the last Attest, by id
}

func newFakeBackend(ids ...string) *fakeBackend {
	b := &fakeBackend{keys: map[string]string{}}
	for _, id := range ids {
		b.keys[strings.ToLower(id)] = testKey
	}
	return b
}

func (b *fakeBackend) IDScope() string { return testScope }

func (b *fakeBackend) Attest(ctx context.Context, c registry.Credentials, o registry.AttestOptions) (*registry.Attestation, error) {
	b.mu.Lock()
	b.lastOpt, b.lastAPI = o, c.APIVersion
	if b.ignoreDisabled == nil {
		b.ignoreDisabled = map[string]bool{}
	}
	b.ignoreDisabled[strings.ToLower(c.RegistrationID)] = o.IgnoreDisabled
	b.mu.Unlock()
	key, ok := b.keys[strings.ToLower(c.RegistrationID)]
	if !ok {
		return nil, &registry.AttestError{ErrorCode: 401000, Message: "Unauthorized", Err: errors.New("unknown device")}
	}
	tok, err := dps.ParseSASToken(string(c.Password))
	if err != nil && o.AllowNoExpiry {
		if t, ok := registry.ParseSASTokenWithoutExpiry(string(c.Password)); ok {
			tok, err = t, nil
		}
	}
	if err != nil {
		return nil, &registry.AttestError{ErrorCode: 401000, Message: "Unauthorized", Err: err}
	}
	v := dps.Verifier{}
	if o.NoSkew {
		v.Skew = -1
	}
	keys := []string{key}
	if k, ok := b.secondary[strings.ToLower(c.RegistrationID)]; ok && !o.PrimaryOnly {
		keys = append(keys, k)
	}
	if err := v.Verify(tok, testScope, c.RegistrationID, keys...); err != nil {
		switch {
		case errors.Is(err, dps.ErrSignatureMismatch) && o.IgnoreSignature,
			errors.Is(err, dps.ErrTokenExpired) && o.IgnoreExpiry,
			errors.Is(err, dps.ErrResourceMismatch) && o.IgnoreResource,
			errors.Is(err, dps.ErrInvalidSASToken) && o.IgnoreKeyName:
		default:
			return nil, &registry.AttestError{ErrorCode: 401000, Message: "Unauthorized", Err: err}
		}
	}
	return &registry.Attestation{RegistrationID: c.RegistrationID, Kind: registry.SymmetricKey}, nil
}

func (b *fakeBackend) AssignMayWait(*registry.Attestation) bool { return !b.inline }

func (b *fakeBackend) Assign(ctx context.Context, a *registry.Attestation, payload json.RawMessage) (dps.DeviceRegistrationResult, error) {
	b.mu.Lock()
	gate, fail, delay := b.gate, b.fail, b.delay
	b.assigns++
	disabled := b.disabled[strings.ToLower(a.RegistrationID)] && !b.ignoreDisabled[strings.ToLower(a.RegistrationID)]
	b.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return dps.DeviceRegistrationResult{}, ctx.Err()
		}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return dps.DeviceRegistrationResult{}, ctx.Err()
		}
	}
	if fail != nil {
		return dps.DeviceRegistrationResult{}, fail
	}
	if disabled {
		return dps.DeviceRegistrationResult{RegistrationID: a.RegistrationID, Status: dps.StatusDisabled}, nil
	}
	return dps.DeviceRegistrationResult{
		RegistrationID:         a.RegistrationID,
		CreatedDateTimeUTC:     "2020-04-10T03:11:13.0276997Z",
		AssignedHub:            "hub1.azure-devices.net",
		DeviceID:               a.RegistrationID,
		Status:                 dps.StatusAssigned,
		Substatus:              dps.SubstatusInitialAssignment,
		LastUpdatedDateTimeUTC: "2020-04-10T03:11:13.2096201Z",
		ETag:                   "IjYxMDA4ZDQ2LTAwMDAtMDEwMC0wMDAwLTVlOGZlM2QxMDAwMCI=",
		SymmetricKey:           &dps.SymmetricKeyRegistrationResult{},
		Payload:                payload,
	}, nil
}

// fakeClock is a settable clock for operations and throttling.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// startPlain starts a server with only the plaintext MQTT listener and the
// fake backend (unless cfg.backend is set), closed at cleanup.
func startPlain(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.backend == nil && cfg.Registry == nil {
		cfg.backend = newFakeBackend("dev-1", "dev-2", "dev-3")
	}
	cfg.InsecurePlainAddr = "127.0.0.1:0"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, s.Ready().Plain
}

// testClient is a raw MQTT client built from packets.
type testClient struct {
	t     testing.TB
	conn  net.Conn
	r     *packets.Reader
	pid   uint16
	regID string // of the last CONNECT sent with connack
	// readWait bounds each read; zero means 5 s.
	readWait time.Duration
}

func dialPlain(t testing.TB, addr string) *testClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return newTestClient(t, conn)
}

func newTestClient(t testing.TB, conn net.Conn) *testClient {
	return &testClient{t: t, conn: conn, r: packets.NewReader(conn, packets.DecodeOptions{Lenient: true})}
}

func (c *testClient) send(p packets.Packet) {
	c.t.Helper()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := packets.WritePacket(c.conn, p); err != nil {
		c.t.Fatalf("send %v: %v", p.Type(), err)
	}
}

func (c *testClient) sendRaw(b []byte) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.conn.Write(b)
	return err
}

// next reads one packet (a clone), failing the test after 5 s.
func (c *testClient) next() packets.Packet {
	c.t.Helper()
	p, err := c.read()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return p
}

func (c *testClient) read() (packets.Packet, error) {
	wait := c.readWait
	if wait == 0 {
		wait = 5 * time.Second
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	p, err := c.r.ReadPacket()
	if p != nil {
		p = p.Clone()
	}
	var v packets.Violations
	if errors.As(err, &v) {
		err = nil
	}
	return p, err
}

// expectClosed fails unless the server closes the connection (EOF or
// reset) before sending another packet.
func (c *testClient) expectClosed() {
	c.t.Helper()
	p, err := c.read()
	if err == nil {
		c.t.Fatalf("got %v (%+v), want the connection closed", p.Type(), p)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatalf("connection still open after 5 s, want it closed")
	}
	if !errors.Is(err, io.EOF) && !isReset(err) {
		c.t.Logf("closed with %v", err)
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "closed"))
}

// connectPacket is a DPS CONNECT for id with a valid SAS token.
func connectPacket(t testing.TB, id string) *packets.Connect {
	return &packets.Connect{
		ProtocolName:  []byte("MQTT"),
		ProtocolLevel: 4,
		CleanSession:  true,
		KeepAlive:     60,
		ClientID:      []byte(id),
		Username:      []byte(dps.Username{IDScope: testScope, RegistrationID: id}.String()),
		Password:      []byte(sasToken(t, testScope, id, testKey, time.Now().Add(time.Hour))),
	}
}

func sasToken(t testing.TB, scope, id, key string, exp time.Time) string {
	t.Helper()
	tok, err := dps.BuildSASToken(dps.SASOptions{IDScope: scope, RegistrationID: id, Key: key, Expiry: exp})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// connack sends c and returns the CONNACK.
func (c *testClient) connack(p *packets.Connect) *packets.Connack {
	c.t.Helper()
	c.regID = string(p.ClientID)
	c.send(p)
	got := c.next()
	ack, ok := got.(*packets.Connack)
	if !ok {
		c.t.Fatalf("got %v, want CONNACK", got.Type())
	}
	return ack
}

// ready connects id and subscribes to the response filter at QoS 1.
func (c *testClient) ready(id string) {
	c.t.Helper()
	if ack := c.connack(connectPacket(c.t, id)); ack.ReturnCode != 0 || ack.SessionPresent {
		c.t.Fatalf("CONNACK %+v, want accepted without session", ack)
	}
	c.subscribe(1, dps.SubscribeFilter)
}

func (c *testClient) subscribe(qos byte, filters ...string) *packets.Suback {
	c.t.Helper()
	c.pid++
	sub := &packets.Subscribe{PacketID: c.pid}
	for _, f := range filters {
		sub.Subscriptions = append(sub.Subscriptions, packets.Subscription{Filter: []byte(f), QoS: qos})
	}
	c.send(sub)
	got := c.next()
	sa, ok := got.(*packets.Suback)
	if !ok || sa.PacketID != c.pid {
		c.t.Fatalf("got %v %+v, want SUBACK %d", got.Type(), got, c.pid)
	}
	return sa
}

// request publishes to topic at qos and returns the packets that follow up
// to and including the answer PUBLISH (PUBACK first when qos is 1).
func (c *testClient) request(topic string, qos byte, body string) (acks []packets.Packet, ans *packets.Publish) {
	c.t.Helper()
	pub := &packets.Publish{QoS: qos, Topic: []byte(topic), Payload: []byte(body)}
	if qos > 0 {
		c.pid++
		pub.PacketID = c.pid
	}
	c.send(pub)
	for range 4 {
		got := c.next()
		if p, ok := got.(*packets.Publish); ok {
			if p.QoS == 1 {
				c.send(&packets.Puback{PacketID: p.PacketID})
			}
			return acks, p
		}
		acks = append(acks, got)
	}
	c.t.Fatalf("no answer PUBLISH after %v", acks)
	return nil, nil
}

// dpsAnswer is a parsed answer.
type dpsAnswer struct {
	resp   dps.Response
	status dps.RegistrationOperationStatus
	err    dps.ErrorBody
	raw    string
	topic  string
}

func (c *testClient) call(topic string, body string) dpsAnswer {
	c.t.Helper()
	_, p := c.request(topic, 1, body)
	return parseAnswer(c.t, p)
}

func parseAnswer(t testing.TB, p *packets.Publish) dpsAnswer {
	t.Helper()
	r, err := dps.ParseResponseTopic(string(p.Topic))
	if err != nil {
		t.Fatalf("answer topic %q: %v", p.Topic, err)
	}
	a := dpsAnswer{resp: r, raw: string(p.Payload), topic: string(p.Topic)}
	if r.Status >= 300 {
		if len(p.Payload) > 0 {
			if err := json.Unmarshal(p.Payload, &a.err); err != nil {
				t.Fatalf("error body %q: %v", p.Payload, err)
			}
		}
		return a
	}
	if err := json.Unmarshal(p.Payload, &a.status); err != nil {
		t.Fatalf("status body %q: %v", p.Payload, err)
	}
	return a
}

func dpsResult(id string) dps.DeviceRegistrationResult {
	return dps.DeviceRegistrationResult{RegistrationID: id, Status: dps.StatusAssigned}
}
