package emulator

import "testing"

// TestRefusalClassification: the closes the emulator decides are logged at
// info, the ordinary ends of a connection at debug.
func TestRefusalClassification(t *testing.T) {
	for _, tc := range []struct {
		reason string
		want   bool
	}{
		{"device sent DISCONNECT", false},
		{"device closed the connection", false},
		{"server closing", false},
		{"read: connection reset by peer", false},
		{"write answer: broken pipe", false},
		{"timeout: keep-alive", false},
		{"", false},
		{"CONNACK 0x02 (identifier rejected): CleanSession=0 is not supported (Part A §2)", true},
		{"CONNECT breaks MQTT 3.1.1: mqtt: CONNECT @7: protocol level 5 [MQTT-3.1.2-2]", true},
		{"packet over the size limit (Part A §7): 100000 bytes", true},
		{`PUBLISH to an undocumented topic "foo/bar" (Part A §9): dps: invalid topic`, true},
		{"answered 401, closing (Part A §3)", true},
		{"first packet is not CONNECT (MQTT-3.1.0-1)", true},
		{"first packet unreadable: device closed the connection", false},
		{"first packet unreadable: read: mqtt: CONNECT of 222 bytes truncated: unexpected EOF", false},
		{"first packet unreadable: timeout: read tcp: i/o timeout", true},
		{"first packet unreadable: packet over the size limit (Part A §7): 100000 bytes", true},
		{"first packet unreadable: protocol error, closing (MQTT-4.8.0-1): mqtt: bad", true},
		{"QoS 2 PUBLISH is not supported (docs/emulator.md)", true},
	} {
		if got := refusal(tc.reason); got != tc.want {
			t.Errorf("refusal(%q) = %v, want %v", tc.reason, got, tc.want)
		}
	}
}
