package packets

// varintLen is the minimal number of bytes of the remaining-length encoding
// of v (MQTT 3.1.1 §2.2.3).
func varintLen(v uint32) int {
	switch {
	case v < 128:
		return 1
	case v < 16_384:
		return 2
	case v < 2_097_152:
		return 3
	default:
		return 4
	}
}

// appendVarint appends v in the remaining-length encoding, padded with
// continuation bytes to size bytes when size exceeds the minimal length.
// MQTT 3.1.1 does not require the minimal encoding; padding beyond four
// bytes yields a malformed packet.
func appendVarint(b []byte, v uint32, size int) []byte {
	n := max(varintLen(v), size)
	for i := 0; i < n; i++ {
		c := byte(v & 0x7f)
		v >>= 7
		if i < n-1 {
			c |= 0x80
		}
		b = append(b, c)
	}
	return b
}
