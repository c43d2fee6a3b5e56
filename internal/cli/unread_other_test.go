//go:build !linux

package cli_test

import (
	"os"
	"time"
)

// unreadBytes would be how many bytes written to the pipe f wait for its
// reader; only Linux says it here (TIOCINQ), so elsewhere it gives the
// reader half a second and reports none left.
func unreadBytes(*os.File) (int, error) {
	time.Sleep(500 * time.Millisecond)
	return 0, nil
}
