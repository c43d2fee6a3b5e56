package tracer_test

import (
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/dps-conform/dps-conform/tracer"
)

// BenchmarkRecorderSend measures frame building and pcapng writing alone:
// 16 KiB sends (12 segments and an ACK each) to io.Discard.
func BenchmarkRecorderSend(b *testing.B) {
	rec, err := tracer.NewRecorder(io.Discard, tracer.RecorderOptions{})
	if err != nil {
		b.Fatal(err)
	}
	f, err := rec.Flow(netip.MustParseAddrPort("10.0.0.1:50000"), netip.MustParseAddrPort("10.0.0.2:1883"), tracer.FlowOptions{})
	if err != nil {
		b.Fatal(err)
	}
	data := pattern(1, 16<<10)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := f.Send(tracer.Client, data, tracer.SegOpts{}); err != nil {
			b.Fatal(err)
		}
	}
	if err := rec.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRecorderPipe compares 16 KiB writes over a net.Pipe bare and
// wrapped by a Recorder writing to io.Discard: the difference is the
// recording overhead a live run pays.
func BenchmarkRecorderPipe(b *testing.B) {
	for _, recorded := range []bool{false, true} {
		name := "bare"
		if recorded {
			name = "recorded"
		}
		b.Run(name, func(b *testing.B) {
			rec, err := tracer.NewRecorder(io.Discard, tracer.RecorderOptions{})
			if err != nil {
				b.Fatal(err)
			}
			cl, sv := net.Pipe()
			done := make(chan struct{})
			go func() {
				io.Copy(io.Discard, sv)
				close(done)
			}()
			var c net.Conn = cl
			if recorded {
				c = rec.Wrap(cl, tracer.ConnOptions{Side: tracer.Client})
			}
			data := pattern(2, 16<<10)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(data); err != nil {
					b.Fatal(err)
				}
			}
			c.Close()
			<-done
			sv.Close()
			if err := rec.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
