package packets

import (
	"encoding/binary"
	"fmt"
)

// The packets whose body is a packet identifier only: PUBACK, PUBREC,
// PUBREL, PUBCOMP and UNSUBACK share these helpers.

func appendPacketID(b []byte, id uint16) []byte { return binary.BigEndian.AppendUint16(b, id) }

// appendIDPacket is the whole encoding of an identifier-only packet of type
// t: there is no rule to check, so its Append needs no Encode.
func appendIDPacket(b []byte, t Type, id uint16) []byte {
	return append(b, byte(t)<<4|requiredFlags[t], 2, byte(id>>8), byte(id))
}

// appendEmptyPacket is the whole encoding of PINGREQ, PINGRESP or
// DISCONNECT.
func appendEmptyPacket(b []byte, t Type) []byte { return append(b, byte(t)<<4, 0) }

func decodePacketID(c *checker, body []byte, section string) uint16 {
	if len(body) != 2 {
		c.malformed(section, c.remainingLength(), "remaining length %d, must be 2", len(body))
		return 0
	}
	return binary.BigEndian.Uint16(body)
}

// decodeEmpty checks the body of PINGREQ, PINGRESP and DISCONNECT.
func decodeEmpty(c *checker, body []byte, section string) {
	if len(body) != 0 {
		c.malformed(section, c.remainingLength(), "remaining length %d, must be 0", len(body))
	}
}

func idString(t Type, id uint16) string { return fmt.Sprintf("%v id=%d", t, id) }
