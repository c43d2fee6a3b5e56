package packets_test

import (
	"flag"
	"math/rand/v2"
	"strings"

	"github.com/dps-conform/dps-conform/packets"
)

// randSeed seeds every random packet stream of the package tests. Override it
// to explore: go test ./packets/ -run Paho -randseed 42. Failures print it.
var randSeed = flag.Uint64("randseed", 0x4d515454_0311, "seed of the random MQTT 3.1.1 packet generator")

// randGen generates random, valid MQTT 3.1.1 packets of all 14 types: every
// packet it returns must encode without error and decode strictly. It leans
// on the edges: empty and multi-KiB strings and payloads, multi-byte UTF-8,
// wildcards in every legal filter position, packet identifiers 1 and 65535,
// keep alive 0 and 65535, and remaining lengths on both sides of the
// one/two-byte (127/128) and two/three-byte (16383/16384) boundaries.
type randGen struct {
	r *rand.Rand
}

func newRandGen(seed uint64) *randGen {
	return &randGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// allTypes lists the 14 control packet types in wire order.
var allTypes = [...]packets.Type{
	packets.TypeConnect, packets.TypeConnack, packets.TypePublish, packets.TypePuback,
	packets.TypePubrec, packets.TypePubrel, packets.TypePubcomp, packets.TypeSubscribe,
	packets.TypeSuback, packets.TypeUnsubscribe, packets.TypeUnsuback, packets.TypePingreq,
	packets.TypePingresp, packets.TypeDisconnect,
}

// Packet returns a random packet of a random type.
func (g *randGen) Packet() packets.Packet {
	return g.PacketOf(allTypes[g.r.IntN(len(allTypes))])
}

// PacketOf returns a random packet of type t.
func (g *randGen) PacketOf(t packets.Type) packets.Packet {
	switch t {
	case packets.TypeConnect:
		return g.connect()
	case packets.TypeConnack:
		p := &packets.Connack{ReturnCode: packets.ConnackCode(g.r.IntN(6))}
		// [MQTT-3.2.2-4] Session Present only with return code 0.
		p.SessionPresent = p.ReturnCode == packets.ConnackAccepted && g.r.IntN(2) == 0
		return p
	case packets.TypePublish:
		return g.publish()
	case packets.TypePuback:
		return &packets.Puback{PacketID: g.packetID()}
	case packets.TypePubrec:
		return &packets.Pubrec{PacketID: g.packetID()}
	case packets.TypePubrel:
		return &packets.Pubrel{PacketID: g.packetID()}
	case packets.TypePubcomp:
		return &packets.Pubcomp{PacketID: g.packetID()}
	case packets.TypeSubscribe:
		return g.subscribe()
	case packets.TypeSuback:
		return g.suback()
	case packets.TypeUnsubscribe:
		return g.unsubscribe()
	case packets.TypeUnsuback:
		return &packets.Unsuback{PacketID: g.packetID()}
	case packets.TypePingreq:
		return &packets.Pingreq{}
	case packets.TypePingresp:
		return &packets.Pingresp{}
	case packets.TypeDisconnect:
		return &packets.Disconnect{}
	}
	panic("randGen: no packet type " + t.String())
}

// boundaryRemaining returns a remaining length next to a boundary of the
// variable-length encoding (§2.2.3): 127|128 and 16383|16384.
func (g *randGen) boundaryRemaining() int {
	return [...]int{126, 127, 128, 129, 16382, 16383, 16384, 16385}[g.r.IntN(8)]
}

// packetID is a non-zero packet identifier, often an extreme one.
func (g *randGen) packetID() uint16 {
	switch g.r.IntN(6) {
	case 0:
		return 1
	case 1:
		return 65535
	case 2:
		return [...]uint16{127, 128, 255, 256, 32767, 32768}[g.r.IntN(6)]
	}
	return uint16(1 + g.r.IntN(65535))
}

func (g *randGen) qos() byte { return byte(g.r.IntN(3)) }

// runes that text is built from: ASCII, 2-, 3- and 4-byte UTF-8 sequences,
// U+FEFF (which must not be skipped or stripped, [MQTT-1.5.3-3]) and the
// largest scalar values on either side of the surrogate range. No U+0000,
// no '/', '+' or '#' (levels and wildcards are placed separately).
var textRunes = []rune("abcxyzABCXYZ0189-_.$ =&%?é߿ࠀ€中\ud7ff\ue000\ufeff\uffff😀\U0010ffff")

// text returns a random UTF-8 string of about n bytes (at most n).
func (g *randGen) text(n int) []byte {
	b := make([]byte, 0, n)
	for {
		r := textRunes[g.r.IntN(len(textRunes))]
		if g.r.IntN(3) != 0 { // mostly ASCII
			r = textRunes[g.r.IntN(20)]
		}
		if len(b)+len(string(r)) > n {
			return b
		}
		b = append(b, string(r)...)
	}
}

// textLen picks the size of a string: often empty or short, sometimes
// several KiB.
func (g *randGen) textLen(max int) int {
	switch g.r.IntN(10) {
	case 0:
		return 0
	case 1:
		return min(max, 1+g.r.IntN(4096))
	}
	return min(max, 1+g.r.IntN(30))
}

// binary returns n random bytes (any values: binary data is not UTF-8).
func (g *randGen) binary(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	return b
}

// topicName is a non-empty topic name without wildcards (§4.7); levels may
// be empty ("a//b", "/a", "a/").
func (g *randGen) topicName() []byte {
	switch g.r.IntN(12) {
	case 0:
		return []byte("$dps/registrations/PUT/iotdps-register/?$rid=1")
	case 1:
		return []byte("/")
	case 2:
		return g.text(1 + g.r.IntN(4096)) // one long level
	}
	var b []byte
	for i, n := 0, 1+g.r.IntN(6); i < n; i++ {
		if i > 0 {
			b = append(b, '/')
		}
		b = append(b, g.text(g.r.IntN(12))...)
	}
	if len(b) == 0 {
		b = append(b, 'x')
	}
	return b
}

// topicFilter is a valid topic filter: '+' occupies whole levels anywhere,
// '#' is alone in the last level (§4.7.1).
func (g *randGen) topicFilter() []byte {
	switch g.r.IntN(10) {
	case 0:
		return []byte("$dps/registrations/res/#")
	case 1:
		return []byte{'#'}
	case 2:
		return []byte{'+'}
	case 3:
		return []byte("/#")
	}
	var levels []string
	for i, n := 0, 1+g.r.IntN(6); i < n; i++ {
		if g.r.IntN(4) == 0 {
			levels = append(levels, "+")
		} else {
			levels = append(levels, string(g.text(g.r.IntN(10))))
		}
	}
	if g.r.IntN(3) == 0 {
		levels = append(levels, "#")
	}
	f := []byte(strings.Join(levels, "/"))
	if len(f) == 0 {
		f = append(f, 'f')
	}
	return f
}

func (g *randGen) connect() packets.Packet {
	p := &packets.Connect{
		ProtocolName:  []byte(packets.ProtocolName311),
		ProtocolLevel: packets.ProtocolLevel311,
		CleanSession:  g.r.IntN(2) == 0,
		ClientID:      g.text(g.textLen(128)),
	}
	switch g.r.IntN(4) {
	case 0:
		p.KeepAlive = 0
	case 1:
		p.KeepAlive = 65535
	default:
		p.KeepAlive = uint16(g.r.IntN(65536))
	}
	if len(p.ClientID) == 0 {
		// [MQTT-3.1.3-7] A zero-byte ClientId needs CleanSession 1.
		p.CleanSession = true
	}
	if g.r.IntN(2) == 0 {
		p.WillTopic = g.topicName()
		p.WillMessage = g.binary(g.textLen(4096)) // non-nil, maybe empty
		p.WillQoS = g.qos()
		p.WillRetain = g.r.IntN(2) == 0
	}
	if g.r.IntN(3) != 0 {
		p.Username = g.text(g.textLen(512))
		if g.r.IntN(3) != 0 {
			// [MQTT-3.1.2-22] A password only with a user name.
			p.Password = g.binary(g.textLen(512))
		}
	}
	if g.r.IntN(6) == 0 {
		// Pad a binary field so that the remaining length sits on a boundary.
		switch {
		case p.Password != nil:
			p.Password = p.Password[:0]
			if n := g.boundaryRemaining() - remainingLength(p); n >= 0 {
				p.Password = g.binary(n)
			}
		case p.WillTopic != nil:
			p.WillMessage = p.WillMessage[:0]
			if n := g.boundaryRemaining() - remainingLength(p); n >= 0 {
				p.WillMessage = g.binary(n)
			}
		}
	}
	return p
}

func (g *randGen) publish() packets.Packet {
	p := &packets.Publish{QoS: g.qos(), Retain: g.r.IntN(2) == 0, Topic: g.topicName()}
	if p.QoS > 0 {
		p.PacketID = g.packetID()
		// [MQTT-3.3.1-2] DUP only with QoS > 0.
		p.Dup = g.r.IntN(2) == 0
	}
	switch g.r.IntN(6) {
	case 0:
		p.Payload = nil
	case 1:
		p.Payload = []byte{}
	case 2:
		p.Payload = g.binary(1 + g.r.IntN(4096))
	case 3:
		if n := g.boundaryRemaining() - remainingLength(p); n >= 0 {
			p.Payload = g.binary(n)
		}
	default:
		p.Payload = g.binary(g.r.IntN(64))
	}
	return p
}

func (g *randGen) count() int {
	switch g.r.IntN(8) {
	case 0:
		return 20 + g.r.IntN(300) // many
	case 1, 2:
		return 2 + g.r.IntN(8)
	}
	return 1
}

func (g *randGen) subscribe() packets.Packet {
	p := &packets.Subscribe{PacketID: g.packetID()}
	for range g.count() {
		p.Subscriptions = append(p.Subscriptions, packets.Subscription{Filter: g.topicFilter(), QoS: g.qos()})
	}
	return p
}

func (g *randGen) suback() packets.Packet {
	p := &packets.Suback{PacketID: g.packetID()}
	n := g.count()
	if g.r.IntN(4) == 0 {
		n = g.boundaryRemaining() - 2 // one code per byte after the packet identifier
	}
	codes := [...]packets.SubackCode{packets.SubackMaxQoS0, packets.SubackMaxQoS1, packets.SubackMaxQoS2, packets.SubackFailure}
	for range n {
		p.ReturnCodes = append(p.ReturnCodes, codes[g.r.IntN(len(codes))])
	}
	return p
}

func (g *randGen) unsubscribe() packets.Packet {
	p := &packets.Unsubscribe{PacketID: g.packetID()}
	for range g.count() {
		p.Filters = append(p.Filters, g.topicFilter())
	}
	return p
}

// remainingLength is the remaining length of p's encoding, from Len.
func remainingLength(p packets.Packet) int {
	n := p.Len() - 1
	for _, hdr := range [...]int{1, 2, 3, 4} {
		if rem := n - hdr; rem >= 0 && varintSize(rem) == hdr {
			return rem
		}
	}
	panic("remainingLength: inconsistent Len")
}

// varintSize is the size of the minimal remaining-length encoding of n.
func varintSize(n int) int {
	switch {
	case n < 128:
		return 1
	case n < 16384:
		return 2
	case n < 2097152:
		return 3
	}
	return 4
}
