package tracer_test

// Test-side reading of Recorder output, independent of the package's own
// reader: a strict pcapng block walker (for comments and Decryption Secrets
// Blocks, which pcapgo skips), pcapgo.NgReader + gopacket decoding for the
// frames, hand-written internet checksums, and a TCP model that checks
// sequence and acknowledgement numbers frame by frame.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// block is one pcapng block as read by walkBlocks.
type block struct {
	typ      uint32
	body     []byte // between the length fields
	comment  string // opt_comment of SHB/EPB, if any
	epbIndex int    // for every block: the number of EPBs before it
}

// walkBlocks splits a little-endian pcapng file into blocks, checking the
// framing rules: lengths multiple of 4, trailing length equal, SHB first.
func walkBlocks(b []byte) ([]block, error) {
	var out []block
	epbs := 0
	for off := 0; off < len(b); {
		if len(b)-off < 12 {
			return nil, fmt.Errorf("block @%d: %d bytes left, want at least 12", off, len(b)-off)
		}
		typ := binary.LittleEndian.Uint32(b[off:])
		n := int(binary.LittleEndian.Uint32(b[off+4:]))
		if n%4 != 0 || n < 12 || n > len(b)-off {
			return nil, fmt.Errorf("block @%d: total length %d bad (left %d)", off, n, len(b)-off)
		}
		if tail := int(binary.LittleEndian.Uint32(b[off+n-4:])); tail != n {
			return nil, fmt.Errorf("block @%d: trailing length %d != %d", off, tail, n)
		}
		if off == 0 && typ != 0x0A0D0D0A {
			return nil, fmt.Errorf("first block type %#x, want SHB", typ)
		}
		bl := block{typ: typ, body: b[off+8 : off+n-4], epbIndex: epbs}
		var optStart int
		switch typ {
		case 0x0A0D0D0A:
			optStart = 16
		case 1:
			optStart = 8
		case 6:
			capLen := int(binary.LittleEndian.Uint32(bl.body[12:]))
			optStart = 20 + (capLen+3)&^3
			epbs++
		case 0x0A:
			sl := int(binary.LittleEndian.Uint32(bl.body[4:]))
			optStart = 8 + (sl+3)&^3
		default:
			optStart = len(bl.body)
		}
		if optStart > len(bl.body) {
			return nil, fmt.Errorf("block @%d type %#x: body %d shorter than fixed part %d", off, typ, len(bl.body), optStart)
		}
		for o := bl.body[optStart:]; len(o) >= 4; {
			code, l := binary.LittleEndian.Uint16(o), int(binary.LittleEndian.Uint16(o[2:]))
			if code == 0 {
				break
			}
			if 4+l > len(o) {
				return nil, fmt.Errorf("block @%d: option %d length %d overruns", off, code, l)
			}
			if code == 1 {
				bl.comment = string(o[4 : 4+l])
			}
			o = o[4+(l+3)&^3:]
		}
		out = append(out, bl)
		off += n
	}
	return out, nil
}

// dsbSecrets is the payload of a DSB block.
func (bl block) dsbSecrets() (typ uint32, secrets []byte) {
	typ = binary.LittleEndian.Uint32(bl.body)
	n := binary.LittleEndian.Uint32(bl.body[4:])
	return typ, bl.body[8 : 8+n]
}

// frame is one decoded TCP frame.
type frame struct {
	ts       time.Time
	src, dst netip.AddrPort
	tcp      *layers.TCP
	payload  []byte
	comment  string
	ipv6     bool
}

// flowKey names a flow by its client and server (the SYN's source is the client).
type flowKey struct{ client, server netip.AddrPort }

// capture is what readCapture found.
type capture struct {
	sectionComment string
	frames         []frame
	blocks         []block
}

// readCapture reads b with pcapgo.NgReader and the block walker, decodes
// every frame with gopacket and verifies the IPv4 and TCP checksums.
func readCapture(t testing.TB, b []byte) *capture {
	t.Helper()
	blocks, err := walkBlocks(b)
	if err != nil {
		t.Fatalf("pcapng framing: %v", err)
	}
	c := &capture{blocks: blocks, sectionComment: blocks[0].comment}
	var comments []string
	for _, bl := range blocks {
		if bl.typ == 6 {
			comments = append(comments, bl.comment)
		}
	}
	r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("pcapgo: %v", err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Fatalf("link type %v, want Ethernet", r.LinkType())
	}
	for i := 0; ; i++ {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			if i != len(comments) {
				t.Fatalf("pcapgo read %d frames then %v; walker found %d EPBs", i, err, len(comments))
			}
			break
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("frame %d: decode: %v", i+1, el.Error())
		}
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil {
			t.Fatalf("frame %d: no TCP layer: %v", i+1, p)
		}
		f := frame{ts: ci.Timestamp, tcp: tcp, payload: tcp.Payload, comment: comments[i]}
		seg := append(append([]byte(nil), tcp.Contents...), tcp.Payload...)
		switch ip := p.NetworkLayer().(type) {
		case *layers.IPv4:
			if cs := onesSum(0, ip.Contents); cs != 0xFFFF {
				t.Fatalf("frame %d: IPv4 header checksum wrong (sum %#x)", i+1, cs)
			}
			src, _ := netip.AddrFromSlice(ip.SrcIP)
			dst, _ := netip.AddrFromSlice(ip.DstIP)
			f.src, f.dst = netip.AddrPortFrom(src, uint16(tcp.SrcPort)), netip.AddrPortFrom(dst, uint16(tcp.DstPort))
			pseudo := append(append(append([]byte(nil), ip.SrcIP.To4()...), ip.DstIP.To4()...), 0, 6, byte(len(seg)>>8), byte(len(seg)))
			if cs := onesSum(onesSum(0, pseudo), seg); cs != 0xFFFF {
				t.Fatalf("frame %d: TCP checksum wrong (sum %#x)", i+1, cs)
			}
		case *layers.IPv6:
			f.ipv6 = true
			src, _ := netip.AddrFromSlice(ip.SrcIP)
			dst, _ := netip.AddrFromSlice(ip.DstIP)
			f.src, f.dst = netip.AddrPortFrom(src, uint16(tcp.SrcPort)), netip.AddrPortFrom(dst, uint16(tcp.DstPort))
			pseudo := append(append(append([]byte(nil), ip.SrcIP...), ip.DstIP...), 0, 0, byte(len(seg)>>8), byte(len(seg)), 0, 0, 0, 6)
			if cs := onesSum(onesSum(0, pseudo), seg); cs != 0xFFFF {
				t.Fatalf("frame %d: TCP/IPv6 checksum wrong (sum %#x)", i+1, cs)
			}
		default:
			t.Fatalf("frame %d: network layer %T", i+1, ip)
		}
		c.frames = append(c.frames, f)
	}
	return c
}

