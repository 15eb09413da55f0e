//go:build !linux

package worker

import (
	"errors"
	"os"
)

// LandlockABI returns 0: Landlock is a Linux facility.
func LandlockABI() int { return 0 }

// Confine does nothing here and returns 0: the worker is not confined by
// the kernel on this system.
func Confine(Confinement) (int, error) { return 0, nil }

// ErrSealUnsupported means SealNetwork does nothing on this system.
var ErrSealUnsupported = errors.New("sealing the network needs Linux")

// SealNetwork does nothing here: it returns ErrSealUnsupported.
func SealNetwork() error { return ErrSealUnsupported }

// SealAvailable reports false: sealing needs Linux.
func SealAvailable() (bool, string) { return false, ErrSealUnsupported.Error() }

// SealReportFD names the descriptor a supervisor passes for reports.
const SealReportFD = "SLUICE_SEAL_REPORT_FD"

// SealFromEnv does nothing here: the process is not sealed.
func SealFromEnv([]string) (bool, error) { return false, nil }

// ServeSealReports returns at once: no worker is sealed here.
func ServeSealReports(conn *os.File, attempt func(op, what string)) error { return conn.Close() }
