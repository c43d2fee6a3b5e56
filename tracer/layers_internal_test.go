package tracer

import (
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/tracer/tlstrace"
)

// TestLayerProblemsJoined: when one Feed of the TLS layer reports several
// problems (errors.Join), the conversation keeps every one of them, each
// with its own offset.
func TestLayerProblemsJoined(t *testing.T) {
	c := &Conversation{}
	st := tlstrace.NewStream(nil)
	u := &upper{c: c, tls: st}
	bad := []byte{0x15, 3, 3, 0, 3, 2, 40, 0} // an alert record of 3 bytes
	u.data(ServerToClient, append(append([]byte{}, bad...), bad...), 7, time.Now())
	if n := len(st.Facts().Problems); n != 2 || len(c.Problems) != n {
		t.Fatalf("%d problems in the TLS layer, %d in the conversation: %+v", n, len(c.Problems), c.Problems)
	}
	if c.Problems[0].Offset != 0 || c.Problems[1].Offset != int64(len(bad)) || c.Problems[1].Clause != "tls" || c.Problems[1].Frame != 7 {
		t.Errorf("problems %+v", c.Problems)
	}
}
