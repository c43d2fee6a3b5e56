package tracer

import (
	"bytes"
	"fmt"
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
