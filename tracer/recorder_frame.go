package tracer

import (
	"net"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// tcpFlags are the TCP flags the Recorder sets.
type tcpFlags uint8

const (
	tcpFIN tcpFlags = 1 << iota
	tcpSYN
	tcpRST
	tcpPSH
	tcpACK
)

// Synthetic MAC addresses (locally administered) of the client and server.
var macs = [2]net.HardwareAddr{
	{0x02, 0x00, 0x00, 0x00, 0x00, 0x01},
	{0x02, 0x00, 0x00, 0x00, 0x00, 0x02},
}

// window is the advertised receive window of every segment.
const window = 65535

// frame writes one Ethernet/IP/TCP frame from side from. It is called with
// r.mu held; errors are kept in r.err.
func (f *Flow) frame(from Side, flags tcpFlags, seq, ack uint32, payload []byte) {
	r := f.r
	if r.err != nil {
		return
	}
	to := from.peer()
	src, dst := f.ep[from], f.ep[to]
	eth := &layers.Ethernet{SrcMAC: macs[from], DstMAC: macs[to]}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(src.Port()),
		DstPort: layers.TCPPort(dst.Port()),
		Seq:     seq,
		Window:  window,
		FIN:     flags&tcpFIN != 0,
		SYN:     flags&tcpSYN != 0,
		RST:     flags&tcpRST != 0,
		PSH:     flags&tcpPSH != 0,
		ACK:     flags&tcpACK != 0,
	}
	if tcp.ACK {
		tcp.Ack = ack
	}
	if tcp.SYN {
		m := uint16(f.mss)
		tcp.Options = []layers.TCPOption{{
			OptionType:   layers.TCPOptionKindMSS,
			OptionLength: 4,
			OptionData:   []byte{byte(m >> 8), byte(m)},
		}}
	}
	var ip gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	if src.Addr().Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		f.ipID[from]++
		v4 := &layers.IPv4{
			Version:  4,
			TTL:      64,
			Id:       f.ipID[from],
			Flags:    layers.IPv4DontFragment,
			Protocol: layers.IPProtocolTCP,
			SrcIP:    src.Addr().AsSlice(),
			DstIP:    dst.Addr().AsSlice(),
		}
		ip, ipl = v4, v4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		v6 := &layers.IPv6{
			Version:    6,
			HopLimit:   64,
			NextHeader: layers.IPProtocolTCP,
			SrcIP:      src.Addr().AsSlice(),
			DstIP:      dst.Addr().AsSlice(),
		}
		ip, ipl = v6, v6
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		r.fail(err)
		return
	}
	if err := r.sbuf.Clear(); err != nil {
		r.fail(err)
		return
	}
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(r.sbuf, opts, eth, ipl, tcp, gopacket.Payload(payload)); err != nil {
		r.fail(err)
		return
	}
	data := r.sbuf.Bytes()
	orig := len(data)
	if len(data) > r.snapLen {
		data = data[:r.snapLen]
	}
	ts := r.at
	if ts.IsZero() {
		ts = r.now()
	}
	r.fail(r.pw.writeEPB(ts, data, orig, f.comment))
	f.comment = ""
}
