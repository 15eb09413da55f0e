//go:build darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd

package calendar

import (
	"errors"
	"os"
	"syscall"
)

const (
	lockShared    = syscall.LOCK_SH
	lockExclusive = syscall.LOCK_EX
	lockUnlock    = syscall.LOCK_UN
)

// flock applies an advisory lock operation to f's open file description.
// It blocks until the lock is granted: holders keep it for one read, or
// one write and one fsync.
func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Flock(int(fd), how)
			if !errors.Is(ferr, syscall.EINTR) {
				return
			}
		}
	}); err != nil {
		return err
	}
	return ferr
}
