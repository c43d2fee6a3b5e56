package wstrace

import (
	"bytes"
	"compress/flate"
	"fmt"
	"testing"
)

// deflateMessages compresses msgs with one flate.Writer kept across
// messages (context takeover, RFC 7692 §7.2.1) and returns one payload per
// message with the trailing 0x00 0x00 0xff 0xff removed.
func deflateMessages(t *testing.T, takeover bool, msgs ...string) [][]byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, m := range msgs {
		if !takeover {
			w.Reset(&buf)
		}
		buf.Reset()
		_, _ = w.Write([]byte(m))
		_ = w.Flush()
		b := bytes.Clone(buf.Bytes())
		if !bytes.HasSuffix(b, []byte{0, 0, 0xff, 0xff}) {
			t.Fatalf("flush did not end with a sync marker: % x", b)
		}
		out = append(out, b[:len(b)-4])
	}
	return out
}

func TestDeflateContextTakeover(t *testing.T) {
	msgs := []string{"hello hello hello websocket", "hello hello hello websocket again", "x"}
	for _, c := range []struct {
		ext      string
		takeover bool
	}{
		{"permessage-deflate", true},
		{"permessage-deflate; server_no_context_takeover", false},
	} {
		st := NewStream()
		_, _ = st.Feed(ClientToServer, []byte(upgradeReq))
		resp := upgradeResp[:len(upgradeResp)-2] + "Sec-WebSocket-Extensions: " + c.ext + "\r\n\r\n"
		if _, err := st.Feed(ServerToClient, []byte(resp)); err != nil {
			t.Fatal(err)
		}
		if !st.Facts().Deflate || st.Facts().Extensions != c.ext {
			t.Fatalf("facts %+v", st.Facts())
		}
		comp := deflateMessages(t, c.takeover, msgs...)
		if c.takeover && len(comp[1]) >= len(msgs[1]) {
			t.Fatalf("second message not using the window: %d bytes", len(comp[1]))
		}
		var got []byte
		for i, p := range comp {
			// Second message fragmented in two frames, RSV1 on the first only.
			var frames []byte
			if i == 1 {
				frames = append(frame(0x42, p[:3], nil), frame(0x80, p[3:], nil)...)
			} else {
				frames = frame(0xc2, p, nil)
			}
			for _, b := range byteAtATime(frames) {
				pl, err := st.Feed(ServerToClient, b)
				if err != nil {
					t.Fatalf("%s: message %d: %v", c.ext, i, err)
				}
				got = append(got, pl...)
			}
		}
		if want := msgs[0] + msgs[1] + msgs[2]; string(got) != want {
			t.Fatalf("%s: got %q, want %q", c.ext, got, want)
		}
	}
}

func TestDeflateBomb(t *testing.T) {
	st := NewStream()
	_, _ = st.Feed(ClientToServer, []byte(upgradeReq))
	resp := upgradeResp[:len(upgradeResp)-2] + "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
	_, _ = st.Feed(ServerToClient, []byte(resp))
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	_, _ = w.Write(make([]byte, maxInflated+10))
	_ = w.Flush()
	p := buf.Bytes()[:buf.Len()-4]
	pl, err := st.Feed(ServerToClient, frame(0xc2, p, nil))
	if pl != nil || err == nil || err.Error() != fmt.Sprintf("wstrace: s2c offset %d: inflated message exceeds 4194304 bytes: dropped", len(resp)) {
		t.Fatalf("%d bytes, %v", len(pl), err)
	}
}
