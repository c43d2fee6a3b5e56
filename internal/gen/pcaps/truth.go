package main

import "github.com/dps-conform/dps-conform/packets"

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
	// packets correctly; oracle tests then check tracer against Flows only.
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
}

// summarize is the TruthPacket of p sent in direction dir.
func summarize(dir string, p packets.Packet) TruthPacket {
	t := TruthPacket{Dir: dir, Type: p.Type().String()}
	switch p := p.(type) {
	case *packets.Connack:
		t.Codes = []int{int(p.ReturnCode)}
	case *packets.Publish:
		t.Topic, t.QoS, t.PacketID = string(p.Topic), int(p.QoS), p.PacketID
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
