package cli

import (
	"testing"

	"github.com/dps-conform/dps-conform/tracer"
	"github.com/dps-conform/dps-conform/tracer/tlstrace"
)

// TestTraceNoVerdict checks the reasons --check gives no verdict.
func TestTraceNoVerdict(t *testing.T) {
	conv := func(tls *tlstrace.Facts) *tracer.Capture {
		return &tracer.Capture{Conversations: []*tracer.Conversation{{ID: 1, TLS: tls}}}
	}
	for _, tc := range []struct {
		name string
		c    *tracer.Capture
		want string
	}{
		{"clean", conv(nil), ""},
		{"decrypted", conv(&tlstrace.Facts{Decrypted: true}), ""},
		{"tls without keys", conv(&tlstrace.Facts{ServerHello: true}), "conversation 1 (invalid AddrPort → invalid AddrPort) is TLS and was not decrypted, or only in part (give --keylog FILE)"},
		{"decrypted in part", &tracer.Capture{Conversations: []*tracer.Conversation{{ID: 1, TLS: &tlstrace.Facts{Decrypted: true},
			Problems: []tracer.Problem{{Clause: tracer.ClauseUndecrypted, Msg: "key log has no traffic secret 0 for s2c: decryption of s2c stops"}}}}},
			"conversation 1 (invalid AddrPort → invalid AddrPort) is TLS and was not decrypted, or only in part (key log has no traffic secret 0 for s2c: decryption of s2c stops; give --keylog FILE with its secrets)"},
		{"nothing", &tracer.Capture{}, "no MQTT conversation found"},
		{"incomplete", &tracer.Capture{Incomplete: "cut"}, "the capture was not read to its end: cut"},
	} {
		if got := noVerdict(tc.c); got != tc.want {
			t.Errorf("%s: noVerdict = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestTraceNoMQTTHint: --port is suggested for unknown ports only; the
// known ports and those given as --port need none.
func TestTraceNoMQTTHint(t *testing.T) {
	const seen = "no MQTT conversation found; TCP connections to server port "
	for _, tc := range []struct {
		ports []uint16
		extra []int
		want  string
	}{
		{[]uint16{7000}, nil, seen + "7000 seen: if one carries plaintext MQTT, use --port N"},
		{[]uint16{8883}, nil, seen + "8883 seen, a known port, but none carried data recognisable as MQTT, TLS or WebSocket (did the capture end too soon?)"},
		{[]uint16{443, 8883}, nil, seen + "443, 8883 seen, known ports, but none carried data recognisable as MQTT, TLS or WebSocket (did the capture end too soon?)"},
		{[]uint16{7000}, []int{7000}, seen + "7000 seen, a known port, but none carried data recognisable as MQTT, TLS or WebSocket (did the capture end too soon?)"},
		{[]uint16{7000, 7001, 8883}, nil, seen + "7000, 7001, 8883 seen: if one to ports 7000, 7001 carries plaintext MQTT, use --port N (the others are known ports)"},
		{nil, nil, "no MQTT conversation found: no TCP connection in 3 frames"},
	} {
		if got := noMQTTHint(&tracer.Capture{TCPServerPorts: tc.ports, Frames: 3}, tc.extra); got != tc.want {
			t.Errorf("ports %v, --port %v:\n got %q\nwant %q", tc.ports, tc.extra, got, tc.want)
		}
	}
}
