package interop

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
)

// TestMosquittoClients connects Debian's mosquitto_sub and mosquitto_pub
// (2.0.x, -V mqttv311, TLS trusting the emulator's CA through --cafile) with
// a real SAS token: the documented filter is granted QoS 1, another filter
// is refused with SUBACK 0x80, a ClientId that is not the username's
// registration id is refused with CONNACK 2, and a register PUBLISH is
// acknowledged and ends in an assignment the emulator records.
//
// mosquitto_pub and mosquitto_sub are separate connections and DPS answers
// only the connection that asked, so the 202 itself cannot be seen with
// them (mosquitto_rr, which could, speaks only MQTT 5); the Paho and Node
// tests check the answers.
func TestMosquittoClients(t *testing.T) {
	sub := lookPeer(t, "mosquitto_sub", "apt-get install mosquitto-clients")
	pub := lookPeer(t, "mosquitto_pub", "apt-get install mosquitto-clients")
	e := emulatortest.Start(t, emulatortest.Options{})
	host, port, err := net.SplitHostPort(e.MQTTAddr)
	if err != nil {
		t.Fatal(err)
	}
	// connArgs are the connection flags of regID presenting clientID.
	connArgs := func(t *testing.T, regID, clientID string) []string {
		sas, err := dps.BuildSASToken(dps.SASOptions{
			IDScope: e.IDScope, RegistrationID: regID,
			Key: e.SymmetricKey(regID), Expiry: time.Now().Add(time.Hour),
		})
		if err != nil {
			t.Fatal(err)
		}
		return []string{
			"-h", host, "-p", port, "--cafile", e.CAFile, "-V", "mqttv311", "-d",
			"-i", clientID,
			"-u", dps.Username{IDScope: e.IDScope, RegistrationID: regID, APIVersion: dps.DefaultAPIVersion}.String(),
			"-P", sas,
		}
	}
	const group = "mosquitto-group-device"
	tests := []struct {
		name            string
		tool            string
		regID, clientID string
		args            []string
		wantExit        int
		wantStdout      []string
		wantStderr      string // "" means empty
		wantAssigned    string // a registration id the emulator must have assigned
	}{
		{
			name: "subscribe-documented-filter", tool: sub,
			regID: emulatortest.SymDeviceID, clientID: emulatortest.SymDeviceID,
			// -E: exit once the SUBACK arrives.
			args:       []string{"-q", "1", "-t", "$dps/registrations/res/#", "-E"},
			wantStdout: []string{"received CONNACK (0)", "received SUBACK", "Subscribed (mid: 1): 1\n"},
		},
		{
			name: "subscribe-wrong-filter", tool: sub,
			regID: emulatortest.SymDeviceID, clientID: emulatortest.SymDeviceID,
			args: []string{"-q", "1", "-t", "devices/#", "-E"},
			// mosquitto_sub 2.0.11 reports a denied SUBACK on stderr and
			// still exits 0 under -E.
			wantStdout: []string{"received CONNACK (0)", "received SUBACK", "Subscribed (mid: 1): 128\n"},
			wantStderr: "All subscription requests were denied.",
		},
		{
			name: "connect-wrong-client-id", tool: sub,
			regID: emulatortest.SymDeviceID, clientID: "someone-else",
			args:       []string{"-q", "1", "-t", "$dps/registrations/res/#", "-E"},
			wantExit:   2,
			wantStdout: []string{"received CONNACK (2)"},
			wantStderr: "Connection error: Connection Refused: identifier rejected.",
		},
		{
			name: "register-group-device", tool: pub,
			regID: group, clientID: group,
			args:         []string{"-q", "1", "-t", dps.RegisterTopic("1"), "-m", `{"registrationId":"` + group + `"}`},
			wantStdout:   []string{"received CONNACK (0)", "sending PUBLISH (d0, q1, r0, m1, '$dps/registrations/PUT/iotdps-register/?$rid=1'", "received PUBACK (Mid: 1, RC:0)"},
			wantAssigned: group,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(connArgs(t, tt.regID, tt.clientID), tt.args...)
			r := runPeer(t, 20*time.Second, nil, tt.tool, args...)
			if r.exit != tt.wantExit {
				t.Fatalf("exit %d (%v), want %d\nstdout: %s\nstderr: %s", r.exit, r.err, tt.wantExit, r.stdout, r.stderr)
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
				}
			}
			if got := strings.TrimSpace(r.stderr); got != tt.wantStderr {
				t.Errorf("stderr %q, want %q", got, tt.wantStderr)
			}
			if tt.wantAssigned == "" {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for {
				rec, ok, err := e.Registry.Registration(ctx, tt.wantAssigned)
				if err != nil {
					t.Fatalf("registration of %q: %v", tt.wantAssigned, err)
				}
				if ok && rec.Status == "assigned" {
					if rec.AssignedHub != emulatortest.HubName || rec.DeviceID != tt.wantAssigned {
						t.Errorf("recorded hub %q device %q, want %q %q", rec.AssignedHub, rec.DeviceID, emulatortest.HubName, tt.wantAssigned)
					}
					return
				}
				select {
				case <-ctx.Done():
					t.Fatalf("the emulator recorded no assignment of %q (last: ok=%v %+v)", tt.wantAssigned, ok, rec)
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
	}
}
