package tracer

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/packets"
)

// decodeGen decodes a generated capture and returns its only conversation.
func decodeGen(t *testing.T, g *genCapture, o Options) *Conversation {
	t.Helper()
	capt, err := Decode(bytes.NewReader(g.pcap()), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(capt.Conversations) != 1 {
		t.Fatalf("%d conversations, want 1; warnings %q", len(capt.Conversations), capt.Warnings)
	}
	return capt.Conversations[0]
}

func TestReassembly(t *testing.T) {
	c2s, s2c := dpsExchange(t)
	all := enc(t, c2s...)
	connect := len(enc(t, c2s[0]))
	sub := len(enc(t, c2s[1]))
	for _, tc := range []struct {
		name string
		// send emits the c2s bytes all (the CONNECT, SUBSCRIBE and PUBLISH)
		// after the handshake and CONNACK.
		send func(f *genFlow)
		want string // summary of c2s packets, gaps and problems
	}{
		{"in-order-coalesced", func(f *genFlow) { f.send(ClientToServer, all) },
			"c2s CONNECT @0 #5\nc2s SUBSCRIBE @%[1]d #5\nc2s PUBLISH @%[2]d #5\n"},
		{"byte-by-byte", func(f *genFlow) {
			cuts := make([]int, 0, len(all))
			for i := 1; i < len(all); i++ {
				cuts = append(cuts, i)
			}
			f.send(ClientToServer, all, cuts...)
		}, "c2s CONNECT @0 #%[4]d\nc2s SUBSCRIBE @%[1]d #%[5]d\nc2s PUBLISH @%[2]d #%[6]d\n"},
		{"retransmission", func(f *genFlow) {
			f.send(ClientToServer, all, connect)
			f.at(ClientToServer, 1, all[:connect])
			f.at(ClientToServer, 1, all)
		}, "c2s CONNECT @0 #5\nc2s SUBSCRIBE @%[1]d #6\nc2s PUBLISH @%[2]d #6\n"},
		{"out-of-order", func(f *genFlow) {
			f.at(ClientToServer, 1+uint32(connect), all[connect:])
			f.at(ClientToServer, 1, all[:connect])
			f.skip(ClientToServer, len(all))
		}, "c2s CONNECT @0 #6\nc2s SUBSCRIBE @%[1]d #6\nc2s PUBLISH @%[2]d #6\n"},
		{"overlap", func(f *genFlow) {
			f.at(ClientToServer, 1, all[:connect+5])
			f.at(ClientToServer, 1+uint32(connect-10), all[connect-10:connect+sub+3])
			f.at(ClientToServer, 1+uint32(connect), all[connect:])
			f.skip(ClientToServer, len(all))
		}, "c2s CONNECT @0 #5\nc2s SUBSCRIBE @%[1]d #6\nc2s PUBLISH @%[2]d #7\n"},
		{"out-of-order-overlap", func(f *genFlow) {
			f.at(ClientToServer, 1+uint32(connect-3), all[connect-3:])
			f.at(ClientToServer, 1+uint32(connect+2), all[connect+2:connect+sub+7])
			f.at(ClientToServer, 1, all[:connect])
			f.skip(ClientToServer, len(all))
		}, "c2s CONNECT @0 #7\nc2s SUBSCRIBE @%[1]d #7\nc2s PUBLISH @%[2]d #7\n"},
		{"gap-resync", func(f *genFlow) {
			// The SUBSCRIBE's bytes never arrive: the PUBLISH is decoded
			// after a gap, dated by its own frame (6), not by the FIN (7)
			// that revealed the gap.
			f.send(ClientToServer, all[:connect+4])
			f.skip(ClientToServer, sub-4)
			f.send(ClientToServer, all[connect+sub:])
		}, "c2s CONNECT @0 #5\nc2s PUBLISH @%[2]d #6\ngap c2s @%[7]d len=%[8]d\nproblem c2s @%[1]d [tracer-gap] 4 bytes of an incomplete SUBSCRIBE packet lost in a gap\n"},
		{"gap-mid-packet-resync", func(f *genFlow) {
			// The gap swallows the start of the SUBSCRIBE: its tail must be
			// skipped until the PUBLISH header.
			f.send(ClientToServer, all[:connect])
			f.skip(ClientToServer, 4)
			f.send(ClientToServer, all[connect+4:])
		}, "c2s CONNECT @0 #5\nc2s PUBLISH @%[2]d #6\ngap c2s @%[1]d len=4\nproblem c2s @%[7]d [tracer-resync] skipped %[9]d bytes to the next plausible fixed header\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGen(t, linkEthernet)
			f := g.flow("192.0.2.1:40000", "192.0.2.2:1883")
			f.handshake()
			f.send(ServerToClient, enc(t, s2c[0]))
			tc.send(f)
			f.fin(ClientToServer)
			c := decodeGen(t, g, Options{})
			var got strings.Builder
			for _, p := range c.Packets {
				if p.Dir == ClientToServer {
					got.WriteString(p.Dir.String() + " " + p.Packet.Type().String() + " @" + itoa(p.Offset) + " #" + itoa(int64(p.Frame)) + "\n")
				}
			}
			for _, gp := range c.Gaps {
				got.WriteString("gap " + gp.Dir.String() + " @" + itoa(gp.Offset) + " len=" + itoa(int64(gp.Len)) + "\n")
			}
			for _, p := range c.Problems {
				got.WriteString("problem " + p.Dir.String() + " @" + itoa(p.Offset) + " [" + p.Clause + "] " + p.Msg + "\n")
			}
			want := fmt.Sprintf(tc.want, connect, connect+sub, 0, 4+connect, 4+connect+sub, 4+len(all), connect+4, sub-4, sub-4)
			if got.String() != want {
				t.Errorf("got\n%s\nwant\n%s", got.String(), want)
			}
			for _, p := range c.Packets {
				if p.Dir == ClientToServer && p.Packet.Type() == packets.Type(3) && !bytes.Equal(p.Raw, enc(t, c2s[2])) {
					t.Errorf("PUBLISH raw %x", p.Raw)
				}
			}
		})
	}
}

