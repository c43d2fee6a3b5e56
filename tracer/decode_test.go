package tracer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"

	"github.com/dps-conform/dps-conform/packets"
)

// dpsExchange is a small DPS registration: CONNECT, CONNACK, SUBSCRIBE,
// SUBACK, register PUBLISH, 202 PUBLISH.
func dpsExchange(t testing.TB) (c2s, s2c []packets.Packet) {
	c2s = []packets.Packet{
		&packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, KeepAlive: 60, ClientID: []byte("reg-1"),
			Username: []byte("0ne00000001/registrations/reg-1/api-version=2019-03-31"), Password: []byte("SharedAccessSignature sr=0ne00000001%2fregistrations%2freg-1&sig=c2lnbmF0dXJl&se=1700000000&skn=registration")},
		&packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte("$dps/registrations/res/#"), QoS: 1}}},
		&packets.Publish{QoS: 1, PacketID: 2, Topic: []byte("$dps/registrations/PUT/iotdps-register/?$rid=1"), Payload: []byte(`{"registrationId":"reg-1"}`)},
	}
	s2c = []packets.Packet{
		&packets.Connack{ReturnCode: 0},
		&packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{1}},
		&packets.Publish{QoS: 0, Topic: []byte("$dps/registrations/res/202/?$rid=1&retry-after=3"), Payload: []byte(`{"operationId":"4.abcd","status":"assigning"}`)},
	}
	return c2s, s2c
}

// summary renders a conversation's packets compactly for comparison.
func summary(c *Conversation) string {
	var b bytes.Buffer
	for _, p := range c.Packets {
		fmt.Fprintf(&b, "%s %s @%d #%d len=%d v=%d\n", p.Dir, p.Packet.Type(), p.Offset, p.Frame, len(p.Raw), len(p.Violations))
	}
	for _, g := range c.Gaps {
		fmt.Fprintf(&b, "gap %s @%d len=%d\n", g.Dir, g.Offset, g.Len)
	}
	for _, p := range c.Problems {
		fmt.Fprintf(&b, "problem %s @%d [%s] %s\n", p.Dir, p.Offset, p.Clause, p.Msg)
	}
	return b.String()
}

