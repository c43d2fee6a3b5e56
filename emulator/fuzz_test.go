package emulator

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/packets/packettest"
)

// fuzzConnect is the CONNECT FuzzSession sends before the input when
// withConnect is set (a fixed token: the fuzz target must not depend on the
// clock).
var fuzzConnect = func() []byte {
	c := &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, KeepAlive: 60,
		ClientID: []byte("dev-1"), Username: []byte(dps.Username{IDScope: testScope, RegistrationID: "dev-1"}.String()),
		Password: []byte("SharedAccessSignature sr=0ne00000001%2fregistrations%2fdev-1&sig=AAAA&se=4102444800&skn=registration")}
	b, _ := c.Append(nil)
	return b
}()

func appendPackets(ps ...packets.Packet) []byte {
	var b []byte
	for _, p := range ps {
		b, _ = packets.Encode(b, p, packets.EncodeOptions{AllowInvalid: true})
	}
	return b
}

// FuzzSession feeds arbitrary bytes to a session, after a valid CONNECT or
// instead of one. The session must not panic, must end once the device has
// sent everything and gone, and the server must close cleanly (TestMain
// checks for leaked goroutines when the seeds run as tests).
func FuzzSession(f *testing.F) {
	f.Add(true, []byte{})
	f.Add(true, appendPackets(
		&packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 2}}},
		&packets.Publish{QoS: 1, PacketID: 2, Topic: []byte(dps.RegisterTopic("1")), Payload: []byte(`{"registrationId":"dev-1"}`)},
		&packets.Publish{QoS: 0, Topic: []byte(dps.PollTopic("2", "4.0000000000000000.00000000-0000-4000-8000-000000000000"))},
		&packets.Pingreq{}, &packets.Unsubscribe{PacketID: 3, Filters: [][]byte{[]byte("#")}}, &packets.Disconnect{}))
	f.Add(false, fuzzConnect)
	f.Add(false, mqtt5Connect(f))
	f.Add(true, []byte{0x30, 0xff, 0xff, 0xff, 0x7f})
	for _, v := range packettest.Vectors {
		f.Add(v.Kind != packettest.Valid || v.Packet == nil || v.Packet.Type() != packets.TypeConnect, v.Raw)
	}
	f.Fuzz(func(t *testing.T, withConnect bool, data []byte) {
		s, err := New(Config{
			backend:           newFakeBackend("dev-1"),
			InsecurePlainAddr: "127.0.0.1:0", // never started: sessions run on a pipe
			Faults:            []Fault{FaultAcceptBadSignature},
			Limits:            Limits{ConnectTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.serveSession(s.ctx, server, "pipe", nil, time.Time{})
		}()
		// The device leaves once the server has been quiet for a moment:
		// closing right after the input would race the server's answers
		// and end most inputs at a failed write before their packets were
		// handled.
		drained, active := make(chan struct{}), make(chan struct{}, 1)
		go func() {
			defer close(drained)
			buf := make([]byte, 4096)
			for {
				if _, err := client.Read(buf); err != nil {
					return
				}
				select {
				case active <- struct{}{}:
				default:
				}
			}
		}()
		_ = client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if withConnect {
			_, _ = client.Write(fuzzConnect)
		}
		_, _ = client.Write(data)
		const quiet = 3 * time.Millisecond
		idle := time.NewTimer(quiet)
	wait:
		for range 1000 {
			select {
			case <-drained:
				break wait
			case <-done:
				break wait
			case <-active:
				idle.Reset(quiet)
			case <-idle.C:
				break wait
			}
		}
		idle.Stop()
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("session still running 10 s after the device left")
		}
		<-drained
	})
}

// TestBadPacketsAfterConnectClose sends every malformed and invalid vector
// of packettest after a valid CONNECT: the server must close the connection
// (MQTT-4.8.0-1), never answer or hang.
func TestBadPacketsAfterConnectClose(t *testing.T) {
	_, addr := startPlain(t, Config{})
	for _, v := range packettest.OfKind(packettest.Malformed, packettest.Invalid) {
		t.Run(v.Name, func(t *testing.T) {
			c := dialPlain(t, addr)
			c.connack(connectPacket(t, "dev-1"))
			if err := c.sendRaw(v.Raw); err != nil {
				t.Fatal(err)
			}
			// A truncated vector leaves the server waiting for the rest;
			// the PINGREQ completes it (as garbage) or is read after it.
			_ = c.sendRaw([]byte{0xc0, 0x00})
			for range 3 {
				p, err := c.read()
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatal("connection still open after 5 s")
				}
				if err != nil {
					return // closed
				}
				if p.Type() != packets.TypeSuback && p.Type() != packets.TypeUnsuback && p.Type() != packets.TypePingresp {
					t.Fatalf("answered %v", p.Type())
				}
			}
			t.Fatal("connection still open")
		})
	}
}
