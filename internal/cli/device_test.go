package cli

import (
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/dps"
)

// TestNoVerdictReason: a run is judged only when, in a scenario that
// serves DPS, the device connected, sent CONNECT, registered and polled on
// to an answer that ends the operation; the reason names what was missing.
func TestNoVerdictReason(t *testing.T) {
	run := func(name string, conns, connects, registers, finals int) *scenarioRun {
		r := &scenarioRun{conversations: conns, connects: connects, registers: registers, finals: finals}
		r.Name = name
		return r
	}
	for _, tc := range []struct {
		name string
		runs []*scenarioRun
		want string // substring of the reason; "" for a verdict
	}{
		{"never connected", []*scenarioRun{run("normal", 0, 0, 0, 0)}, "never connected in any scenario"},
		{"TLS scenarios only", []*scenarioRun{run("normal", 0, 0, 0, 0), run("tls-expired", 1, 0, 0, 0)}, "only in the TLS scenarios"},
		{"no CONNECT", []*scenarioRun{run("normal", 2, 0, 0, 0)}, "connected 2 time(s) but sent no CONNECT"},
		{"no register", []*scenarioRun{run("normal", 1, 1, 0, 0)}, "sent CONNECT but no register request"},
		{"registered, no final status", []*scenarioRun{run("normal", 1, 1, 1, 0)}, "registered but never polled to a final status"},
		{"provisioned", []*scenarioRun{run("normal", 1, 1, 1, 1)}, ""},
		{"401 ends the operation", []*scenarioRun{run("unauthorized-401", 1, 1, 1, 1)}, ""},
		// One scenario seen through is enough: a device may rightly stop
		// early in another.
		{"one scenario through", []*scenarioRun{run("connack-withheld", 1, 1, 0, 0), run("normal", 1, 1, 1, 1)}, ""},
		{"a TLS scenario does not count", []*scenarioRun{run("normal", 1, 1, 0, 0), run("tls-untrusted-ca", 1, 1, 1, 1)}, "no register request"},
		{"TLS scenarios only, judged on them", []*scenarioRun{run("tls-expired", 1, 0, 0, 0)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := noVerdictReason(tc.runs, true)
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("noVerdictReason = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestFinalAnswer: 200 and the errors a device does not retry end an
// operation; 202 and the transient answers (429, 5xx) do not.
func TestFinalAnswer(t *testing.T) {
	for _, tc := range []struct {
		topic string
		want  bool
	}{
		{dps.ResponseTopic(200, "1", -1), true},
		{dps.ResponseTopic(401, "1", -1), true},
		{dps.ResponseTopic(400, "1", -1), true},
		{dps.ResponseTopic(202, "1", 3), false},
		{dps.ResponseTopic(429, "1", 3), false},
		{dps.ResponseTopic(500, "1", -1), false},
		{"$dps/registrations/res/200", false}, // no query: not an answer
	} {
		if got := finalAnswer(tc.topic); got != tc.want {
			t.Errorf("finalAnswer(%q) = %v, want %v", tc.topic, got, tc.want)
		}
	}
}
