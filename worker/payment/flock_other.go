//go:build !(darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd)

package payment

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

const (
	lockShared = iota
	lockExclusive
	lockUnlock
)

func errNoFlock() error {
	return fmt.Errorf("the payment ledger needs flock(2), which %s does not have: %w", runtime.GOOS, errors.ErrUnsupported)
}

func flock(*os.File, int) error { return errNoFlock() }

// checkLockable refuses to run a ledger that replicas could not share
// safely.
func checkLockable(*os.File) error { return errNoFlock() }
