package conformance_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/conformance"
)

// TestCheckMatches: a selection that runs something is accepted; one that
// selects nothing, or does not parse, is a SelectionError naming the flag,
// and only the empty one wraps ErrNoSpecMatched (the CLI branches on the
// type: exit 2 before any target starts).
func TestCheckMatches(t *testing.T) {
	tests := []struct {
		name        string
		labelFilter string
		focus       []string
		noMatch     bool   // wraps ErrNoSpecMatched
		wantErr     string // "" when the selection is accepted
	}{
		{name: "requirement", labelFilter: "req: containsAny DPS-SUB-002"},
		{name: "focus", focus: []string{"SUBSCRIBE"}},
		{name: "unknown requirement", labelFilter: "req: containsAny DPS-NOPE-999", noMatch: true, wantErr: `no spec matched --label-filter "req: containsAny DPS-NOPE-999"`},
		{name: "focus and filter disjoint", labelFilter: "area: containsAny subscribe", focus: []string{"WebSocket upgrade"}, noMatch: true, wantErr: `--focus "WebSocket upgrade"`},
		{name: "bad label filter", labelFilter: "req: containsAny {", wantErr: `--label-filter "req: containsAny {"`},
		{name: "bad focus", focus: []string{"(["}, wantErr: `--focus "(["`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := conformance.CheckMatches(tt.labelFilter, tt.focus)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckMatches = %v, want nil", err)
				}
				return
			}
			var se *conformance.SelectionError
			if !errors.As(err, &se) {
				t.Fatalf("CheckMatches = %v (%T), want a *SelectionError", err, err)
			}
			if got := errors.Is(err, conformance.ErrNoSpecMatched); got != tt.noMatch {
				t.Errorf("errors.Is(%v, ErrNoSpecMatched) = %v, want %v", err, got, tt.noMatch)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("CheckMatches = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
