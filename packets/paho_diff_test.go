package packets_test

// Differential tests against github.com/eclipse/paho.mqtt.golang/packets
// (v1.5.1), the codec of the most used Go MQTT 3.1.1 client.
//
// Disagreements with paho.mqtt.golang:
//
// Each is pinned by a row of TestPahoDisagreements, read from paho's source
// (packets/*.go of v1.5.1), not assumed. "Spec" says which side MQTT 3.1.1
// supports. paho's ReadPacket never validates: it only parses, and leaves
// rules to ConnectPacket.Validate (called by paho's own server-side users,
// never by ReadPacket), so it accepts every Invalid packet below.
//
//  1. Fixed-header flags are not checked (FixedHeader.unpack keeps the low
//     nibble as Dup/Qos/Retain for every type): PUBREL, SUBSCRIBE and
//     UNSUBSCRIBE with flags 0, PUBACK or DISCONNECT with flags set.
//     Spec: ours, [MQTT-2.2.2-1], [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1].
//  2. PUBLISH QoS 3 is accepted (Qos = 3, a packet identifier is read), DUP
//     on QoS 0 is accepted. Spec: ours, [MQTT-3.3.1-4], [MQTT-3.3.1-2].
//  3. Packet identifier 0 is accepted in PUBLISH QoS>0, SUBSCRIBE and
//     UNSUBSCRIBE. Spec: ours, [MQTT-2.3.1-1].
//  4. UTF-8 is not validated anywhere (decodeString is string(bytes)):
//     ill-formed sequences, encoded surrogates and U+0000 pass in topics,
//     client identifiers, user names. Spec: ours, [MQTT-1.5.3-1], [MQTT-1.5.3-2].
//  5. Topic names and filters are not checked: empty topic names, wildcards
//     in a PUBLISH topic or a will topic, '#' or '+' that do not fill a level.
//     Spec: ours, [MQTT-4.7.3-1], [MQTT-3.3.2-2], [MQTT-4.7.1-2], [MQTT-4.7.1-3].
//  6. CONNECT: the reserved flag (kept as ReservedBit), will QoS 3, will
//     QoS/retain without the will flag, a password without a user name, an
//     empty client id with CleanSession 0, MQIsdp level 3 and trailing bytes
//     after the payload are all accepted by ReadPacket. Spec: ours,
//     [MQTT-3.1.2-3], [MQTT-3.1.2-14], [MQTT-3.1.2-13], [MQTT-3.1.2-15],
//     [MQTT-3.1.2-22], [MQTT-3.1.3-7], §3.1.3 (3.1.1 knows only level 4). An
//     MQTT 5 CONNECT (level 5) is parsed as 3.1.1: the property length byte
//     is read as the start of the client identifier, which comes out empty
//     instead of an error. Spec: ours ([MQTT-3.1.2-2]: answer CONNACK 0x01).
//  7. Short fields are zero-padded, not errors: decodeUint16 and
//     decodeBytes use one io.Reader.Read and ignore a short count, so a
//     PUBACK with remaining length 1 decodes to id 0x0700, and a password
//     whose length runs past the packet decodes to the bytes present plus
//     NULs. Spec: ours (malformed, §1.5.2/§1.5.3).
//  8. Bodies longer than the packet type allows are ignored (PINGREQ,
//     DISCONNECT with a body, CONNACK/PUBACK with 3 bytes); a SUBSCRIBE
//     without filters, an UNSUBSCRIBE without filters, a SUBACK without
//     return codes, reserved SUBACK codes, requested QoS 3 or reserved QoS
//     bits, CONNACK reserved flags (dropped), return codes 6-255, and
//     Session Present with a refusal are all accepted. Spec: ours, §3.12.1,
//     §3.14.1, §3.2.1, §3.4.1, [MQTT-3.8.3-3], [MQTT-3.10.3-2],
//     [MQTT-3.8.4-5], [MQTT-3.9.3-2], [MQTT-3.8.3-4], §3.2.2.1, §3.2.2.3,
//     [MQTT-3.2.2-4].
//  9. UNSUBSCRIBE: an empty topic filter silently ends the list (the Unpack
//     loop stops at topic == "") and the filters after it are dropped, with
//     no error. Spec: ours ([MQTT-4.7.3-1]; the packet is invalid).
// 10. Remaining length: decodeLength stops after four bytes whatever the
//     continuation bit says, so a five-byte length is read as its first
//     four and the fifth byte is left in the stream as the start of the
//     body or next packet. Spec: ours ([MQTT-2.2.3]: at most four bytes;
//     malformed). Both accept non-minimal encodings (3.1.1 allows them).
// 11. Errors: paho returns bare io.EOF / io.ErrUnexpectedEOF for truncated
//     input and unformatted errors ("unsupported packet type 0x0",
//     "error unpacking publish, payload length < 0"); ours returns
//     *ShortBufferError (errors.Is ErrShortBuffer) and *ProtocolError with
//     the clause and offset. Both reject reserved types 0 and 15.
// 12. Encoding: paho's Write never refuses. encodeBytes silently truncates
//     strings over 65,535 bytes; QoS 3 and packet id 0 are written;
//     ConnectPacket.Write drops ReservedBit; WillQos is written even without
//     WillFlag; a Qos > 3 spills into the DUP bit (no masking in
//     FixedHeader.pack). Ours returns ErrInvalidPacket (with the clause) and
//     writes illegal packets only under EncodeOptions.AllowInvalid. paho
//     also has no remaining-length limit check on encode (encodeLength
//     writes a fifth byte past 268,435,455); not exercised here (256 MiB).
// 13. Empty payloads and empty binary fields agree: a zero-length PUBLISH
//     payload, will message or password decode to empty slices in both.
//
// On every valid packet (random and packettest Valid vectors) the two codecs
// agree field for field and byte for byte: TestPahoDifferential.

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/packets/packettest"
)

