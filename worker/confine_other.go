//go:build !linux

package worker

import "errors"

// LandlockABI returns 0: Landlock is a Linux facility.
func LandlockABI() int { return 0 }

// LandlockProbe returns 0 and why: Landlock is a Linux facility.
func LandlockProbe() (int, error) { return 0, errors.ErrUnsupported }

// Confine does nothing here and returns 0: the worker is not confined by
// the kernel on this system.
func Confine(Confinement) (int, error) { return 0, nil }
