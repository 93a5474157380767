package e2e

import (
	"os/exec"
	"syscall"
)

var sigterm = syscall.SIGTERM

// setProcAttr makes the kernel kill a child if the test binary dies without
// running its cleanups.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
