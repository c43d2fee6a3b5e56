package packettest

import (
	"strings"

	"github.com/dps-conform/dps-conform/packets"
)

// mqtt is the protocol name field, "MQTT" with its length prefix.
var mqtt = []byte{0x00, 0x04, 'M', 'Q', 'T', 'T'}

func buildVectors() []Vector {
	var v []Vector
	v = append(v, fixedHeaderVectors()...)
	v = append(v, connectVectors()...)
	v = append(v, connackVectors()...)
	v = append(v, publishVectors()...)
	v = append(v, ackVectors()...)
	v = append(v, subscribeVectors()...)
	v = append(v, unsubscribeVectors()...)
	v = append(v, dpsVectors()...)
	return v
}

func fixedHeaderVectors() []Vector {
	return []Vector{
		{Name: "fixed-header/remaining-length-5-bytes", Clause: "MQTT-2.2.3", Kind: Malformed, Offset: 4,
			Raw: []byte{
				0x30,                         // fixed header: PUBLISH QoS 0
				0xff, 0xff, 0xff, 0xff, 0x01, // remaining length: a fifth byte follows four continuation bytes
			}},
		{Name: "fixed-header/non-minimal-remaining-length", Clause: "MQTT-2.2.3", Kind: Edge,
			// §2.2.3 allows up to four bytes and, unlike MQTT 5 (§1.5.5), does not
			// require the minimal encoding: 0 in two bytes is legal.
			Raw:    []byte{0xc0, 0x80, 0x00}, // PINGREQ, remaining length 0 encoded as 0x80 0x00
			Packet: &packets.Pingreq{}},
		{Name: "fixed-header/reserved-type-0", Clause: "MQTT-2.2.1", Kind: Invalid, Offset: 0,
			Raw:    []byte{0x00, 0x00}, // type 0 (Reserved), remaining length 0
			Packet: &packets.Raw{Header: 0x00, Body: []byte{}}},
		{Name: "fixed-header/reserved-type-15", Clause: "MQTT-2.2.1", Kind: Invalid, Offset: 0,
			Raw:    []byte{0xf0, 0x02, 0x01, 0x02}, // type 15 (Reserved), remaining length 2, two body bytes
			Packet: &packets.Raw{Header: 0xf0, Body: []byte{0x01, 0x02}}},
	}
}

