package cli

import (
	"testing"
	"unicode/utf8"

	"github.com/dps-conform/dps-conform/tlsprobe"
)

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"eleven char", 10, "eleven ..."},
		{"ééééééééééé", 10, "ééééééé..."}, // 11 two-byte runes: cut between runes
		{"a→b→c→d→e→f", 8, "a→b→c..."},
	} {
		got := clip(tc.s, tc.n)
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("clip(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

func TestSuitesAccepted(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    tlsprobe.Result
		want string
	}{
		{"accepted", tlsprobe.Result{SuitesProbed: true, Suites: []string{"A", "B"}}, "A, B"},
		{"none accepted", tlsprobe.Result{SuitesProbed: true}, "none"},
		{"no TLS 1.2", tlsprobe.Result{}, "not probed (TLS 1.2 not accepted)"},
		{"stopped before", tlsprobe.Result{NotProbed: []string{"TLS 1.2 suites"}}, "not probed (the probe stopped)"},
		{"stopped during", tlsprobe.Result{SuitesProbed: true, SuitesNotProbed: []string{"C"}}, "none; not probed (the probe stopped): C"},
	} {
		if got := suitesAccepted(&tc.r); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
