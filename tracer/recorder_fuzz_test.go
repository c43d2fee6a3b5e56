package tracer_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/dps-conform/dps-conform/tracer"
)

// FuzzRecorder drives a synthetic flow with sends of random sizes,
// directions, splits, losses, retransmissions and reorderings, then reads
// the capture back: the checksums, ACK numbers (checked by flows) and the
// bytes of each direction must be exactly right.
//
// Input: byte 0 picks the MSS and the address family; then 4 bytes per
// send: direction and segment option (byte 0), size (bytes 1-2, up to
// 8191), and the index the option applies to (byte 3).
func FuzzRecorder(f *testing.F) {
	f.Add([]byte{0, 0, 0x00, 0x10, 0, 1, 0x00, 0x05, 0})
	f.Add([]byte{1, 2, 0x10, 0x00, 1, 3, 0x08, 0x00, 0, 5, 0x0f, 0xff, 2})
	f.Add([]byte{0x81, 6, 0x04, 0x00, 1, 1, 0x00, 0x01, 0, 0, 0x1f, 0xff, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 || len(in) > 4*64 {
			return
		}
		mss := []int{1460, 536, 100, 7}[in[0]&3]
		client, server := netip.MustParseAddrPort("10.9.9.1:40000"), netip.MustParseAddrPort("10.9.9.2:1883")
		if in[0]&0x80 != 0 {
			client, server = netip.MustParseAddrPort("[fd00::1]:40000"), netip.MustParseAddrPort("[fd00::2]:1883")
		}
		var buf bytes.Buffer
		rec, err := tracer.NewRecorder(&buf, tracer.RecorderOptions{Now: fakeClock(), MSS: mss})
		if err != nil {
			t.Fatal(err)
		}
		fl, err := rec.Flow(client, server, tracer.FlowOptions{MidStream: in[0]&0x40 != 0})
		if err != nil {
			t.Fatal(err)
		}
		var sent [2][]byte
		for k, op := 0, in[1:]; len(op) >= 4; k, op = k+1, op[4:] {
			side := tracer.Side(op[0] & 1)
			size := (int(op[1])<<8 | int(op[2])) & 0x1fff
			if size == 0 {
				continue
			}
			segs := (size + mss - 1) / mss
			idx := int(op[3]) % segs
			var o tracer.SegOpts
			switch op[0] >> 1 & 3 {
			case 1:
				o.Drop = []int{idx}
			case 2:
				o.Retransmit = []int{idx}
			case 3:
				if idx+1 < segs {
					o.Reorder = []int{idx}
				}
			}
			if len(sent[0])+len(sent[1]) == 0 && in[0]&0x40 != 0 {
				// Mid-stream, the first segment seen fixes the numbering
				// for the test model: it must be the first one sent.
				o = tracer.SegOpts{}
			}
			data := pattern(k, size)
			if err := fl.Send(side, data, o); err != nil {
				t.Fatalf("send %d: %v", k, err)
			}
			sent[side] = append(sent[side], data...)
		}
		if err := fl.Close(); err != nil {
			t.Fatal(err)
		}
		if err := rec.Close(); err != nil {
			t.Fatal(err)
		}
		capt := readCapture(t, buf.Bytes())
		fs := flows(t, capt)[flowKey{client, server}]
		if fs == nil && in[0]&0x40 != 0 {
			// Mid-stream and the server sent first: the test model takes
			// the first frame's source for the client.
			if fs = flows(t, capt)[flowKey{server, client}]; fs != nil {
				fs.dir[0], fs.dir[1] = fs.dir[1], fs.dir[0]
			}
		}
		if fs == nil {
			t.Fatalf("flow %v → %v not found", client, server)
		}
		for side := range 2 {
			if !bytes.Equal(fs.dir[side].data, sent[side]) {
				t.Fatalf("side %d: read back %d bytes, sent %d", side, len(fs.dir[side].data), len(sent[side]))
			}
		}
	})
}
