//go:build !linux

package worker

// LandlockABI returns 0: Landlock is a Linux facility.
func LandlockABI() int { return 0 }

// Confine does nothing here and returns 0: the worker is not confined by
// the kernel on this system.
func Confine(Confinement) (int, error) { return 0, nil }
