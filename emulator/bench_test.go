package emulator_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
)

// BenchmarkProvision provisions b.N devices of the fixture's symmetric key
// group through the full path: TCP, TLS 1.2 handshake, CONNECT, SUBSCRIBE,
// register, poll until 200 assigned (retry-after 0, registrations recorded
// durably by the registry). Devices run concurrently; it reports
// registrations/s and the p50/p99 latency of one whole provisioning.
func BenchmarkProvision(b *testing.B) {
	for _, conc := range []int{1, 16} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			e := emulatortest.Start(b, emulatortest.Options{Limits: &emulator.Limits{
				PollsPerWindow: -1, RegistrationsPerMinute: -1, MaxConnections: -1,
			}})
			keys := make([]string, b.N)
			for i := range keys {
				keys[i] = e.SASToken(b, fmt.Sprintf("bench-%d", i))
			}
			tlsConf := e.ClientTLSConfig(nil)
			lat := make([]time.Duration, b.N)
			var next atomic.Int64
			var failed atomic.Pointer[error]
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range conc {
				wg.Go(func() {
					for {
						i := int(next.Add(1)) - 1
						if i >= b.N {
							return
						}
						t0 := time.Now()
						err := provisionOnce(e, tlsConf, fmt.Sprintf("bench-%d", i), keys[i])
						lat[i] = time.Since(t0)
						if err != nil {
							failed.CompareAndSwap(nil, &err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if err := failed.Load(); err != nil {
				b.Fatal(*err)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "registrations/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

func provisionOnce(e *emulatortest.Emulator, tlsConf *tls.Config, id, token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: tlsConf}
	conn, err := d.DialContext(ctx, "tcp", e.MQTTAddr)
	if err != nil {
		return err
	}
	code, st, err := emulatortest.ProvisionConn(conn, e.IDScope, id, token)
	if err != nil {
		return err
	}
	if code != 200 || st.Status != dps.StatusAssigned {
		return fmt.Errorf("%s: final %d %s", id, code, st.Status)
	}
	return nil
}