// TestPahoDifferential checks, for thousands of random valid packets and
// every Valid vector, that (a) our encoding decodes in paho to the same
// fields, (b) paho's encoding decodes in ours to the same packet, and (c)
// both encode to the same bytes.
func TestPahoDifferential(t *testing.T) {
	seed := *randSeed
	g := newRandGen(seed)
	n := 5000
	if testing.Short() {
		n = 500
	}
	cov := map[string]int{}
	for i := range n {
		p := g.Packet()
		if err := pahoAgree(p, nil); err != nil {
			b, _ := p.Append(nil)
			t.Fatalf("random packet %d (seed %#x, rerun with -randseed %d): %T: %v\nours: %s",
				i, seed, seed, p, err, shortHex(b))
		}
		coverage(cov, p)
	}
	// The generator must reach the edges it promises.
	for _, k := range []string{
		"rem=127", "rem=128", "rem=16383", "rem=16384", "publish/qos0", "publish/qos1", "publish/qos2",
		"publish/dup", "publish/retain", "publish/empty-payload", "publish/multibyte-topic",
		"connect/will-qos0", "connect/will-qos1", "connect/will-qos2", "connect/username-only",
		"connect/username-password", "connect/keepalive-0", "connect/keepalive-65535",
		"connect/empty-client-id", "suback/0x00", "suback/0x01", "suback/0x02", "suback/0x80",
		"id=1", "id=65535", "subscribe/many", "filter/+", "filter/#",
	} {
		if cov[k] == 0 {
			t.Errorf("seed %#x: %d random packets never produced %s", seed, n, k)
		}
	}
	for _, typ := range allTypes {
		if cov[typ.String()] == 0 {
			t.Errorf("seed %#x: %d random packets never produced a %v", seed, n, typ)
		}
	}

	valid := packettest.OfKind(packettest.Valid)
	if len(valid) == 0 {
		t.Fatal("packettest.Vectors has no Valid vector")
	}
	for _, v := range valid {
		if err := pahoAgree(v.Packet, v.Raw); err != nil {
			t.Errorf("vector %s: %v", v.Name, err)
		}
	}
}

// pahoAgree runs the three checks on p. raw, if non-nil, is the expected
// encoding (a vector's bytes).
func pahoAgree(p packets.Packet, raw []byte) error {
	ours, err := p.Append(nil)
	if err != nil {
		return fmt.Errorf("our Append: %w", err)
	}
	if raw != nil && !bytes.Equal(ours, raw) {
		return fmt.Errorf("our encoding differs from the vector:\n ours %s\n want %s", shortHex(ours), shortHex(raw))
	}
	// Sanity: we decode our own bytes back to p.
	if q, n, err := packets.Decode(ours, packets.DecodeOptions{}); err != nil || n != len(ours) {
		return fmt.Errorf("our Decode of our encoding: n=%d/%d, %v", n, len(ours), err)
	} else if d := diffPackets(p, q); d != "" {
		return fmt.Errorf("our round trip: %s", d)
	}

	// (a) paho decodes our bytes to the same fields, consuming all of them.
	r := bytes.NewReader(ours)
	cp, err := paho.ReadPacket(r)
	if err != nil {
		return fmt.Errorf("(a) paho.ReadPacket of our encoding: %v", err)
	}
	if r.Len() != 0 {
		return fmt.Errorf("(a) paho.ReadPacket left %d of %d bytes", r.Len(), len(ours))
	}
	if d := diffPaho(p, ours, cp); d != "" {
		return fmt.Errorf("(a) paho decoded our encoding differently: %s", d)
	}

	// (b) we decode paho's bytes to the same packet.
	var buf bytes.Buffer
	if err := toPaho(p).Write(&buf); err != nil {
		return fmt.Errorf("(b) paho Write: %v", err)
	}
	theirs := buf.Bytes()
	q, n, err := packets.Decode(theirs, packets.DecodeOptions{})
	if err != nil || n != len(theirs) {
		return fmt.Errorf("(b) our Decode of paho's encoding %s: n=%d/%d, %v", shortHex(theirs), n, len(theirs), err)
	}
	if d := diffPackets(p, q); d != "" {
		return fmt.Errorf("(b) we decoded paho's encoding differently: %s", d)
	}

	// (c) byte for byte.
	if !bytes.Equal(ours, theirs) {
		return fmt.Errorf("(c) encodings differ:\n ours  %s\n paho  %s", shortHex(ours), shortHex(theirs))
	}
	return nil
}

// coverage tallies the edges a packet exercises (cheaply: it runs on
// every random packet, under -race too).
func coverage(cov map[string]int, p packets.Packet) {
	cov[p.Type().String()]++
	switch rem := remainingLength(p); rem {
	case 127, 128, 16383, 16384:
		cov["rem="+strconv.Itoa(rem)]++
	}
	id := func(id uint16) {
		switch id {
		case 1:
			cov["id=1"]++
		case 65535:
			cov["id=65535"]++
		}
	}
	switch p := p.(type) {
	case *packets.Connect:
		if p.WillTopic != nil {
			cov[[...]string{"connect/will-qos0", "connect/will-qos1", "connect/will-qos2", "connect/will-qos3"}[p.WillQoS&3]]++
		}
		switch {
		case p.Username != nil && p.Password != nil:
			cov["connect/username-password"]++
		case p.Username != nil:
			cov["connect/username-only"]++
		}
		switch p.KeepAlive {
		case 0:
			cov["connect/keepalive-0"]++
		case 65535:
			cov["connect/keepalive-65535"]++
		}
		if len(p.ClientID) == 0 {
			cov["connect/empty-client-id"]++
		}
	case *packets.Publish:
		cov[[...]string{"publish/qos0", "publish/qos1", "publish/qos2", "publish/qos3"}[p.QoS&3]]++
		if p.Dup {
			cov["publish/dup"]++
		}
		if p.Retain {
			cov["publish/retain"]++
		}
		if len(p.Payload) == 0 {
			cov["publish/empty-payload"]++
		}
		if utf8.RuneCount(p.Topic) != len(p.Topic) {
			cov["publish/multibyte-topic"]++
		}
		id(p.PacketID)
	case *packets.Subscribe:
		if len(p.Subscriptions) > 100 {
			cov["subscribe/many"]++
		}
		for _, s := range p.Subscriptions {
			if bytes.IndexByte(s.Filter, '+') >= 0 {
				cov["filter/+"]++
			}
			if bytes.HasSuffix(s.Filter, []byte("#")) {
				cov["filter/#"]++
			}
		}
		id(p.PacketID)
	case *packets.Suback:
		var seen [256]bool
		for _, c := range p.ReturnCodes {
			seen[c] = true
		}
		for _, c := range [...]byte{0x00, 0x01, 0x02, 0x80} {
			if seen[c] {
				cov[fmt.Sprintf("suback/0x%02x", c)]++
			}
		}
		id(p.PacketID)
	case *packets.Puback:
		id(p.PacketID)
	}
}

