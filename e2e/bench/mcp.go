package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/supervisor"
)

// The MCP figures: the same echo call, once to the echo worker (a Go
// worker served by worker.Service, as every built-in worker is) and once
// to an MCP server that `sluice worker` serves as a run: mcp worker: the
// worker process starts it as its confined child and puts each call
// through it over stdio. The server is this binary (`bench
// mcp-echo-server`), a go-sdk server, so that the figure is the MCP path's
// overhead, not a runtime's; its cost is the go-sdk server's, so the same
// call is also measured against a server no one here wrote (below).
const mcpEchoManifest = `# The MCP echo server of the benchmarks (e2e/bench).
worker: mcpecho
run: mcp
command: [%q, mcp-echo-server]
tools:
  echo:
    privileged: false
    egress: false
    output_label: {integrity: trusted, secrecy: []}
    clearance: {integrity: untrusted, secrecy: []}
limits: {timeout: 10s, max_output: 64KiB}
`

const mcpEcho = `name: mcphop
inputs:
  text: {type: string}
steps:
  - {id: echo, call: mcpecho.echo, with: {text: "${inputs.text}"}}
outputs:
  text: "${steps.echo.output.text}"
`

// The same call to a server no one here wrote: the echo tool of the
// reference server-everything from npm (`make mcp-servers` installs it,
// pinned, into examples/mcp/node_modules), run by node. Its answer is the
// text after "Echo: ".
const everythingEchoManifest = `# The reference MCP server-everything's echo (e2e/bench).
worker: mcpeverything
run: mcp
command: [%q, %q, stdio]
command_files: [%q]
tools:
  echo:
    privileged: false
    egress: false
    output_label: {integrity: trusted, secrecy: []}
    clearance: {integrity: untrusted, secrecy: []}
limits: {timeout: 10s, max_output: 64KiB}
`

const everythingEcho = `name: everythinghop
inputs:
  text: {type: string}
steps:
  - {id: echo, call: mcpeverything.echo, with: {message: "${inputs.text}"}}
outputs:
  text: "${steps.echo.output.text}"
`

// everythingServer is node (by its path: the bench's workers have no
// PATH), the reference server's script and its node_modules, or why it
// cannot run.
func everythingServer() (node, script, modules string, err error) {
	if node, err = exec.LookPath("node"); err != nil {
		return "", "", "", errors.New("node is not installed")
	}
	if node, err = filepath.Abs(node); err != nil {
		return "", "", "", err
	}
	modules, err = filepath.Abs(filepath.Join("examples", "mcp", "node_modules"))
	if err != nil {
		return "", "", "", err
	}
	script = filepath.Join(modules, "@modelcontextprotocol", "server-everything", "dist", "index.js")
	if _, err := os.Stat(script); err != nil {
		return "", "", "", errors.New("@modelcontextprotocol/server-everything is not installed (make mcp-servers)")
	}
	return node, script, modules, nil
}

// mcpEchoServer is the MCP echo server process: one tool, echo, whose
// structured output is its argument, over stdio until stdin closes.
func mcpEchoServer(args []string) error {
	if len(args) != 0 {
		return errors.New("takes no arguments")
	}
	type text struct {
		Text string `json:"text"`
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "bench-echo", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Return the text unchanged."},
		func(_ context.Context, _ *mcp.CallToolRequest, in text) (*mcp.CallToolResult, text, error) {
			return nil, in, nil
		})
	return s.Run(context.Background(), &mcp.StdioTransport{})
}