// TestStreamBufferCap checks that MaxStreamBuffer bounds what a stream
// buffers: out-of-order data beyond it becomes a gap, and a packet larger
// than it is skipped with a problem.
func TestStreamBufferCap(t *testing.T) {
	const max = 2048
	big := enc(t, &packets.Publish{Topic: []byte("t"), Payload: bytes.Repeat([]byte("x"), 5000)})
	ping := enc(t, &packets.Pingreq{})
	t.Run("out-of-order", func(t *testing.T) {
		g := newGen(t, linkEthernet)
		f := g.flow("192.0.2.1:40000", "192.0.2.2:1883")
		f.handshake()
		f.send(ClientToServer, ping)
		// 100 bytes lost, then 3000 bytes of PINGREQs held out of order.
		f.skip(ClientToServer, 100)
		held := bytes.Repeat(ping, 1500)
		f.send(ClientToServer, held, 1000, 2000)
		c := decodeGen(t, g, Options{MaxStreamBuffer: max})
		if len(c.Gaps) != 1 || c.Gaps[0].Offset != 2 || c.Gaps[0].Len != 100 || c.Gaps[0].Frame != 5 || c.Gaps[0].Noticed != 7 {
			t.Errorf("gaps %+v, want one of 100 bytes at offset 2, before frame 5, noticed at frame 7", c.Gaps)
		}
		if len(c.Packets) != 1+1500 {
			t.Errorf("%d packets, want 1501:\n%s", len(c.Packets), summary(c))
		}
	})
	t.Run("oversized-packet", func(t *testing.T) {
		g := newGen(t, linkEthernet)
		f := g.flow("192.0.2.1:40000", "192.0.2.2:1883")
		f.handshake()
		f.send(ClientToServer, append(append(bytes.Clone(ping), big...), ping...), 1000, 2000, 3000, 4000)
		c := decodeGen(t, g, Options{MaxStreamBuffer: max})
		want := fmt.Sprintf("c2s PINGREQ @0 #4 len=2 v=0\nc2s PINGREQ @%d #8 len=2 v=0\nproblem c2s @2 [tracer-buffer] PUBLISH packet of %d bytes exceeds the stream buffer of 2048 bytes; skipped\n", 2+len(big), len(big))
		if got := summary(c); got != want {
			t.Errorf("got\n%s\nwant\n%s", got, want)
		}
	})
}

