package supervisor

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sluicehq/sluice/internal/seal"
)

// setProcAttr asks the kernel to stop the worker when the orchestrator dies,
// even by SIGKILL, so no worker outlives it.
func setProcAttr(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// serveSeal gives a worker that seals itself off the network (seal.FromEnv)
// a socket over which it hands the supervisor its seal's listener; every
// socket the worker then tries to open is put to the supervisor, which
// tells refused of it and refuses it. It returns what to do once the
// process has started.
func serveSeal(c *exec.Cmd, refused func(op, what string), log *slog.Logger) (started func(), err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("seal reports: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "seal-reports"), os.NewFile(uintptr(fds[1]), "seal-reports")
	c.ExtraFiles = append(c.ExtraFiles, theirs)
	c.Env = append(c.Env, seal.ReportFD+"="+strconv.Itoa(2+len(c.ExtraFiles)))
	return func() {
		theirs.Close()
		go func() {
			if err := seal.ServeReports(ours, refused); err != nil {
				log.Warn("the worker's attempts to open sockets are not reported", "err", err)
			}
		}()
	}, nil
}
