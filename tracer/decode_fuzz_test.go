package tracer

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/dps-conform/dps-conform/packets"
)

// FuzzDecodePcap feeds arbitrary bytes as a capture file: Decode must not
// panic, and must either fail with a *CorruptError naming an offset inside
// the input or return conversations whose packets re-frame to their Raw.
func FuzzDecodePcap(f *testing.F) {
	c2s, s2c := dpsExchange(f)
	g := newGen(f, linkEthernet)
	fl := g.flow("10.0.0.1:50000", "10.0.0.2:1883")
	fl.handshake()
	for i := range c2s {
		fl.send(ClientToServer, enc(f, c2s[i]), 7)
		fl.send(ServerToClient, enc(f, s2c[i]))
	}
	f.Add(g.pcap())
	f.Add(g.pcapng())
	f.Add(g.pcapgo())
	g2 := newGen(f, linkSLL2)
	fl2 := g2.flow("[::1]:1", "[::1]:1883")
	fl2.send(ClientToServer, enc(f, c2s[1:]...))
	f.Add(g2.pcap())
	f.Add([]byte{0x0a, 0x0d, 0x0d, 0x0a})
	f.Add([]byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		capt, err := Decode(bytes.NewReader(b), Options{MaxStreamBuffer: 1 << 16})
		if err != nil {
			var ce *CorruptError
			if !asCorrupt(err, &ce) {
				t.Fatalf("error is not a *CorruptError: %v", err)
			}
			if ce.Offset < 0 || ce.Offset > int64(len(b)) {
				t.Fatalf("offset %d outside the %d-byte input: %v", ce.Offset, len(b), err)
			}
			return
		}
		for _, c := range capt.Conversations {
			for _, p := range c.Packets {
				if n, err := packets.PacketLength(p.Raw); err != nil || n != len(p.Raw) {
					t.Fatalf("packet raw %x does not frame itself: %d, %v", p.Raw, n, err)
				}
			}
		}
	})
}

// FuzzSegmentation sends one DPS exchange cut into fuzz-chosen TCP
// segments, in a fuzz-chosen order, with fuzz-chosen duplicates: the
// decoded conversation must hold exactly the packets sent, whatever the
// segmentation.
func FuzzSegmentation(f *testing.F) {
	f.Add(uint64(1), uint8(4), uint8(0))
	f.Add(uint64(42), uint8(40), uint8(3))
	f.Add(uint64(7), uint8(255), uint8(255))
	c2s, s2c := dpsExchange(f)
	all := enc(f, c2s...)
	f.Fuzz(func(t *testing.T, seed uint64, nseg, dups uint8) {
		r := rand.New(rand.NewPCG(seed, uint64(nseg)))
		n := 1 + int(nseg)%len(all)
		// Choose n-1 distinct cut points.
		cutSet := map[int]bool{}
		for len(cutSet) < n-1 {
			cutSet[1+r.IntN(len(all)-1)] = true
		}
		cuts := []int{0}
		for i := 1; i < len(all); i++ {
			if cutSet[i] {
				cuts = append(cuts, i)
			}
		}
		cuts = append(cuts, len(all))
		order := r.Perm(len(cuts) - 1)
		for i := 0; i < int(dups)%8; i++ {
			order = append(order, r.IntN(len(cuts)-1))
		}
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })

		g := newGen(t, linkEthernet)
		fl := g.flow("10.0.0.1:50000", "10.0.0.2:1883")
		fl.handshake()
		fl.send(ServerToClient, enc(t, s2c[0]))
		for _, i := range order {
			fl.at(ClientToServer, 1+uint32(cuts[i]), all[cuts[i]:cuts[i+1]])
		}
		fl.skip(ClientToServer, len(all))
		fl.fin(ClientToServer)
		c := decodeGen(t, g, Options{})
		var got []byte
		for _, p := range c.Packets {
			if p.Dir == ClientToServer {
				got = append(got, p.Raw...)
			}
		}
		if !bytes.Equal(got, all) || len(c.Gaps)+len(c.Problems) != 0 {
			t.Fatalf("cuts %v order %v:\n%s", cuts, order, summary(c))
		}
	})
}

func asCorrupt(err error, ce **CorruptError) bool {
	for err != nil {
		if c, ok := err.(*CorruptError); ok {
			*ce = c
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

var _ = binary.LittleEndian
