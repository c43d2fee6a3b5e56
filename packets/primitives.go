package packets

import (
	"bytes"
	"encoding/binary"
	"unicode/utf8"
)

// MaxStringLength is the largest UTF-8 string or binary field: its length
// prefix is two bytes (MQTT 3.1.1 §1.5.3, §4.7.3 MQTT-4.7.3-3).
const MaxStringLength = 65_535

// uint16At reads a two-byte integer (§1.5.2) at off in body.
func (c *checker) uint16At(body []byte, off int, field string) (uint16, int) {
	if off >= 0 && off+2 <= len(body) {
		return uint16(body[off])<<8 | uint16(body[off+1]), off + 2
	}
	c.malformed("MQTT-1.5.2", off, "%s needs 2 bytes, %d left in the packet", field, len(body)-off)
	return 0, len(body)
}

// lenPrefixed reads a field prefixed by a two-byte length (§1.5.3 UTF-8
// strings and the binary fields of CONNECT). The result aliases body. It is
// too large to inline, so hot call sites spell it out as prefixed, with
// lenPrefixedSlow for the error.
func (c *checker) lenPrefixed(body []byte, off int, field string) ([]byte, int) {
	if f, end, ok := prefixed(body, off); ok {
		return f, end
	}
	return c.lenPrefixedSlow(body, off, field)
}

// prefixed is the inlinable fast path of lenPrefixed: the field at off and
// the offset after it, or ok false if it does not fit in body (the caller
// then calls lenPrefixedSlow for the error).
func prefixed(body []byte, off int) (f []byte, end int, ok bool) {
	if uint(off)+2 <= uint(len(body)) {
		end = off + 2 + (int(body[off])<<8 | int(body[off+1]))
		if end <= len(body) {
			return body[off+2 : end : end], end, true
		}
	}
	return nil, off, false
}

func (c *checker) lenPrefixedSlow(body []byte, off int, field string) ([]byte, int) {
	if off+2 > len(body) {
		c.malformed("MQTT-1.5.3", off, "%s length prefix needs 2 bytes, %d left in the packet", field, len(body)-off)
		return nil, len(body)
	}
	n := int(binary.BigEndian.Uint16(body[off:]))
	start := off + 2
	c.malformed("MQTT-1.5.3", off, "%s of %d bytes runs past the end of the packet (%d left)", field, n, len(body)-start)
	return nil, len(body)
}

// The fast path of the string checks reads eight bytes at a time (SWAR: a
// 64-bit word as eight lanes) and answers one question: is every byte plain,
// so that there is nothing to report? A plain byte of a UTF-8 string is
// 0x01..0x7f (ASCII, not U+0000); a plain byte of a topic name is also not
// a wildcard. Anything else, and every error message, goes to the precise
// checks below, which run only when the fast path finds something.
const (
	swarLo = 0x0101010101010101
	swarHi = 0x8080808080808080
)

// plainLanes has the high bit of a lane set if that lane of w is 0x00 or
// 0x80..0xff, and possibly of lanes above a 0x00 lane (the borrow of the
// subtraction): exact as "some lane is not plain", which is all the callers
// ask.
func plainLanes(w uint64) uint64 { return (w - swarLo) | w }

// plainText reports whether every byte of s is in 0x01..0x7f.
func plainText(s []byte) bool {
	if len(s) < 8 {
		for _, b := range s {
			if b == 0 || b >= 0x80 {
				return false
			}
		}
		return true
	}
	// The last 8 bytes overlap what the loops read; two accumulators make
	// two independent dependency chains.
	acc := plainLanes(binary.LittleEndian.Uint64(s[len(s)-8:]))
	var acc2 uint64
	for len(s) >= 32 {
		b := s[:32:32] // one bounds check for the four loads
		acc |= plainLanes(binary.LittleEndian.Uint64(b[0:8])) | plainLanes(binary.LittleEndian.Uint64(b[8:16]))
		acc2 |= plainLanes(binary.LittleEndian.Uint64(b[16:24])) | plainLanes(binary.LittleEndian.Uint64(b[24:32]))
		s = s[32:]
	}
	acc |= acc2
	if len(s) >= 16 {
		b := s[:16:16]
		acc |= plainLanes(binary.LittleEndian.Uint64(b[0:8])) | plainLanes(binary.LittleEndian.Uint64(b[8:16]))
		s = s[16:]
	}
	if len(s) >= 8 {
		acc |= plainLanes(binary.LittleEndian.Uint64(s[:8]))
	}
	return acc&swarHi == 0
}

// topicLanes is plainLanes that also flags '#' (0x23) and '+' (0x2b).
// Clearing bit 3 maps both, and only them, to 0x23; XOR with 0x23 then
// makes them the only 0x00 lanes. When every lane of w is below 0x80 so is
// every lane of x, and x-1 sets a lane's high bit only for a 0x00 lane (or
// above one, by the borrow).
func topicLanes(w uint64) uint64 {
	x := w&^(0x08*swarLo) ^ ('#' * swarLo)
	return (w - swarLo) | w | (x - swarLo)
}

// plainTopic reports whether every byte of s is in 0x01..0x7f and none is
// '#' or '+'.
func plainTopic(s []byte) bool {
	if len(s) < 8 {
		for _, b := range s {
			if b == '#' || b == '+' || b == 0 || b >= 0x80 {
				return false
			}
		}
		return true
	}
	acc := topicLanes(binary.LittleEndian.Uint64(s[len(s)-8:]))
	for ; len(s) >= 16; s = s[16:] {
		acc |= topicLanes(binary.LittleEndian.Uint64(s[:8])) | topicLanes(binary.LittleEndian.Uint64(s[8:16]))
	}
	if len(s) >= 8 {
		acc |= topicLanes(binary.LittleEndian.Uint64(s[:8]))
	}
	return acc&swarHi == 0
}