func connectVectors() []Vector {
	minimal := func(flags byte) []byte {
		return cat(
			[]byte{0x10, 0x0d}, // fixed header: CONNECT, remaining length 13
			mqtt,               // protocol name "MQTT"
			[]byte{0x04},       // protocol level 4
			[]byte{flags},      // connect flags
			[]byte{0x00, 0x00}, // keep alive 0
			str("a"),           // client identifier "a"
		)
	}
	base := func() *packets.Connect {
		return &packets.Connect{ProtocolName: bs("MQTT"), ProtocolLevel: 4, CleanSession: true, ClientID: bs("a")}
	}
	with := func(f func(*packets.Connect)) *packets.Connect { c := base(); f(c); return c }
	return []Vector{
		{Name: "connect/minimal", Clause: "MQTT-3.1", Kind: Valid, Raw: minimal(0x02), Packet: base()},
		{Name: "connect/will-qos1-retain", Clause: "MQTT-3.1.2-9", Kind: Valid,
			Raw: cat(
				[]byte{0x10, 0x17}, // fixed header: CONNECT, remaining length 23
				mqtt, []byte{0x04}, // protocol name, level 4
				[]byte{0x2e},       // flags: will retain, will QoS 1, will, clean session
				[]byte{0x00, 0x3c}, // keep alive 60
				str("a"),           // client identifier
				str("w/t"),         // will topic
				str("bye"),         // will message
			),
			Packet: with(func(c *packets.Connect) {
				c.KeepAlive, c.WillTopic, c.WillMessage, c.WillQoS, c.WillRetain = 60, bs("w/t"), bs("bye"), 1, true
			})},
		{Name: "connect/will-qos2-empty-message", Clause: "MQTT-3.1.2-14", Kind: Valid,
			Raw: cat(
				[]byte{0x10, 0x12}, // fixed header: CONNECT, remaining length 18
				mqtt, []byte{0x04}, // protocol name, level 4
				[]byte{0x16},       // flags: will QoS 2, will, clean session
				[]byte{0x00, 0x00}, // keep alive 0
				str("a"), str("w"), // client identifier, will topic
				str(""), // will message: empty
			),
			Packet: with(func(c *packets.Connect) { c.WillTopic, c.WillMessage, c.WillQoS = bs("w"), []byte{}, 2 })},
		{Name: "connect/username-password", Clause: "MQTT-3.1.2-19", Kind: Valid,
			Raw: cat(
				[]byte{0x10, 0x19}, // fixed header: CONNECT, remaining length 25
				mqtt, []byte{0x04}, // protocol name, level 4
				[]byte{0xc2},       // flags: user name, password, clean session
				[]byte{0xff, 0xff}, // keep alive 65535
				str("a"),           // client identifier
				str("user"),        // user name
				str("pass"),        // password
			),
			Packet: with(func(c *packets.Connect) { c.KeepAlive, c.Username, c.Password = 65535, bs("user"), bs("pass") })},
		{Name: "connect/empty-client-id-clean-session", Clause: "MQTT-3.1.3-6", Kind: Edge,
			Raw:    cat([]byte{0x10, 0x0c}, mqtt, []byte{0x04, 0x02, 0x00, 0x00}, str("")), // zero-byte ClientId, CleanSession 1
			Packet: with(func(c *packets.Connect) { c.ClientID = []byte{} })},
		{Name: "connect/client-id-128-bytes", Clause: "MQTT-3.1.3-5", Kind: Edge,
			// DPS registration ids run to 128 characters (DPS-PROTOCOL.md §1.1),
			// beyond the 23 bytes every server must allow.
			Raw:    frame(0x10, mqtt, []byte{0x04, 0x02, 0x00, 0x00}, str(strings.Repeat("r", 128))),
			Packet: with(func(c *packets.Connect) { c.ClientID = repeat('r', 128) })},
		{Name: "connect/mqisdp-level-3", Clause: "MQTT-3.1.2-2", Kind: Invalid, Offset: 10,
			Raw: cat(
				[]byte{0x10, 0x0f},                 // fixed header: CONNECT, remaining length 15
				str("MQIsdp"),                      // protocol name of MQTT 3.1
				[]byte{0x03},                       // protocol level 3 (offset 10)
				[]byte{0x02, 0x00, 0x00}, str("a"), // flags, keep alive, client identifier
			),
			Packet: with(func(c *packets.Connect) { c.ProtocolName, c.ProtocolLevel = bs("MQIsdp"), 3 })},
		{Name: "connect/mqtt5", Clause: "MQTT-3.1.2-2", Kind: Malformed, Offset: 8,
			Raw: cat(
				[]byte{0x10, 0x0e}, // fixed header: CONNECT, remaining length 14
				mqtt, []byte{0x05}, // protocol name, level 5 (offset 8)
				[]byte{0x02, 0x00, 0x3c}, // flags: clean start; keep alive 60
				[]byte{0x00},             // MQTT 5 properties length 0
				str("a"),                 // client identifier
			)},
		{Name: "connect/protocol-name-wrong", Clause: "MQTT-3.1.2-1", Kind: Invalid, Offset: 2,
			Raw:    cat([]byte{0x10, 0x0d}, str("MQTX"), []byte{0x04, 0x02, 0x00, 0x00}, str("a")), // protocol name "MQTX" at offset 2
			Packet: with(func(c *packets.Connect) { c.ProtocolName = bs("MQTX") })},
		{Name: "connect/reserved-flag-set", Clause: "MQTT-3.1.2-3", Kind: Invalid, Offset: 9,
			Raw:    minimal(0x03), // flags: clean session + reserved bit 0 (offset 9)
			Packet: with(func(c *packets.Connect) { c.Reserved = true })},
		{Name: "connect/will-qos-without-will", Clause: "MQTT-3.1.2-13", Kind: Invalid, Offset: 9,
			Raw:    minimal(0x0a), // flags: will QoS 1, will flag 0, clean session
			Packet: with(func(c *packets.Connect) { c.WillQoS = 1 })},
		{Name: "connect/will-retain-without-will", Clause: "MQTT-3.1.2-15", Kind: Invalid, Offset: 9,
			Raw:    minimal(0x22), // flags: will retain, will flag 0, clean session
			Packet: with(func(c *packets.Connect) { c.WillRetain = true })},
		{Name: "connect/will-qos3", Clause: "MQTT-3.1.2-14", Kind: Invalid, Offset: 9,
			Raw: cat(
				[]byte{0x10, 0x13}, mqtt, []byte{0x04}, // fixed header (remaining length 19), name, level
				[]byte{0x1e},                 // flags: will QoS 3, will, clean session
				[]byte{0x00, 0x00},           // keep alive
				str("a"), str("w"), str("x"), // client identifier, will topic, will message
			),
			Packet: with(func(c *packets.Connect) { c.WillTopic, c.WillMessage, c.WillQoS = bs("w"), bs("x"), 3 })},
		{Name: "connect/password-without-username", Clause: "MQTT-3.1.2-22", Kind: Invalid, Offset: 9,
			Raw: cat(
				[]byte{0x10, 0x10}, mqtt, []byte{0x04}, // fixed header (remaining length 16), name, level
				[]byte{0x42},                 // flags: password, no user name, clean session
				[]byte{0x00, 0x00}, str("a"), // keep alive, client identifier
				str("p"), // password
			),
			Packet: with(func(c *packets.Connect) { c.Password = bs("p") })},
		{Name: "connect/empty-client-id-clean-session-0", Clause: "MQTT-3.1.3-7", Kind: Invalid, Offset: 12,
			Raw:    cat([]byte{0x10, 0x0c}, mqtt, []byte{0x04, 0x00, 0x00, 0x00}, str("")), // CleanSession 0, zero-byte ClientId at offset 12
			Packet: &packets.Connect{ProtocolName: bs("MQTT"), ProtocolLevel: 4, ClientID: []byte{}}},
		{Name: "connect/client-id-invalid-utf8", Clause: "MQTT-1.5.3-1", Kind: Invalid, Offset: 14,
			Raw:    cat([]byte{0x10, 0x0d}, mqtt, []byte{0x04, 0x02, 0x00, 0x00}, []byte{0x00, 0x01, 0xff}), // ClientId byte 0xff at offset 14
			Packet: with(func(c *packets.Connect) { c.ClientID = []byte{0xff} })},
		{Name: "connect/client-id-surrogate", Clause: "MQTT-1.5.3-1", Kind: Invalid, Offset: 14,
			Raw:    cat([]byte{0x10, 0x0f}, mqtt, []byte{0x04, 0x02, 0x00, 0x00}, []byte{0x00, 0x03, 0xed, 0xa0, 0x80}), // U+D800 encoded in UTF-8
			Packet: with(func(c *packets.Connect) { c.ClientID = []byte{0xed, 0xa0, 0x80} })},
		{Name: "connect/client-id-nul", Clause: "MQTT-1.5.3-2", Kind: Invalid, Offset: 15,
			Raw:    cat([]byte{0x10, 0x0e}, mqtt, []byte{0x04, 0x02, 0x00, 0x00}, []byte{0x00, 0x02, 'a', 0x00}), // U+0000 at offset 15
			Packet: with(func(c *packets.Connect) { c.ClientID = []byte{'a', 0} })},
		{Name: "connect/username-invalid-utf8", Clause: "MQTT-1.5.3-1", Kind: Invalid, Offset: 17,
			Raw: cat([]byte{0x10, 0x11}, mqtt, []byte{0x04},
				[]byte{0x82},                 // flags: user name, clean session
				[]byte{0x00, 0x00}, str("a"), // keep alive, client identifier
				[]byte{0x00, 0x02, 0xc3, 0x28}, // user name: 0xc3 0x28 is not UTF-8 (offset 17)
			),
			Packet: with(func(c *packets.Connect) { c.Username = []byte{0xc3, 0x28} })},
		{Name: "connect/will-topic-wildcard", Clause: "MQTT-3.3.2-2", Kind: Invalid, Offset: 19,
			Raw: cat([]byte{0x10, 0x14}, mqtt, []byte{0x04},
				[]byte{0x06}, []byte{0x00, 0x00}, str("a"), // flags: will, clean session; keep alive; client id
				str("a/#"), str(""), // will topic with '#' at offset 19; empty will message
			),
			Packet: with(func(c *packets.Connect) { c.WillTopic, c.WillMessage = bs("a/#"), []byte{} })},
		{Name: "connect/client-id-overrun", Clause: "MQTT-1.5.3", Kind: Malformed, Offset: 12,
			Raw: cat([]byte{0x10, 0x0d}, mqtt, []byte{0x04, 0x02, 0x00, 0x00}, []byte{0x00, 0x05, 'a'})}, // ClientId says 5 bytes, 1 left
		{Name: "connect/truncated-variable-header", Clause: "MQTT-3.1.2", Kind: Malformed, Offset: 8,
			Raw: cat([]byte{0x10, 0x07}, mqtt, []byte{0x04})}, // ends after the protocol level
		{Name: "connect/trailing-bytes", Clause: "MQTT-3.1.3-1", Kind: Malformed, Offset: 15,
			Raw: cat([]byte{0x10, 0x0e}, mqtt, []byte{0x04, 0x02, 0x00, 0x00}, str("a"), []byte{0x00})}, // one byte after the last field
		{Name: "connect/username-flag-without-field", Clause: "MQTT-1.5.3", Kind: Malformed, Offset: 15,
			Raw: cat([]byte{0x10, 0x0d}, mqtt, []byte{0x04, 0x82, 0x00, 0x00}, str("a"))}, // user name flag set, no user name
	}
}