func TestDecodeLinkTypes(t *testing.T) {
	c2s, s2c := dpsExchange(t)
	for _, tc := range []struct {
		name   string
		link   uint32
		client string
		server string
		format string
	}{
		{"ethernet-ipv4-pcap", linkEthernet, "10.0.0.1:50000", "10.0.0.2:1883", "pcap"},
		{"ethernet-ipv4-pcapgo", linkEthernet, "10.0.0.1:50000", "10.0.0.2:1883", "pcapgo"},
		{"ethernet-ipv6-pcapng", linkEthernet, "[2001:db8::1]:50000", "[2001:db8::2]:1883", "pcapng"},
		{"sll-ipv4", linkSLL, "10.0.0.1:50000", "10.0.0.2:1883", "pcap"},
		{"sll-ipv6", linkSLL, "[::1]:50000", "[::1]:1883", "pcapgo"},
		{"sll2-ipv4", linkSLL2, "10.0.0.1:50000", "10.0.0.2:1883", "pcap"},
		{"sll2-ipv6", linkSLL2, "[fe80::1]:50000", "[fe80::2]:1883", "pcap"},
		{"raw-ipv4", linkRaw, "10.0.0.1:50000", "10.0.0.2:1883", "pcap"},
		{"raw-ipv6", linkRaw, "[2001:db8::1]:50000", "[2001:db8::2]:1883", "pcapng"},
		{"ipv4-linktype", linkIPv4, "10.0.0.1:50000", "10.0.0.2:1883", "pcap"},
		{"null-ipv4", linkNull, "127.0.0.1:50000", "127.0.0.1:1883", "pcap"},
		{"null-ipv6", linkNull, "[::1]:50000", "[::1]:1883", "pcapng"},
		{"loop-ipv4", linkLoop, "127.0.0.1:50000", "127.0.0.1:1883", "pcap"},
		{"loop-ipv6", linkLoop, "[::1]:50000", "[::1]:1883", "pcap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGen(t, tc.link)
			f := g.flow(tc.client, tc.server)
			f.handshake()
			for i := range c2s {
				f.send(ClientToServer, enc(t, c2s[i]))
				f.send(ServerToClient, enc(t, s2c[i]))
			}
			f.fin(ClientToServer)
			f.fin(ServerToClient)
			var file []byte
			switch tc.format {
			case "pcap":
				file = g.pcap()
			case "pcapgo":
				file = g.pcapgo()
			case "pcapng":
				file = g.pcapng()
			}
			capt, err := Decode(bytes.NewReader(file), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if capt.Frames != len(g.frames) {
				t.Errorf("Frames = %d, want %d", capt.Frames, len(g.frames))
			}
			if len(capt.Conversations) != 1 {
				t.Fatalf("%d conversations, want 1; warnings %q", len(capt.Conversations), capt.Warnings)
			}
			c := capt.Conversations[0]
			if c.Client.String() != tc.client || c.Server.String() != tc.server {
				t.Errorf("endpoints %v -> %v, want %s -> %s", c.Client, c.Server, tc.client, tc.server)
			}
			if c.Transport != "mqtt" || c.MQTTVersion != 4 || c.MidStream || c.Closed != [2]bool{true, true} {
				t.Errorf("transport %q version %d midstream %v closed %v", c.Transport, c.MQTTVersion, c.MidStream, c.Closed)
			}
			if !c.Start.Equal(genEpoch) || !c.End.Equal(g.now.Add(-1e6)) {
				t.Errorf("start %v end %v", c.Start, c.End)
			}
			if len(c.Packets) != 6 {
				t.Fatalf("%d packets, want 6:\n%s", len(c.Packets), summary(c))
			}
			for i, p := range c.Packets {
				want := c2s[i/2]
				if i%2 == 1 {
					want = s2c[i/2]
				}
				if p.Dir != Direction(i%2) || p.Frame != 4+i || !bytes.Equal(p.Raw, enc(t, want)) || p.Packet.Type() != want.Type() {
					t.Errorf("packet %d: %s frame %d type %v raw %x", i, p.Dir, p.Frame, p.Packet.Type(), p.Raw)
				}
			}
			if len(c.Gaps)+len(c.Problems) != 0 {
				t.Errorf("unexpected gaps/problems:\n%s", summary(c))
			}
		})
	}
}

// TestDecodeWorkers checks that sharding flows over workers decodes the
// same conversations, numbered the same, as one goroutine does.
func TestDecodeWorkers(t *testing.T) {
	defer goleak.VerifyNone(t)
	var buf bytes.Buffer
	writeBenchCapture(t, &buf, 50, 2<<20)
	data := buf.Bytes()
	var want string
	for _, w := range []int{1, 2, 3} {
		capt, err := Decode(bytes.NewReader(data), Options{Workers: w})
		if err != nil {
			t.Fatal(err)
		}
		if len(capt.Conversations) != 50 {
			t.Fatalf("workers=%d: %d conversations, want 50", w, len(capt.Conversations))
		}
		var b bytes.Buffer
		for _, c := range capt.Conversations {
			fmt.Fprintf(&b, "conversation %d %v %v\n%s", c.ID, c.Client, c.Server, summary(c))
		}
		if w == 1 {
			want = b.String()
			continue
		}
		if b.String() != want {
			t.Errorf("workers=%d decodes differently from workers=1", w)
		}
	}
}

