package main

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

// landlockWhyNot tells the reasons the probe can give apart: a filter
// refusing the calls, Landlock not enabled at boot, no Landlock.
func TestLandlockWhyNot(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{syscall.EPERM, "allow landlock_create_ruleset, landlock_add_rule and landlock_restrict_self"},
		{syscall.EACCES, "refused (permission denied) by"},
		{syscall.EOPNOTSUPP, "add landlock to the lsm= boot parameter"},
		{errors.ErrUnsupported, "not offered by this kernel"},
	} {
		if got := landlockWhyNot(c.err); !strings.Contains(got, c.want) {
			t.Errorf("landlockWhyNot(%v) = %q, want it to contain %q", c.err, got, c.want)
		}
	}
}
