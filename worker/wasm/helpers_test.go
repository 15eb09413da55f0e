package wasm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
	"github.com/sluicehq/sluice/worker/wasm"
)

// Guests built once per test binary, and one compilation cache shared by
// every test, so each module is compiled once.
var (
	reactorWasm string
	commandWasm string
	cacheDir    string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-wasm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	reactorWasm = filepath.Join(dir, "reactor.wasm")
	commandWasm = filepath.Join(dir, "command.wasm")
	cacheDir = filepath.Join(dir, "cache")
	for _, b := range []struct {
		out, pkg string
		reactor  bool
	}{{reactorWasm, "./testdata/reactor", true}, {commandWasm, "./testdata/command", false}} {
		if err := buildGuest(b.out, b.pkg, b.reactor); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildGuest(out, pkg string, reactor bool) error {
	args := []string{"build", "-o", out}
	if reactor {
		args = append(args, "-buildmode=c-shared")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// manifest returns a manifest for module with the given tools (all taking
// any object) and extra top-level YAML (grants, limits).
func manifest(t testing.TB, module string, tools []string, extra string) *capabilities.Manifest {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "worker: guest\nrun: wasm:%s\ntools:\n", module)
	for _, name := range tools {
		fmt.Fprintf(&b, "  %s: {input_schema: any.json}\n", name)
	}
	b.WriteString(extra)
	dir := fstest.MapFS{"any.json": {Data: []byte(`{"type": "object"}`)}}
	m, err := capabilities.Parse(filepath.Join(t.TempDir(), "guest.yaml"), []byte(b.String()), dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var reactorTools = []string{"echo", "remember", "loop", "bomb", "flood", "stderr", "panic", "crash", "exit",
	"fail", "forge", "fetch", "log", "read", "write", "symlink", "sandbox", "big", "key"}

func newModule(t testing.TB, m *capabilities.Manifest, pool int) *wasm.Module {
	t.Helper()
	mod, err := wasm.New(context.Background(), wasm.Config{Manifest: m, CacheDir: cacheDir, Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mod.Close(context.Background()) })
	return mod
}

// call runs one call and decodes its output.
func call(t testing.TB, mod *wasm.Module, tool, args string, egress func(context.Context, schemas.EgressRequest) (*schemas.EgressResponse, error)) (map[string]any, error) {
	t.Helper()
	out, err := mod.Call(context.Background(), worker.NewCall(tool, json.RawMessage(args), egress))
	if err != nil {
		return nil, err
	}
	var v map[string]any
	if err := json.Unmarshal(out.(json.RawMessage), &v); err != nil {
		t.Fatalf("output is not a JSON object: %v", err)
	}
	return v, nil
}