// TestDecodeCorruptWorkers checks that a corrupt file stops the workers
// (no goroutine leak) and returns the error.
func TestDecodeCorruptWorkers(t *testing.T) {
	defer goleak.VerifyNone(t)
	var buf bytes.Buffer
	writeBenchCapture(t, &buf, 5, 64<<10)
	data := buf.Bytes()
	// Corrupt the captured length of a record in the middle.
	off := 24
	for i := 0; i < 20; i++ {
		off += 16 + int(binary.LittleEndian.Uint32(data[off+8:]))
	}
	binary.LittleEndian.PutUint32(data[off+8:], 0x7fffffff)
	_, err := Decode(bytes.NewReader(data), Options{Workers: 2})
	want := fmt.Sprintf("tracer: pcap record 21 at byte offset %d: captured length 2147483647 exceeds 67108864", off)
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

// TestDecodeOnConversation checks the streaming mode: conversations are
// delivered when their connection closes, numbered in delivery order, and
// not collected in the Capture.
func TestDecodeOnConversation(t *testing.T) {
	c2s, s2c := dpsExchange(t)
	g := newGen(t, linkEthernet)
	a := g.flow("10.0.0.1:1000", "10.0.0.9:1883")
	b := g.flow("10.0.0.2:1000", "10.0.0.9:1883")
	c := g.flow("10.0.0.3:1000", "10.0.0.9:1883")
	for _, f := range []*genFlow{a, b, c} {
		f.handshake()
		f.send(ClientToServer, enc(t, c2s[0]))
		f.send(ServerToClient, enc(t, s2c[0]))
	}
	b.fin(ClientToServer)
	b.fin(ServerToClient) // b closes first: delivered first, once its time-wait ends
	g.now = g.now.Add(timeWait + time.Second)
	a.send(ClientToServer, enc(t, c2s[1]))
	file := g.pcap()
	for _, workers := range []int{1, 2} {
		var got []string
		capt, err := Decode(bytes.NewReader(file), Options{Workers: workers, OnConversation: func(cv *Conversation) {
			got = append(got, fmt.Sprintf("%d %v %d", cv.ID, cv.Client, len(cv.Packets)))
		}})
		if err != nil {
			t.Fatal(err)
		}
		if len(capt.Conversations) != 0 {
			t.Errorf("workers=%d: %d conversations collected, want 0", workers, len(capt.Conversations))
		}
		want := []string{"1 10.0.0.2:1000 2", "2 10.0.0.1:1000 3", "3 10.0.0.3:1000 2"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("workers=%d: delivered %q, want %q", workers, got, want)
		}
	}
}

// TestDecodeOnPacket checks the per-packet streaming mode against the
// kept mode: the same packets (direction, frame, offset, bytes, decoded
// form) reach OnPacket, per conversation and in order, for 1 and 2
// workers, and none is collected in Conversation.Packets.
func TestDecodeOnPacket(t *testing.T) {
	defer goleak.VerifyNone(t)
	var buf bytes.Buffer
	writeBenchCapture(t, &buf, 40, 1<<20)
	data := buf.Bytes()
	line := func(p *Packet) string {
		return fmt.Sprintf("%v %d %d %x %+v %d", p.Dir, p.Frame, p.Offset, p.Raw, p.Packet, len(p.Violations))
	}
	kept, err := Decode(bytes.NewReader(data), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.AddrPort][]string{}
	for _, c := range kept.Conversations {
		for i := range c.Packets {
			want[c.Client] = append(want[c.Client], line(&c.Packets[i]))
		}
	}
	if len(want) != 40 {
		t.Fatalf("kept mode: %d conversations with packets, want 40", len(want))
	}
	for _, w := range []int{1, 2} {
		got := map[netip.AddrPort][]string{}
		delivered := 0
		capt, err := Decode(bytes.NewReader(data), Options{Workers: w,
			OnPacket: func(c *Conversation, p *Packet) { got[c.Client] = append(got[c.Client], line(p)) },
			OnConversation: func(c *Conversation) {
				delivered++
				if len(c.Packets) != 0 {
					t.Errorf("workers=%d: conversation %v collected %d packets in streaming mode", w, c.Client, len(c.Packets))
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		if delivered != 40 || len(capt.Conversations) != 0 {
			t.Errorf("workers=%d: %d conversations delivered, %d collected; want 40, 0", w, delivered, len(capt.Conversations))
		}
		for cl, ps := range want {
			if !slices.Equal(got[cl], ps) {
				t.Errorf("workers=%d: conversation %v streamed %d packets differing from the %d kept", w, cl, len(got[cl]), len(ps))
			}
		}
	}
}

// TestDecodeKeptPacketsOwnStorage checks that kept packets do not share
// the decoder's reused storage: the byte slices of each decoded packet
// point into its own Raw, and the slices a packets.Decoder reuses
// (Subscribe.Subscriptions) are distinct per packet.
func TestDecodeKeptPacketsOwnStorage(t *testing.T) {
	var buf bytes.Buffer
	writeBenchCapture(t, &buf, 3, 64<<10)
	capt, err := Decode(bytes.NewReader(buf.Bytes()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	within := func(b, raw []byte) bool {
		if len(b) == 0 {
			return true
		}
		p, r := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&raw[0]))
		return p >= r && p+uintptr(len(b)) <= r+uintptr(len(raw))
	}
	var subs []*packets.Subscribe
	for _, c := range capt.Conversations {
		for i := range c.Packets {
			p := &c.Packets[i]
			switch v := p.Packet.(type) {
			case *packets.Publish:
				if !within(v.Topic, p.Raw) || !within(v.Payload, p.Raw) {
					t.Fatalf("conversation %d packet %d: PUBLISH fields outside its Raw", c.ID, i)
				}
			case *packets.Connect:
				if !within(v.ClientID, p.Raw) {
					t.Fatalf("conversation %d packet %d: CONNECT client id outside its Raw", c.ID, i)
				}
			case *packets.Subscribe:
				if !within(v.Subscriptions[0].Filter, p.Raw) {
					t.Fatalf("conversation %d packet %d: SUBSCRIBE filter outside its Raw", c.ID, i)
				}
				subs = append(subs, v)
			}
		}
	}
	if len(subs) != 3 {
		t.Fatalf("%d SUBSCRIBE packets, want 3", len(subs))
	}
	if &subs[0].Subscriptions[0] == &subs[1].Subscriptions[0] {
		t.Error("two kept SUBSCRIBE packets share their Subscriptions storage")
	}
}

// withIPv6Ext rewrites every frame of a raw-IP IPv6 capture to carry the
// extension headers hdrs (each 8*n bytes; their next-header bytes are
// filled in) between the IPv6 header and TCP.
func withIPv6Ext(g *genCapture, types []byte, hdrs ...[]byte) {
	for i := range g.frames {
		p := g.frames[i].data
		next := p[6]
		var ext []byte
		for j := len(hdrs) - 1; j >= 0; j-- {
			h := slices.Clone(hdrs[j])
			h[0] = next
			next = types[j]
			ext = append(h, ext...)
		}
		out := append(slices.Clone(p[:40]), ext...)
		out = append(out, p[40:]...)
		out[6] = next
		binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
		g.frames[i].data = out
	}
}

// ipv6Exchange is an IPv6 conversation of one packet each way (c2s then
// s2c) whose frames carry the extension headers hdrs of types.
func ipv6Exchange(t *testing.T, c2s, s2c packets.Packet, types []byte, hdrs ...[]byte) *genCapture {
	t.Helper()
	g := newGen(t, linkRaw)
	f := g.flow("[2001:db8::2]:50000", "[2001:db8::1]:1883")
	f.handshake()
	f.send(ClientToServer, enc(t, c2s))
	f.send(ServerToClient, enc(t, s2c))
	withIPv6Ext(g, types, hdrs...)
	return g
}

// TestDecodeIPv6ExtensionHeaders checks that TCP behind IPv6 extension
// headers is decoded: hop-by-hop (which gopacket skips itself, leaving
// NextHeader 0), destination options and routing, alone and chained.
func TestDecodeIPv6ExtensionHeaders(t *testing.T) {
	c2s, s2c := dpsExchange(t)
	pad := []byte{0, 0, 1, 4, 0, 0, 0, 0} // one 8-byte header, PadN
	for _, tc := range []struct {
		name  string
		types []byte
		hdrs  [][]byte
	}{
		{"hop-by-hop", []byte{0}, [][]byte{pad}},
		{"hop-by-hop, destination options", []byte{0, 60}, [][]byte{pad, pad}},
		{"destination options", []byte{60}, [][]byte{pad}},
		{"routing", []byte{43}, [][]byte{{0, 0, 0, 0, 0, 0, 0, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := decodeGen(t, ipv6Exchange(t, c2s[0], s2c[0], tc.types, tc.hdrs...), Options{})
			if len(c.Packets) != 2 || c.MidStream {
				t.Errorf("%d packets, mid-stream %v, want 2 from the start", len(c.Packets), c.MidStream)
			}
		})
	}
}

// TestDecodeIPv6Fragments checks that an atomic fragment (offset 0, no
// More Fragments) is decoded, and that real fragments and extension
// headers the decoder cannot skip are counted in a warning.
func TestDecodeIPv6Fragments(t *testing.T) {
	c2s, s2c := dpsExchange(t)
	for _, tc := range []struct {
		name    string
		typ     byte
		hdr     []byte
		packets int
		warning string
	}{
		{"atomic fragment", 44, []byte{0, 0, 0, 0, 0, 0, 0, 1}, 2, ""},
		{"first fragment", 44, []byte{0, 0, 0, 1, 0, 0, 0, 1}, 0, "IPv6 fragments ignored (5 frames)"},
		{"later fragment", 44, []byte{0, 0, 0, 8, 0, 0, 0, 1}, 0, "IPv6 fragments ignored (5 frames)"},
		{"ESP", 50, []byte{0, 0, 0, 1, 0, 0, 0, 1}, 0, "IPv6 next header 50 not supported (5 frames)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := ipv6Exchange(t, c2s[0], s2c[0], []byte{tc.typ}, tc.hdr)
			capt, err := Decode(bytes.NewReader(g.pcap()), Options{})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, c := range capt.Conversations {
				n += len(c.Packets)
			}
			var want []string
			if tc.warning != "" {
				want = []string{tc.warning}
			}
			if n != tc.packets || fmt.Sprint(capt.Warnings) != fmt.Sprint(want) {
				t.Errorf("%d packets, warnings %q; want %d, %q", n, capt.Warnings, tc.packets, want)
			}
		})
	}
}

// TestDecodeIPVersionMismatch: a frame whose link layer says IPv4 (or
// IPv6) but whose IP header carries another version is no datagram of that
// version (RFC 1122 §3.2.1.1): it is ignored with a warning, on every link
// type that names the version apart from the header, never decoded as if
// the version were right.
func TestDecodeIPVersionMismatch(t *testing.T) {
	c2s, s2c := dpsExchange(t)
	for _, tc := range []struct {
		name   string
		link   uint32
		off    int // of the IP header in a frame
		client string
		server string
		nibble byte
	}{
		{"Ethernet IPv4, version 5", linkEthernet, 14, "192.0.2.2:50000", "192.0.2.1:1883", 5},
		{"Ethernet IPv4, version 6", linkEthernet, 14, "192.0.2.2:50000", "192.0.2.1:1883", 6},
		{"Ethernet IPv6, version 7", linkEthernet, 14, "[2001:db8::2]:50000", "[2001:db8::1]:1883", 7},
		{"Linux SLL IPv4, version 0", linkSLL, 16, "192.0.2.2:50000", "192.0.2.1:1883", 0},
		{"BSD loopback IPv6, version 4", linkNull, 4, "[2001:db8::2]:50000", "[2001:db8::1]:1883", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGen(t, tc.link)
			f := g.flow(tc.client, tc.server)
			f.handshake()
			f.send(ClientToServer, enc(t, c2s[0]))
			f.send(ServerToClient, enc(t, s2c[0]))
			if c := decodeGen(t, g, Options{}); len(c.Packets) != 2 {
				t.Fatalf("unchanged frames: %d packets, want 2", len(c.Packets))
			}
			for i := range g.frames {
				b := g.frames[i].data
				b[tc.off] = tc.nibble<<4 | b[tc.off]&0x0f
			}
			capt, err := Decode(bytes.NewReader(g.pcap()), Options{})
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("[frames whose IP version field disagrees with the link layer's IPv4/IPv6 type ignored (RFC 1122 §3.2.1.1) (%d frames)]", len(g.frames))
			if len(capt.Conversations) != 0 || fmt.Sprint(capt.Warnings) != want {
				t.Errorf("%d conversations, warnings %q; want none and %s", len(capt.Conversations), capt.Warnings, want)
			}
		})
	}
}
