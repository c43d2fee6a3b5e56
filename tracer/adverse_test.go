package tracer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/packets"
)

// Captures from the field are imperfect: segments lost by the capture,
// retransmitted, reordered, cut by the snapshot length, captured twice.
// These tests build such captures and check that every MQTT packet that
// can be recovered is, and that every loss is reported with where it
// happened. tshark_adverse_test.go compares the same captures with tshark.

// adversePubs are n QoS 1 PUBLISH packets of a 300-byte payload, packet
// ids 10, 11, ...: 352 bytes each, so that 200-byte segments cut them
// at varying places.
func adversePubs(t testing.TB, n int) [][]byte {
	var out [][]byte
	for i := range n {
		out = append(out, enc(t, &packets.Publish{QoS: 1, PacketID: uint16(10 + i),
			Topic:   []byte("$dps/registrations/PUT/iotdps-register/?$rid=1"),
			Payload: bytes.Repeat([]byte{'a' + byte(i)}, 300)}))
	}
	return out
}

// adverseOpen starts a connection on 1883 with CONNECT, CONNACK,
// SUBSCRIBE and SUBACK (frames 1 to 7); the client's stream is then at
// offset adverseC2S.
func adverseOpen(t testing.TB, g *genCapture) *genFlow {
	c2s, s2c := dpsExchange(t)
	f := g.flow("192.0.2.1:40000", "192.0.2.2:1883")
	f.handshake()
	f.send(ClientToServer, enc(t, c2s[0]))
	f.send(ServerToClient, enc(t, s2c[0]))
	f.send(ClientToServer, enc(t, c2s[1]))
	f.send(ServerToClient, enc(t, s2c[1]))
	return f
}

// adverseC2S is the length of the client's CONNECT and SUBSCRIBE.
func adverseC2S(t testing.TB) int {
	c2s, _ := dpsExchange(t)
	return len(enc(t, c2s[0], c2s[1]))
}

