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
	if off+2 > len(body) {
		c.malformed("MQTT-1.5.2", off, "%s needs 2 bytes, %d left in the packet", field, len(body)-off)
		return 0, len(body)
	}
	return binary.BigEndian.Uint16(body[off:]), off + 2
}

// lenPrefixed reads a field prefixed by a two-byte length (§1.5.3 UTF-8
// strings and the binary fields of CONNECT). The result aliases body.
func (c *checker) lenPrefixed(body []byte, off int, field string) ([]byte, int) {
	if off+2 > len(body) {
		c.malformed("MQTT-1.5.3", off, "%s length prefix needs 2 bytes, %d left in the packet", field, len(body)-off)
		return nil, len(body)
	}
	n := int(binary.BigEndian.Uint16(body[off:]))
	start := off + 2
	if start+n > len(body) {
		c.malformed("MQTT-1.5.3", off, "%s of %d bytes runs past the end of the packet (%d left)", field, n, len(body)-start)
		return nil, len(body)
	}
	return body[start : start+n : start+n], start + n
}

// utf8String checks a UTF-8 encoded string field at body offset off.
func (c *checker) utf8String(s []byte, off int, field string) {
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

// topicFilter checks a SUBSCRIBE or UNSUBSCRIBE topic filter (§4.7.1).
func (c *checker) topicFilter(s []byte, off int) {
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