// onesSum adds b to the one's complement sum s (RFC 1071), folded.
func onesSum(s uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xFFFF {
		s = s>>16 + s&0xFFFF
	}
	return s
}

// tcpStream is one direction of a flow as rebuilt by flows.
type tcpStream struct {
	isn      uint32 // sequence number of the first data byte, minus one
	haveISN  bool
	data     []byte
	have     []bool
	contig   uint32 // relative sequence acknowledged so far by the peer model
	syn, fin bool
	segments int
}

// flowStreams are the two directions, indexed by side (0 client).
type flowStreams struct {
	dir      [2]*tcpStream
	frames   []int // frame indexes
	midStart bool
}

// flows rebuilds every flow and checks TCP consistency: each ACK number is
// exactly what the acknowledging side has received contiguously (SYN and
// FIN included), retransmitted bytes equal the originals, and data never
// follows a FIN.
func flows(t testing.TB, c *capture) map[flowKey]*flowStreams {
	t.Helper()
	out := map[flowKey]*flowStreams{}
	keyOf := func(f frame) (flowKey, int) {
		if _, ok := out[flowKey{f.dst, f.src}]; ok {
			return flowKey{f.dst, f.src}, 1
		}
		return flowKey{f.src, f.dst}, 0
	}
	for i, f := range c.frames {
		k, side := keyOf(f)
		fs := out[k]
		if fs == nil {
			fs = &flowStreams{dir: [2]*tcpStream{{}, {}}, midStart: !f.tcp.SYN}
			out[k] = fs
		}
		fs.frames = append(fs.frames, i)
		s, peer := fs.dir[side], fs.dir[1-side]
		if !s.haveISN {
			s.isn, s.haveISN = f.tcp.Seq, true
			if !f.tcp.SYN {
				s.isn-- // mid-stream: first byte seen is relative 1
			}
		}
		rel := f.tcp.Seq - s.isn
		if f.tcp.SYN {
			if rel != 0 {
				t.Fatalf("frame %d: SYN at relative seq %d", i+1, rel)
			}
			s.syn = true
			rel = 1
		}
		if len(f.payload) > 0 {
			if s.fin {
				t.Fatalf("frame %d: data after FIN", i+1)
			}
			if rel == 0 || int64(rel) > 1<<30 {
				t.Fatalf("frame %d: data at relative seq %d", i+1, rel)
			}
			s.segments++
			off := int(rel - 1)
			for j, b := range f.payload {
				for off+j >= len(s.data) {
					s.data, s.have = append(s.data, 0), append(s.have, false)
				}
				if s.have[off+j] && s.data[off+j] != b {
					t.Fatalf("frame %d: retransmitted byte %d differs", i+1, off+j)
				}
				s.data[off+j], s.have[off+j] = b, true
			}
		}
		if f.tcp.FIN {
			if int(rel-1) != len(s.data) {
				t.Fatalf("frame %d: FIN at relative seq %d after %d bytes", i+1, rel, len(s.data))
			}
			s.fin = true
		}
		// The peer's view of this direction advances (contiguous bytes).
		for int(s.contig) < len(s.have) && s.have[s.contig] {
			s.contig++
		}
		if f.tcp.ACK {
			if !peer.haveISN {
				if !fs.midStart {
					t.Fatalf("frame %d: ACK before the peer sent anything", i+1)
				}
				continue // mid-stream: the peer's numbering is not known yet
			}
			want := peer.isn + 1 + peer.contig
			if peer.fin && int(peer.contig) == len(peer.data) {
				want++
			}
			if f.tcp.Ack != want {
				t.Fatalf("frame %d: ACK %d, want %d (peer contiguous %d bytes)", i+1, f.tcp.Ack-peer.isn, want-peer.isn, peer.contig)
			}
		}
	}
	for k, fs := range out {
		for side, s := range fs.dir {
			for j, h := range s.have {
				if !h {
					t.Fatalf("flow %v side %d: byte %d never captured", k, side, j)
				}
			}
		}
	}
	return out
}
