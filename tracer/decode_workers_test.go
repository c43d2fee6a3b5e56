package tracer

import (
	"net/netip"
	"testing"
)

// TestShardOf checks that both directions of a connection go to the same
// shard and that connections spread evenly: many clients of one server
// (IPv4 and IPv6), and many ports of one client.
func TestShardOf(t *testing.T) {
	srv4 := netip.MustParseAddrPort("10.0.0.1:1883")
	srv6 := netip.MustParseAddrPort("[2001:db8::1]:8883")
	cli6 := netip.MustParseAddr("2001:db8::5")
	for _, n := range []int{2, 3, 4} {
		sets := map[string][][2]netip.AddrPort{}
		for i := range 30000 {
			c4 := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), uint16(40000+i%7))
			c6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
			sets["IPv4 clients"] = append(sets["IPv4 clients"], [2]netip.AddrPort{c4, srv4})
			sets["IPv6 clients"] = append(sets["IPv6 clients"], [2]netip.AddrPort{netip.AddrPortFrom(c6, 50000), srv6})
			sets["one client's ports"] = append(sets["one client's ports"], [2]netip.AddrPort{netip.AddrPortFrom(cli6, uint16(1024+i)), srv6})
		}
		for name, conns := range sets {
			count := make([]int, n)
			for _, c := range conns {
				i := shardOf(c[0], c[1], n)
				if j := shardOf(c[1], c[0], n); i != j {
					t.Fatalf("n=%d: %v→%v goes to shard %d, %v→%v to %d", n, c[0], c[1], i, c[1], c[0], j)
				}
				count[i]++
			}
			for i, k := range count {
				if want := len(conns) / n; k < want*9/10 || k > want*11/10 {
					t.Errorf("n=%d, %s: shard %d has %d of %d connections, want about %d (%v)", n, name, i, k, len(conns), want, count)
				}
			}
		}
	}
}
