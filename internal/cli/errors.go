package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// UsageError is a mistake on the command line or in an input the user gave:
// unknown command or flag, bad flag value, missing or contradictory flags. It
// maps to [ExitUsage].
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// EnvError means dps-conform could not produce a verdict: the target was
// unreachable, or the environment failed (a missing tool, an unwritable
// directory, a feature not built yet). It maps to [ExitTargetUnreachable].
type EnvError struct{ Err error }

func (e *EnvError) Error() string { return e.Err.Error() }
func (e *EnvError) Unwrap() error { return e.Err }

// NonConformantError is a verdict: the target was judged and broke MustFindings
// MUST-level requirements, or (trace --check) its capture holds
// DecodeViolations, protocol errors found while decoding (a malformed
// packet, a bad WebSocket upgrade). It maps to [ExitNonConformant].
// CaptureDefects, when not empty, says what the capture lost besides (trace
// --check): it was not judged, and is no part of the verdict.
type NonConformantError struct {
	MustFindings     int
	DecodeViolations int
	CaptureDefects   string
}

func (e *NonConformantError) Error() string {
	var parts []string
	count := func(n int, one, many string) {
		switch {
		case n == 1:
			parts = append(parts, one)
		case n > 1:
			parts = append(parts, fmt.Sprintf(many, n))
		}
	}
	count(e.MustFindings, "1 MUST-level requirement not met", "%d MUST-level requirements not met")
	count(e.DecodeViolations, "1 decode violation (a protocol error in the capture)", "%d decode violations (protocol errors in the capture)")
	msg := "non-conformant"
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, ", ")
	}
	if e.CaptureDefects != "" {
		msg += "; the capture also has defects, and what they lost was not judged: " + e.CaptureDefects
	}
	return msg
}

var (
	_ error = (*UsageError)(nil)
	_ error = (*EnvError)(nil)
	_ error = (*NonConformantError)(nil)
)

func usageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

func envErrorf(format string, args ...any) error {
	return &EnvError{Err: fmt.Errorf(format, args...)}
}

// interrupted is the error of a command whose ctx ended before its work
// did (Ctrl-C, SIGTERM): exit 3, naming the cause ("interrupt signal
// received") and wrapping ctx.Err().
func interrupted(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return &EnvError{Err: fmt.Errorf("interrupted (%v): %w", cause, err)}
	}
	return &EnvError{Err: fmt.Errorf("interrupted: %w", err)}
}

// ExitCode maps err to the dps-conform exit code: nil → [ExitConformant],
// [*NonConformantError] and [*VerifyFailedError] (a results bundle that
// failed verification) → [ExitNonConformant], [*UsageError] → [ExitUsage],
// [*EnvError] → [ExitTargetUnreachable]. The first of these types found by
// errors.As in that order wins. Any other error means a subcommand failed to
// classify it; since no verdict was produced, it maps to
// [ExitTargetUnreachable] too, never to a pass or a plain failure.
func ExitCode(err error) int {
	if err == nil {
		return ExitConformant
	}
	var nc *NonConformantError
	if errors.As(err, &nc) {
		return ExitNonConformant
	}
	var vf *VerifyFailedError
	if errors.As(err, &vf) {
		return ExitNonConformant
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	var ee *EnvError
	if errors.As(err, &ee) {
		return ExitTargetUnreachable
	}
	// Unclassified: a bug in the subcommand's error handling. We cannot claim a
	// verdict, so report it as an environment failure.
	return ExitTargetUnreachable
}
