package payment

import (
	"fmt"
	"os"
	"runtime"

	"github.com/sluicehq/sluice/worker/internal/flock"
)

const (
	lockShared    = flock.Shared
	lockExclusive = flock.Exclusive
	lockUnlock    = flock.Unlock
)

// flockFile takes or releases the ledger's advisory lock.
func flockFile(f *os.File, how int) error { return flock.Do(f, how) }

// checkLockable refuses to run a ledger that replicas could not share
// safely.
func checkLockable(*os.File) error {
	if !flock.Supported {
		return fmt.Errorf("the payment ledger needs flock(2), which %s does not have", runtime.GOOS)
	}
	return nil
}
