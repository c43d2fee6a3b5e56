package tracer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// validCaptures returns a small pcap and pcapng (little endian) of one
// MQTT flow.
func validCaptures(t *testing.T) (pcap, ng []byte) {
	c2s, s2c := dpsExchange(t)
	g := newGen(t, linkEthernet)
	f := g.flow("10.0.0.1:50000", "10.0.0.2:1883")
	f.handshake()
	f.send(ClientToServer, enc(t, c2s[0]))
	f.send(ServerToClient, enc(t, s2c[0]))
	return g.pcap(), g.pcapng()
}

func TestDecodeCorrupt(t *testing.T) {
	pcap, ng := validCaptures(t)
	mut := func(b []byte, f func(b []byte) []byte) []byte { return f(bytes.Clone(b)) }
	shbLen := int(binary.LittleEndian.Uint32(ng[4:]))
	idbLen := int(binary.LittleEndian.Uint32(ng[shbLen+4:]))
	epb := shbLen + idbLen
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "tracer: file header at byte offset 0: file is 0 bytes, too short for a pcap or pcapng magic number"},
		{"wrong magic", []byte("GIF89a......"), "tracer: file header at byte offset 0: magic number 0x47494638 is neither pcap nor pcapng"},
		{"pcap header truncated", pcap[:20], "tracer: pcap file header at byte offset 0: file ends after 20 of 24 bytes"},
		{"pcap version", mut(pcap, func(b []byte) []byte { b[4] = 9; return b }), "tracer: pcap file header at byte offset 4: major version 9, want 2"},
		{"pcap record length", mut(pcap, func(b []byte) []byte { binary.LittleEndian.PutUint32(b[24+8:], 1<<30); return b }),
			"tracer: pcap record 1 at byte offset 24: captured length 1073741824 exceeds 67108864"},
		{"pcapng byte-order magic", mut(ng, func(b []byte) []byte { copy(b[8:], "ABCD"); return b }),
			"tracer: pcapng block 1 (Section Header Block) at byte offset 8: byte-order magic 0x41424344, want 0x1a2b3c4d"},
		{"pcapng block length not a multiple of 4", mut(ng, func(b []byte) []byte { binary.LittleEndian.PutUint32(b[epb+4:], 33); return b }),
			"tracer: pcapng block 3 (Enhanced Packet Block) at byte offset " + itoa(int64(epb)) + ": bad block total length 33"},
		{"pcapng trailing length", mut(ng, func(b []byte) []byte { b[shbLen+idbLen-4]++; return b }),
			"tracer: pcapng block 2 (Interface Description Block) at byte offset " + itoa(int64(shbLen)) + ": trailing block length " + itoa(int64(idbLen+1)) + " differs from leading " + itoa(int64(idbLen))},
		{"pcapng undescribed interface", mut(ng, func(b []byte) []byte { binary.LittleEndian.PutUint32(b[epb+8:], 3); return b }),
			"tracer: pcapng block 3 (Enhanced Packet Block) at byte offset " + itoa(int64(epb)) + ": interface 3 not described (1 interfaces)"},
		{"pcapng captured length past body", mut(ng, func(b []byte) []byte { binary.LittleEndian.PutUint32(b[epb+20:], 5000); return b }),
			"tracer: pcapng block 3 (Enhanced Packet Block) at byte offset " + itoa(int64(epb)) + ": captured length 5000 exceeds the block body (60 bytes)"},
		{"pcapng magic only", ng[:4], "tracer: pcapng block 1 (Section Header Block) at byte offset 0: file ends inside the section header (4 of 8 bytes)"},
		{"pcapng major version", mut(ng, func(b []byte) []byte { binary.LittleEndian.PutUint16(b[12:], 2); return b }),
			"tracer: pcapng block 1 (Section Header Block) at byte offset 12: major version 2, want 1"},
		{"pcapng IDB cut inside", ng[:shbLen+10], "tracer: pcapng block 2 (Interface Description Block) at byte offset " + itoa(int64(shbLen)) + ": file ends inside the block (10 of " + itoa(int64(idbLen)) + " bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(bytes.NewReader(tc.in), Options{})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error\n%v\nwant\n%s", err, tc.want)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("%v does not wrap ErrCorrupt", err)
			}
		})
	}
}

// TestDecodeTruncatedLast checks that a capture cut inside its last
// record decodes what precedes it, with a warning.
func TestDecodeTruncatedLast(t *testing.T) {
	pcap, ng := validCaptures(t)
	last := lastPcapRecord(pcap)
	lastBlock := int(binary.LittleEndian.Uint32(ng[len(ng)-4:]))
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"pcap", pcap[:len(pcap)-3], "pcap record 5 at byte offset " + itoa(int64(len(pcap)-16-last)) + ": truncated (" + itoa(int64(last-3)) + " of " + itoa(int64(last)) + " bytes); ignored"},
		{"pcapng", ng[:len(ng)-3], "pcapng block 7 (Enhanced Packet Block) at byte offset " + itoa(int64(len(ng)-lastBlock)) + ": truncated (" + itoa(int64(lastBlock-3)) + " of " + itoa(int64(lastBlock)) + " bytes); ignored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Decode(bytes.NewReader(tc.in), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if c.Frames != 4 || len(c.Conversations) != 1 || len(c.Conversations[0].Packets) != 1 {
				t.Fatalf("frames %d conversations %d", c.Frames, len(c.Conversations))
			}
			if len(c.Warnings) != 1 || c.Warnings[0] != tc.want {
				t.Errorf("warnings %q, want one like %q", c.Warnings, tc.want)
			}
		})
	}
}

