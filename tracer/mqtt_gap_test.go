package tracer

import (
	"bytes"
	"strings"
	"testing"
)

// TestGapProblemFrame: the tracer-gap problem of a packet cut by a gap
// carries the frame that revealed the gap, on plain MQTT and inside
// WebSocket (whose layer keeps framing over a gap in a frame payload), so
// the transcript prints it with that frame, after the GAP line, and the
// JSON object has a frame.
func TestGapProblemFrame(t *testing.T) {
	c2s, s2c := dpsExchange(t)
	connect, sub, pub := enc(t, c2s[0]), enc(t, c2s[1]), enc(t, c2s[2])
	for _, tc := range []struct {
		name string
		send func(f *genFlow)
	}{
		{"mqtt", func(f *genFlow) {
			f.send(ClientToServer, connect)
			f.send(ServerToClient, enc(t, s2c[0]))
			f.send(ClientToServer, sub[:4])
			f.skip(ClientToServer, len(sub)-4)
			f.send(ClientToServer, pub)
		}},
		{"ws", func(f *genFlow) {
			f.send(ClientToServer, []byte(wsRequest))
			f.send(ServerToClient, []byte(wsResponse))
			f.send(ClientToServer, wsFrame(connect, true))
			f.send(ServerToClient, wsFrame(enc(t, s2c[0]), false))
			// One WebSocket frame holds the SUBSCRIBE; its payload is
			// cut by the gap after 4 bytes.
			fr := wsFrame(sub, true)
			cut := len(fr) - len(sub) + 4
			f.send(ClientToServer, fr[:cut])
			f.skip(ClientToServer, len(fr)-cut)
			f.send(ClientToServer, wsFrame(pub, true))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGen(t, linkEthernet)
			port := "1883"
			if tc.name == "ws" {
				port = "80"
			}
			f := g.flow("192.0.2.1:40000", "192.0.2.2:"+port)
			f.handshake()
			tc.send(f)
			f.fin(ClientToServer)
			capt, err := Decode(bytes.NewReader(g.pcap()), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(capt.Conversations) != 1 {
				t.Fatalf("%d conversations", len(capt.Conversations))
			}
			c := capt.Conversations[0]
			if len(c.Gaps) != 1 || c.Gaps[0].Frame == 0 {
				t.Fatalf("gaps %+v", c.Gaps)
			}
			var gp *Problem
			for i, p := range c.Problems {
				if p.Clause == "tracer-gap" {
					gp = &c.Problems[i]
				}
			}
			if gp == nil {
				t.Fatalf("no tracer-gap problem:\n%s", summary(c))
			}
			if gp.Frame != c.Gaps[0].Frame {
				t.Errorf("tracer-gap problem at frame %d, want the gap's frame %d", gp.Frame, c.Gaps[0].Frame)
			}
			var text, js bytes.Buffer
			if err := WriteText(&text, capt, TranscriptOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := WriteJSON(&js, capt, TranscriptOptions{}); err != nil {
				t.Fatal(err)
			}
			out := text.String()
			gi, pi := strings.Index(out, "GAP"), strings.Index(out, "[tracer-gap]")
			if strings.Contains(out, "#0 ") || gi < 0 || pi < gi {
				t.Errorf("transcript: tracer-gap problem before its GAP line or without a frame:\n%s", out)
			}
			for _, l := range strings.Split(js.String(), "\n") {
				if strings.Contains(l, "tracer-gap") && !strings.Contains(l, `"frame":`) {
					t.Errorf("JSON problem without a frame: %s", l)
				}
			}
		})
	}
}
