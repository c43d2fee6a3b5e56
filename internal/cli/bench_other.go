//go:build !unix

package cli

import (
	"errors"
	"time"
)

// raiseNoFile is a Unix notion; elsewhere the limit is unknown.
func raiseNoFile() (soft, hard uint64, err error) {
	return 0, 0, errors.New("RLIMIT_NOFILE is not available on this system")
}

// processCPU is unknown here: the per-CPU-second figure is then omitted.
func processCPU() time.Duration { return 0 }
