package tracer

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/dps-conform/dps-conform/packets"
)

// genCapture builds captures for tests: TCP segments serialized with
// gopacket, framed in one of the supported link types.
type genCapture struct {
	t      testing.TB
	link   uint32
	now    time.Time
	frames []genFrame
}

type genFrame struct {
	ts   time.Time
	data []byte
}

var genEpoch = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newGen(t testing.TB, link uint32) *genCapture {
	return &genCapture{t: t, link: link, now: genEpoch}
}

// genFlow is one TCP connection of a genCapture.
type genFlow struct {
	g    *genCapture
	ep   [2]netip.AddrPort // by Direction: client, server
	isn  [2]uint32
	next [2]uint32 // relative sequence of the next byte to send
}

func (g *genCapture) flow(client, server string) *genFlow {
	return &genFlow{g: g, ep: [2]netip.AddrPort{netip.MustParseAddrPort(client), netip.MustParseAddrPort(server)}, isn: [2]uint32{1000, 0xfffff000}}
}

// handshake sends SYN, SYN-ACK, ACK.
func (f *genFlow) handshake() {
	f.raw(ClientToServer, f.isn[0], 0, "S", nil)
	f.raw(ServerToClient, f.isn[1], f.isn[0]+1, "SA", nil)
	f.raw(ClientToServer, f.isn[0]+1, f.isn[1]+1, "A", nil)
	f.next = [2]uint32{1, 1}
}

// send sends b in direction d as one segment (or, with cuts, as several)
// in order.
func (f *genFlow) send(d Direction, b []byte, cuts ...int) {
	prev := 0
	for _, c := range append(cuts, len(b)) {
		f.at(d, f.next[d]+uint32(prev), b[prev:c])
		prev = c
	}
	f.next[d] += uint32(len(b))
}

// at sends b at relative sequence rel without moving next.
func (f *genFlow) at(d Direction, rel uint32, b []byte) {
	f.raw(d, f.isn[d]+rel, f.isn[1-d]+f.next[1-d], "PA", b)
}

// skip moves next past n bytes that are never sent.
func (f *genFlow) skip(d Direction, n int) { f.next[d] += uint32(n) }

func (f *genFlow) fin(d Direction) {
	f.raw(d, f.isn[d]+f.next[d], f.isn[1-d]+f.next[1-d], "FA", nil)
	f.next[d]++
}

func (f *genFlow) raw(d Direction, seq, ack uint32, flags string, payload []byte) {
	g := f.g
	src, dst := f.ep[d], f.ep[1-d]
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq, Ack: ack, Window: 65535, DataOffset: 5}
	for _, c := range flags {
		switch c {
		case 'S':
			tcp.SYN = true
		case 'A':
			tcp.ACK = true
		case 'F':
			tcp.FIN = true
		case 'R':
			tcp.RST = true
		case 'P':
			tcp.PSH = true
		}
	}
	var ip gopacket.SerializableLayer
	var et layers.EthernetType
	if src.Addr().Is4() {
		ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice())}
		tcp.SetNetworkLayerForChecksum(ip4)
		ip, et = ip4, layers.EthernetTypeIPv4
	} else {
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice())}
		tcp.SetNetworkLayerForChecksum(ip6)
		ip, et = ip6, layers.EthernetTypeIPv6
	}
	buf := gopacket.NewSerializeBuffer()
	opt := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opt, ip, tcp, gopacket.Payload(payload)); err != nil {
		g.t.Fatal(err)
	}
	ipb := buf.Bytes()
	var frame []byte
	switch g.link {
	case linkEthernet:
		eb := gopacket.NewSerializeBuffer()
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: et}
		if err := gopacket.SerializeLayers(eb, opt, eth, gopacket.Payload(ipb)); err != nil {
			g.t.Fatal(err)
		}
		frame = eb.Bytes()
	case linkSLL:
		h := make([]byte, 16)
		binary.BigEndian.PutUint16(h[0:], 0) // to us
		binary.BigEndian.PutUint16(h[2:], 1) // ARPHRD_ETHER
		binary.BigEndian.PutUint16(h[4:], 6)
		binary.BigEndian.PutUint16(h[14:], uint16(et))
		frame = append(h, ipb...)
	case linkSLL2:
		h := make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], uint16(et))
		binary.BigEndian.PutUint32(h[4:], 1) // interface index
		binary.BigEndian.PutUint16(h[8:], 1) // ARPHRD_ETHER
		h[11] = 6
		frame = append(h, ipb...)
	case linkNull:
		h := make([]byte, 4)
		fam := uint32(2)
		if et == layers.EthernetTypeIPv6 {
			fam = 30
		}
		binary.LittleEndian.PutUint32(h, fam)
		frame = append(h, ipb...)
	case linkLoop:
		h := make([]byte, 4)
		fam := uint32(2)
		if et == layers.EthernetTypeIPv6 {
			fam = 24
		}
		binary.BigEndian.PutUint32(h, fam)
		frame = append(h, ipb...)
	case linkRaw, linkIPv4, linkIPv6:
		frame = append([]byte(nil), ipb...)
	default:
		g.t.Fatalf("genCapture: link type %d", g.link)
	}
	g.frames = append(g.frames, genFrame{ts: g.now, data: frame})
	g.now = g.now.Add(time.Millisecond)
}

// pcap encodes the capture as classic pcap (microseconds, little endian),
// written by hand so that link types above 255 (SLL2) work.
func (g *genCapture) pcap() []byte {
	var b bytes.Buffer
	h := make([]byte, 24)
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 262144)
	binary.LittleEndian.PutUint32(h[20:], g.link)
	b.Write(h)
	for _, f := range g.frames {
		r := make([]byte, 16)
		binary.LittleEndian.PutUint32(r[0:], uint32(f.ts.Unix()))
		binary.LittleEndian.PutUint32(r[4:], uint32(f.ts.Nanosecond()/1000))
		binary.LittleEndian.PutUint32(r[8:], uint32(len(f.data)))
		binary.LittleEndian.PutUint32(r[12:], uint32(len(f.data)))
		b.Write(r)
		b.Write(f.data)
	}
	return b.Bytes()
}

// pcapgo encodes the capture with gopacket's pcap writer (link types
// below 256 only), nanosecond resolution.
func (g *genCapture) pcapgo() []byte {
	var b bytes.Buffer
	w := pcapgo.NewWriterNanos(&b)
	if err := w.WriteFileHeader(262144, layers.LinkType(g.link)); err != nil {
		g.t.Fatal(err)
	}
	for _, f := range g.frames {
		ci := gopacket.CaptureInfo{Timestamp: f.ts, CaptureLength: len(f.data), Length: len(f.data)}
		if err := w.WritePacket(ci, f.data); err != nil {
			g.t.Fatal(err)
		}
	}
	return b.Bytes()
}

// pcapng encodes the capture with gopacket's pcapng writer.
func (g *genCapture) pcapng() []byte {
	var b bytes.Buffer
	w, err := pcapgo.NewNgWriter(&b, layers.LinkType(g.link))
	if err != nil {
		g.t.Fatal(err)
	}
	for _, f := range g.frames {
		ci := gopacket.CaptureInfo{Timestamp: f.ts, CaptureLength: len(f.data), Length: len(f.data)}
		if err := w.WritePacket(ci, f.data); err != nil {
			g.t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		g.t.Fatal(err)
	}
	return b.Bytes()
}

// enc encodes MQTT packets back to back.
func enc(t testing.TB, ps ...packets.Packet) []byte {
	t.Helper()
	var b []byte
	for _, p := range ps {
		var err error
		b, err = p.Append(b)
		if err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
