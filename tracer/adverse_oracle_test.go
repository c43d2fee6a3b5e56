package tracer

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/packets"
)

// requireTshark returns the path of tshark, or skips the test saying why;
// with DPSCONFORM_REQUIRE_PEERS=1 a missing tshark fails it (as
// requireTool in oracle_test.go, which lives in package tracer_test).
func requireTshark(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("tshark")
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("tshark not found in PATH (%v); install it (Debian: apt-get install -y tshark)", err)
	if os.Getenv("DPSCONFORM_REQUIRE_PEERS") == "1" {
		t.Fatal(msg + "; DPSCONFORM_REQUIRE_PEERS=1 makes this a failure")
	}
	t.Skip(msg)
	return ""
}

// framePackets are the MQTT packets completed in each frame, as tshark's
// fields show them: "frame types ids", types and ids comma-separated in
// order (ids only of the packets that carry one).
func tsharkFramePackets(t *testing.T, tshark, pcap string) []string {
	t.Helper()
	cmd := exec.Command(tshark, "-r", pcap, "-o", "tcp.reassemble_out_of_order:TRUE",
		"-Y", "mqtt", "-T", "fields", "-e", "frame.number", "-e", "mqtt.msgtype", "-e", "mqtt.msgid")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			lines = append(lines, strings.TrimSpace(strings.Join(strings.Split(l, "\t"), " ")))
		}
	}
	return lines
}

// tracerFramePackets is tsharkFramePackets for the tracer's packets.
func tracerFramePackets(capt *Capture) []string {
	type fp struct{ types, ids []string }
	by := map[int]*fp{}
	var frames []int
	for _, c := range capt.Conversations {
		for _, p := range c.Packets {
			e := by[p.Frame]
			if e == nil {
				e = &fp{}
				by[p.Frame] = e
				frames = append(frames, p.Frame)
			}
			e.types = append(e.types, fmt.Sprint(int(p.Packet.Type())))
			if id, ok := packetID(p.Packet); ok {
				e.ids = append(e.ids, fmt.Sprint(id))
			}
		}
	}
	slices.Sort(frames)
	var lines []string
	for _, f := range frames {
		e := by[f]
		lines = append(lines, strings.TrimSpace(fmt.Sprintf("%d %s %s", f, strings.Join(e.types, ","), strings.Join(e.ids, ","))))
	}
	return lines
}

// packetID is the packet identifier tshark shows as mqtt.msgid.
func packetID(p packets.Packet) (uint16, bool) {
	switch v := p.(type) {
	case *packets.Publish:
		return v.PacketID, v.QoS > 0
	case *packets.Puback:
		return v.PacketID, true
	case *packets.Subscribe:
		return v.PacketID, true
	case *packets.Suback:
		return v.PacketID, true
	}
	return 0, false
}

