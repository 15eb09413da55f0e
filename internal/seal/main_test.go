package seal

import (
	"errors"
	"os"
	"syscall"
	"testing"
)

// The sealed process is this test binary, run again as a child, since a
// seal cannot be undone.
func TestMain(m *testing.M) {
	if os.Getenv("SEAL_CHILD") != "" {
		os.Exit(sealedChild())
	}
	os.Exit(m.Run())
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		return "refused"
	}
	return "error:" + err.Error()
}