// TestResyncAcrossSegments checks that bytes skipped over several
// segments while resynchronising are reported as one problem.
func TestResyncAcrossSegments(t *testing.T) {
	g := newGen(t, linkEthernet)
	f := g.flow("192.0.2.1:40000", "192.0.2.2:1883")
	f.next = [2]uint32{1, 1} // captured mid-stream
	ping := enc(t, &packets.Pingreq{})
	f.send(ClientToServer, append(bytes.Repeat([]byte("x"), 3000), append(ping, ping...)...), 1000, 2000, 3000)
	c := decodeGen(t, g, Options{})
	want := "c2s PINGREQ @3000 #4 len=2 v=0\nc2s PINGREQ @3002 #4 len=2 v=0\nproblem c2s @0 [tracer-resync] skipped 3000 bytes to the next plausible fixed header\n"
	if got := summary(c); got != want || !c.MidStream {
		t.Errorf("midstream %v, got\n%s\nwant\n%s", c.MidStream, got, want)
	}
}

// TestConnectionLifecycle checks FIN and RST per direction, and that a new
// SYN on the same 4-tuple starts a new conversation.
func TestConnectionLifecycle(t *testing.T) {
	c2s, s2c := dpsExchange(t)
	g := newGen(t, linkEthernet)
	f := g.flow("192.0.2.1:40000", "192.0.2.2:1883")
	f.handshake()
	f.send(ClientToServer, enc(t, c2s[0]))
	f.send(ServerToClient, enc(t, s2c[0]))
	f.fin(ClientToServer)
	// The same 4-tuple again, with another ISN, reset by the server.
	f2 := g.flow("192.0.2.1:40000", "192.0.2.2:1883")
	f2.isn = [2]uint32{5555, 7777}
	f2.handshake()
	f2.send(ClientToServer, enc(t, c2s[0]))
	f2.raw(ServerToClient, f2.isn[1]+f2.next[1], 0, "R", nil)
	capt, err := Decode(bytes.NewReader(g.pcap()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(capt.Conversations) != 2 {
		t.Fatalf("%d conversations, want 2", len(capt.Conversations))
	}
	a, b := capt.Conversations[0], capt.Conversations[1]
	if a.ID != 1 || len(a.Packets) != 2 || a.Closed != [2]bool{true, false} || a.MidStream {
		t.Errorf("first: id %d, %d packets, closed %v, midstream %v", a.ID, len(a.Packets), a.Closed, a.MidStream)
	}
	if b.ID != 2 || len(b.Packets) != 1 || b.Closed != [2]bool{true, true} || !b.Start.After(a.End) {
		t.Errorf("second: id %d, %d packets, closed %v", b.ID, len(b.Packets), b.Closed)
	}
	// Who closed first, and when: rules tell "the server closed after the
	// 401" from these.
	if a.CloseFrame[0] == 0 || a.CloseFrame[1] != 0 || a.CloseTime[0].IsZero() || !a.CloseTime[1].IsZero() {
		t.Errorf("first: close frames %v times %v, want only c2s", a.CloseFrame, a.CloseTime)
	}
	if b.CloseFrame[0] <= a.CloseFrame[0] || b.CloseFrame[1] <= a.CloseFrame[0] {
		t.Errorf("second: close frames %v", b.CloseFrame)
	}
}

// TestLateSegmentsAfterClose checks that segments captured after a
// connection closed (the peer's data in flight after an RST, a
// retransmission after both FINs, data captured after its FIN) stay in
// their conversation during time-wait, and that a segment after
// time-wait or clearly outside the old window starts a new, mid-stream
// one; with 1, 2 and 3 workers alike.
func TestLateSegmentsAfterClose(t *testing.T) {
	c2s, s2c := dpsExchange(t)
	connect, connack, sub := enc(t, c2s[0]), enc(t, s2c[0]), enc(t, c2s[1])
	open := func(g *genCapture) *genFlow {
		f := g.flow("192.0.2.1:40000", "192.0.2.2:1883")
		f.handshake()
		f.send(ClientToServer, connect)
		f.send(ServerToClient, connack)
		return f
	}
	for _, tc := range []struct {
		name  string
		build func(g *genCapture)
		want  []string // per conversation: packets, mid-stream
	}{
		{"data in flight after RST", func(g *genCapture) {
			f := open(g)
			f.raw(ClientToServer, f.isn[0]+f.next[0], f.isn[1]+f.next[1], "RA", nil)
			f.send(ServerToClient, connack)
		}, []string{"3 false"}},
		{"retransmission after both FINs", func(g *genCapture) {
			f := open(g)
			f.fin(ClientToServer)
			f.fin(ServerToClient)
			f.at(ServerToClient, 1, connack)
		}, []string{"2 false"}},
		{"FIN captured before the last data", func(g *genCapture) {
			f := open(g)
			f.raw(ClientToServer, f.isn[0]+f.next[0]+uint32(len(sub)), f.isn[1]+f.next[1], "FA", nil)
			f.fin(ServerToClient)
			f.at(ClientToServer, f.next[0], sub)
		}, []string{"3 false"}},
		{"after time-wait", func(g *genCapture) {
			f := open(g)
			f.fin(ClientToServer)
			f.fin(ServerToClient)
			g.now = g.now.Add(timeWait + time.Second)
			f.send(ClientToServer, sub)
		}, []string{"2 false", "1 true"}},
		{"outside the old window", func(g *genCapture) {
			f := open(g)
			f.fin(ClientToServer)
			f.fin(ServerToClient)
			f.at(ClientToServer, f.next[0]+1<<30, sub)
		}, []string{"2 false", "1 true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGen(t, linkEthernet)
			tc.build(g)
			for _, w := range []int{1, 2, 3} {
				capt, err := Decode(bytes.NewReader(g.pcap()), Options{Workers: w})
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, c := range capt.Conversations {
					got = append(got, fmt.Sprintf("%d %v", len(c.Packets), c.MidStream))
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("workers=%d: conversations %q, want %q", w, got, tc.want)
				}
			}
		})
	}
}

// TestFastOpen checks that data carried in a SYN (TCP Fast Open) is
// delivered from its first byte: it starts at ISN+1, not at the SYN's own
// sequence number.
func TestFastOpen(t *testing.T) {
	c2s, s2c := dpsExchange(t)
	g := newGen(t, linkEthernet)
	f := g.flow("192.0.2.1:40000", "192.0.2.2:1883")
	connect := enc(t, c2s[0])
	f.raw(ClientToServer, f.isn[0], 0, "S", connect)
	f.next = [2]uint32{1 + uint32(len(connect)), 1}
	f.raw(ServerToClient, f.isn[1], f.isn[0]+f.next[0], "SA", nil)
	f.send(ServerToClient, enc(t, s2c[0]))
	f.send(ClientToServer, enc(t, c2s[1]))
	c := decodeGen(t, g, Options{})
	if got := summary(c); len(c.Packets) != 3 || len(c.Gaps) != 0 || len(c.Problems) != 0 {
		t.Errorf("%d packets, gaps %v, problems %v:\n%s", len(c.Packets), c.Gaps, c.Problems, got)
	}
}

// TestQuietFlowsBounded checks that a flood of connections that never
// carry data (SYNs without an answer, as in a SYN flood or a port scan)
// keeps the flow table bounded: the least recently seen quiet flows are
// forgotten and counted in a warning.
func TestQuietFlowsBounded(t *testing.T) {
	const limit, syns = 100, 20000
	d := newDecoder(Options{quietFlows: limit})
	server := netip.MustParseAddrPort("192.0.2.2:8883")
	ts := genEpoch
	peak := 0
	for i := range syns {
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(i >> 16), byte(i >> 8)}), uint16(1024+i&0xff))
		d.segment(&segInfo{frame: i + 1, ts: ts, src: client, dst: server, seq: uint32(i), syn: true})
		ts = ts.Add(time.Microsecond)
		peak = max(peak, len(d.flows))
	}
	if peak > 2*limit+1 {
		t.Errorf("flow table peaked at %d flows for %d unanswered SYNs, want at most %d", peak, syns, 2*limit+1)
	}
	if d.forgotten < syns-2*limit {
		t.Errorf("forgotten = %d, want at least %d", d.forgotten, syns-2*limit)
	}
	if w := d.warnings(); len(w) != 1 || !strings.Contains(w[0], "connections that had carried no data were forgotten") {
		t.Errorf("warnings = %q, want one naming the forgotten connections", w)
	}
}