func connackVectors() []Vector {
	return []Vector{
		{Name: "connack/accepted", Clause: "MQTT-3.2", Kind: Valid, Raw: []byte{0x20, 0x02, 0x00, 0x00}, Packet: &packets.Connack{}},
		{Name: "connack/session-present", Clause: "MQTT-3.2.2-2", Kind: Valid, Raw: []byte{0x20, 0x02, 0x01, 0x00},
			Packet: &packets.Connack{SessionPresent: true}},
		{Name: "connack/refused-protocol-version", Clause: "MQTT-3.1.2-2", Kind: Valid, Raw: []byte{0x20, 0x02, 0x00, 0x01},
			Packet: &packets.Connack{ReturnCode: packets.ConnackRefusedProtocolVersion}},
		{Name: "connack/refused-identifier-rejected", Clause: "MQTT-3.1.3-9", Kind: Valid, Raw: []byte{0x20, 0x02, 0x00, 0x02},
			Packet: &packets.Connack{ReturnCode: packets.ConnackRefusedIdentifierRejected}},
		{Name: "connack/refused-bad-username-or-password", Clause: "MQTT-3.2.2.3", Kind: Valid, Raw: []byte{0x20, 0x02, 0x00, 0x04},
			Packet: &packets.Connack{ReturnCode: packets.ConnackRefusedBadUsernameOrPassword}},
		{Name: "connack/refused-not-authorized", Clause: "MQTT-3.2.2.3", Kind: Valid, Raw: []byte{0x20, 0x02, 0x00, 0x05},
			Packet: &packets.Connack{ReturnCode: packets.ConnackRefusedNotAuthorized}},
		{Name: "connack/reserved-flags", Clause: "MQTT-3.2.2.1", Kind: Invalid, Offset: 2,
			Raw:    []byte{0x20, 0x02, 0x02, 0x00}, // acknowledge flags: reserved bit 1 set
			Packet: &packets.Connack{Reserved: 0x02}},
		{Name: "connack/reserved-return-code", Clause: "MQTT-3.2.2.3", Kind: Invalid, Offset: 3,
			Raw:    []byte{0x20, 0x02, 0x00, 0x06}, // return code 6 is reserved
			Packet: &packets.Connack{ReturnCode: 6}},
		{Name: "connack/session-present-with-refusal", Clause: "MQTT-3.2.2-4", Kind: Invalid, Offset: 2,
			Raw:    []byte{0x20, 0x02, 0x01, 0x05}, // session present 1 with return code 5
			Packet: &packets.Connack{SessionPresent: true, ReturnCode: packets.ConnackRefusedNotAuthorized}},
		{Name: "connack/remaining-length-3", Clause: "MQTT-3.2.1", Kind: Malformed, Offset: 1,
			Raw: []byte{0x20, 0x03, 0x00, 0x00, 0x00}},
	}
}

