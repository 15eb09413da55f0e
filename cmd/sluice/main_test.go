package main

import (
	"os"
	"testing"

	"github.com/sluicehq/sluice/worker/mcp"
)

// TestMain answers sluice doctor's namespace probe as the sluice binary
// does: doctor, run in this test binary, starts it again to probe.
func TestMain(m *testing.M) {
	if os.Getenv(mcp.ProbeEnv) == "1" {
		os.Exit(0)
	}
	os.Exit(m.Run())
}
