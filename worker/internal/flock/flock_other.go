//go:build !(darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd)

package flock

import (
	"errors"
	"os"
)

const (
	lockShared = iota + 1
	lockExclusive
	lockUnlock
)

// Supported reports whether this system has flock(2).
const Supported = false

// Do returns errors.ErrUnsupported: this system has no flock(2).
func Do(*os.File, int) error { return errors.ErrUnsupported }
