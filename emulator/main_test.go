package emulator

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// server is closed by its test's cleanup, and Close waits for everything.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
