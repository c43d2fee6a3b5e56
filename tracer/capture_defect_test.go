package tracer

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestCaptureDefects: what a capture lost (a gap, the start of a
// conversation captured mid-stream, the end of a capture that stopped
// inside a packet) is a defect of the capture, not a decode violation of
// the peers: CountViolations leaves it out and CountCaptureDefects counts
// it. Bytes a peer sent stay violations: a malformed packet and the bytes
// skipped after it, and a stream that a FIN ends inside a packet.
func TestCaptureDefects(t *testing.T) {
	c2s, s2c := dpsExchange(t)
	connect, sub, pub := enc(t, c2s[0]), enc(t, c2s[1]), enc(t, c2s[2])
	connack := enc(t, s2c[0])
	for _, tc := range []struct {
		name string
		send func(f *genFlow)
		// violations and defects are what CountViolations and
		// CountCaptureDefects should say; defect lists the clauses of
		// the problems that are Problem.CaptureDefect.
		violations, defects int
		defect              []string
	}{
		{"mid-stream", func(f *genFlow) {
			f.next = [2]uint32{1, 1}
			f.send(ClientToServer, connect[len(connect)-30:])
			f.send(ServerToClient, connack)
			f.send(ClientToServer, sub)
			f.send(ClientToServer, pub)
			f.fin(ClientToServer)
		}, 0, 1, []string{"tracer-resync"}},
		// Captured mid-stream at a packet boundary: no byte is skipped,
		// but the CONNECT (and the SUBSCRIBE) were never seen.
		{"mid-stream at a packet boundary", func(f *genFlow) {
			f.next = [2]uint32{1, 1}
			f.send(ClientToServer, pub)
			f.fin(ClientToServer)
		}, 0, 1, []string{ClauseMidStream}},
		{"mid-stream at a packet boundary, server first", func(f *genFlow) {
			f.next = [2]uint32{1, 1}
			f.send(ServerToClient, connack)
			f.send(ClientToServer, sub)
			f.send(ClientToServer, pub)
			f.fin(ClientToServer)
		}, 0, 1, []string{ClauseMidStream}},
		// Only the TCP handshake is missing: the client's first packet,
		// its CONNECT, is there, and so is the whole exchange.
		{"mid-stream from the CONNECT", func(f *genFlow) {
			f.next = [2]uint32{1, 1}
			f.send(ClientToServer, connect)
			f.send(ServerToClient, connack)
			f.send(ClientToServer, sub)
			f.send(ClientToServer, pub)
			f.fin(ClientToServer)
		}, 0, 0, nil},
		// The server's stream starts inside a packet, the client's at a
		// packet boundary after its CONNECT: both are defects.
		{"mid-stream, server inside a packet", func(f *genFlow) {
			f.next = [2]uint32{1, 1}
			f.send(ServerToClient, connack[1:])
			f.send(ClientToServer, sub)
			f.send(ClientToServer, pub)
			f.fin(ClientToServer)
		}, 0, 2, []string{"tracer-resync", ClauseMidStream}},
		// The SYN was captured, the CONNECT lost in a gap: the gap is
		// the defect; the capture did not start mid-connection.
		{"gap over the CONNECT", func(f *genFlow) {
			f.handshake()
			f.skip(ClientToServer, len(connect))
			f.send(ServerToClient, connack)
			f.send(ClientToServer, sub)
			f.send(ClientToServer, pub)
			f.fin(ClientToServer)
		}, 0, 1, nil},
		{"gap inside a packet", func(f *genFlow) {
			f.handshake()
			f.send(ClientToServer, connect)
			f.send(ServerToClient, connack)
			f.send(ClientToServer, sub[:4])
			f.skip(ClientToServer, len(sub)-4)
			f.send(ClientToServer, pub)
			f.fin(ClientToServer)
		}, 0, 2, []string{"tracer-gap"}},
		{"capture ends inside a packet", func(f *genFlow) {
			f.handshake()
			f.send(ClientToServer, connect)
			f.send(ServerToClient, connack)
			f.send(ClientToServer, pub[:10])
		}, 0, 1, []string{"tracer-truncated"}},
		{"FIN inside a packet", func(f *genFlow) {
			f.handshake()
			f.send(ClientToServer, connect)
			f.send(ServerToClient, connack)
			f.send(ClientToServer, pub[:10])
			f.fin(ClientToServer)
		}, 1, 0, nil},
		{"malformed, then resync", func(f *genFlow) {
			f.handshake()
			f.send(ClientToServer, connect)
			f.send(ServerToClient, connack)
			// A remaining length of five bytes, then a PINGREQ.
			f.send(ClientToServer, []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xc0, 0x00})
			f.fin(ClientToServer)
		}, 2, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			capt, c := decodeOneFlow(t, tc.send)
			var defect []string
			for _, p := range c.Problems {
				if p.CaptureDefect {
					defect = append(defect, p.Clause)
				}
			}
			if v, d := CountViolations(capt), CountCaptureDefects(capt); v != tc.violations || d != tc.defects || strings.Join(defect, " ") != strings.Join(tc.defect, " ") {
				t.Errorf("%d violations, %d capture defects (problems %q); want %d, %d (%q):\n%s", v, d, defect, tc.violations, tc.defects, tc.defect, summary(c))
			}
			// Streaming the packets (Options.OnPacket) keeps none in
			// the conversation: the defects found are the same.
			g := newGen(t, linkEthernet)
			tc.send(g.flow("192.0.2.1:40000", "192.0.2.2:1883"))
			sc, err := Decode(bytes.NewReader(g.pcap()), Options{OnPacket: func(*Conversation, *Packet) {}})
			if err != nil {
				t.Fatal(err)
			}
			if d := CountCaptureDefects(sc); d != tc.defects {
				t.Errorf("streaming packets: %d capture defects, want %d", d, tc.defects)
			}
			// The transcripts say which problems are capture defects:
			// every gap and those problems, and no other.
			var text, js bytes.Buffer
			if err := WriteText(&text, capt, TranscriptOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := WriteJSON(&js, capt, TranscriptOptions{}); err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(text.String(), "a defect of the capture"); n != len(defect) {
				t.Errorf("text transcript marks %d problems as capture defects, want %d:\n%s", n, len(defect), text.String())
			}
			if n := strings.Count(js.String(), `"captureDefect":true`); n != tc.defects {
				t.Errorf("JSON transcript marks %d gaps and problems as capture defects, want %d:\n%s", n, tc.defects, js.String())
			}
		})
	}
}