// TestQuietFlowsKeepData checks that the sweeps forget only connections
// that carried no data: MQTT conversations opened among thousands of
// unanswered SYNs, some idle longer than every SYN, all come out whole,
// with 1, 2 and 3 workers.
func TestQuietFlowsKeepData(t *testing.T) {
	c2s, s2c := dpsExchange(t)
	connect, connack, sub := enc(t, c2s[0]), enc(t, s2c[0]), enc(t, c2s[1])
	g := newGen(t, linkEthernet)
	var mq []*genFlow
	for i := range 40 {
		f := g.flow(fmt.Sprintf("192.0.2.1:%d", 40000+i), "192.0.2.2:1883")
		f.handshake()
		f.send(ClientToServer, connect)
		f.send(ServerToClient, connack)
		mq = append(mq, f)
	}
	for i := range 3000 {
		f := g.flow(fmt.Sprintf("198.51.100.%d:%d", 1+i%200, 1024+i), "192.0.2.2:8883")
		f.raw(ClientToServer, uint32(i), 0, "S", nil)
	}
	for _, f := range mq {
		f.send(ClientToServer, sub) // after every SYN: the least recently seen
	}
	for _, w := range []int{1, 2, 3} {
		capt, err := Decode(bytes.NewReader(g.pcap()), Options{Workers: w, quietFlows: 50})
		if err != nil {
			t.Fatal(err)
		}
		if len(capt.Conversations) != len(mq) {
			t.Fatalf("workers=%d: %d conversations, want %d", w, len(capt.Conversations), len(mq))
		}
		for _, c := range capt.Conversations {
			if len(c.Packets) != 3 || c.MidStream {
				t.Errorf("workers=%d: conversation %d has %d packets (mid-stream %v), want 3 from the start", w, c.ID, len(c.Packets), c.MidStream)
			}
		}
		found := false
		for _, s := range capt.Warnings {
			found = found || strings.Contains(s, "connections that had carried no data were forgotten")
		}
		if !found {
			t.Errorf("workers=%d: warnings %q name no forgotten connections", w, capt.Warnings)
		}
	}
}

