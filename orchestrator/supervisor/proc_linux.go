package supervisor

import (
	"os/exec"
	"syscall"
)

// setProcAttr asks the kernel to stop the worker when the orchestrator dies,
// even by SIGKILL, so no worker outlives it.
func setProcAttr(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
