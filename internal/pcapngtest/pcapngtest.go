// Package pcapngtest edits pcapng files block by block, for tests that
// damage a committed capture on purpose (a dropped or changed packet, a
// cut length, a block of another type).
package pcapngtest

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// EditBlocks returns the little-endian pcapng file orig with each block
// passed through f, given its type, the number of Enhanced Packet Blocks
// so far (this one included) and a copy of the block; f returns what to
// write in its place (nil: nothing).
func EditBlocks(orig []byte, f func(typ uint32, epbs int, block []byte) []byte) ([]byte, error) {
	var out []byte
	epbs := 0
	for off := 0; off+12 <= len(orig); {
		typ, n := binary.LittleEndian.Uint32(orig[off:]), int(binary.LittleEndian.Uint32(orig[off+4:]))
		if n < 12 || off+n > len(orig) {
			return nil, fmt.Errorf("pcapngtest: block at byte offset %d: length %d", off, n)
		}
		if typ == 6 {
			epbs++
		}
		out = append(out, f(typ, epbs, bytes.Clone(orig[off:off+n]))...)
		off += n
	}
	return out, nil
}
