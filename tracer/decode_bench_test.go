package tracer

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/packets"
)

// writeBenchCapture writes a pcap of about size bytes: flows concurrent
// MQTT connections (interleaved round-robin), each a handshake, CONNECT,
// CONNACK, SUBSCRIBE, SUBACK and then PUBLISH/PUBACK exchanges with
// payloads of 16 to 4000 bytes, cut into segments of at most 1460 bytes.
// It returns the number of frames and MQTT packets written.
func writeBenchCapture(t testing.TB, w io.Writer, flows, size int) (frames, pkts int) {
	bw := bufio.NewWriterSize(w, 1<<20)
	g := newGen(t, linkEthernet)
	hdr := g.pcap() // file header only (no frames yet)
	bw.Write(hdr)
	written := len(hdr)
	r := rand.New(rand.NewPCG(1, 2))
	fl := make([]*genFlow, flows)
	for i := range fl {
		fl[i] = g.flow(fmt.Sprintf("10.%d.%d.%d:%d", i>>16&255, i>>8&255, i&255, 40000+i%20000), "10.255.0.1:1883")
		fl[i].isn = [2]uint32{r.Uint32(), r.Uint32()}
	}
	payload := bytes.Repeat([]byte(`{"registrationId":"device-0001","payload":{"a":1}}`), 100)
	flush := func() {
		for _, f := range g.frames {
			var rec [16]byte
			binary.LittleEndian.PutUint32(rec[0:], uint32(f.ts.Unix()))
			binary.LittleEndian.PutUint32(rec[4:], uint32(f.ts.Nanosecond()/1000))
			binary.LittleEndian.PutUint32(rec[8:], uint32(len(f.data)))
			binary.LittleEndian.PutUint32(rec[12:], uint32(len(f.data)))
			bw.Write(rec[:])
			bw.Write(f.data)
			written += 16 + len(f.data)
		}
		frames += len(g.frames)
		g.frames = g.frames[:0]
	}
	segs := func(b []byte) []int {
		var cuts []int
		for c := 1460; c < len(b); c += 1460 {
			cuts = append(cuts, c)
		}
		return cuts
	}
	for i, f := range fl {
		f.handshake()
		c := enc(t, &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, KeepAlive: 60, ClientID: []byte("dev-" + strconv.Itoa(i)), Username: []byte("0ne/registrations/dev/api-version=2019-03-31"), Password: []byte("SharedAccessSignature sr=x&sig=eA%3d%3d&se=1&skn=registration")})
		f.send(ClientToServer, c)
		f.send(ServerToClient, enc(t, &packets.Connack{}))
		f.send(ClientToServer, enc(t, &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte("$dps/registrations/res/#"), QoS: 1}}}))
		f.send(ServerToClient, enc(t, &packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{1}}))
		pkts += 4
	}
	flush()
	for id := uint16(2); written < size; id++ {
		if id == 0 {
			id = 1
		}
		for _, f := range fl {
			n := 16 + r.IntN(4000)
			b := enc(t, &packets.Publish{QoS: 1, PacketID: id, Topic: []byte("$dps/registrations/PUT/iotdps-register/?$rid=" + strconv.Itoa(int(id))), Payload: payload[:n]})
			f.send(ClientToServer, b, segs(b)...)
			f.send(ServerToClient, enc(t, &packets.Puback{PacketID: id}))
			pkts += 2
		}
		flush()
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return frames, pkts
}

func benchDecode(b *testing.B, data []byte, pkts int, workers int) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for b.Loop() {
		c, err := Decode(bytes.NewReader(data), Options{Workers: workers})
		if err != nil {
			b.Fatal(err)
		}
		if n := countPackets(c); n != pkts {
			b.Fatalf("decoded %d packets, want %d", n, pkts)
		}
	}
	b.ReportMetric(float64(pkts)*float64(b.N)/time.Since(start).Seconds(), "pkts/s")
	// Throughput per CPU-second of this process: unlike MB/s, it does not
	// drop when other processes compete for the cores.
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(len(data))*float64(b.N)/1e6/cpu.Seconds(), "MB/cpu-s")
	}
}

// cpuTime is the user+system CPU time of this process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func countPackets(c *Capture) int {
	n := 0
	for _, cv := range c.Conversations {
		n += len(cv.Packets)
	}
	return n
}

// BenchmarkDecode decodes a generated 32 MB capture of 2000 interleaved
// flows. Set DPSCONFORM_TRACE_BENCH_MB to decode a larger capture
// generated into a temporary directory instead (e.g. 256).
func BenchmarkDecode(b *testing.B) {
	size := 32 << 20
	if v := os.Getenv("DPSCONFORM_TRACE_BENCH_MB"); v != "" {
		mb, err := strconv.Atoi(v)
		if err != nil || mb < 1 {
			b.Fatalf("DPSCONFORM_TRACE_BENCH_MB=%q: want a number of megabytes", v)
		}
		size = mb << 20
	}
	path := filepath.Join(b.TempDir(), "bench.pcap")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	_, pkts := writeBenchCapture(b, f, 2000, size)
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) { benchDecode(b, data, pkts, w) })
	}
}

func benchDecodeStream(b *testing.B, data []byte, pkts *int, workers int) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for b.Loop() {
		n := 0
		_, err := Decode(bytes.NewReader(data), Options{Workers: workers,
			OnPacket:       func(*Conversation, *Packet) { n++ },
			OnConversation: func(*Conversation) {}})
		if err != nil {
			b.Fatal(err)
		}
		if *pkts < 0 {
			*pkts = n
		}
		if n != *pkts {
			b.Fatalf("streamed %d packets, want %d", n, *pkts)
		}
	}
	b.ReportMetric(float64(*pkts)*float64(b.N)/time.Since(start).Seconds(), "pkts/s")
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(len(data))*float64(b.N)/1e6/cpu.Seconds(), "MB/cpu-s")
	}
}

// BenchmarkDecodeStream is BenchmarkDecode with packets and conversations
// streamed (Options.OnPacket, OnConversation) instead of kept. Set
// DPSCONFORM_TRACE_BENCH_FILE to decode that capture instead (e.g. one
// that 'dps-conform bench trace --keep' generated).
func BenchmarkDecodeStream(b *testing.B) {
	size := 32 << 20
	if v := os.Getenv("DPSCONFORM_TRACE_BENCH_MB"); v != "" {
		mb, err := strconv.Atoi(v)
		if err != nil || mb < 1 {
			b.Fatalf("DPSCONFORM_TRACE_BENCH_MB=%q: want a number of megabytes", v)
		}
		size = mb << 20
	}
	var data []byte
	pkts := -1 // the first decoding's count, for a file
	if path := os.Getenv("DPSCONFORM_TRACE_BENCH_FILE"); path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			b.Fatal(err)
		}
	} else {
		var buf bytes.Buffer
		_, pkts = writeBenchCapture(b, &buf, 2000, size)
		data = buf.Bytes()
	}
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) { benchDecodeStream(b, data, &pkts, w) })
	}
}