func publishVectors() []Vector {
	rl := func(n int) Vector { // PUBLISH QoS 0, topic "a", remaining length n
		return Vector{Name: "publish/remaining-length-" + itoa(n), Clause: "MQTT-2.2.3", Kind: Valid,
			Raw:    frame(0x30, str("a"), repeat('x', n-3)),
			Packet: &packets.Publish{Topic: bs("a"), Payload: repeat('x', n-3)}}
	}
	return []Vector{
		{Name: "publish/qos0", Clause: "MQTT-3.3", Kind: Valid,
			Raw:    cat([]byte{0x30, 0x07}, str("a/b"), bs("hi")), // fixed header: PUBLISH QoS 0; topic "a/b"; payload "hi"
			Packet: &packets.Publish{Topic: bs("a/b"), Payload: bs("hi")}},
		{Name: "publish/qos1", Clause: "MQTT-3.3", Kind: Valid,
			Raw:    cat([]byte{0x32, 0x09}, str("a/b"), []byte{0x00, 0x0a}, bs("hi")), // QoS 1; packet id 10
			Packet: &packets.Publish{QoS: 1, Topic: bs("a/b"), PacketID: 10, Payload: bs("hi")}},
		{Name: "publish/qos2-dup-retain", Clause: "MQTT-3.3.1-1", Kind: Valid,
			Raw:    cat([]byte{0x3d, 0x09}, str("a/b"), []byte{0x00, 0x01}, bs("hi")), // flags: DUP, QoS 2, RETAIN
			Packet: &packets.Publish{Dup: true, QoS: 2, Retain: true, Topic: bs("a/b"), PacketID: 1, Payload: bs("hi")}},
		{Name: "publish/empty-payload", Clause: "MQTT-3.3.3", Kind: Valid,
			Raw:    cat([]byte{0x31, 0x05}, str("a/b")), // RETAIN, zero-length payload
			Packet: &packets.Publish{Retain: true, Topic: bs("a/b"), Payload: []byte{}}},
		rl(127), rl(128), rl(16383), rl(16384),
		{Name: "publish/topic-utf8-multibyte", Clause: "MQTT-1.5.3", Kind: Edge,
			Raw:    frame(0x30, str("温度/°C"), bs("1")),
			Packet: &packets.Publish{Topic: bs("温度/°C"), Payload: bs("1")}},
		{Name: "publish/topic-bom-kept", Clause: "MQTT-1.5.3-3", Kind: Edge,
			// [MQTT-1.5.3-3] 0xEF 0xBB 0xBF ... MUST NOT be skipped over or stripped off.
			Raw:    cat([]byte{0x30, 0x06}, []byte{0x00, 0x04, 0xef, 0xbb, 0xbf, 'a'}),
			Packet: &packets.Publish{Topic: []byte{0xef, 0xbb, 0xbf, 'a'}, Payload: []byte{}}},
		{Name: "publish/topic-65535-bytes", Clause: "MQTT-4.7.3-3", Kind: Edge,
			Raw:    frame(0x30, str(strings.Repeat("t", 65535))),
			Packet: &packets.Publish{Topic: repeat('t', 65535), Payload: []byte{}}},
		{Name: "publish/qos3", Clause: "MQTT-3.3.1-4", Kind: Invalid, Offset: 0,
			Raw:    cat([]byte{0x36, 0x09}, str("a/b"), []byte{0x00, 0x01}, bs("hi")), // both QoS bits set
			Packet: &packets.Publish{QoS: 3, Topic: bs("a/b"), PacketID: 1, Payload: bs("hi")}},
		{Name: "publish/dup-on-qos0", Clause: "MQTT-3.3.1-2", Kind: Invalid, Offset: 0,
			Raw:    cat([]byte{0x38, 0x07}, str("a/b"), bs("hi")), // DUP with QoS 0
			Packet: &packets.Publish{Dup: true, Topic: bs("a/b"), Payload: bs("hi")}},
		{Name: "publish/topic-wildcard-hash", Clause: "MQTT-3.3.2-2", Kind: Invalid, Offset: 6,
			Raw:    cat([]byte{0x30, 0x05}, str("a/#")), // '#' at offset 6
			Packet: &packets.Publish{Topic: bs("a/#"), Payload: []byte{}}},
		{Name: "publish/topic-wildcard-plus", Clause: "MQTT-3.3.2-2", Kind: Invalid, Offset: 4,
			Raw:    cat([]byte{0x30, 0x05}, str("+/b")), // '+' at offset 4
			Packet: &packets.Publish{Topic: bs("+/b"), Payload: []byte{}}},
		{Name: "publish/empty-topic", Clause: "MQTT-4.7.3-1", Kind: Invalid, Offset: 2,
			Raw:    cat([]byte{0x30, 0x04}, str(""), bs("hi")),
			Packet: &packets.Publish{Topic: []byte{}, Payload: bs("hi")}},
		{Name: "publish/topic-nul", Clause: "MQTT-1.5.3-2", Kind: Invalid, Offset: 5,
			Raw:    cat([]byte{0x30, 0x05}, []byte{0x00, 0x03, 'a', 0x00, 'b'}), // U+0000 at offset 5
			Packet: &packets.Publish{Topic: []byte{'a', 0, 'b'}, Payload: []byte{}}},
		{Name: "publish/packet-id-0", Clause: "MQTT-2.3.1-1", Kind: Invalid, Offset: 7,
			Raw:    cat([]byte{0x32, 0x07}, str("a/b"), []byte{0x00, 0x00}), // QoS 1 with packet id 0 at offset 7
			Packet: &packets.Publish{QoS: 1, Topic: bs("a/b"), Payload: []byte{}}},
		{Name: "publish/topic-overrun", Clause: "MQTT-1.5.3", Kind: Malformed, Offset: 2,
			Raw: []byte{0x30, 0x03, 0x00, 0x05, 'a'}}, // topic length 5, one byte left
		{Name: "publish/qos1-without-packet-id", Clause: "MQTT-1.5.2", Kind: Malformed, Offset: 7,
			Raw: cat([]byte{0x32, 0x05}, str("a/b"))}, // QoS 1, the body ends after the topic
	}
}

