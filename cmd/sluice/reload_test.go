package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Without an orchestrator there is nothing to reload: it says so, with
// the state directory, and exits 1; a broken configuration is reported
// with its position before anything is asked.
func TestReloadWithoutOrchestrator(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCLI(t, dir, "reload")
	if code != exitFailure || out != "" || !strings.Contains(errOut, "no orchestrator is running") || !strings.Contains(errOut, filepath.Join(dir, ".sluice")) {
		t.Fatalf("reload with no orchestrator: exit %d\n%s%s", code, out, errOut)
	}
	os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte("workers:\n  - manifest: builtin:payment\n    replica: 2\n"), 0o644)
	code, _, errOut = runCLI(t, dir, "reload")
	if code != exitFailure || !strings.Contains(errOut, "sluice.yaml:3:5: ") {
		t.Fatalf("reload with a broken sluice.yaml: exit %d\n%s", code, errOut)
	}
	if code, _, _ := runCLI(t, dir, "reload", "extra"); code != exitUsage {
		t.Fatalf("reload with an argument: exit %d, want %d", code, exitUsage)
	}
	_, out, _ = runCLI(t, dir, "run", "--help")
	for _, want := range []string{"--use-running", "sluice reload", "the run is refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("run --help lacks %q", want)
		}
	}
}
