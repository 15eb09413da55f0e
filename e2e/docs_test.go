package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc/expr"
	"github.com/sluicehq/sluice/ifc/policy"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/flow"
)

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// Every complete YAML document in the README and docs/ loads: flows,
// policies, manifests and sluice.yaml. Docs that do not match the code are
// a bug.
func TestDocsYAMLLoads(t *testing.T) {
	files, _ := filepath.Glob("../docs/*.md")
	files = append(files, "../README.md")
	env, err := expr.NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	cat := flow.Catalog{}
	tools := policy.Tools{}
	for _, name := range capabilities.Builtins() {
		m, err := capabilities.Load(capabilities.BuiltinPrefix + name)
		if err != nil {
			t.Fatal(err)
		}
		cat[name] = m
		for _, tool := range m.Tools {
			tools[tool.Name] = tool.Input
		}
	}
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range yamlBlock.FindAllStringSubmatch(string(b), -1) {
			src := m[1]
			where := filepath.Base(f) + " block " + strconv.Itoa(i+1)
			switch {
			case strings.HasPrefix(src, "name:") && strings.Contains(src, "\nsteps:"):
				_, err = flow.Load(where, []byte(src), cat, env)
			case strings.HasPrefix(src, "rules:") || strings.HasPrefix(src, "caps:") || strings.HasPrefix(src, "registries:"):
				// Checked against the built-in workers' tools, as a
				// deployment on the defaults would load it.
				_, err = policy.Load(tools, policy.DefaultFile(), policy.File{Name: where, Src: []byte(src)})
			case strings.HasPrefix(src, "cases:"):
				_, err = policy.LoadCases(policy.File{Name: where, Src: []byte(src)})
			case strings.HasPrefix(src, "worker:"):
				_, err = capabilities.Parse(where, []byte(src), nil)
			case strings.HasPrefix(src, "workers:") || strings.HasPrefix(src, "nats:"):
				_, err = config.Parse(where, []byte(src), t.TempDir())
			default:
				continue // a fragment or a modeline example
			}
			checked++
			if err != nil {
				t.Errorf("%s:\n%v", where, err)
			}
		}
	}
	if checked < 4 {
		t.Fatalf("only %d YAML documents found in the docs", checked)
	}
}
