package device_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/device"
	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/internal/testnet"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/transport"
)

// TestEmulator provisions every fixture kind against the reference emulator,
// over mqtts and wss.
func TestEmulator(t *testing.T) {
	// Poll throttling off: with retry-after 0 the client polls back to back
	// (the fake-server tests cover 429 handling).
	e := emulatortest.Start(t, emulatortest.Options{Limits: &emulator.Limits{PollsPerWindow: -1}})
	mqtts, err := transport.ParseTarget("mqtts://" + e.MQTTAddr)
	if err != nil {
		t.Fatal(err)
	}
	wss, err := transport.ParseTarget(e.WSURL)
	if err != nil {
		t.Fatal(err)
	}
	certFor := func(id string) *tls.Certificate {
		c := e.ClientCert(t, id)
		return &c
	}
	for _, tc := range []struct {
		name   string
		target transport.Target
		regID  string
		setup  func(*device.Config)
		// wantErr, when set, checks the error; otherwise assigned is
		// expected.
		wantErr func(t *testing.T, res *device.Result, err error)
	}{
		{"symmetric key mqtts", mqtts, emulatortest.SymDeviceID, func(c *device.Config) { c.SymmetricKey = emulatortest.SymDeviceKey }, nil},
		{"symmetric key wss", wss, emulatortest.SymDeviceID, func(c *device.Config) { c.SymmetricKey = emulatortest.SymDeviceKey }, nil},
		{"group key mqtts", mqtts, emulatortest.SymGroupDeviceID, func(c *device.Config) { c.GroupKey = emulatortest.SymGroupKey }, nil},
		{"group key wss uuid rid qos0", wss, "group-device-2", func(c *device.Config) {
			c.GroupKey = emulatortest.SymGroupKey
			c.RequestID = device.UUIDRequestID
			c.SubscribeQoS, c.PublishQoS = device.QoS0, device.QoS0
			c.SREncoding = dps.SRRaw
		}, nil},
		{"x509 individual mqtts", mqtts, "", func(c *device.Config) {
			c.Dial.TLSConfig = e.ClientTLSConfig(certFor(emulatortest.X509DeviceID))
		}, nil},
		{"x509 group wss", wss, emulatortest.X509GroupDeviceID, func(c *device.Config) {
			c.Dial.TLSConfig = e.ClientTLSConfig(certFor(emulatortest.X509GroupDeviceID))
		}, nil},
		{"disabled", mqtts, emulatortest.DisabledDeviceID, func(c *device.Config) { c.SymmetricKey = emulatortest.DisabledDeviceKey },
			func(t *testing.T, res *device.Result, err error) {
				var ae *device.AssignmentError
				if !errors.As(err, &ae) || ae.Status != dps.StatusDisabled || res == nil || res.Status != dps.StatusDisabled {
					t.Fatalf("err = %v, res = %+v; want status disabled", err, res)
				}
			}},
		{"wrong key", mqtts, emulatortest.SymDeviceID, func(c *device.Config) { c.SymmetricKey = emulatortest.DisabledDeviceKey },
			func(t *testing.T, _ *device.Result, err error) {
				var se *device.StatusError
				if !errors.As(err, &se) || se.Status != 401 || se.Body.HTTPStatus() != 401 {
					t.Fatalf("err = %v, want a 401 StatusError (Part A §3)", err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var events []device.Event
			cfg := device.Config{
				Target:         tc.target,
				Dial:           transport.DialOptions{TLSConfig: e.ClientTLSConfig(nil)},
				IDScope:        e.IDScope,
				RegistrationID: tc.regID,
				Trace:          func(ev device.Event) { events = append(events, ev) },
				MaxPolls:       500,
				// retry-after is 0; pace the polls a little on top of it.
				Sleep: func(ctx context.Context, d time.Duration) error {
					select {
					case <-time.After(d + 5*time.Millisecond):
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				},
			}
			tc.setup(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := device.Provision(ctx, cfg)
			if testing.Verbose() {
				for _, ev := range events {
					t.Log(ev)
				}
			}
			if tc.wantErr != nil {
				tc.wantErr(t, res, err)
				return
			}
			if err != nil {
				t.Fatalf("Provision: %v", err)
			}
			wantID := tc.regID
			if wantID == "" {
				wantID = emulatortest.X509DeviceID
			}
			rs := res.RegistrationState
			if res.Status != dps.StatusAssigned || rs == nil || rs.AssignedHub != emulatortest.HubName || !dps.EqualRegistrationID(rs.RegistrationID, wantID) || rs.DeviceID == "" {
				t.Fatalf("result %+v, state %+v", res, rs)
			}
			if !dps.ValidOperationIDFormat(res.OperationID) {
				t.Errorf("operation id %q", res.OperationID)
			}
			// The trace starts with our CONNECT and ends with DISCONNECT.
			if len(events) < 6 {
				t.Fatalf("trace has %d events", len(events))
			}
			first, ok := events[0].Packet.(*packets.Connect)
			if !ok || !dps.EqualRegistrationID(string(first.ClientID), wantID) {
				t.Errorf("first event %s", events[0])
			}
			// The last packet sent is DISCONNECT (the service may close its
			// side right after, which the trace then records).
			var lastSent device.Event
			for _, ev := range events {
				if ev.Dir == device.Sent {
					lastSent = ev
				}
			}
			if lastSent.Packet == nil || lastSent.Packet.Type() != packets.TypeDisconnect {
				t.Errorf("last packet sent: %s", lastSent)
			}
		})
	}
}

// TestDialErrors: transport failures keep *transport.DialError in the chain,
// with the stage that failed.
func TestDialErrors(t *testing.T) {
	e := emulatortest.Start(t, emulatortest.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		name, target string
		tls          *tls.Config
		stage        string
	}{
		{"refused", "mqtts://" + closed, e.ClientTLSConfig(nil), transport.StageTCP},
		{"untrusted", "mqtts://" + e.MQTTAddr, &tls.Config{}, transport.StageTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target, err := transport.ParseTarget(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = device.Provision(ctx, device.Config{
				Target: target, Dial: transport.DialOptions{TLSConfig: tc.tls},
				IDScope: e.IDScope, RegistrationID: emulatortest.SymDeviceID, SymmetricKey: emulatortest.SymDeviceKey,
			})
			var de *transport.DialError
			if !errors.As(err, &de) || de.Stage != tc.stage {
				t.Fatalf("err = %v, want a DialError at stage %s", err, tc.stage)
			}
			if strings.Contains(err.Error(), emulatortest.SymDeviceKey) {
				t.Error("key in error")
			}
		})
	}
}

// TestSilentTLSPort: a port that accepts TCP and never answers the
// ClientHello ends Provision after the handshake bound (default
// DefaultHandshakeTimeout), not at ctx's end, saying so and naming the
// target; a negative bound leaves it to ctx.
func TestSilentTLSPort(t *testing.T) {
	addr := testnet.Silent(t)
	for _, tc := range []struct {
		name   string
		target string
		bound  time.Duration
		ctxFor time.Duration
		want   string // "" for ctx's deadline
	}{
		{"default bound", "mqtts://" + addr, 0, 20 * time.Second,
			"transport: dial mqtts://" + addr + ": tls: no answer to a ClientHello within 5s (is it a TLS port?)"},
		{"wss, set bound", "wss://" + addr + "/$iothub/websocket", 300 * time.Millisecond, 20 * time.Second,
			"transport: dial wss://" + addr + "/$iothub/websocket: tls: no answer to a ClientHello within 300ms"},
		{"negative: ctx alone", "mqtts://" + addr, -1, 300 * time.Millisecond, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target, err := transport.ParseTarget(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.ctxFor)
			defer cancel()
			_, err = device.Provision(ctx, device.Config{
				Target: target, Dial: transport.DialOptions{HandshakeTimeout: tc.bound},
				IDScope: "0ne00000001", RegistrationID: "dev-1", SymmetricKey: emulatortest.SymDeviceKey,
			})
			var he *transport.HandshakeTimeoutError
			if tc.want == "" {
				if errors.As(err, &he) || !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v, want ctx's deadline", err)
				}
				return
			}
			if !errors.As(err, &he) || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want a *transport.HandshakeTimeoutError, not ctx's deadline", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}
