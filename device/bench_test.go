package device_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/device"
	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/transport"
)

// BenchmarkProvisionEmulator runs device.Provision for b.N distinct devices of the
// fixture's symmetric key group against an in-process emulator (retry-after
// 0, temporary registry), 16 at a time, as 'bench provision' does with a
// child process. It reports registrations/s, polls per registration and the
// p50/p99 latency of one provisioning.
func BenchmarkProvisionEmulator(b *testing.B) {
	e := emulatortest.Start(b, emulatortest.Options{Limits: &emulator.Limits{
		PollsPerWindow: -1, RegistrationsPerMinute: -1, MaxConnections: -1,
	}})
	target, err := transport.ParseTarget("mqtts://" + e.MQTTAddr)
	if err != nil {
		b.Fatal(err)
	}
	tlsConf := e.ClientTLSConfig(nil)
	const conc = 16
	lat := make([]time.Duration, b.N)
	var next, polls atomic.Int64
	var failed atomic.Pointer[error]
	run := time.Now().UnixNano()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) || failed.Load() != nil {
					return
				}
				t0 := time.Now()
				r, err := device.Provision(context.Background(), device.Config{
					Target:         target,
					Dial:           transport.DialOptions{TLSConfig: tlsConf},
					IDScope:        e.IDScope,
					RegistrationID: fmt.Sprintf("bench-%x-%06d", run, i),
					GroupKey:       emulatortest.SymGroupKey,
					MaxPolls:       1_000_000,
				})
				if err == nil && r.Status != dps.StatusAssigned {
					err = fmt.Errorf("registration ended %q", r.Status)
				}
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				lat[i] = time.Since(t0)
				polls.Add(int64(r.Polls))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if p := failed.Load(); p != nil {
		b.Fatal(*p)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "registrations/s")
	b.ReportMetric(float64(polls.Load())/float64(b.N), "polls/op")
	b.ReportMetric(float64(lat[b.N/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[b.N*99/100].Microseconds())/1000, "p99-ms")
}
