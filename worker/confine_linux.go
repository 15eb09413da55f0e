//go:build linux

package worker

import (
	"fmt"

	"github.com/landlock-lsm/go-landlock/landlock"
	"golang.org/x/sys/unix"
)

// LandlockABI returns the Landlock ABI version of the running kernel; 0
// when it has none.
func LandlockABI() int {
	abi, _ := LandlockProbe()
	return abi
}

// LandlockProbe is LandlockABI with the reason it is 0: the error of the
// probe, ENOSYS when the kernel has no Landlock (or a seccomp filter on
// this process answers as if), EOPNOTSUPP when Landlock is built in but
// not enabled at boot, EPERM when a seccomp filter refuses the call (a
// container runtime's profile, systemd's SystemCallFilter=).
func LandlockProbe() (int, error) {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0, errno
	}
	return int(v), nil
}

// Confine restricts the process, for the rest of its life, to c. It
// returns the Landlock ABI in force: 0 means the kernel has no Landlock and
// nothing was restricted (the caller says so in its log; sluice doctor
// reports it).
func Confine(c Confinement) (int, error) {
	abi := LandlockABI()
	if abi == 0 {
		return 0, nil
	}
	rules := []landlock.Rule{}
	if len(c.RO) > 0 {
		rules = append(rules, landlock.RODirs(c.RO...))
	}
	if len(c.ROFiles) > 0 {
		rules = append(rules, landlock.ROFiles(c.ROFiles...))
	}
	if len(c.RW) > 0 {
		rules = append(rules, landlock.RWDirs(c.RW...))
	}
	if c.NATSPort != 0 {
		rules = append(rules, landlock.ConnectTCP(c.NATSPort))
	}
	// The highest configuration this library knows, degraded to what the
	// kernel offers: file access, TCP bind and connect (ABI 4), signals
	// and abstract sockets (ABI 6).
	if err := landlock.V11.BestEffort().Restrict(rules...); err != nil {
		return abi, fmt.Errorf("confine the worker: %w", err)
	}
	return abi, nil
}