// toPaho maps our packet to paho's, field by field. Packets come from
// paho.NewControlPacket so that PUBREL, SUBSCRIBE and UNSUBSCRIBE carry
// paho's QoS 1 header flags.
func toPaho(p packets.Packet) paho.ControlPacket {
	cp := paho.NewControlPacket(byte(p.Type()))
	switch p := p.(type) {
	case *packets.Connect:
		c := cp.(*paho.ConnectPacket)
		c.ProtocolName = string(p.ProtocolName)
		c.ProtocolVersion = p.ProtocolLevel
		c.CleanSession = p.CleanSession
		c.WillFlag = p.WillTopic != nil
		c.WillQos = p.WillQoS
		c.WillRetain = p.WillRetain
		c.UsernameFlag = p.Username != nil
		c.PasswordFlag = p.Password != nil
		c.ReservedBit = b2u(p.Reserved)
		c.Keepalive = p.KeepAlive
		c.ClientIdentifier = string(p.ClientID)
		c.WillTopic = string(p.WillTopic)
		c.WillMessage = p.WillMessage
		c.Username = string(p.Username)
		c.Password = p.Password
	case *packets.Connack:
		c := cp.(*paho.ConnackPacket)
		c.SessionPresent = p.SessionPresent
		c.ReturnCode = byte(p.ReturnCode)
	case *packets.Publish:
		c := cp.(*paho.PublishPacket)
		c.Qos, c.Dup, c.Retain = p.QoS, p.Dup, p.Retain
		c.TopicName = string(p.Topic)
		c.MessageID = p.PacketID
		c.Payload = p.Payload
	case *packets.Puback:
		cp.(*paho.PubackPacket).MessageID = p.PacketID
	case *packets.Pubrec:
		cp.(*paho.PubrecPacket).MessageID = p.PacketID
	case *packets.Pubrel:
		cp.(*paho.PubrelPacket).MessageID = p.PacketID
	case *packets.Pubcomp:
		cp.(*paho.PubcompPacket).MessageID = p.PacketID
	case *packets.Subscribe:
		c := cp.(*paho.SubscribePacket)
		c.MessageID = p.PacketID
		for _, s := range p.Subscriptions {
			c.Topics = append(c.Topics, string(s.Filter))
			c.Qoss = append(c.Qoss, s.QoS)
		}
	case *packets.Suback:
		c := cp.(*paho.SubackPacket)
		c.MessageID = p.PacketID
		for _, rc := range p.ReturnCodes {
			c.ReturnCodes = append(c.ReturnCodes, byte(rc))
		}
	case *packets.Unsubscribe:
		c := cp.(*paho.UnsubscribePacket)
		c.MessageID = p.PacketID
		for _, f := range p.Filters {
			c.Topics = append(c.Topics, string(f))
		}
	case *packets.Unsuback:
		cp.(*paho.UnsubackPacket).MessageID = p.PacketID
	case *packets.Pingreq, *packets.Pingresp, *packets.Disconnect:
	default:
		panic(fmt.Sprintf("toPaho: %T", p))
	}
	return cp
}

// diffPaho compares paho's decoding cp with our packet want, whose encoding
// is enc (for the fixed header). It returns "" when they agree.
func diffPaho(want packets.Packet, enc []byte, cp paho.ControlPacket) string {
	var d differ
	fh := pahoHeader(cp)
	d.eq("FixedHeader.MessageType", fh.MessageType, byte(want.Type()))
	d.eq("fixed-header flags", b2u(fh.Dup)<<3|fh.Qos<<1|b2u(fh.Retain), enc[0]&0x0f)
	d.eq("FixedHeader.RemainingLength", fh.RemainingLength, remainingLength(want))
	switch w := want.(type) {
	case *packets.Connect:
		c, ok := cp.(*paho.ConnectPacket)
		if !ok {
			return fmt.Sprintf("paho gave %T", cp)
		}
		d.eq("ProtocolName", c.ProtocolName, string(w.ProtocolName))
		d.eq("ProtocolVersion", c.ProtocolVersion, w.ProtocolLevel)
		d.eq("CleanSession", c.CleanSession, w.CleanSession)
		d.eq("WillFlag", c.WillFlag, w.WillTopic != nil)
		d.eq("WillQos", c.WillQos, w.WillQoS)
		d.eq("WillRetain", c.WillRetain, w.WillRetain)
		d.eq("UsernameFlag", c.UsernameFlag, w.Username != nil)
		d.eq("PasswordFlag", c.PasswordFlag, w.Password != nil)
		d.eq("ReservedBit", c.ReservedBit, b2u(w.Reserved))
		d.eq("Keepalive", c.Keepalive, w.KeepAlive)
		d.eq("ClientIdentifier", c.ClientIdentifier, string(w.ClientID))
		d.eq("WillTopic", c.WillTopic, string(w.WillTopic))
		d.bytes("WillMessage", c.WillMessage, w.WillMessage)
		d.eq("Username", c.Username, string(w.Username))
		d.bytes("Password", c.Password, w.Password)
	case *packets.Connack:
		c, ok := cp.(*paho.ConnackPacket)
		if !ok {
			return fmt.Sprintf("paho gave %T", cp)
		}
		d.eq("SessionPresent", c.SessionPresent, w.SessionPresent)
		d.eq("ReturnCode", c.ReturnCode, byte(w.ReturnCode))
	case *packets.Publish:
		c, ok := cp.(*paho.PublishPacket)
		if !ok {
			return fmt.Sprintf("paho gave %T", cp)
		}
		d.eq("Qos", c.Qos, w.QoS)
		d.eq("Dup", c.Dup, w.Dup)
		d.eq("Retain", c.Retain, w.Retain)
		d.eq("TopicName", c.TopicName, string(w.Topic))
		d.eq("MessageID", c.MessageID, w.PacketID)
		d.bytes("Payload", c.Payload, w.Payload)
	case *packets.Puback:
		d.eq("MessageID", pahoID[*paho.PubackPacket](cp), w.PacketID)
	case *packets.Pubrec:
		d.eq("MessageID", pahoID[*paho.PubrecPacket](cp), w.PacketID)
	case *packets.Pubrel:
		d.eq("MessageID", pahoID[*paho.PubrelPacket](cp), w.PacketID)
	case *packets.Pubcomp:
		d.eq("MessageID", pahoID[*paho.PubcompPacket](cp), w.PacketID)
	case *packets.Unsuback:
		d.eq("MessageID", pahoID[*paho.UnsubackPacket](cp), w.PacketID)
	case *packets.Subscribe:
		c, ok := cp.(*paho.SubscribePacket)
		if !ok {
			return fmt.Sprintf("paho gave %T", cp)
		}
		d.eq("MessageID", c.MessageID, w.PacketID)
		var topics []string
		var qoss []byte
		for _, s := range w.Subscriptions {
			topics = append(topics, string(s.Filter))
			qoss = append(qoss, s.QoS)
		}
		d.deep("Topics", c.Topics, topics)
		d.bytes("Qoss", c.Qoss, qoss)
	case *packets.Suback:
		c, ok := cp.(*paho.SubackPacket)
		if !ok {
			return fmt.Sprintf("paho gave %T", cp)
		}
		d.eq("MessageID", c.MessageID, w.PacketID)
		codes := make([]byte, len(w.ReturnCodes))
		for i, rc := range w.ReturnCodes {
			codes[i] = byte(rc)
		}
		d.bytes("ReturnCodes", c.ReturnCodes, codes)
	case *packets.Unsubscribe:
		c, ok := cp.(*paho.UnsubscribePacket)
		if !ok {
			return fmt.Sprintf("paho gave %T", cp)
		}
		d.eq("MessageID", c.MessageID, w.PacketID)
		var topics []string
		for _, f := range w.Filters {
			topics = append(topics, string(f))
		}
		d.deep("Topics", c.Topics, topics)
	case *packets.Pingreq:
		if _, ok := cp.(*paho.PingreqPacket); !ok {
			return fmt.Sprintf("paho gave %T", cp)
		}
	case *packets.Pingresp:
		if _, ok := cp.(*paho.PingrespPacket); !ok {
			return fmt.Sprintf("paho gave %T", cp)
		}
	case *packets.Disconnect:
		if _, ok := cp.(*paho.DisconnectPacket); !ok {
			return fmt.Sprintf("paho gave %T", cp)
		}
	default:
		return fmt.Sprintf("diffPaho: unexpected %T", want)
	}
	return d.String()
}

