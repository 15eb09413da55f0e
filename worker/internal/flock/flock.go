// Package flock takes advisory locks (flock(2)) on open files, so that
// replicas of a worker in separate processes can share one data file.
package flock

// How a lock is taken.
const (
	Shared    = lockShared
	Exclusive = lockExclusive
	Unlock    = lockUnlock
)
