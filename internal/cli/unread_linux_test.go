package cli_test

import (
	"os"

	"golang.org/x/sys/unix"
)

// unreadBytes is how many bytes written to the pipe f wait for its reader.
func unreadBytes(f *os.File) (int, error) { return unix.IoctlGetInt(int(f.Fd()), unix.TIOCINQ) }
