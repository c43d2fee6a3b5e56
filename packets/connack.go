package packets

import "fmt"

// §3.2 CONNACK – Acknowledge connection request.

// ConnackCode is the CONNACK return code (MQTT 3.1.1 §3.2.2.3, Table 3.1).
type ConnackCode byte

// Connect return codes. 6–255 are reserved.
const (
	ConnackAccepted                     ConnackCode = 0x00
	ConnackRefusedProtocolVersion       ConnackCode = 0x01
	ConnackRefusedIdentifierRejected    ConnackCode = 0x02
	ConnackRefusedServerUnavailable     ConnackCode = 0x03
	ConnackRefusedBadUsernameOrPassword ConnackCode = 0x04
	ConnackRefusedNotAuthorized         ConnackCode = 0x05
)

var connackText = [...]string{
	"Connection Accepted",
	"Connection Refused, unacceptable protocol version",
	"Connection Refused, identifier rejected",
	"Connection Refused, Server unavailable",
	"Connection Refused, bad user name or password",
	"Connection Refused, not authorized",
}

// String returns the wording of Table 3.1.
func (c ConnackCode) String() string {
	if int(c) < len(connackText) {
		return connackText[c]
	}
	return fmt.Sprintf("reserved return code 0x%02x", byte(c))
}

// Connack is the CONNACK control packet (MQTT 3.1.1 §3.2).
type Connack struct {
	SessionPresent bool
	// Reserved holds bits 7–1 of the Connect Acknowledge Flags as sent
	// (bit 0 cleared); they must be 0 (§3.2.2.1).
	Reserved   byte
	ReturnCode ConnackCode
}

// Type returns TypeConnack.
func (*Connack) Type() Type  { return TypeConnack }
func (*Connack) flags() byte { return 0 }

// Len returns the encoded length (always 4).
func (p *Connack) Len() int { return 4 }

// Append appends the encoding of p to b.
func (p *Connack) Append(b []byte) ([]byte, error) { return appendPacket(b, p) }

// Clone returns a copy of p.
func (p *Connack) Clone() Packet { q := *p; return &q }

func (p *Connack) bodyLen() int { return 2 }

func (p *Connack) appendBody(b []byte) []byte {
	f := p.Reserved &^ 0x01
	if p.SessionPresent {
		f |= 0x01
	}
	return append(b, f, byte(p.ReturnCode))
}

func (p *Connack) check(c *checker) {
	// §3.2.2.1: "Bits 7-1 are reserved and MUST be set to 0."
	if p.Reserved&^0x01 != 0 {
		c.violation("MQTT-3.2.2.1", 0, "reserved acknowledge flags 0x%02x must be 0", p.Reserved&^0x01)
	}
	// §3.2.2.3: return codes 6-255 are reserved for future use.
	if p.ReturnCode > ConnackRefusedNotAuthorized {
		c.violation("MQTT-3.2.2.3", 1, "%v", p.ReturnCode)
	}
	// [MQTT-3.2.2-4] If a server sends a CONNACK packet containing a non-zero
	// return code it MUST set Session Present to 0.
	if p.ReturnCode != ConnackAccepted && p.SessionPresent {
		c.violation("MQTT-3.2.2-4", 0, "session present 1 with return code 0x%02x", byte(p.ReturnCode))
	}
}

func (p *Connack) decode(c *checker, body []byte) {
	if len(body) != 2 {
		c.malformed("MQTT-3.2.1", c.remainingLength(), "remaining length %d, must be 2", len(body))
		return
	}
	p.SessionPresent = body[0]&0x01 != 0
	p.Reserved = body[0] &^ 0x01
	p.ReturnCode = ConnackCode(body[1])
	p.check(c)
}