// utf8String checks a UTF-8 encoded string field at body offset off.
func (c *checker) utf8String(s []byte, off int, field string) {
	if len(s) <= MaxStringLength && plainText(s) {
		return
	}
	if len(s) > MaxStringLength {
		c.violation("MQTT-4.7.3-3", off, "%s is %d bytes, longer than 65,535", field, len(s))
		return
	}
	if !utf8.Valid(s) {
		// [MQTT-1.5.3-1] The character data in a UTF-8 encoded string MUST be
		// well-formed UTF-8 ... In particular this data MUST NOT include
		// encodings of code points between U+D800 and U+DFFF.
		i := firstInvalidUTF8(s)
		c.violation("MQTT-1.5.3-1", off+2+i, "%s is not well-formed UTF-8 at byte %d (0x%02x)", field, i, s[i])
		return
	}
	// [MQTT-1.5.3-2] A UTF-8 encoded string MUST NOT include an encoding of
	// the null character U+0000.
	if i := bytes.IndexByte(s, 0); i >= 0 {
		c.violation("MQTT-1.5.3-2", off+2+i, "%s contains U+0000 at byte %d", field, i)
	}
}

func firstInvalidUTF8(s []byte) int {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return 0
}

// topicName checks a PUBLISH topic name (§4.7).
func (c *checker) topicName(s []byte, off int) {
	if len(s) > 0 && len(s) <= MaxStringLength && plainTopic(s) {
		return
	}
	c.utf8String(s, off, "topic name")
	if len(s) == 0 {
		// [MQTT-4.7.3-1] All Topic Names and Topic Filters MUST be at least one character long.
		c.violation("MQTT-4.7.3-1", off, "topic name is empty")
	}
	// [MQTT-3.3.2-2] The Topic Name in the PUBLISH Packet MUST NOT contain wildcard characters.
	if i := indexWildcard(s); i >= 0 {
		c.violation("MQTT-3.3.2-2", off+2+i, "topic name contains wildcard %q at byte %d", s[i], i)
	}
}

// plainFilter is the fast path of topicFilter: it reports whether s is a
// filter with nothing to report that is plain up to its last byte, which is
// plain or a '#' alone in the last level (the filter of every DPS client,
// "$dps/registrations/res/#"). Filters with '+' take the slow path.
func plainFilter(s []byte) bool {
	n := len(s)
	if n == 0 || n > MaxStringLength || !plainTopic(s[:n-1]) {
		return false
	}
	last := s[n-1]
	if last == '#' {
		return n == 1 || s[n-2] == '/'
	}
	return last != '+' && last != 0 && last < 0x80
}

// topicFilter checks a SUBSCRIBE or UNSUBSCRIBE topic filter (§4.7.1).
func (c *checker) topicFilter(s []byte, off int) {
	if plainFilter(s) {
		return
	}
	c.utf8String(s, off, "topic filter")
	if len(s) == 0 {
		c.violation("MQTT-4.7.3-1", off, "topic filter is empty")
		return
	}
	// Jump from wildcard to wildcard (IndexByte is vectorised) instead of
	// walking every byte; the first misplaced wildcard by position is reported.
	bad, clause := -1, ""
	// [MQTT-4.7.1-2] The multi-level wildcard character MUST be specified
	// either on its own or following a topic level separator. In either case
	// it MUST be the last character specified in the Topic Filter.
	if i := bytes.IndexByte(s, '#'); i >= 0 && (i != len(s)-1 || i > 0 && s[i-1] != '/') {
		bad, clause = i, "MQTT-4.7.1-2"
	}
	// [MQTT-4.7.1-3] The single-level wildcard can be used at any level ...
	// it MUST occupy an entire level of the filter.
	for i := 0; i < len(s) && (bad < 0 || i < bad); i++ {
		j := bytes.IndexByte(s[i:], '+')
		if j < 0 {
			break
		}
		i += j
		if i > 0 && s[i-1] != '/' || i+1 < len(s) && s[i+1] != '/' {
			if bad < 0 || i < bad {
				bad, clause = i, "MQTT-4.7.1-3"
			}
			break
		}
	}
	switch clause {
	case "MQTT-4.7.1-2":
		c.violation(clause, off+2+bad, "'#' at byte %d is not alone in the last level", bad)
	case "MQTT-4.7.1-3":
		c.violation(clause, off+2+bad, "'+' at byte %d does not occupy a whole level", bad)
	}
}

// appendString appends a two-byte length prefix and s.
func appendString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// checkEncodable reports fields that cannot be represented at all.
func (c *checker) checkEncodable(s []byte, field string) {
	if len(s) > MaxStringLength {
		c.malformed("MQTT-1.5.3", 0, "%s is %d bytes; a length prefix holds at most 65,535", field, len(s))
	}
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// trailing reports bytes left over after the last field of a packet.
func (c *checker) trailing(body []byte, off int, section string) {
	if off < len(body) && !c.fatal {
		c.malformed(section, off, "%d unexpected bytes after the last field", len(body)-off)
	}
}

// indexWildcard returns the index of the first '#' or '+' in s, or -1.
// Two IndexByte scans (vectorised) beat bytes.IndexAny, which builds a set
// on every call.
func indexWildcard(s []byte) int {
	i := bytes.IndexByte(s, '#')
	if i < 0 {
		i = len(s)
	}
	if j := bytes.IndexByte(s[:i], '+'); j >= 0 {
		return j
	}
	if i == len(s) {
		return -1
	}
	return i
}
