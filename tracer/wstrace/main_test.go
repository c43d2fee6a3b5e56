package wstrace

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the recorded client/server sessions leave no
// goroutines behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
