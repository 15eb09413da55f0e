//go:build !linux

package supervisor

import "os/exec"

// setProcAttr does nothing here: a worker notices the orchestrator's death
// when its bus connection closes, and exits.
func setProcAttr(*exec.Cmd) {}
