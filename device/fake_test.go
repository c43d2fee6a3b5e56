package device

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fake is the service side of a scripted in-test MQTT server over net.Pipe.
// Its methods run in the server goroutine and report failures with t.Errorf
// and by returning false, never t.Fatal.
type fake struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	ok   bool
}

const fakeWait = 5 * time.Second

// next reads the next client packet (bounded by fakeWait).
func (f *fake) next() packets.Packet {
	if !f.ok {
		return nil
	}
	f.conn.SetReadDeadline(time.Now().Add(fakeWait))
	p, err := packets.ReadPacket(f.r, packets.DecodeOptions{})
	if err != nil {
		f.t.Errorf("fake service: reading: %v", err)
		f.ok = false
		return nil
	}
	return p
}

// expect reads the next packet and checks its type.
func expect[T packets.Packet](f *fake) T {
	var zero T
	p := f.next()
	if p == nil {
		return zero
	}
	v, ok := p.(T)
	if !ok {
		f.t.Errorf("fake service: got %s, want %T", Describe(p), zero)
		f.ok = false
		return zero
	}
	return v
}

func (f *fake) send(p packets.Packet) {
	if !f.ok {
		return
	}
	f.conn.SetWriteDeadline(time.Now().Add(fakeWait))
	if err := packets.WritePacket(f.conn, p); err != nil {
		f.t.Errorf("fake service: writing %s: %v", Describe(p), err)
		f.ok = false
	}
}

// answer publishes a DPS response at QoS 1 with packet id pid (QoS 0 when
// pid is 0).
func (f *fake) answer(status int, rid string, retryAfter int, body string, pid uint16) {
	qos := byte(1)
	if pid == 0 {
		qos = 0
	}
	f.send(&packets.Publish{QoS: qos, PacketID: pid, Topic: []byte(dps.ResponseTopic(status, rid, retryAfter)), Payload: []byte(body)})
}

// accept reads CONNECT and accepts it, then SUBSCRIBE and grants QoS 1.
func (f *fake) accept() *packets.Connect {
	c := expect[*packets.Connect](f)
	f.send(&packets.Connack{})
	s := expect[*packets.Subscribe](f)
	if s != nil {
		f.send(&packets.Suback{PacketID: s.PacketID, ReturnCodes: []packets.SubackCode{packets.SubackMaxQoS1}})
	}
	return c
}

// request reads a request PUBLISH, PUBACKs it if QoS 1 (unless noAck), and
// returns it with its parsed topic.
func (f *fake) request(kind dps.RequestKind) (*packets.Publish, dps.Request) {
	p := expect[*packets.Publish](f)
	if p == nil {
		return nil, dps.Request{}
	}
	req, err := dps.ParseRequestTopic(string(p.Topic))
	if err != nil || req.Kind != kind {
		f.t.Errorf("fake service: request topic %q: kind %v, err %v; want %v", p.Topic, req.Kind, err, kind)
		f.ok = false
	}
	return p, req
}

func (f *fake) puback(p *packets.Publish) {
	if p != nil && p.QoS == 1 {
		f.send(&packets.Puback{PacketID: p.PacketID})
	}
}

// ackDelivery reads the client's PUBACK for a QoS 1 answer with id pid.
func (f *fake) ackDelivery(pid uint16) {
	a := expect[*packets.Puback](f)
	if a != nil && a.PacketID != pid {
		f.t.Errorf("fake service: client PUBACK id %d, want %d", a.PacketID, pid)
	}
}

// expectDisconnect reads DISCONNECT.
func (f *fake) expectDisconnect() { expect[*packets.Disconnect](f) }

// harness runs scripts as the service for one Provision or Connect call,
// one script per connection the client opens.
type harness struct {
	t      *testing.T
	done   chan struct{}
	clock  *fakeClock
	events []Event
	mu     sync.Mutex
}

// serve starts script on a fresh pipe; the returned Config dials the pipe
// and uses a fake clock.
func serve(t *testing.T, script func(f *fake)) (*harness, Config) {
	t.Helper()
	return serveSeq(t, script)
}

// serveSeq is serve for a client that connects len(scripts) times: its
// n-th dial gets a fresh pipe served by scripts[n-1], one after another.
func serveSeq(t *testing.T, scripts ...func(f *fake)) (*harness, Config) {
	t.Helper()
	h := &harness{t: t, done: make(chan struct{}), clock: newFakeClock()}
	conns := make(chan net.Conn) // the client ends, one per script
	stop := make(chan struct{})
	go func() {
		defer close(h.done)
		for _, script := range scripts {
			client, server := net.Pipe()
			select {
			case conns <- client:
			case <-stop:
				client.Close()
				server.Close()
				return
			}
			f := &fake{t: t, conn: server, r: bufio.NewReader(server), ok: true}
			script(f)
			// Drain until the client closes, so its writes never block.
			server.SetReadDeadline(time.Now().Add(fakeWait))
			io.Copy(io.Discard, server)
			server.Close()
		}
	}()
	var dialed []net.Conn
	var dialMu sync.Mutex
	t.Cleanup(func() {
		close(stop)
		dialMu.Lock()
		for _, c := range dialed {
			c.Close()
		}
		dialMu.Unlock()
		<-h.done
	})
	cfg := Config{
		IDScope:        "0neFEEDC0DE",
		RegistrationID: "dev-1",
		SymmetricKey:   testKey,
		DialFunc: func(ctx context.Context) (net.Conn, error) {
			dialMu.Lock()
			defer dialMu.Unlock()
			if len(dialed) == len(scripts) {
				return nil, fmt.Errorf("dialed %d times, the script has %d connections", len(dialed)+1, len(scripts))
			}
			select {
			case c := <-conns:
				dialed = append(dialed, c)
				return c, nil
			case <-time.After(fakeWait):
				return nil, errors.New("the fake service did not offer a connection")
			}
		},
		Now:   h.clock.Now,
		Sleep: h.clock.Sleep,
		Trace: func(e Event) {
			h.mu.Lock()
			h.events = append(h.events, e)
			h.mu.Unlock()
		},
		Backoff:         Backoff{Jitter: -1},
		ResponseTimeout: 5 * time.Second,
	}
	return h, cfg
}

// wait waits for the script to finish.
func (h *harness) wait() {
	h.t.Helper()
	select {
	case <-h.done:
	case <-time.After(2 * fakeWait):
		h.t.Fatal("fake service did not finish")
	}
}

const testKey = "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg="

// fakeClock is Now/Sleep for tests: Sleep records the duration asked and
// advances Now without waiting.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// answerLast takes the register (and, with onPoll, answers it 202 and
// takes the poll that follows) and answers the last request with status,
// retry-after (-1: none) and body.
func (f *fake) answerLast(onPoll bool, status, retryAfter int, body string) {
	kind := dps.Register
	if onPoll {
		f.registered(0)
		kind = dps.Poll
	}
	p, r := f.request(kind)
	f.puback(p)
	f.answer(status, r.RID, retryAfter, body, 0)
}

// registered takes the register, acknowledges it and answers it 202
// (assigningOp) with retryAfter (-1: none): the opening of most scripts.
func (f *fake) registered(retryAfter int) {
	p, r := f.request(dps.Register)
	f.puback(p)
	f.answer(202, r.RID, retryAfter, assigningOp, 0)
}