// TestQuietFlowsKeepNotMQTT checks that a connection already judged not
// to carry MQTT is not forgotten by the sweeps: its later data would start
// a made-up mid-stream conversation (on the TLS and WebSocket ports, where
// the port alone decides a mid-stream flow).
func TestQuietFlowsKeepNotMQTT(t *testing.T) {
	g := newGen(t, linkEthernet)
	var other []*genFlow
	for _, server := range []string{"192.0.2.2:8883", "192.0.2.2:80"} {
		f := g.flow("192.0.2.1:41000", server)
		f.handshake()
		f.send(ClientToServer, []byte("POST /x HTTP/1.1\r\nHost: a\r\n\r\n"))
		f.send(ServerToClient, []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
		other = append(other, f)
	}
	for i := range 3000 {
		f := g.flow(fmt.Sprintf("198.51.100.%d:%d", 1+i%200, 1024+i), "192.0.2.2:9999")
		f.raw(ClientToServer, uint32(i), 0, "S", nil)
	}
	for _, f := range other {
		f.send(ClientToServer, []byte("POST /y HTTP/1.1\r\nHost: a\r\n\r\n"))
		f.send(ServerToClient, []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	}
	for _, w := range []int{1, 2} {
		capt, err := Decode(bytes.NewReader(g.pcap()), Options{Workers: w, quietFlows: 50})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range capt.Conversations {
			t.Errorf("workers=%d: conversation %s", w, summary(c))
		}
	}
}
