package emulator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/device"
	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/transport"
)

// TestScenarios runs the reference device client through each scripted
// scenario and checks what the emulator answered (from the client's trace)
// and how the registration ended.
func TestScenarios(t *testing.T) {
	fast := time.Second
	tests := []struct {
		sc       emulator.Scenario
		statuses []int // the answer statuses the device saw, in order
		err      error // the Provision error (nil: assigned)
		connects int   // CONNECTs sent
	}{
		{emulator.Scenario{Name: "normal"}, []int{202, 200}, nil, 1},
		{emulator.Scenario{Name: "register-429", Register429: 1, ThrottleRetryAfter: fast}, []int{429, 202, 200}, nil, 1},
		{emulator.Scenario{Name: "poll-429", Poll429: 1, ThrottleRetryAfter: fast}, []int{202, 429, 200}, nil, 1},
		{emulator.Scenario{Name: "unauthorized-401", Always401: true}, []int{401}, device.ErrStatus, 1},
		{emulator.Scenario{Name: "transient-500", Register500: 1}, []int{500, 202, 200}, nil, 1},
		{emulator.Scenario{Name: "poll-no-operation-id", OmitOperationID: true}, []int{202, 202, 200}, nil, 1},
		{emulator.Scenario{Name: "disconnect-mid-poll", DropAtPoll: true}, []int{202}, device.ErrConnectionClosed, 1},
		{emulator.Scenario{Name: "connack-withheld", WithholdConnack: 1}, nil, device.ErrTimeout, 1},
	}
	for _, tt := range tests {
		t.Run(tt.sc.Name, func(t *testing.T) {
			sc := tt.sc
			e := emulatortest.Start(t, emulatortest.Options{Scenario: &sc, Limits: &emulator.Limits{ConnectTimeout: 3 * time.Second}})
			target, err := transport.ParseTarget("mqtts://" + e.MQTTAddr)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var statuses []int
			connects := 0
			cfg := device.Config{
				Target: target, Dial: transport.DialOptions{TLSConfig: e.ClientTLSConfig(nil)},
				IDScope: e.IDScope, RegistrationID: "scenario-dev", GroupKey: emulatortest.SymGroupKey,
				ResponseTimeout: 2 * time.Second, Backoff: device.Backoff{Initial: 100 * time.Millisecond, Max: time.Second},
				Trace: func(ev device.Event) {
					mu.Lock()
					defer mu.Unlock()
					switch p := ev.Packet.(type) {
					case *packets.Connect:
						connects++
					case *packets.Publish:
						if r, err := dps.ParseResponseTopic(string(p.Topic)); err == nil {
							statuses = append(statuses, r.Status)
						}
					}
				},
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := device.Provision(ctx, cfg)
			mu.Lock()
			defer mu.Unlock()
			if tt.err == nil && (err != nil || res.Status != dps.StatusAssigned) {
				t.Fatalf("Provision: %v, %+v", err, res)
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("Provision error %v, want %v", err, tt.err)
			}
			if fmt.Sprint(statuses) != fmt.Sprint(tt.statuses) {
				t.Errorf("answers %v, want %v", statuses, tt.statuses)
			}
			if connects != tt.connects {
				t.Errorf("%d CONNECTs, want %d", connects, tt.connects)
			}
		})
	}
}

func TestLookupScenario(t *testing.T) {
	for _, sc := range emulator.Scenarios() {
		got, err := emulator.LookupScenario(sc.Name)
		if err != nil || got.Name != sc.Name {
			t.Errorf("LookupScenario(%q) = %+v, %v", sc.Name, got, err)
		}
	}
	if _, err := emulator.LookupScenario("nosuch"); err == nil || !strings.Contains(err.Error(), "known: connack-withheld") {
		t.Errorf("unknown scenario: %v", err)
	}
}