// segmented sends b client to server in segments of size bytes, one frame
// each, except the segments whose index is in lost: their bytes are
// skipped, as a capture that dropped them. It returns, for each byte of b,
// the frame that carried it (0 when lost).
func segmented(f *genFlow, b []byte, size int, lost ...int) []int {
	frameOf := make([]int, len(b))
	for i, k := 0, 0; i < len(b); i, k = i+size, k+1 {
		seg := b[i:min(i+size, len(b))]
		if containsInt(lost, k) {
			f.skip(ClientToServer, len(seg))
			continue
		}
		f.send(ClientToServer, seg)
		for j := range seg {
			frameOf[i+j] = len(f.g.frames)
		}
	}
	return frameOf
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// c2sPublishes summarises the client's PUBLISH packets as "id@frame".
func c2sPublishes(c *Conversation) string {
	var s []string
	for _, p := range c.Packets {
		if pub, ok := p.Packet.(*packets.Publish); ok && p.Dir == ClientToServer {
			s = append(s, fmt.Sprintf("%d@%d", pub.PacketID, p.Frame))
		}
	}
	return strings.Join(s, " ")
}

// wantPublishes is c2sPublishes for the PUBLISH packets of pubs (sent back
// to back from stream offset 0 of b) that frameOf shows whole: each
// completed by the frame of its last byte.
func wantPublishes(pubs [][]byte, frameOf []int) string {
	var s []string
	off := 0
	for i, p := range pubs {
		whole := true
		for j := off; j < off+len(p); j++ {
			whole = whole && frameOf[j] != 0
		}
		if whole {
			s = append(s, fmt.Sprintf("%d@%d", 10+i, frameOf[off+len(p)-1]))
		}
		off += len(p)
	}
	return strings.Join(s, " ")
}

// TestGapHeldSegmentsOwnFrames: after a segment the capture lost, the
// segments held behind the hole are decoded when the peer's
// acknowledgement (or the end of the capture) shows the hole will not be
// filled. Their packets are dated by the frames that carried them, not by
// the frame that revealed the gap, which may be a frame of the other
// direction or the connection's last frame, seconds later; the gap is
// placed before the first frame after the hole, and says which frame
// revealed it.
func TestGapHeldSegmentsOwnFrames(t *testing.T) {
	pubs := adversePubs(t, 6)
	all := bytes.Join(pubs, nil)
	for _, acked := range []bool{true, false} {
		t.Run(fmt.Sprintf("acked=%v", acked), func(t *testing.T) {
			g := newGen(t, linkEthernet)
			f := adverseOpen(t, g)
			frameOf := segmented(f, all, 200, 3)
			resume := frameOf[800]
			if acked {
				f.send(ServerToClient, enc(t, &packets.Puback{PacketID: 10}))
			}
			noticed := len(g.frames)
			c := decodeGen(t, g, Options{})
			if got, want := c2sPublishes(c), wantPublishes(pubs, frameOf); got != want {
				t.Errorf("PUBLISH id@frame %q, want %q:\n%s", got, want, summary(c))
			}
			for _, p := range c.Packets {
				if want := genEpoch.Add(time.Duration(p.Frame-1) * time.Millisecond); !p.Time.Equal(want) {
					t.Errorf("%v %v at frame %d dated %v, want its frame's time %v", p.Dir, p.Packet.Type(), p.Frame, p.Time, want)
				}
			}
			if len(c.Gaps) != 1 || c.Gaps[0].Frame != resume || c.Gaps[0].Noticed != noticed || c.Gaps[0].Len != 200 {
				t.Errorf("gaps %+v, want one of 200 bytes before frame %d, noticed at frame %d", c.Gaps, resume, noticed)
			}
			var text bytes.Buffer
			if err := WriteText(&text, &Capture{Conversations: []*Conversation{c}}, TranscriptOptions{}); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("c>s #%d GAP 200 bytes missing at stream offset %d (before this frame; noticed at frame %d)\n", resume, adverseC2S(t)+600, noticed)
			out := text.String()
			gi := strings.Index(out, want)
			if gi < 0 || strings.Index(out, "id=13") < gi {
				t.Errorf("transcript: want %q before the PUBLISH id=13:\n%s", want, out)
			}
		})
	}
}

// TestOverlapFirstCopyWins: a retransmission overlapping bytes already
// held out of order (or an in-order segment running into them) does not
// replace them: the first copy of a byte wins, as for bytes already
// delivered. When the copies differ, which the tracer can see for held
// bytes, a tracer-overlap problem says where, and which frames.
func TestOverlapFirstCopyWins(t *testing.T) {
	pubs := adversePubs(t, 6)
	all := bytes.Join(pubs, nil)
	base := int64(adverseC2S(t))
	altered := func(lo, hi, from, to int) []byte {
		b := bytes.Clone(all[lo:hi])
		for i := from - lo; i < to-lo; i++ {
			b[i] = 'Z'
		}
		return b
	}
	for _, tc := range []struct {
		name string
		send func(f *genFlow, start uint32)
		want string // tracer-overlap problems
	}{
		{"held then overlapping held", func(f *genFlow, start uint32) {
			f.at(ClientToServer, start+600, all[600:900])                // frame 8
			f.at(ClientToServer, start+500, altered(500, 800, 600, 800)) // frame 9: differs at 600..800
			f.at(ClientToServer, start, all[:500])                       // frame 10
			f.skip(ClientToServer, 900)
			f.send(ClientToServer, all[900:])
		}, fmt.Sprintf("c2s #9 @%d frame 9 carries other bytes than frame 8 at TCP stream offset %d (200 bytes from the first difference to the last); the copy of frame 8 is decoded", base+600, base+600)},
		{"in-order into held", func(f *genFlow, start uint32) {
			f.at(ClientToServer, start+600, all[600:900])          // frame 8
			f.at(ClientToServer, start, altered(0, 700, 650, 660)) // frame 9: differs at 650..660
			f.skip(ClientToServer, 900)
			f.send(ClientToServer, all[900:])
		}, fmt.Sprintf("c2s #9 @%d frame 9 carries other bytes than frame 8 at TCP stream offset %d (10 bytes from the first difference to the last); the copy of frame 8 is decoded", base+650, base+650)},
		{"identical overlaps", func(f *genFlow, start uint32) {
			f.at(ClientToServer, start+600, all[600:900])
			f.at(ClientToServer, start+500, all[500:800])
			f.at(ClientToServer, start+550, all[550:1000])
			f.at(ClientToServer, start, all[:700])
			f.skip(ClientToServer, 1000)
			f.send(ClientToServer, all[1000:])
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGen(t, linkEthernet)
			f := adverseOpen(t, g)
			tc.send(f, f.next[ClientToServer])
			f.fin(ClientToServer)
			c := decodeGen(t, g, Options{})
			if got, want := c2sPublishes(c), "10@10 11@10 12@11 13@11 14@11 15@11"; tc.name == "held then overlapping held" && got != want {
				t.Errorf("PUBLISH id@frame %q, want %q:\n%s", got, want, summary(c))
			}
			var pubs int
			for _, p := range c.Packets {
				if pub, ok := p.Packet.(*packets.Publish); ok {
					pubs++
					if bytes.Contains(pub.Payload, []byte("Z")) || len(p.Violations) > 0 {
						t.Errorf("PUBLISH id %d decoded from the second copy: %q", pub.PacketID, pub.Payload)
					}
				}
			}
			var got []string
			for _, p := range c.Problems {
				if p.Clause == "tracer-overlap" {
					got = append(got, fmt.Sprintf("%v #%d @%d %s", p.Dir, p.Frame, p.Offset, p.Msg))
				} else {
					t.Errorf("problem %+v", p)
				}
			}
			if pubs != 6 || strings.Join(got, "\n") != tc.want {
				t.Errorf("%d PUBLISH, want 6; overlap problems\n%s\nwant\n%s\n%s", pubs, strings.Join(got, "\n"), tc.want, summary(c))
			}
		})
	}
}

// pcapSnap is pcap with every frame cut to snap bytes, as a capture with
// that snapshot length: the record keeps the frame's original length.
func (g *genCapture) pcapSnap(snap int) []byte {
	b := g.pcap()
	out := append([]byte(nil), b[:24]...)
	binary.LittleEndian.PutUint32(out[16:], uint32(snap))
	for i := 24; i < len(b); {
		n := int(binary.LittleEndian.Uint32(b[i+8:]))
		r := bytes.Clone(b[i : i+16])
		c := min(n, snap)
		binary.LittleEndian.PutUint32(r[8:], uint32(c))
		out = append(append(out, r...), b[i+16:i+16+c]...)
		i += 16 + n
	}
	return out
}

// TestSnapLengthGaps: the bytes a small snapshot length cut from a frame
// are a gap at once, in that frame, marked as cut (the IP header tells
// how many), rather than a hole noticed frames later, or not at all when
// the frame was the direction's last: then the packet it cut was reported
// as the stream ending inside it.
func TestSnapLengthGaps(t *testing.T) {
	pubs := adversePubs(t, 7) // 2471 bytes: the last segment is cut too
	all := bytes.Join(pubs, nil)
	g := newGen(t, linkEthernet)
	f := adverseOpen(t, g)
	// 500-byte segments; the snapshot length keeps 400 bytes of payload
	// (Ethernet, IPv4 and TCP headers: 54 bytes).
	const seg, kept = 500, 400
	frameOf := segmented(f, all, seg)
	var want []string
	for i := 0; i < len(all); i += seg {
		if n := min(seg, len(all)-i); n > kept {
			want = append(want, fmt.Sprintf("c2s #%d GAP %d @%d cut", frameOf[i], n-kept, int64(adverseC2S(t)+i+kept)))
			for j := i + kept; j < i+n; j++ {
				frameOf[j] = 0
			}
		}
	}
	f.send(ServerToClient, enc(t, &packets.Puback{PacketID: 10}))
	capt, err := Decode(bytes.NewReader(g.pcapSnap(54+kept)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := capt.Conversations[0]
	var got []string
	for _, gp := range c.Gaps {
		s := fmt.Sprintf("%v #%d GAP %d @%d", gp.Dir, gp.Frame, gp.Len, gp.Offset)
		if gp.Cut {
			s += " cut"
		}
		if gp.Noticed != gp.Frame {
			s += fmt.Sprintf(" noticed #%d", gp.Noticed)
		}
		got = append(got, s)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("gaps\n%s\nwant\n%s\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), summary(c))
	}
	if got, want := c2sPublishes(c), wantPublishes(pubs, frameOf); got != want {
		t.Errorf("PUBLISH id@frame %q, want %q:\n%s", got, want, summary(c))
	}
	for _, p := range c.Problems {
		if p.Clause == "tracer-truncated" {
			t.Errorf("problem %+v: the stream does not end inside a packet, the snapshot length cut it", p)
		}
	}
	var text bytes.Buffer
	if err := WriteText(&text, capt, TranscriptOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), fmt.Sprintf("c>s #%d GAP 100 bytes missing at stream offset %d (not captured: the snapshot length cut this frame)\n", 8, adverseC2S(t)+kept)) {
		t.Errorf("transcript:\n%s", text.String())
	}
}

// TestSnapLengthTCPHeader: a snapshot length that cuts the TCP header
// (68 bytes, tcpdump's old default, with IPv6 and TCP options) loses
// the segment; the warning says so rather than calling the header
// malformed.
func TestSnapLengthTCPHeader(t *testing.T) {
	g := newGen(t, linkEthernet)
	f := adverseOpen(t, g)
	f.send(ClientToServer, adversePubs(t, 1)[0])
	capt, err := Decode(bytes.NewReader(g.pcapSnap(14+20+10)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := "TCP headers cut by the capture's snapshot length: segments ignored (8 frames)"
	if !slices.Contains(capt.Warnings, want) {
		t.Errorf("warnings %q, want %q", capt.Warnings, want)
	}
}

// TestAckedButNeverCaptured: a segment the capture lost at the end of
// what a side sent (nothing of that side follows but its FIN) is a gap
// too: the peer acknowledged bytes the capture never saw. Before, only a
// hole with captured data after it was a gap, and such a loss (the
// SUBSCRIBE here, its SUBACK captured) went unreported: the rules then
// judged the MQTT as if the client had sent no SUBSCRIBE.
func TestAckedButNeverCaptured(t *testing.T) {
	c2s, s2c := dpsExchange(t)
	connect, sub := enc(t, c2s[0]), enc(t, c2s[1])
	for _, tc := range []struct {
		name string
		fin  bool
	}{{"then FIN", true}, {"capture ends", false}} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGen(t, linkEthernet)
			f := g.flow("192.0.2.1:40000", "192.0.2.2:1883")
			f.handshake()
			f.send(ClientToServer, connect)
			f.send(ServerToClient, enc(t, s2c[0]))
			f.skip(ClientToServer, len(sub))
			f.send(ServerToClient, enc(t, s2c[1])) // frame 6 acknowledges the SUBSCRIBE
			if tc.fin {
				f.fin(ClientToServer)
				f.fin(ServerToClient)
				f.raw(ClientToServer, f.isn[0]+f.next[0], f.isn[1]+f.next[1], "A", nil)
			}
			c := decodeGen(t, g, Options{})
			want := []Gap{{Dir: ClientToServer, Frame: 6, Noticed: len(g.frames), Offset: int64(len(connect)), Len: len(sub)}}
			if fmt.Sprint(c.Gaps) != fmt.Sprint(want) {
				t.Errorf("gaps %+v, want %+v\n%s", c.Gaps, want, summary(c))
			}
			if c.Unseen() == "" {
				t.Error("Unseen is empty: the rules would judge a conversation with a lost SUBSCRIBE")
			}
		})
	}
	t.Run("no false gap", func(t *testing.T) {
		// The peer acknowledging the FIN, or a FIN the capture missed,
		// is no lost data.
		for _, lostFIN := range []bool{false, true} {
			g := newGen(t, linkEthernet)
			f := g.flow("192.0.2.1:40000", "192.0.2.2:1883")
			f.handshake()
			f.send(ClientToServer, connect)
			f.send(ServerToClient, enc(t, s2c[0]))
			if lostFIN {
				f.next[ClientToServer]++
			} else {
				f.fin(ClientToServer)
			}
			f.fin(ServerToClient)
			c := decodeGen(t, g, Options{})
			if len(c.Gaps) != 0 {
				t.Errorf("lost FIN %v: gaps %+v", lostFIN, c.Gaps)
			}
		}
	})
}
