package tracer

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/internal/pcapngtest"
)

// editBlocks is pcapngtest.EditBlocks, failing t on a damaged file.
func editBlocks(t *testing.T, orig []byte, f func(typ uint32, epbs int, block []byte) []byte) []byte {
	t.Helper()
	out, err := pcapngtest.EditBlocks(orig, f)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSnapLengthCut: a frame whose original length exceeds what was
// captured (a capture with a small snaplen) is named in a warning, with
// the first such frame: its missing bytes show as gaps, and without the
// warning a field engineer would blame the network.
func TestSnapLengthCut(t *testing.T) {
	orig, err := os.ReadFile("../testdata/pcaps/loss.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	cut := editBlocks(t, orig, func(typ uint32, epbs int, b []byte) []byte {
		if typ == 6 && (epbs == 5 || epbs == 7) {
			// EPB body: interface, time (2 words), captured length,
			// original length at body offset 16 (block offset 24).
			binary.LittleEndian.PutUint32(b[24:], binary.LittleEndian.Uint32(b[20:])+100)
		}
		return b
	})
	for _, in := range [][]byte{orig, cut} {
		c, err := Decode(bytes.NewReader(in), Options{})
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(c.Warnings, "\n")
		want := "tracer: 2 frame(s) cut short by the capture's snapshot length (first: frame 5)"
		if strings.Contains(got, want) != (&in[0] == &cut[0]) {
			t.Errorf("warnings %q; want %q only for the cut capture", got, want)
		}
	}
}

// TestSimplePacketBlockTime: a Simple Packet Block has no time of its
// own; it takes the time of the packet before it, not the zero time
// (which put the year 1 into a conversation's start or end).
func TestSimplePacketBlockTime(t *testing.T) {
	orig, err := os.ReadFile("../testdata/pcaps/loss.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	spb := editBlocks(t, orig, func(typ uint32, epbs int, b []byte) []byte {
		if typ != 6 || epbs < 2 {
			return b
		}
		capLen := binary.LittleEndian.Uint32(b[20:])
		data := b[28 : 28+capLen]
		padded := (len(data) + 3) &^ 3
		out := make([]byte, 16+padded+4)
		binary.LittleEndian.PutUint32(out, 3)
		binary.LittleEndian.PutUint32(out[4:], uint32(len(out)))
		binary.LittleEndian.PutUint32(out[8:], binary.LittleEndian.Uint32(b[24:])) // original length
		copy(out[12:], data)
		binary.LittleEndian.PutUint32(out[len(out)-4:], uint32(len(out)))
		return out
	})
	c, err := Decode(bytes.NewReader(spb), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Conversations) == 0 {
		t.Fatal("no conversation")
	}
	for _, cv := range c.Conversations {
		if cv.Start.IsZero() || cv.End.IsZero() || cv.End.Before(cv.Start) {
			t.Errorf("conversation %d: start %v, end %v", cv.ID, cv.Start, cv.End)
		}
	}
}
