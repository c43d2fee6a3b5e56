package cli

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel send cmd SIGTERM when this process dies
// first, even by kill -9: a killed bench leaves no server running.
// (Pdeathsig follows the thread that started the child; Go keeps that
// thread unless a goroutine locked to it exits, which none here does.)
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
}
