package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Every shipped example lints clean with its own configuration.
func TestExamplesLint(t *testing.T) {
	dirs, err := filepath.Glob("../examples/*/sluice.yaml")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, cfg := range dirs {
		dir := filepath.Dir(cfg)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
			var flows []string
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains("\n"+string(b), "\nsteps:") {
					flows = append(flows, filepath.Base(f))
				}
			}
			if len(flows) == 0 && filepath.Base(dir) != "deploy" {
				// Only the deployment files (examples/deploy) are a
				// configuration without flows: lint checks it alone.
				t.Fatal("no flows in the example")
			}
			configs, _ := filepath.Glob(filepath.Join(dir, "sluice*.yaml"))
			for _, c := range configs {
				cmd := exec.Command(sluiceBin, append([]string{"lint", "--config", filepath.Base(c)}, flows...)...)
				cmd.Dir = dir
				out, err := cmd.CombinedOutput()
				if err != nil || len(out) != 0 {
					t.Errorf("sluice lint --config %s %v: %v\n%s", filepath.Base(c), flows, err, out)
				}
			}
		})
	}
}