// TestAdverseCapturesOracle builds the imperfect captures of the field
// (adverse_test.go) and compares the tracer with tshark 4.0 and with what
// was sent. Where the capture is whole in substance (retransmissions,
// reordering past 64 KiB, duplicate frames, a reset mid-packet) tshark
// and the tracer must find the same packets in the same frames. Where
// bytes are missing or wrong (a lost segment, a mid-stream start, a small
// snapshot length, a conflicting retransmission) tshark stops decoding a
// direction or decodes payload bytes as packets: there the tracer must
// find every real packet tshark finds, no packet that was not sent, and
// report each loss with its frame.
func TestAdverseCapturesOracle(t *testing.T) {
	tshark := requireTshark(t)
	pubs := adversePubs(t, 6)
	all := bytes.Join(pubs, nil)
	big := bytes.Join(bigPubs(t), nil)
	puback := enc(t, &packets.Puback{PacketID: 10})
	// sent are the packets the scenarios send, as "type id".
	sent := map[string]bool{"1": true, "2": true, "8 1": true, "9 1": true, "4 10": true, "4 11": true}
	for i := range 6 {
		sent[fmt.Sprintf("3 %d", 10+i)] = true
	}
	for _, tc := range []struct {
		name  string
		build func(g *genCapture, f *genFlow)
		snap  int
		same  bool     // tshark must agree exactly
		want  []string // the conversation's gaps and problems (clause only)
		pubs  string   // the PUBLISH packets the tracer must recover, "id@frame"
	}{
		{"retransmissions", func(g *genCapture, f *genFlow) {
			start := f.next[ClientToServer]
			f.send(ClientToServer, all, 500, 1000, 1500)
			f.at(ClientToServer, start+400, all[400:1200]) // overlapping, same bytes
			f.at(ClientToServer, start+1500, all[1500:])
			f.send(ServerToClient, puback)
		}, 0, true, nil, "10@8 11@9 12@10 13@10 14@11 15@11"},
		{"out of order past 64 KiB", func(g *genCapture, f *genFlow) {
			start := f.next[ClientToServer]
			for i := 1400; i < len(big); i += 1400 {
				f.at(ClientToServer, start+uint32(i), big[i:min(i+1400, len(big))])
			}
			f.at(ClientToServer, start, big[:1400])
			f.skip(ClientToServer, len(big))
			f.send(ServerToClient, puback)
		}, 0, true, nil, "10@122 11@122 12@122 13@122"},
		{"duplicate frames", func(g *genCapture, f *genFlow) {
			f.send(ClientToServer, all, 200, 400, 600, 800)
			f.send(ServerToClient, puback)
			f.fin(ClientToServer)
			f.fin(ServerToClient)
			var twice []genFrame
			for _, fr := range g.frames {
				twice = append(twice, fr, fr)
			}
			g.frames = twice
		}, 0, true, nil, "10@17 11@21 12@23 13@23 14@23 15@23"},
		{"reset mid-packet", func(g *genCapture, f *genFlow) {
			f.send(ClientToServer, all[:450])
			f.raw(ClientToServer, f.isn[0]+f.next[0], f.isn[1]+f.next[1], "RA", nil)
		}, 0, true, []string{"c2s #9 tracer-truncated"}, "10@8"},
		{"lost segment", func(g *genCapture, f *genFlow) {
			segmented(f, all, 200, 3)
			f.send(ServerToClient, puback)
		}, 0, false, []string{"c2s #11 GAP noticed #18", "c2s #11 tracer-gap", "c2s #11 tracer-resync"}, "10@9 13@14 14@15 15@17"},
		{"conflicting retransmission", func(g *genCapture, f *genFlow) {
			start := f.next[ClientToServer]
			f.at(ClientToServer, start+600, all[600:900])
			bad := bytes.Clone(all[500:800])
			copy(bad[100:], bytes.Repeat([]byte("Z"), 200))
			f.at(ClientToServer, start+500, bad)
			f.at(ClientToServer, start, all[:500])
			f.skip(ClientToServer, 900)
			f.send(ClientToServer, all[900:])
			f.send(ServerToClient, puback)
		}, 0, false, []string{"c2s #9 tracer-overlap"}, "10@10 11@10 12@11 13@11 14@11 15@11"},
		{"lost last segment", func(g *genCapture, f *genFlow) {
			f.send(ClientToServer, pubs[0])
			f.skip(ClientToServer, len(pubs[1])) // lost by the capture, acknowledged
			f.send(ServerToClient, puback)
			f.fin(ClientToServer)
			f.fin(ServerToClient)
		}, 0, true, []string{"c2s #9 GAP noticed #11"}, "10@8"},
		{"mid-stream start inside a packet", func(g *genCapture, f *genFlow) {
			g.frames = nil // no handshake, CONNECT or SUBSCRIBE captured
			f.send(ClientToServer, all[150:], 200, 400, 600)
			f.send(ServerToClient, enc(t, &packets.Puback{PacketID: 11}))
		}, 0, false, []string{"c2s #1 tracer-resync"}, "11@3 12@4 13@4 14@4 15@4"},
		{"mid-stream start at a packet boundary", func(g *genCapture, f *genFlow) {
			g.frames = nil // no handshake, CONNECT or SUBSCRIBE captured
			f.send(ClientToServer, bytes.Join(pubs[1:], nil), len(pubs[1]), len(pubs[1])+len(pubs[2]))
			f.send(ServerToClient, enc(t, &packets.Puback{PacketID: 11}))
		}, 0, true, []string{"c2s #1 tracer-midstream"}, "11@1 12@2 13@3 14@3 15@3"},
		{"snapshot length", func(g *genCapture, f *genFlow) {
			f.send(ClientToServer, all, 500, 1000, 1500, 2000)
			f.send(ServerToClient, puback)
		}, 54 + 400, false, []string{"c2s #8 GAP cut", "c2s #8 tracer-gap", "c2s #9 GAP cut", "c2s #9 tracer-resync", "c2s #10 GAP cut", "c2s #10 tracer-resync", "c2s #11 GAP cut", "c2s #11 tracer-resync", "c2s #12 tracer-resync"}, "10@8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGen(t, linkEthernet)
			f := adverseOpen(t, g)
			tc.build(g, f)
			raw := g.pcap()
			if tc.snap > 0 {
				raw = g.pcapSnap(tc.snap)
			}
			path := filepath.Join(t.TempDir(), "adverse.pcap")
			if err := os.WriteFile(path, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			capt, err := DecodeFile(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(capt.Conversations) != 1 {
				t.Fatalf("%d conversations", len(capt.Conversations))
			}
			ours, theirs := tracerFramePackets(capt), tsharkFramePackets(t, tshark, path)
			if tc.same && !slices.Equal(ours, theirs) {
				t.Errorf("tracer and tshark differ:\ntracer\n%s\ntshark\n%s", strings.Join(ours, "\n"), strings.Join(theirs, "\n"))
			}
			if !tc.same {
				for _, l := range theirs {
					if isSent(l, sent) && !slices.Contains(ours, l) {
						t.Errorf("tshark decodes %q, the tracer does not:\ntracer\n%s\ntshark\n%s", l, strings.Join(ours, "\n"), strings.Join(theirs, "\n"))
					}
				}
			}
			for _, l := range ours {
				if !isSent(l, sent) {
					t.Errorf("the tracer decodes %q, which was not sent", l)
				}
			}
			c := capt.Conversations[0]
			if got := c2sPublishes(c); got != tc.pubs {
				t.Errorf("PUBLISH id@frame %q, want %q", got, tc.pubs)
			}
			if mid := g.frames[0].data[47]&0x02 == 0; c.MidStream != mid { // TCP flags: SYN
				t.Errorf("mid-stream %v, want %v", c.MidStream, mid)
			}
			var got []string
			for _, gp := range c.Gaps {
				s := fmt.Sprintf("%v #%d GAP", gp.Dir, gp.Frame)
				if gp.Cut {
					s += " cut"
				}
				if gp.Noticed != gp.Frame {
					s += fmt.Sprintf(" noticed #%d", gp.Noticed)
				}
				got = append(got, s)
			}
			for _, p := range c.Problems {
				got = append(got, fmt.Sprintf("%v #%d %s", p.Dir, p.Frame, p.Clause))
			}
			slices.Sort(got)
			slices.Sort(tc.want)
			if !slices.Equal(got, tc.want) {
				t.Errorf("gaps and problems %q, want %q\n%s", got, tc.want, summary(c))
			}
		})
	}
}

// isSent reports whether every packet of the frame line l ("frame types
// ids") is one of sent.
func isSent(l string, sent map[string]bool) bool {
	f := strings.Fields(l)
	types := strings.Split(f[1], ",")
	var ids []string
	if len(f) > 2 {
		ids = strings.Split(f[2], ",")
	}
	for _, ty := range types {
		k := ty
		if ty != "1" && ty != "2" {
			if len(ids) == 0 {
				return false
			}
			k, ids = ty+" "+ids[0], ids[1:]
		}
		if !sent[k] {
			return false
		}
	}
	return len(ids) == 0
}

// bigPubs are four PUBLISH packets of 40,000 bytes, ids 10 to 13.
func bigPubs(t *testing.T) [][]byte {
	var out [][]byte
	for i := range 4 {
		out = append(out, enc(t, &packets.Publish{QoS: 1, PacketID: uint16(10 + i), Topic: []byte("t"), Payload: bytes.Repeat([]byte{'a' + byte(i)}, 40000)}))
	}
	return out
}