func ackVectors() []Vector {
	return []Vector{
		{Name: "puback/valid", Clause: "MQTT-3.4", Kind: Valid, Raw: []byte{0x40, 0x02, 0x00, 0x01}, Packet: &packets.Puback{PacketID: 1}},
		{Name: "pubrec/valid", Clause: "MQTT-3.5", Kind: Valid, Raw: []byte{0x50, 0x02, 0x00, 0x02}, Packet: &packets.Pubrec{PacketID: 2}},
		{Name: "pubrel/valid", Clause: "MQTT-3.6.1-1", Kind: Valid, Raw: []byte{0x62, 0x02, 0x00, 0x03}, Packet: &packets.Pubrel{PacketID: 3}},
		{Name: "pubcomp/valid", Clause: "MQTT-3.7", Kind: Valid, Raw: []byte{0x70, 0x02, 0xff, 0xff}, Packet: &packets.Pubcomp{PacketID: 65535}},
		{Name: "unsuback/valid", Clause: "MQTT-3.11", Kind: Valid, Raw: []byte{0xb0, 0x02, 0x00, 0x05}, Packet: &packets.Unsuback{PacketID: 5}},
		{Name: "pingreq/valid", Clause: "MQTT-3.12", Kind: Valid, Raw: []byte{0xc0, 0x00}, Packet: &packets.Pingreq{}},
		{Name: "pingresp/valid", Clause: "MQTT-3.13", Kind: Valid, Raw: []byte{0xd0, 0x00}, Packet: &packets.Pingresp{}},
		{Name: "disconnect/valid", Clause: "MQTT-3.14", Kind: Valid, Raw: []byte{0xe0, 0x00}, Packet: &packets.Disconnect{}},
		{Name: "pubrel/flags-0", Clause: "MQTT-3.6.1-1", Kind: Invalid, Offset: 0,
			Raw: []byte{0x60, 0x02, 0x00, 0x03}, Packet: &packets.Pubrel{PacketID: 3}}, // PUBREL flags must be 0010
		{Name: "puback/flags-set", Clause: "MQTT-2.2.2-1", Kind: Invalid, Offset: 0,
			Raw: []byte{0x41, 0x02, 0x00, 0x01}, Packet: &packets.Puback{PacketID: 1}},
		{Name: "pingreq/flags-set", Clause: "MQTT-2.2.2-1", Kind: Invalid, Offset: 0,
			Raw: []byte{0xc4, 0x00}, Packet: &packets.Pingreq{}},
		{Name: "disconnect/flags-set", Clause: "MQTT-3.14.1-1", Kind: Invalid, Offset: 0,
			Raw: []byte{0xe1, 0x00}, Packet: &packets.Disconnect{}},
		{Name: "puback/remaining-length-3", Clause: "MQTT-3.4.1", Kind: Malformed, Offset: 1, Raw: []byte{0x40, 0x03, 0x00, 0x01, 0x00}},
		{Name: "unsuback/remaining-length-0", Clause: "MQTT-3.11.1", Kind: Malformed, Offset: 1, Raw: []byte{0xb0, 0x00}},
		{Name: "pingreq/remaining-length-1", Clause: "MQTT-3.12.1", Kind: Malformed, Offset: 1, Raw: []byte{0xc0, 0x01, 0x00}},
		{Name: "disconnect/remaining-length-1", Clause: "MQTT-3.14.1", Kind: Malformed, Offset: 1, Raw: []byte{0xe0, 0x01, 0x00}},
	}
}

