//go:build !linux

package supervisor

import (
	"log/slog"
	"os/exec"
)

// setProcAttr does nothing here: a worker notices the orchestrator's death
// when its bus connection closes, and exits.
func setProcAttr(*exec.Cmd) {}

// serveSeal does nothing here: no worker seals itself off the network.
func serveSeal(*exec.Cmd, func(op, what string), *slog.Logger) (func(), error) { return func() {}, nil }