// lastPcapRecord returns the captured length of the last record of pcap.
func lastPcapRecord(pcap []byte) int {
	off, n := 24, 0
	for off+16 <= len(pcap) {
		n = int(binary.LittleEndian.Uint32(pcap[off+8:]))
		off += 16 + n
	}
	return n
}

// TestDecodeLargeRecords mixes records larger than the reader's 1 MiB
// buffer (read into storage of the reader's own) with small ones (returned
// from the buffer without a copy): the small ones still decode to the same
// packets, the large ones are counted.
func TestDecodeLargeRecords(t *testing.T) {
	pcap, _ := validCaptures(t)
	want, err := Decode(bytes.NewReader(pcap), Options{})
	if err != nil {
		t.Fatal(err)
	}
	big := func(n int) []byte {
		var rec [16]byte
		binary.LittleEndian.PutUint32(rec[8:], uint32(n))
		binary.LittleEndian.PutUint32(rec[12:], uint32(n))
		return append(rec[:], bytes.Repeat([]byte{0xee}, n)...) // not IPv4 or IPv6: ignored
	}
	// Records: big, the first two of the flow, a bigger one, the rest, a
	// smaller big one.
	var in []byte
	in = append(in, pcap[:24]...)
	in = append(in, big(3<<20)...)
	off := 24
	for i := 0; off < len(pcap); i++ {
		if i == 2 {
			in = append(in, big(5<<20)...)
		}
		n := 16 + int(binary.LittleEndian.Uint32(pcap[off+8:]))
		in = append(in, pcap[off:off+n]...)
		off += n
	}
	in = append(in, big(1<<20+1)...)
	got, err := Decode(bytes.NewReader(in), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Frames != want.Frames+3 {
		t.Errorf("%d frames, want %d", got.Frames, want.Frames+3)
	}
	// Frame numbers differ (the big records count); the rest must not.
	render := func(c *Capture) string {
		var b bytes.Buffer
		for _, cv := range c.Conversations {
			for _, p := range cv.Packets {
				fmt.Fprintf(&b, "%s @%d %x\n", p.Dir, p.Offset, p.Raw)
			}
			fmt.Fprintf(&b, "gaps %d problems %d\n", len(cv.Gaps), len(cv.Problems))
		}
		return b.String()
	}
	if g, w := render(got), render(want); g != w || len(want.Conversations[0].Packets) != 2 {
		t.Errorf("decoded\n%s\nwant (2 packets)\n%s", g, w)
	}
}

// TestDecodeCorruptLength checks that a pcapng block whose length field is
// corrupt in the middle of the file is called corrupt, at its offset, and
// not "truncated"; and that both mark the capture Incomplete.
func TestDecodeCorruptLength(t *testing.T) {
	_, ng := validCaptures(t)
	// Walk to the fourth block (the second EPB: SHB, IDB, EPB, EPB, ...).
	off := 0
	for range 3 {
		off += int(binary.LittleEndian.Uint32(ng[off+4:]))
	}
	realLen := int(binary.LittleEndian.Uint32(ng[off+4:]))
	bad := bytes.Clone(ng)
	binary.LittleEndian.PutUint32(bad[off+4:], 16711772)
	c, err := Decode(bytes.NewReader(bad), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("pcapng block 4 (Enhanced Packet Block) at byte offset %d: corrupt block total length 16711772 (the file has only %d bytes left; the block seems to be %d bytes, followed by a plausible Enhanced Packet Block at byte offset %d)",
		off, len(ng)-off, realLen, off+realLen)
	if !strings.HasPrefix(c.Incomplete, want) {
		t.Errorf("Incomplete %q\nwant prefix %q", c.Incomplete, want)
	}
	if c.Frames != 1 {
		t.Errorf("%d frames before the corrupt block, want 1", c.Frames)
	}
	cut, err := Decode(bytes.NewReader(ng[:len(ng)-3]), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cut.Incomplete, ": truncated (") {
		t.Errorf("cut-off file: Incomplete %q, want truncated", cut.Incomplete)
	}
	whole, err := Decode(bytes.NewReader(ng), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if whole.Incomplete != "" || !slices.Equal(whole.TCPServerPorts, []uint16{1883}) {
		t.Errorf("whole file: Incomplete %q, TCPServerPorts %v (want 1883)", whole.Incomplete, whole.TCPServerPorts)
	}
}

// TestDecodeSmallCaptureMemory: decoding a small capture held in memory
// costs memory for its size, whole or cut short, or with a last record
// claiming 60 MB: the read buffer is sized to the capture, and the storage
// for a record longer than it grows with the bytes that arrive. Each cost
// 1 MiB (the buffer), the 60 MB claim 2 MiB (1 MiB more for its tail), and
// FuzzDecodePcap crawled.
func TestDecodeSmallCaptureMemory(t *testing.T) {
	pcap, ng := validCaptures(t)
	huge := bytes.Clone(pcap) // its last record's captured length set to 60 MB
	last := 24
	for off := 24; off+16 <= len(huge); off += 16 + int(binary.LittleEndian.Uint32(huge[off+8:])) {
		last = off
	}
	binary.LittleEndian.PutUint32(huge[last+8:], 60<<20)
	for name, b := range map[string][]byte{
		"pcap": pcap, "pcapng": ng, "pcap cut": pcap[:len(pcap)-3], "pcapng cut": ng[:len(ng)-3], "pcap 60 MB record": huge,
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const runs = 10
		for range runs {
			if _, err := Decode(bytes.NewReader(b), Options{}); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		runtime.ReadMemStats(&after)
		if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 256<<10 {
			t.Errorf("%s: decoding %d bytes allocated %d bytes", name, len(b), per)
		}
	}
}
