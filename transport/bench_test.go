package transport

import (
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

// BenchmarkTLS12Handshake measures full TLS 1.2 handshakes (no session
// resumption) over loopback with the DPS policy, per server key type. The
// handshakes/s metric is the ceiling the emulator's connection rate is
// compared with.
func BenchmarkTLS12Handshake(b *testing.B) {
	for _, kt := range []KeyType{ECDSAP256, RSA2048} {
		b.Run(kt.String(), func(b *testing.B) {
			pki := newTestPKI(b, kt)
			scfg := pki.serverConfig()
			scfg.SessionTicketsDisabled = true
			addr, _ := serveTCP(b, scfg, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
			ccfg := pki.clientConfig()
			ccfg.ServerName = "127.0.0.1"
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
				c := tls.Client(raw, ccfg)
				if err := c.Handshake(); err != nil {
					b.Fatal(err)
				}
				if c.ConnectionState().DidResume {
					b.Fatal("session resumed")
				}
				c.Close()
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handshakes/s")
		})
	}
}

// BenchmarkWSConnThroughput measures one-way throughput of a Dial'ed WSConn
// into a server WSConn over loopback, per message size.
func BenchmarkWSConnThroughput(b *testing.B) {
	for _, size := range []int{64, 1 << 10, 16 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			addr := serveWS(b, nil, WSOptions{}, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
			c, err := Dial(b.Context(), mustTarget(b, "ws://"+addr), DialOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func byteSize(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}