// pahoID returns the MessageID of a paho packet whose only field it is.
func pahoID[T paho.ControlPacket](cp paho.ControlPacket) uint16 {
	c, ok := cp.(T)
	if !ok {
		return 0xdead // cannot be confused: the differ reports the mismatch
	}
	return c.Details().MessageID
}

// pahoHeader returns the fixed header paho decoded.
func pahoHeader(cp paho.ControlPacket) paho.FixedHeader {
	return reflect.ValueOf(cp).Elem().FieldByName("FixedHeader").Interface().(paho.FixedHeader)
}

// diffPackets compares two of our packets by meaning: an absent and an
// empty payload, topic or list are the same thing on the wire, while a nil
// and an empty optional CONNECT field (Will, User Name, Password) are not.
func diffPackets(want, got packets.Packet) string {
	if w, g := canonical(want), canonical(got); !reflect.DeepEqual(w, g) {
		return fmt.Sprintf("\n want %s\n  got %s", clip(fmt.Sprintf("%+v", w)), clip(fmt.Sprintf("%+v", g)))
	}
	return ""
}

func canonical(p packets.Packet) packets.Packet {
	p = p.Clone()
	nilIfEmpty := func(b *[]byte) {
		if len(*b) == 0 {
			*b = nil
		}
	}
	emptyIfSet := func(b *[]byte) {
		if *b != nil && len(*b) == 0 {
			*b = []byte{}
		}
	}
	switch p := p.(type) {
	case *packets.Connect:
		nilIfEmpty(&p.ProtocolName)
		nilIfEmpty(&p.ClientID)
		for _, f := range []*[]byte{&p.WillTopic, &p.WillMessage, &p.Username, &p.Password} {
			emptyIfSet(f)
		}
	case *packets.Publish:
		nilIfEmpty(&p.Topic)
		nilIfEmpty(&p.Payload)
	case *packets.Subscribe:
		if len(p.Subscriptions) == 0 {
			p.Subscriptions = nil
		}
		for i := range p.Subscriptions {
			nilIfEmpty(&p.Subscriptions[i].Filter)
		}
	case *packets.Suback:
		if len(p.ReturnCodes) == 0 {
			p.ReturnCodes = nil
		}
	case *packets.Unsubscribe:
		if len(p.Filters) == 0 {
			p.Filters = nil
		}
		for i := range p.Filters {
			nilIfEmpty(&p.Filters[i])
		}
	}
	return p
}

// differ collects field mismatches.
type differ struct{ diffs []string }

func (d *differ) eq(field string, got, want any) {
	if got != want {
		d.diffs = append(d.diffs, fmt.Sprintf("%s = %s, want %s", field, clip(fmt.Sprintf("%#v", got)), clip(fmt.Sprintf("%#v", want))))
	}
}

func (d *differ) bytes(field string, got, want []byte) {
	if !bytes.Equal(got, want) {
		d.diffs = append(d.diffs, fmt.Sprintf("%s = %s, want %s", field, shortHex(got), shortHex(want)))
	}
}

func (d *differ) deep(field string, got, want any) {
	if !reflect.DeepEqual(got, want) {
		d.diffs = append(d.diffs, fmt.Sprintf("%s = %s, want %s", field, clip(fmt.Sprintf("%q", got)), clip(fmt.Sprintf("%q", want))))
	}
}

func (d *differ) String() string { return strings.Join(d.diffs, "; ") }

func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// shortHex is a hex dump clipped to a readable length.
func shortHex(b []byte) string {
	const max = 96
	if len(b) <= max {
		return fmt.Sprintf("[%d] %s", len(b), hex.EncodeToString(b))
	}
	return fmt.Sprintf("[%d] %s…", len(b), hex.EncodeToString(b[:max]))
}

func clip(s string) string {
	if len(s) > 400 {
		return s[:400] + "…"
	}
	return s
}

// pahoRaw builds a packet for the disagreement table: first byte, one-byte
// remaining length (bodies here stay under 128 bytes), body groups.
func pahoRaw(first byte, groups ...[]byte) []byte {
	var body []byte
	for _, g := range groups {
		body = append(body, g...)
	}
	if len(body) > 127 {
		panic("pahoRaw: body too long for a one-byte remaining length")
	}
	return append([]byte{first, byte(len(body))}, body...)
}

