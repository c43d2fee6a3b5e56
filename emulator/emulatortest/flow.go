package emulatortest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/transport"
)

// Dial connects to the emulator with scheme "mqtts", "wss" or "mqtt"
// (plaintext, needs Options.Plain), presenting cert when not nil. The
// connection is closed at the end of the test.
func (e *Emulator) Dial(t testing.TB, scheme string, cert *tls.Certificate) net.Conn {
	t.Helper()
	addr := map[string]string{"mqtts": e.MQTTAddr, "wss": e.WSAddr, "mqtt": e.PlainAddr}[scheme]
	if addr == "" {
		t.Fatalf("emulatortest: no %q listener", scheme)
	}
	target, err := transport.ParseTarget(scheme + "://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, target, transport.DialOptions{TLSConfig: e.ClientTLSConfig(cert)})
	if err != nil {
		t.Fatalf("emulatortest: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Provision runs the documented device flow over conn with ProvisionConn
// and fails the test on any deviation. conn is closed on return.
func Provision(t testing.TB, conn net.Conn, idScope, regID, password string) (int, dps.RegistrationOperationStatus) {
	t.Helper()
	code, st, err := ProvisionConn(conn, idScope, regID, password)
	if err != nil {
		t.Fatalf("emulatortest: %v", err)
	}
	return code, st
}

// ProvisionConn runs the documented device flow over conn (Part A §6):
// CONNECT as regID of idScope with password ("" = none), SUBSCRIBE to the
// response filter at QoS 1, register at QoS 1 and poll the operation until
// the answer is neither 202 nor 429, sleeping the answers' retry-after (at
// least 2 ms) in between. Each step's acknowledgement is checked on the way
// (CONNACK 0 without session, SUBACK 1, PUBACK before each answer, 202
// assigning); a deviation is an error naming the step. It returns the final
// answer's status and body and closes conn. Every read and write is bounded
// by 30 s. It may be called from any goroutine (benchmarks).
func ProvisionConn(conn net.Conn, idScope, regID, password string) (int, dps.RegistrationOperationStatus, error) {
	defer conn.Close()
	var st dps.RegistrationOperationStatus
	r := packets.NewReader(conn, packets.DecodeOptions{})
	next := func() (packets.Packet, error) {
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		p, err := r.ReadPacket()
		if err != nil {
			return nil, fmt.Errorf("%s: read: %w", regID, err)
		}
		return p.Clone(), nil
	}
	send := func(p packets.Packet) error {
		_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if err := packets.WritePacket(conn, p); err != nil {
			return fmt.Errorf("%s: write %v: %w", regID, p.Type(), err)
		}
		return nil
	}
	cp := &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, KeepAlive: 60,
		ClientID: []byte(regID), Username: []byte(dps.Username{IDScope: idScope, RegistrationID: regID}.String())}
	if password != "" {
		cp.Password = []byte(password)
	}
	if err := send(cp); err != nil {
		return 0, st, err
	}
	p, err := next()
	if err != nil {
		return 0, st, err
	}
	if ack, ok := p.(*packets.Connack); !ok || ack.ReturnCode != 0 || ack.SessionPresent {
		return 0, st, fmt.Errorf("%s: CONNACK %+v, want 0 without session", regID, p)
	}
	if err := send(&packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 1}}}); err != nil {
		return 0, st, err
	}
	if p, err = next(); err != nil {
		return 0, st, err
	}
	if sa, ok := p.(*packets.Suback); !ok || len(sa.ReturnCodes) != 1 || sa.ReturnCodes[0] != packets.SubackMaxQoS1 {
		return 0, st, fmt.Errorf("%s: SUBACK %+v, want QoS 1 granted", regID, p)
	}
	pid := uint16(1)
	call := func(topic, body string) (dps.Response, []byte, error) {
		pid++
		if err := send(&packets.Publish{QoS: 1, PacketID: pid, Topic: []byte(topic), Payload: []byte(body)}); err != nil {
			return dps.Response{}, nil, err
		}
		p, err := next()
		if err != nil {
			return dps.Response{}, nil, err
		}
		if ack, ok := p.(*packets.Puback); !ok || ack.PacketID != pid {
			return dps.Response{}, nil, fmt.Errorf("%s: want PUBACK %d before the answer, got %+v", regID, pid, p)
		}
		if p, err = next(); err != nil {
			return dps.Response{}, nil, err
		}
		pub, ok := p.(*packets.Publish)
		if !ok {
			return dps.Response{}, nil, fmt.Errorf("%s: want the answer PUBLISH, got %v", regID, p.Type())
		}
		if pub.QoS == 1 {
			if err := send(&packets.Puback{PacketID: pub.PacketID}); err != nil {
				return dps.Response{}, nil, err
			}
		}
		resp, err := dps.ParseResponseTopic(string(pub.Topic))
		if err != nil {
			return dps.Response{}, nil, fmt.Errorf("%s: answer topic: %w", regID, err)
		}
		return resp, pub.Payload, nil
	}
	resp, body, err := call(dps.RegisterTopic("1"), `{"registrationId":"`+regID+`"}`)
	if err != nil {
		return 0, st, err
	}
	if err := json.Unmarshal(body, &st); err != nil || resp.Status != 202 || st.Status != dps.StatusAssigning || st.OperationID == "" {
		return resp.Status, st, fmt.Errorf("%s: register answered %d %s (%v), want 202 assigning", regID, resp.Status, body, err)
	}
	op := st.OperationID
	for range 100 {
		time.Sleep(max(resp.RetryAfter, 2*time.Millisecond))
		if resp, body, err = call(dps.PollTopic("2", op), ""); err != nil {
			return 0, st, err
		}
		if resp.Status != 202 && resp.Status != 429 {
			break
		}
	}
	st = dps.RegistrationOperationStatus{}
	if err := json.Unmarshal(body, &st); err != nil {
		return resp.Status, st, fmt.Errorf("%s: final answer %d %s: %w", regID, resp.Status, body, err)
	}
	return resp.Status, st, nil
}
