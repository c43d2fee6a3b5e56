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
