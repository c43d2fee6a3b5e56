package tracer

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/reassembly"

	"github.com/dps-conform/dps-conform/tracer/tlstrace"
)

// gpStream is a gopacket/reassembly stream that only counts the
// reassembled bytes: the least work a gopacket-based tracer would do.
type gpStream struct{ n *int }

func (s *gpStream) Accept(tcp *layers.TCP, ci gopacket.CaptureInfo, dir reassembly.TCPFlowDirection, nextSeq reassembly.Sequence, start *bool, ac reassembly.AssemblerContext) bool {
	*start = true
	return true
}

func (s *gpStream) ReassembledSG(sg reassembly.ScatterGather, ac reassembly.AssemblerContext) {
	l, _ := sg.Lengths()
	*s.n += len(sg.Fetch(l))
}

func (s *gpStream) ReassemblyComplete(ac reassembly.AssemblerContext) bool { return true }

type gpFactory struct{ n int }

func (f *gpFactory) New(_, _ gopacket.Flow, _ *layers.TCP, _ reassembly.AssemblerContext) reassembly.Stream {
	return &gpStream{n: &f.n}
}

type gpContext struct{ ci gopacket.CaptureInfo }

func (c *gpContext) GetCaptureInfo() gopacket.CaptureInfo { return c.ci }

// BenchmarkGopacketReassembly measures gopacket/reassembly on the capture
// of BenchmarkDecode, parsing with a DecodingLayerParser and delivering
// the reassembled bytes to a stream that only counts them (no MQTT). It is
// the comparison that chose the purpose-built reassembler of this package:
// compare its MB/s with BenchmarkDecode/workers=1, which also decodes MQTT.
func BenchmarkGopacketReassembly(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.pcap")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	writeBenchCapture(b, f, 2000, 32<<20)
	f.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var eth layers.Ethernet
		var ip4 layers.IPv4
		var tcp layers.TCP
		parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &tcp)
		parser.IgnoreUnsupported = true
		decoded := make([]gopacket.LayerType, 0, 4)
		fac := &gpFactory{}
		asm := reassembly.NewAssembler(reassembly.NewStreamPool(fac))
		src, err := openSource(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		ctx := &gpContext{}
		for {
			d, ts, _, err := src.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if err := parser.DecodeLayers(d, &decoded); err != nil {
				continue
			}
			ctx.ci = gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(d), Length: len(d)}
			asm.AssembleWithContext(ip4.NetworkFlow(), &tcp, ctx)
		}
		asm.FlushAll()
		if fac.n == 0 {
			b.Fatal("no bytes reassembled")
		}
	}
}

// countSink counts delivered bytes.
type countSink struct{ n int }

func (c *countSink) data(_ Direction, b []byte, _ int, _ time.Time) { c.n += len(b) }
func (c *countSink) gap(Direction, int, int, int, bool)             {}
func (c *countSink) conflict(Direction, int64, int, int, int)       {}

// BenchmarkReassembly measures this package's reassembler doing the work
// of BenchmarkGopacketReassembly (parse to TCP, reassemble, count bytes).
func BenchmarkReassembly(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.pcap")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	writeBenchCapture(b, f, 2000, 32<<20)
	f.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		src, err := openSource(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		d := newDecoder(Options{})
		sink := &countSink{}
		flows := map[flowID]*[2]halfStream{}
		d.emit = func(s *segInfo) {
			id := idOf(s.src, s.dst)
			h := flows[id]
			if h == nil {
				h = &[2]halfStream{{dir: 0, max: d.max}, {dir: 1, max: d.max}}
				flows[id] = h
			}
			dir := 0
			if s.src != id.a {
				dir = 1
			}
			if s.syn {
				h[dir].syn(s.seq)
			}
			h[dir].segment(s.seq, s.payload, s.frame, s.ts, sink)
		}
		if err := readFrames(context.Background(), src, &Capture{}, d, func(*tlstrace.KeyLog) {}); err != nil {
			b.Fatal(err)
		}
		if sink.n == 0 {
			b.Fatal("no bytes reassembled")
		}
	}
}