func subscribeVectors() []Vector {
	one := func(first byte, id uint16, filter string, qos byte) []byte {
		return frame(first, []byte{byte(id >> 8), byte(id)}, str(filter), []byte{qos})
	}
	sub := func(id uint16, filter string, qos byte) *packets.Subscribe {
		return &packets.Subscribe{PacketID: id, Subscriptions: []packets.Subscription{{Filter: bs(filter), QoS: qos}}}
	}
	return []Vector{
		{Name: "subscribe/one", Clause: "MQTT-3.8", Kind: Valid,
			Raw:    []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x01}, // SUBSCRIBE (flags 0010), id 1, filter "a", QoS 1
			Packet: sub(1, "a", 1)},
		{Name: "subscribe/wildcards", Clause: "MQTT-4.7.1-2", Kind: Valid,
			Raw: cat([]byte{0x82, 0x14}, []byte{0x12, 0x34}, // fixed header, remaining length 20; packet id 0x1234
				str("a/+"), []byte{0x00}, // filter "a/+", QoS 0
				str("#"), []byte{0x02}, // filter "#", QoS 2
				str("+/b/#"), []byte{0x01}, // filter "+/b/#", QoS 1
			),
			Packet: &packets.Subscribe{PacketID: 0x1234, Subscriptions: []packets.Subscription{
				{Filter: bs("a/+"), QoS: 0}, {Filter: bs("#"), QoS: 2}, {Filter: bs("+/b/#"), QoS: 1}}}},
		{Name: "subscribe/filter-separator-only", Clause: "MQTT-4.7.3-1", Kind: Edge,
			Raw: one(0x82, 7, "/", 0), Packet: sub(7, "/", 0)},
		{Name: "subscribe/flags-0", Clause: "MQTT-3.8.1-1", Kind: Invalid, Offset: 0,
			Raw: one(0x80, 1, "a", 1), Packet: sub(1, "a", 1)},
		{Name: "subscribe/packet-id-0", Clause: "MQTT-2.3.1-1", Kind: Invalid, Offset: 2,
			Raw: one(0x82, 0, "a", 1), Packet: sub(0, "a", 1)},
		{Name: "subscribe/no-filter", Clause: "MQTT-3.8.3-3", Kind: Invalid, Offset: 4,
			Raw: []byte{0x82, 0x02, 0x00, 0x01}, Packet: &packets.Subscribe{PacketID: 1}},
		{Name: "subscribe/qos3", Clause: "MQTT-3.8.3-4", Kind: Invalid, Offset: 7,
			Raw: one(0x82, 1, "a", 3), Packet: sub(1, "a", 3)},
		{Name: "subscribe/qos-reserved-bits", Clause: "MQTT-3.8.3-4", Kind: Invalid, Offset: 7,
			Raw: one(0x82, 1, "a", 0x41), Packet: sub(1, "a", 0x41)},
		{Name: "subscribe/hash-not-last", Clause: "MQTT-4.7.1-2", Kind: Invalid, Offset: 8,
			Raw: one(0x82, 1, "a/#/b", 0), Packet: sub(1, "a/#/b", 0)},
		{Name: "subscribe/hash-not-alone", Clause: "MQTT-4.7.1-2", Kind: Invalid, Offset: 7,
			Raw: one(0x82, 1, "a#", 0), Packet: sub(1, "a#", 0)},
		{Name: "subscribe/plus-not-whole-level", Clause: "MQTT-4.7.1-3", Kind: Invalid, Offset: 7,
			Raw: one(0x82, 1, "a+/b", 0), Packet: sub(1, "a+/b", 0)},
		{Name: "subscribe/empty-filter", Clause: "MQTT-4.7.3-1", Kind: Invalid, Offset: 4,
			Raw: one(0x82, 1, "", 0), Packet: &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte{}}}}},
		{Name: "subscribe/filter-without-qos", Clause: "MQTT-3.8.3", Kind: Malformed, Offset: 7,
			Raw: []byte{0x82, 0x05, 0x00, 0x01, 0x00, 0x01, 'a'}},
		{Name: "suback/one", Clause: "MQTT-3.9", Kind: Valid, Raw: []byte{0x90, 0x03, 0x00, 0x01, 0x01},
			Packet: &packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{packets.SubackMaxQoS1}}},
		{Name: "suback/all-codes", Clause: "MQTT-3.9.3-2", Kind: Valid, Raw: []byte{0x90, 0x06, 0x00, 0x0a, 0x00, 0x01, 0x02, 0x80},
			Packet: &packets.Suback{PacketID: 10, ReturnCodes: []packets.SubackCode{0x00, 0x01, 0x02, 0x80}}},
		{Name: "suback/reserved-code", Clause: "MQTT-3.9.3-2", Kind: Invalid, Offset: 4,
			Raw: []byte{0x90, 0x03, 0x00, 0x01, 0x03}, Packet: &packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{0x03}}},
		{Name: "suback/no-return-code", Clause: "MQTT-3.8.4-5", Kind: Invalid, Offset: 4,
			Raw: []byte{0x90, 0x02, 0x00, 0x01}, Packet: &packets.Suback{PacketID: 1}},
		{Name: "suback/remaining-length-1", Clause: "MQTT-3.9.2", Kind: Malformed, Offset: 2, Raw: []byte{0x90, 0x01, 0x00}},
	}
}