// TestPacketLenOfGuessedHeader: a fixed header the tracer only guessed
// while resynchronising (captured mid-stream, or after a gap) and never
// confirmed, because the capture stopped inside the packet it announces,
// gives no Problem.PacketLen: the size rules (DPS-REG-008, DPS-DEV-026)
// would take the guess for a packet of that size the peer sent. A header
// read in step with the stream still gives it.
func TestPacketLenOfGuessedHeader(t *testing.T) {
	c2s, _ := dpsExchange(t)
	connect := enc(t, c2s[0])
	// A PINGREQ, then a PUBLISH header announcing 128 KB, and 100 bytes.
	big := append([]byte{0xc0, 0x00, 0x30, 0x80, 0x80, 0x08}, bytes.Repeat([]byte{'a'}, 100)...)
	for _, tc := range []struct {
		name string
		send func(f *genFlow)
		want int
	}{
		{"mid-stream", func(f *genFlow) {
			f.next = [2]uint32{1, 1}
			f.send(ClientToServer, append([]byte("tail of a payload"), big...))
		}, 0},
		{"in step", func(f *genFlow) {
			f.handshake()
			f.send(ClientToServer, connect)
			f.send(ClientToServer, big)
		}, 131072 + 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := decodeOneFlow(t, tc.send)
			var got []int
			for _, p := range c.Problems {
				if p.Clause == "tracer-truncated" {
					got = append(got, p.PacketLen)
				}
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("tracer-truncated PacketLen %v, want [%d]:\n%s", got, tc.want, summary(c))
			}
		})
	}
}

// decodeOneFlow decodes an Ethernet capture of the one flow send writes and
// returns it and its conversation.
func decodeOneFlow(t *testing.T, send func(f *genFlow)) (*Capture, *Conversation) {
	t.Helper()
	g := newGen(t, linkEthernet)
	send(g.flow("192.0.2.1:40000", "192.0.2.2:1883"))
	capt, err := Decode(bytes.NewReader(g.pcap()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(capt.Conversations) != 1 {
		t.Fatalf("%d conversations", len(capt.Conversations))
	}
	return capt, capt.Conversations[0]
}

// TestMidStreamStart: a conversation captured mid-stream at a packet
// boundary whose client does not start with CONNECT gets one
// ClauseMidStream problem, at the client's first packet (the server's when
// the client sent none), naming that packet.
func TestMidStreamStart(t *testing.T) {
	c2s, s2c := dpsExchange(t)
	sub, pub := enc(t, c2s[1]), enc(t, c2s[2])
	connack := enc(t, s2c[0])
	for _, tc := range []struct {
		name string
		send func(f *genFlow)
		want string // "dir frame offset msg"
	}{
		{"client PUBLISH", func(f *genFlow) {
			f.next = [2]uint32{1, 1}
			f.send(ClientToServer, pub)
		}, "c2s 1 0 capture starts mid-connection: the connection's CONNECT, and whatever preceded the first packet seen (c2s PUBLISH, frame 1), was not captured"},
		{"server first, then SUBSCRIBE", func(f *genFlow) {
			f.next = [2]uint32{1, 1}
			f.send(ServerToClient, connack)
			f.send(ClientToServer, sub)
		}, "c2s 2 0 capture starts mid-connection: the connection's CONNECT, and whatever preceded the first packet seen (c2s SUBSCRIBE, frame 2), was not captured"},
		{"server only", func(f *genFlow) {
			f.next = [2]uint32{1, 1}
			f.send(ServerToClient, connack)
		}, "s2c 1 0 capture starts mid-connection: the connection's CONNECT, and whatever preceded the first packet seen (s2c CONNACK, frame 1), was not captured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := decodeOneFlow(t, tc.send)
			var got []string
			for _, p := range c.Problems {
				if p.Clause == ClauseMidStream {
					got = append(got, fmt.Sprintf("%v %d %d %s", p.Dir, p.Frame, p.Offset, p.Msg))
				}
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("%s problems %q, want [%q]:\n%s", ClauseMidStream, got, tc.want, summary(c))
			}
		})
	}
}
