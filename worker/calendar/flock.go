package calendar

import (
	"os"

	"github.com/sluicehq/sluice/worker/internal/flock"
)

const (
	lockShared    = flock.Shared
	lockExclusive = flock.Exclusive
	lockUnlock    = flock.Unlock
)

// flockFile takes or releases the calendar file's advisory lock. Where
// there is no flock(2) it does nothing: the store's mutex still orders the
// calls of one process, so one replica is safe.
func flockFile(f *os.File, how int) error {
	if !flock.Supported {
		return nil
	}
	return flock.Do(f, how)
}