func unsubscribeVectors() []Vector {
	return []Vector{
		{Name: "unsubscribe/one", Clause: "MQTT-3.10", Kind: Valid, Raw: []byte{0xa2, 0x05, 0x00, 0x02, 0x00, 0x01, 'a'},
			Packet: &packets.Unsubscribe{PacketID: 2, Filters: [][]byte{bs("a")}}},
		{Name: "unsubscribe/two", Clause: "MQTT-3.10", Kind: Valid,
			Raw:    cat([]byte{0xa2, 0x0a, 0x00, 0x03}, str("a/b"), str("#")), // id 3, filters "a/b" and "#"
			Packet: &packets.Unsubscribe{PacketID: 3, Filters: [][]byte{bs("a/b"), bs("#")}}},
		{Name: "unsubscribe/flags-0", Clause: "MQTT-3.10.1-1", Kind: Invalid, Offset: 0,
			Raw: []byte{0xa0, 0x05, 0x00, 0x02, 0x00, 0x01, 'a'}, Packet: &packets.Unsubscribe{PacketID: 2, Filters: [][]byte{bs("a")}}},
		{Name: "unsubscribe/no-filter", Clause: "MQTT-3.10.3-2", Kind: Invalid, Offset: 4,
			Raw: []byte{0xa2, 0x02, 0x00, 0x02}, Packet: &packets.Unsubscribe{PacketID: 2}},
		{Name: "unsubscribe/packet-id-0", Clause: "MQTT-2.3.1-1", Kind: Invalid, Offset: 2,
			Raw: []byte{0xa2, 0x05, 0x00, 0x00, 0x00, 0x01, 'a'}, Packet: &packets.Unsubscribe{Filters: [][]byte{bs("a")}}},
		{Name: "unsubscribe/invalid-utf8", Clause: "MQTT-1.5.3-1", Kind: Invalid, Offset: 6,
			Raw: []byte{0xa2, 0x05, 0x00, 0x02, 0x00, 0x01, 0xff}, Packet: &packets.Unsubscribe{PacketID: 2, Filters: [][]byte{{0xff}}}},
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
