//go:build !linux

package cli

import "os/exec"

// dieWithParent is Linux only (Pdeathsig): elsewhere the children of a
// bench killed with kill -9 outlive it; a Ctrl-C or SIGTERM still stops
// them.
func dieWithParent(*exec.Cmd) {}
