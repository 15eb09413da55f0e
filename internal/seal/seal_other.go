//go:build !linux

package seal

import (
	"errors"
	"os"
)

// ErrUnsupported means Network does nothing on this system.
var ErrUnsupported = errors.New("sealing the network needs Linux")

// Network does nothing here: it returns ErrUnsupported.
func Network() error { return ErrUnsupported }

// Available reports false: sealing needs Linux.
func Available() (bool, string) { return false, ErrUnsupported.Error() }

// ReportFD names the descriptor a supervisor passes for reports.
const ReportFD = "SLUICE_SEAL_REPORT_FD"

// FromEnv does nothing here: the process is not sealed.
func FromEnv([]string) (bool, error) { return false, nil }

// ServeReports returns at once: no worker is sealed here.
func ServeReports(conn *os.File, attempt func(op, what string)) error { return conn.Close() }

// InetOnly does nothing here: it returns ErrUnsupported.
func InetOnly() error { return ErrUnsupported }
