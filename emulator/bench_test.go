package emulator_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/packets"
)

// BenchmarkProvision provisions b.N devices of the fixture's symmetric key
// group through the full path: TCP, TLS 1.2 handshake, CONNECT, SUBSCRIBE,
// register, poll until 200 assigned (retry-after 0, registrations recorded
// durably by the registry). Devices run concurrently; it reports
// registrations/s and the p50/p99 latency of one whole provisioning.
func BenchmarkProvision(b *testing.B) {
	benchmarkProvision(b, false)
}

// BenchmarkProvisionDurable is BenchmarkProvision with the registry in a
// state directory: every assignment is fsync'd before its 200 answer.
func BenchmarkProvisionDurable(b *testing.B) {
	benchmarkProvision(b, true)
}

func benchmarkProvision(b *testing.B, durable bool) {
	for _, conc := range []int{1, 16} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			o := emulatortest.Options{Limits: &emulator.Limits{
				PollsPerWindow: -1, RegistrationsPerMinute: -1, MaxConnections: -1,
			}}
			if durable {
				o.StateDir = b.TempDir()
			}
			e := emulatortest.Start(b, o)
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

// idleHelperEnv names the environment variable that turns
// TestIdleClientHelper into the client process of BenchmarkIdleConnections:
// "addr idScope n".
const idleHelperEnv = "DPSCONFORM_IDLE_HELPER"

// BenchmarkIdleConnections measures the server's memory per idle
// connection: a child process (this test binary, TestIdleClientHelper) opens
// conns TLS connections, sends CONNECT and waits for CONNACK on each, then
// holds them; the benchmark reports the growth of the server process's heap
// and goroutine stacks (runtime.MemStats HeapInuse+StackInuse after a GC)
// divided by the connections, so the client side is not counted. b.N is
// ignored beyond repeating the measurement.
func BenchmarkIdleConnections(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			var perConn, heap, stack float64
			for range b.N {
				// A fresh server each round: the previous one's sessions
				// may still be ending.
				e := emulatortest.Start(b, emulatortest.Options{Limits: &emulator.Limits{
					PollsPerWindow: -1, RegistrationsPerMinute: -1, MaxConnections: -1,
				}})
				before := serverMem()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestIdleClientHelper$", "-test.count=1")
				cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d", idleHelperEnv, e.MQTTAddr, e.IDScope, n))
				stdin, err := cmd.StdinPipe()
				if err != nil {
					b.Fatal(err)
				}
				out, err := cmd.StdoutPipe()
				if err != nil {
					b.Fatal(err)
				}
				cmd.Stderr = os.Stderr
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				line, err := bufio.NewReader(out).ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "ready") {
					stdin.Close()
					_ = cmd.Wait()
					cancel()
					b.Fatalf("helper: %q, %v", line, err)
				}
				after := serverMem()
				perConn = float64(after.total()-before.total()) / float64(n)
				heap = float64(after.HeapInuse-before.HeapInuse) / float64(n)
				stack = float64(after.StackInuse-before.StackInuse) / float64(n)
				stdin.Close() // the helper closes its connections and exits
				err = cmd.Wait()
				cancel()
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(perConn, "bytes/conn")
			b.ReportMetric(perConn/1024, "KiB/conn")
			b.ReportMetric(heap, "heap-bytes/conn")
			b.ReportMetric(stack, "stack-bytes/conn")
		})
	}
}

// memUse is the heap and stack memory in use.
type memUse struct{ HeapInuse, StackInuse uint64 }

func (m memUse) total() uint64 { return m.HeapInuse + m.StackInuse }

// serverMem is the memory in use after a full GC.
func serverMem() memUse {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memUse{m.HeapInuse, m.StackInuse}
}

// TestIdleClientHelper is the client process of BenchmarkIdleConnections; it
// does nothing unless idleHelperEnv is set. It connects n devices (TLS,
// CONNECT, CONNACK), prints "ready", holds them until stdin closes, then
// closes them.
func TestIdleClientHelper(t *testing.T) {
	spec := os.Getenv(idleHelperEnv)
	if spec == "" {
		t.Skip("client process of BenchmarkIdleConnections only")
	}
	var addr, scope string
	var n int
	if _, err := fmt.Sscan(spec, &addr, &scope, &n); err != nil {
		t.Fatalf("%s=%q: %v", idleHelperEnv, spec, err)
	}
	conf := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12} // loopback benchmark client
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	var next atomic.Int64
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() != nil {
					return
				}
				c, err := idleConnect(addr, scope, fmt.Sprintf("idle-%d", i), conf)
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatal(*err)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// idleConnect opens one TLS connection and completes CONNECT/CONNACK.
func idleConnect(addr, scope, id string, conf *tls.Config) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: conf}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	cp := &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, KeepAlive: 0,
		ClientID: []byte(id), Username: []byte(dps.Username{IDScope: scope, RegistrationID: id}.String())}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := packets.WritePacket(c, cp); err != nil {
		c.Close()
		return nil, err
	}
	p, err := packets.NewReader(c, packets.DecodeOptions{}).ReadPacket()
	if err != nil {
		c.Close()
		return nil, err
	}
	if ack, ok := p.(*packets.Connack); !ok || ack.ReturnCode != packets.ConnackAccepted {
		c.Close()
		return nil, fmt.Errorf("%s: %v, want CONNACK accepted", id, p)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}