// pahoStr is a length-prefixed string or binary field.
func pahoStr(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

// pahoConnect is a CONNECT for protocol "MQTT" level 4 with the given flags
// and keep alive 0, followed by the payload groups.
func pahoConnect(flags byte, payload ...[]byte) []byte {
	return pahoRaw(0x10, append([][]byte{pahoStr("MQTT"), {0x04, flags, 0x00, 0x00}}, payload...)...)
}

// pahoCheck judges what paho.ReadPacket decoded: "" when it is as the
// table documents, else the differences.
type pahoCheck func(paho.ControlPacket) string

// pahoIs checks that paho decoded a T, then compares its fields with f.
func pahoIs[T paho.ControlPacket](f func(c T, d *differ)) pahoCheck {
	return func(cp paho.ControlPacket) string {
		c, ok := cp.(T)
		if !ok {
			var want T
			return fmt.Sprintf("got %T, want %T", cp, want)
		}
		var d differ
		f(c, &d)
		return d.String()
	}
}

// TestPahoDisagreements pins every documented difference between our
// strict decoder and paho.mqtt.golang's ReadPacket (and their encoders), so
// that a change on either side shows up here. See the list at the top of
// this file.
func TestPahoDisagreements(t *testing.T) {
	clause := func(c string) error { return &packets.ProtocolError{Clause: c} }
	publish := func(topic string, qos byte, dup bool, id uint16) pahoCheck {
		return pahoIs(func(p *paho.PublishPacket, d *differ) {
			d.eq("TopicName", p.TopicName, topic)
			d.eq("Qos", p.Qos, qos)
			d.eq("Dup", p.Dup, dup)
			d.eq("MessageID", p.MessageID, id)
		})
	}
	is := func(want paho.ControlPacket) pahoCheck { // type and MessageID only
		return func(cp paho.ControlPacket) string {
			if reflect.TypeOf(cp) != reflect.TypeOf(want) {
				return fmt.Sprintf("got %T, want %T", cp, want)
			}
			if cp.Details().MessageID != want.Details().MessageID {
				return fmt.Sprintf("MessageID %d, want %d", cp.Details().MessageID, want.Details().MessageID)
			}
			return ""
		}
	}
	connect := pahoIs[*paho.ConnectPacket]
	connack := func(sp bool, rc byte) pahoCheck {
		return pahoIs(func(c *paho.ConnackPacket, d *differ) {
			d.eq("SessionPresent", c.SessionPresent, sp)
			d.eq("ReturnCode", c.ReturnCode, rc)
		})
	}
	subscribe := func(id uint16, topics []string, qoss []byte) pahoCheck {
		return pahoIs(func(c *paho.SubscribePacket, d *differ) {
			d.eq("MessageID", c.MessageID, id)
			d.deep("Topics", c.Topics, topics)
			d.bytes("Qoss", c.Qoss, qoss)
		})
	}
	unsubscribe := func(topics []string) pahoCheck {
		return pahoIs(func(c *paho.UnsubscribePacket, d *differ) { d.deep("Topics", c.Topics, topics) })
	}
	suback := func(codes []byte) pahoCheck {
		return pahoIs(func(c *paho.SubackPacket, d *differ) { d.bytes("ReturnCodes", c.ReturnCodes, codes) })
	}
	mqtt5, ok := packettest.ByName("connect/mqtt5")
	if !ok {
		t.Fatal(`packettest vector "connect/mqtt5" is missing`)
	}

	for _, tc := range []struct {
		name string
		raw  []byte
		// ours is what our strict Decode returns: nil (decodes), a
		// *ProtocolError matched by Clause, or a sentinel.
		ours error
		// paho is nil if paho.ReadPacket must fail, else a check of what it
		// decoded ("" = as documented).
		paho pahoCheck
		// pahoErr, when paho fails, is the error it must return (nil: any).
		pahoErr error
		// pahoLeft is how many bytes paho leaves unread.
		pahoLeft int
	}{
		// 1. Fixed-header flags.
		{name: "pubrel/flags-0", raw: pahoRaw(0x60, []byte{0x00, 0x01}),
			ours: clause("MQTT-3.6.1-1"), paho: is(&paho.PubrelPacket{MessageID: 1})},
		{name: "subscribe/flags-0", raw: pahoRaw(0x80, []byte{0x00, 0x01}, pahoStr("a"), []byte{0x00}),
			ours: clause("MQTT-3.8.1-1"), paho: subscribe(1, []string{"a"}, []byte{0})},
		{name: "unsubscribe/flags-0", raw: pahoRaw(0xa0, []byte{0x00, 0x01}, pahoStr("a")),
			ours: clause("MQTT-3.10.1-1"), paho: unsubscribe([]string{"a"})},
		{name: "puback/flags-1", raw: pahoRaw(0x41, []byte{0x00, 0x01}),
			ours: clause("MQTT-2.2.2-1"), paho: is(&paho.PubackPacket{MessageID: 1})},
		{name: "disconnect/flags-1", raw: []byte{0xe1, 0x00},
			ours: clause("MQTT-3.14.1-1"), paho: is(&paho.DisconnectPacket{})},

		// 2. PUBLISH QoS 3 and DUP on QoS 0.
		{name: "publish/qos3", raw: pahoRaw(0x36, pahoStr("a/b"), []byte{0x00, 0x01}),
			ours: clause("MQTT-3.3.1-4"), paho: publish("a/b", 3, false, 1)},
		{name: "publish/dup-qos0", raw: pahoRaw(0x38, pahoStr("a/b")),
			ours: clause("MQTT-3.3.1-2"), paho: publish("a/b", 0, true, 0)},

		// 3. Packet identifier 0.
		{name: "publish/qos1-packet-id-0", raw: pahoRaw(0x32, pahoStr("a/b"), []byte{0x00, 0x00}),
			ours: clause("MQTT-2.3.1-1"), paho: publish("a/b", 1, false, 0)},
		{name: "subscribe/packet-id-0", raw: pahoRaw(0x82, []byte{0x00, 0x00}, pahoStr("a"), []byte{0x00}),
			ours: clause("MQTT-2.3.1-1"), paho: subscribe(0, []string{"a"}, []byte{0})},
		{name: "unsubscribe/packet-id-0", raw: pahoRaw(0xa2, []byte{0x00, 0x00}, pahoStr("a")),
			ours: clause("MQTT-2.3.1-1"), paho: unsubscribe([]string{"a"})},

		// 4. UTF-8.
		{name: "publish/ill-formed-utf8-topic", raw: pahoRaw(0x30, pahoStr("\xc3\x28")),
			ours: clause("MQTT-1.5.3-1"), paho: publish("\xc3\x28", 0, false, 0)},
		{name: "publish/surrogate-in-topic", raw: pahoRaw(0x30, pahoStr("\xed\xa0\x80")), // U+D800
			ours: clause("MQTT-1.5.3-1"), paho: publish("\xed\xa0\x80", 0, false, 0)},
		{name: "publish/nul-in-topic", raw: pahoRaw(0x30, pahoStr("a\x00b")),
			ours: clause("MQTT-1.5.3-2"), paho: publish("a\x00b", 0, false, 0)},
		{name: "connect/ill-formed-utf8-client-id", raw: pahoConnect(0x02, pahoStr("\xff")),
			ours: clause("MQTT-1.5.3-1"), paho: connect(func(c *paho.ConnectPacket, d *differ) {
				d.eq("ClientIdentifier", c.ClientIdentifier, "\xff")
			})},

		// 5. Topic names and filters.
		{name: "publish/empty-topic", raw: pahoRaw(0x30, pahoStr("")),
			ours: clause("MQTT-4.7.3-1"), paho: publish("", 0, false, 0)},
		{name: "publish/wildcard-in-topic", raw: pahoRaw(0x30, pahoStr("a/#")),
			ours: clause("MQTT-3.3.2-2"), paho: publish("a/#", 0, false, 0)},
		{name: "subscribe/hash-not-alone", raw: pahoRaw(0x82, []byte{0x00, 0x01}, pahoStr("a#"), []byte{0x00}),
			ours: clause("MQTT-4.7.1-2"), paho: subscribe(1, []string{"a#"}, []byte{0})},
		{name: "subscribe/hash-not-last", raw: pahoRaw(0x82, []byte{0x00, 0x01}, pahoStr("#/a"), []byte{0x00}),
			ours: clause("MQTT-4.7.1-2"), paho: subscribe(1, []string{"#/a"}, []byte{0})},
		{name: "subscribe/plus-not-whole-level", raw: pahoRaw(0x82, []byte{0x00, 0x01}, pahoStr("a+/b"), []byte{0x01}),
			ours: clause("MQTT-4.7.1-3"), paho: subscribe(1, []string{"a+/b"}, []byte{1})},

		// 6. CONNECT rules.
		{name: "connect/reserved-flag", raw: pahoConnect(0x03, pahoStr("a")),
			ours: clause("MQTT-3.1.2-3"), paho: connect(func(c *paho.ConnectPacket, d *differ) {
				d.eq("ReservedBit", c.ReservedBit, byte(1))
			})},
		{name: "connect/will-qos3", raw: pahoConnect(0x1e, pahoStr("a"), pahoStr("w"), pahoStr("m")),
			ours: clause("MQTT-3.1.2-14"), paho: connect(func(c *paho.ConnectPacket, d *differ) {
				d.eq("WillFlag", c.WillFlag, true)
				d.eq("WillQos", c.WillQos, byte(3))
			})},
		{name: "connect/will-qos-without-will-flag", raw: pahoConnect(0x0a, pahoStr("a")),
			ours: clause("MQTT-3.1.2-13"), paho: connect(func(c *paho.ConnectPacket, d *differ) {
				d.eq("WillFlag", c.WillFlag, false)
				d.eq("WillQos", c.WillQos, byte(1))
			})},
		{name: "connect/will-retain-without-will-flag", raw: pahoConnect(0x22, pahoStr("a")),
			ours: clause("MQTT-3.1.2-15"), paho: connect(func(c *paho.ConnectPacket, d *differ) {
				d.eq("WillRetain", c.WillRetain, true)
			})},
		{name: "connect/will-topic-wildcard", raw: pahoConnect(0x06, pahoStr("a"), pahoStr("w/+"), pahoStr("m")),
			ours: clause("MQTT-3.3.2-2"), paho: connect(func(c *paho.ConnectPacket, d *differ) {
				d.eq("WillTopic", c.WillTopic, "w/+")
			})},
		{name: "connect/password-without-username", raw: pahoConnect(0x42, pahoStr("a"), pahoStr("pw")),
			ours: clause("MQTT-3.1.2-22"), paho: connect(func(c *paho.ConnectPacket, d *differ) {
				d.eq("UsernameFlag", c.UsernameFlag, false)
				d.bytes("Password", c.Password, []byte("pw"))
			})},
		{name: "connect/empty-client-id-persistent-session", raw: pahoConnect(0x00, pahoStr("")),
			ours: clause("MQTT-3.1.3-7"), paho: connect(func(c *paho.ConnectPacket, d *differ) {
				d.eq("ClientIdentifier", c.ClientIdentifier, "")
				d.eq("CleanSession", c.CleanSession, false)
			})},
		{name: "connect/mqisdp-level-3", raw: pahoRaw(0x10, pahoStr("MQIsdp"), []byte{0x03, 0x02, 0x00, 0x00}, pahoStr("a")),
			ours: clause("MQTT-3.1.2-2"), paho: connect(func(c *paho.ConnectPacket, d *differ) {
				d.eq("ProtocolName", c.ProtocolName, "MQIsdp")
				d.eq("ProtocolVersion", c.ProtocolVersion, byte(3))
			})},
		{name: "connect/mqtt5-read-as-3.1.1", raw: mqtt5.Raw,
			ours: clause("MQTT-3.1.2-2"), paho: connect(func(c *paho.ConnectPacket, d *differ) {
				d.eq("ProtocolVersion", c.ProtocolVersion, byte(5))
				// The properties length (0x00) and the client id's high length
				// byte are read as an empty client id; "a" is lost.
				d.eq("ClientIdentifier", c.ClientIdentifier, "")
			})},
		{name: "connect/trailing-bytes", raw: pahoConnect(0x02, pahoStr("a"), []byte{0xff}),
			ours: clause("MQTT-3.1.3-1"), paho: connect(func(c *paho.ConnectPacket, d *differ) {
				d.eq("ClientIdentifier", c.ClientIdentifier, "a")
			})},

		// 7. Short fields are zero-padded.
		{name: "puback/remaining-length-1", raw: []byte{0x40, 0x01, 0x07},
			ours: clause("MQTT-3.4.1"), paho: is(&paho.PubackPacket{MessageID: 0x0700})},
		{name: "connect/password-runs-past-packet", raw: pahoConnect(0xc2, pahoStr("a"), pahoStr("u"), []byte{0x00, 0x05, 'p'}),
			ours: clause("MQTT-1.5.3"), paho: connect(func(c *paho.ConnectPacket, d *differ) {
				d.bytes("Password", c.Password, []byte("p\x00\x00\x00\x00"))
			})},

		// 8. Body sizes and codes.
		{name: "pingreq/with-body", raw: []byte{0xc0, 0x01, 0x00},
			ours: clause("MQTT-3.12.1"), paho: is(&paho.PingreqPacket{})},
		{name: "disconnect/with-body", raw: []byte{0xe0, 0x01, 0x00},
			ours: clause("MQTT-3.14.1"), paho: is(&paho.DisconnectPacket{})},
		{name: "connack/remaining-length-3", raw: []byte{0x20, 0x03, 0x00, 0x00, 0x00},
			ours: clause("MQTT-3.2.1"), paho: connack(false, 0)},
		{name: "puback/remaining-length-3", raw: []byte{0x40, 0x03, 0x00, 0x01, 0xff},
			ours: clause("MQTT-3.4.1"), paho: is(&paho.PubackPacket{MessageID: 1})},
		{name: "connack/reserved-flags", raw: []byte{0x20, 0x02, 0x02, 0x00},
			ours: clause("MQTT-3.2.2.1"), paho: connack(false, 0)},
		{name: "connack/return-code-6", raw: []byte{0x20, 0x02, 0x00, 0x06},
			ours: clause("MQTT-3.2.2.3"), paho: connack(false, 6)},
		{name: "connack/session-present-with-refusal", raw: []byte{0x20, 0x02, 0x01, 0x05},
			ours: clause("MQTT-3.2.2-4"), paho: connack(true, 5)},
		{name: "subscribe/no-filter", raw: pahoRaw(0x82, []byte{0x00, 0x01}),
			ours: clause("MQTT-3.8.3-3"), paho: subscribe(1, nil, nil)},
		{name: "subscribe/requested-qos3", raw: pahoRaw(0x82, []byte{0x00, 0x01}, pahoStr("a"), []byte{0x03}),
			ours: clause("MQTT-3.8.3-4"), paho: subscribe(1, []string{"a"}, []byte{3})},
		{name: "subscribe/reserved-qos-bits", raw: pahoRaw(0x82, []byte{0x00, 0x01}, pahoStr("a"), []byte{0x41}),
			ours: clause("MQTT-3.8.3-4"), paho: subscribe(1, []string{"a"}, []byte{0x41})},
		{name: "unsubscribe/no-filter", raw: pahoRaw(0xa2, []byte{0x00, 0x01}),
			ours: clause("MQTT-3.10.3-2"), paho: unsubscribe(nil)},
		{name: "suback/reserved-code", raw: pahoRaw(0x90, []byte{0x00, 0x01, 0x03}),
			ours: clause("MQTT-3.9.3-2"), paho: suback([]byte{3})},
		{name: "suback/no-code", raw: pahoRaw(0x90, []byte{0x00, 0x01}),
			ours: clause("MQTT-3.8.4-5"), paho: suback(nil)},

		// 9. UNSUBSCRIBE stops at an empty filter.
		{name: "unsubscribe/empty-filter-drops-the-rest", raw: pahoRaw(0xa2, []byte{0x00, 0x01}, pahoStr("x"), pahoStr(""), pahoStr("a")),
			ours: clause("MQTT-4.7.3-1"), paho: unsubscribe([]string{"x"})},

		// 10. Remaining length.
		{name: "fixed-header/remaining-length-5-bytes", raw: []byte{0xc0, 0x80, 0x80, 0x80, 0x80, 0x00},
			ours: clause("MQTT-2.2.3"), paho: is(&paho.PingreqPacket{}), pahoLeft: 1},
		{name: "agree/fixed-header/non-minimal-remaining-length", raw: []byte{0xc0, 0x80, 0x00},
			ours: nil, paho: is(&paho.PingreqPacket{})},

		// 11. Errors.
		{name: "error/empty-input", raw: []byte{},
			ours: packets.ErrShortBuffer, pahoErr: io.EOF},
		{name: "error/truncated-body", raw: []byte{0x30, 0x05, 0x00, 0x03},
			ours: packets.ErrShortBuffer, pahoErr: io.ErrUnexpectedEOF},
		{name: "error/truncated-remaining-length", raw: []byte{0x30, 0x80},
			ours: packets.ErrShortBuffer, pahoErr: io.EOF},
		{name: "agree/reserved-type-0", raw: []byte{0x00, 0x00},
			ours: clause("MQTT-2.2.1")},
		{name: "agree/reserved-type-15", raw: []byte{0xf0, 0x00},
			ours: clause("MQTT-2.2.1")},
		{name: "agree/publish-topic-runs-past-packet", raw: []byte{0x30, 0x04, 0x00, 0x05, 'a', 'b'},
			ours: clause("MQTT-1.5.3")},
		{name: "agree/publish-qos1-without-packet-id", raw: pahoRaw(0x32, pahoStr("a")),
			ours: clause("MQTT-1.5.2")},

		// 13. Empty payloads and binary fields.
		{name: "agree/publish-empty-payload", raw: pahoRaw(0x30, pahoStr("a")),
			ours: nil, paho: func(cp paho.ControlPacket) string {
				if p, ok := cp.(*paho.PublishPacket); !ok || p.Payload == nil || len(p.Payload) != 0 {
					return fmt.Sprintf("got %#v, want an empty non-nil payload", cp)
				}
				return ""
			}},
		{name: "agree/connect-empty-will-message-and-password", raw: pahoConnect(0xc6, pahoStr("a"), pahoStr("w"), pahoStr(""), pahoStr("u"), pahoStr("")),
			ours: nil, paho: connect(func(c *paho.ConnectPacket, d *differ) {
				d.eq("WillMessage empty", c.WillMessage != nil && len(c.WillMessage) == 0, true)
				d.eq("Password empty", c.PasswordFlag && c.Password != nil && len(c.Password) == 0, true)
			})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Logf("bytes: % x", tc.raw)
			_, _, err := packets.Decode(tc.raw, packets.DecodeOptions{})
			switch {
			case tc.ours == nil && err != nil:
				t.Errorf("ours: Decode = %v, want success", err)
			case tc.ours != nil && !errors.Is(err, tc.ours):
				t.Errorf("ours: Decode = %v, want %v", err, tc.ours)
			}
			r := bytes.NewReader(tc.raw)
			cp, perr := paho.ReadPacket(r)
			switch {
			case tc.paho == nil && perr == nil:
				t.Errorf("paho: ReadPacket = %v, want an error", cp)
			case tc.paho == nil && tc.pahoErr != nil && perr != tc.pahoErr:
				t.Errorf("paho: ReadPacket error = %v, want %v", perr, tc.pahoErr)
			case tc.paho != nil && perr != nil:
				t.Errorf("paho: ReadPacket = %v; documented as accepting", perr)
			case tc.paho != nil:
				if d := tc.paho(cp); d != "" {
					t.Errorf("paho: %s", d)
				}
				if r.Len() != tc.pahoLeft {
					t.Errorf("paho left %d bytes unread, want %d", r.Len(), tc.pahoLeft)
				}
			}
		})
	}

	// 12. Encoding: paho writes what ours refuses.
	encodeCases := []struct {
		name   string
		ours   packets.Packet
		clause string // Append must fail with ErrInvalidPacket and this clause
		paho   paho.ControlPacket
		want   []byte // paho's bytes, or a prefix of them when long
	}{
		{name: "encode/publish-qos3",
			ours: &packets.Publish{QoS: 3, PacketID: 1, Topic: []byte("a")}, clause: "MQTT-3.3.1-4",
			paho: &paho.PublishPacket{FixedHeader: paho.FixedHeader{MessageType: paho.Publish, Qos: 3}, TopicName: "a", MessageID: 1},
			want: []byte{0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01}},
		{name: "encode/publish-qos4-spills-into-dup",
			ours: &packets.Publish{QoS: 4, PacketID: 1, Topic: []byte("a")}, clause: "MQTT-3.3.1-4",
			paho: &paho.PublishPacket{FixedHeader: paho.FixedHeader{MessageType: paho.Publish, Qos: 4}, TopicName: "a", MessageID: 1},
			want: []byte{0x38, 0x05, 0x00, 0x01, 'a', 0x00, 0x01}}, // DUP set, QoS 0, yet a packet id
		{name: "encode/publish-packet-id-0",
			ours: &packets.Publish{QoS: 1, Topic: []byte("a")}, clause: "MQTT-2.3.1-1",
			paho: &paho.PublishPacket{FixedHeader: paho.FixedHeader{MessageType: paho.Publish, Qos: 1}, TopicName: "a"},
			want: []byte{0x32, 0x05, 0x00, 0x01, 'a', 0x00, 0x00}},
		{name: "encode/publish-wildcard-topic",
			ours: &packets.Publish{Topic: []byte("a/+")}, clause: "MQTT-3.3.2-2",
			paho: &paho.PublishPacket{FixedHeader: paho.FixedHeader{MessageType: paho.Publish}, TopicName: "a/+"},
			want: []byte{0x30, 0x05, 0x00, 0x03, 'a', '/', '+'}},
		{name: "encode/subscribe-packet-id-0",
			ours:   &packets.Subscribe{Subscriptions: []packets.Subscription{{Filter: []byte("a")}}},
			clause: "MQTT-2.3.1-1",
			paho:   &paho.SubscribePacket{FixedHeader: paho.FixedHeader{MessageType: paho.Subscribe, Qos: 1}, Topics: []string{"a"}, Qoss: []byte{0}},
			want:   []byte{0x82, 0x06, 0x00, 0x00, 0x00, 0x01, 'a', 0x00}},
		{name: "encode/connect-reserved-bit-dropped",
			ours: &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, Reserved: true, CleanSession: true, ClientID: []byte("a")},
			// paho writes flags 0x02: ReservedBit is not encoded.
			clause: "MQTT-3.1.2-3",
			paho: &paho.ConnectPacket{FixedHeader: paho.FixedHeader{MessageType: paho.Connect}, ProtocolName: "MQTT",
				ProtocolVersion: 4, ReservedBit: 1, CleanSession: true, ClientIdentifier: "a"},
			want: pahoConnect(0x02, pahoStr("a"))},
		{name: "encode/connect-will-qos-without-will",
			ours:   &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, WillQoS: 1, CleanSession: true, ClientID: []byte("a")},
			clause: "MQTT-3.1.2-13",
			paho: &paho.ConnectPacket{FixedHeader: paho.FixedHeader{MessageType: paho.Connect}, ProtocolName: "MQTT",
				ProtocolVersion: 4, WillQos: 1, CleanSession: true, ClientIdentifier: "a"},
			want: pahoConnect(0x0a, pahoStr("a"))},
		{name: "encode/topic-over-65535-bytes-truncated",
			ours:   &packets.Publish{Topic: bytes.Repeat([]byte("t"), 70000)},
			clause: "MQTT-1.5.3",
			paho:   &paho.PublishPacket{FixedHeader: paho.FixedHeader{MessageType: paho.Publish}, TopicName: strings.Repeat("t", 70000)},
			// remaining length 65537 = 0x81 0x80 0x04, then a 65,535-byte topic.
			want: []byte{0x30, 0x81, 0x80, 0x04, 0xff, 0xff, 't'}},
	}
	for _, tc := range encodeCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.ours.Append(nil)
			if !errors.Is(err, packets.ErrInvalidPacket) || !errors.Is(err, &packets.ProtocolError{Clause: tc.clause}) {
				t.Errorf("ours: Append = %v, want ErrInvalidPacket [%s]", err, tc.clause)
			}
			var buf bytes.Buffer
			if err := tc.paho.Write(&buf); err != nil {
				t.Fatalf("paho: Write = %v; documented as writing", err)
			}
			if got := buf.Bytes(); !bytes.HasPrefix(got, tc.want) {
				t.Errorf("paho wrote %s, want %s…", shortHex(got), shortHex(tc.want))
			}
		})
	}
}