// mcpFigures measures a one-step flow calling mcpecho.echo, and one
// calling mcpeverything.echo (where node and the reference server are
// installed; else its figures are n/a, saying why), beside the same flow
// calling echo.echo, all in one orchestrator, run by run in turn, at one
// caller and at 16.
func mcpFigures(res *results, o options, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dep, err := writeEcho(dir)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	manifest := filepath.Join(dir, "mcpecho.yaml")
	if err := os.WriteFile(manifest, fmt.Appendf(nil, mcpEchoManifest, self), 0o600); err != nil {
		return err
	}
	manifests := []string{manifest}
	node, script, modules, noEverything := everythingServer()
	if noEverything == nil {
		m := filepath.Join(dir, "mcpeverything.yaml")
		if err := os.WriteFile(m, fmt.Appendf(nil, everythingEchoManifest, node, script, modules), 0o600); err != nil {
			return err
		}
		manifests = append(manifests, m)
	}
	for _, m := range manifests {
		// The server's tools, listed as a person would: sluice worker discover.
		if out, err := exec.CommandContext(ctx, o.sluice, "worker", "discover", "--manifest", m).CombinedOutput(); err != nil {
			return fmt.Errorf("discover %s: %v: %s", filepath.Base(m), err, out)
		}
		dep += fmt.Sprintf("  - manifest: %q\n", m)
	}
	cfg, err := config.Parse("sluice.yaml", []byte(dep), dir)
	if err != nil {
		return err
	}
	echo, err := echoCommand()
	if err != nil {
		return err
	}
	orch, err := orchestrator.New(orchestrator.Config{Deployment: cfg, Executable: o.sluice,
		WorkerCommand: func(w supervisor.Worker) *exec.Cmd {
			if slices.Contains(manifests, w.Ref) {
				return exec.Command(o.sluice, "worker", "--manifest", w.Ref)
			}
			return echo(w)
		}})
	if err != nil {
		return err
	}
	if err := orch.Start(ctx); err != nil {
		orch.Close()
		return err
	}
	defer orch.Close()
	builtin, err := runner(ctx, orch, cfg, "hop.yaml", oneEcho)
	if err != nil {
		return err
	}
	viaMCP, err := runner(ctx, orch, cfg, "mcphop.yaml", mcpEcho)
	if err != nil {
		return err
	}
	type path struct {
		name string
		f    func() error
	}
	paths := []path{{"mcp", viaMCP}}
	if noEverything == nil {
		f, err := runnerAnswering(ctx, orch, cfg, "everythinghop.yaml", everythingEcho, "Echo: ")
		if err != nil {
			return err
		}
		paths = append(paths, path{"everything", f})
	}
	paths = append(paths, path{"builtin", builtin})
	for _, p := range paths {
		if _, err := measure(4, 300*time.Millisecond, p.f); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	type key struct {
		path string
		c    int
	}
	all := map[key][]stats{}
	for range o.runs {
		for _, c := range []int{1, 16} {
			for _, p := range paths {
				s, err := measure(c, o.dur, p.f)
				if err != nil {
					return fmt.Errorf("%s at %d: %w", p.name, c, err)
				}
				all[key{p.name, c}] = append(all[key{p.name, c}], s)
			}
		}
	}
	med := func(k key, f func(stats) float64) float64 {
		var xs []float64
		for _, s := range all[k] {
			xs = append(xs, f(s))
		}
		return median(xs)
	}
	p50 := func(s stats) float64 { return s.p50 }
	p99 := func(s stats) float64 { return s.p99 }
	for _, c := range []int{1, 16} {
		m, b := key{"mcp", c}, key{"builtin", c}
		res.fig(fmt.Sprintf("mcp_p50_%d", c), med(m, p50), "us")
		res.fig(fmt.Sprintf("mcp_p99_%d", c), med(m, p99), "us")
		res.fig(fmt.Sprintf("mcp_builtin_p50_%d", c), med(b, p50), "us")
		res.fig(fmt.Sprintf("mcp_overhead_p50_%d", c), med(m, p50)-med(b, p50), "us")
		if noEverything == nil {
			e := key{"everything", c}
			res.fig(fmt.Sprintf("mcp_everything_p50_%d", c), med(e, p50), "us")
			res.fig(fmt.Sprintf("mcp_everything_p99_%d", c), med(e, p99), "us")
			res.fig(fmt.Sprintf("mcp_everything_overhead_p50_%d", c), med(e, p50)-med(b, p50), "us")
		}
	}
	if noEverything != nil {
		var names []string
		for _, c := range []int{1, 16} {
			for _, f := range []string{"p50", "p99", "overhead_p50"} {
				names = append(names, fmt.Sprintf("mcp_everything_%s_%d", f, c))
			}
		}
		res.notDone("the reference server-everything cannot run: "+noEverything.Error(), names...)
	}
	for _, c := range []int{1, 16} {
		m, b := key{"mcp", c}, key{"builtin", c}
		res.ratio(fmt.Sprintf("mcp_p50_%d", c), med(m, p50)/med(b, p50))
		if noEverything == nil {
			res.ratio(fmt.Sprintf("mcp_everything_p50_%d", c), med(key{"everything", c}, p50)/med(b, p50))
		}
	}
	return nil
}
