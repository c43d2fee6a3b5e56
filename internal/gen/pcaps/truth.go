package main

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/dps-conform/dps-conform/packets"
)

// Truth is the ground truth of one capture, written next to it as
// NAME.truth.json: the MQTT packets the generator put in each flow, in
// order. Tests compare tshark's and tracer's views with it.
type Truth struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// KeyLog is the NSS key log file name, for TLS captures.
	KeyLog string `json:"keylog,omitempty"`
	// Deterministic is false when TLS randomness makes the bytes differ
	// from run to run (the packets stay the same).
	Deterministic bool `json:"deterministic"`
	// TsharkDiffers, when set, says why tshark 4.0 does not see these
	// packets correctly; oracle tests then check tracer against all of
	// Flows, and tshark only for good checksums and, per direction, the
	// packets before the first one marked RemLenSplit.
	TsharkDiffers string      `json:"tsharkDiffers,omitempty"`
	Flows         []TruthFlow `json:"flows"`
}

// TruthFlow is one TCP flow and the MQTT packets it carries.
type TruthFlow struct {
	Client  string        `json:"client"`
	Server  string        `json:"server"`
	Layer   string        `json:"layer"`
	Packets []TruthPacket `json:"packets"`
}

// TruthPacket is the comparable summary of one MQTT packet.
type TruthPacket struct {
	Dir      string `json:"dir"` // c2s or s2c
	Type     string `json:"type"`
	Topic    string `json:"topic,omitempty"`
	PacketID uint16 `json:"packetId,omitempty"`
	QoS      int    `json:"qos,omitempty"`
	// Codes are the CONNACK return code, the SUBACK return codes or the
	// SUBSCRIBE requested QoS values.
	Codes []int `json:"codes,omitempty"`
	// ClientID, Username, KeepAlive and ConnectFlags are the CONNECT's
	// (Username empty when the User Name Flag is 0).
	ClientID     string `json:"clientId,omitempty"`
	Username     string `json:"username,omitempty"`
	KeepAlive    int    `json:"keepAlive,omitempty"`
	ConnectFlags int    `json:"connectFlags,omitempty"`
	// PayloadLen and PayloadSHA256 (lowercase hex) identify a PUBLISH
	// payload: payloads run to 5 KB, so the truth holds a digest that any
	// changed byte alters, and the length to tell a cut payload from an
	// edited one. PayloadSHA256 is set for every PUBLISH, even an empty one.
	PayloadLen    int    `json:"payloadLen,omitempty"`
	PayloadSHA256 string `json:"payloadSha256,omitempty"`
	// RemLenSplit is set when a TCP segment of the capture ends before the
	// packet's remaining-length field is complete (tshark 4.0 mis-frames
	// the rest of that direction of the stream from this packet on).
	RemLenSplit bool `json:"remLenSplit,omitempty"`
}

// summarize is the TruthPacket of p sent in direction dir.
func summarize(dir string, p packets.Packet) TruthPacket {
	t := TruthPacket{Dir: dir, Type: p.Type().String()}
	switch p := p.(type) {
	case *packets.Connect:
		t.ClientID, t.Username = string(p.ClientID), string(p.Username)
		t.KeepAlive, t.ConnectFlags = int(p.KeepAlive), int(p.ConnectFlags())
	case *packets.Connack:
		t.Codes = []int{int(p.ReturnCode)}
	case *packets.Publish:
		t.Topic, t.QoS, t.PacketID = string(p.Topic), int(p.QoS), p.PacketID
		sum := sha256.Sum256(p.Payload)
		t.PayloadLen, t.PayloadSHA256 = len(p.Payload), hex.EncodeToString(sum[:])
	case *packets.Puback:
		t.PacketID = p.PacketID
	case *packets.Subscribe:
		t.PacketID = p.PacketID
		for _, s := range p.Subscriptions {
			t.Codes = append(t.Codes, int(s.QoS))
		}
	case *packets.Suback:
		t.PacketID = p.PacketID
		for _, c := range p.ReturnCodes {
			t.Codes = append(t.Codes, int(c))
		}
	}
	return t
}
