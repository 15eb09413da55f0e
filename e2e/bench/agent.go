package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/engine"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/orchestrator/supervisor"
)

// agentTurns is how many answers the model of the agent figures gives: a
// tool call in each but the last.
const agentTurns = 8

const agentFlow = `name: agent
steps:
  - id: a
    agent: {model: llm, instructions: "Echo seven times.", tools: [echo.echo], max_turns: 8}
outputs: {answer: "${steps.a.output}"}
`

// agentScript is the model: a call of echo.echo in each turn but the last.
func agentScript() string {
	var b strings.Builder
	for t := 1; t < agentTurns; t++ {
		fmt.Fprintf(&b, "- turn: %d\n  match: \".\"\n  respond: {tool_calls: [{name: echo__echo, arguments: {text: \"turn %d\"}}]}\n", t, t)
	}
	fmt.Fprintf(&b, "- turn: %d\n  match: \".\"\n  respond: {content: \"done\"}\n", agentTurns)
	return b.String()
}

// agentFigures measures an agent step of eight model turns and seven tool
// calls: the time per model turn or tool call, and how many writes its
// checkpoints make in the run state (the steps bucket's stream), per model
// turn and tool call: the design allows one.
func agentFigures(res *results, o options, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dep, err := writeEcho(dir)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "script.yaml"), []byte(agentScript()), 0o600); err != nil {
		return err
	}
	dep += "  - manifest: builtin:llm\n    config: {script: script.yaml}\n"
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
			if w.Name == "echo" {
				return echo(w)
			}
			cmd := exec.Command(o.sluice, "worker", "--manifest", w.Ref)
			cmd.Dir = dir
			return cmd
		}})
	if err != nil {
		return err
	}
	if err := orch.Start(ctx); err != nil {
		orch.Close()
		return err
	}
	defer orch.Close()
	ms, err := cfg.Manifests()
	if err != nil {
		return err
	}
	plan, err := flow.Load("agent.yaml", []byte(agentFlow), flow.Catalog(ms), mustEnv())
	if err != nil {
		return err
	}
	nc, err := orch.Connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	lastSeq := func() (uint64, error) {
		s, err := js.Stream(ctx, "KV_"+engine.StepsBucket)
		if err != nil {
			return 0, err
		}
		return s.CachedInfo().State.LastSeq, nil
	}
	one := func() (time.Duration, error) {
		start := time.Now()
		r, err := orch.Run(ctx, plan, nil, engine.Options{})
		if err != nil {
			return 0, err
		}
		if r.Status != engine.StatusCompleted || r.Outputs["answer"] != "done" {
			return 0, fmt.Errorf("agent run %s: %v", r.Status, r.Outputs)
		}
		return time.Since(start), nil
	}
	// The first run opens the buckets and warms up.
	if _, err := one(); err != nil {
		return err
	}
	once := func() (time.Duration, uint64, error) {
		before, err := lastSeq()
		if err != nil {
			return 0, 0, err
		}
		took, err := one()
		if err != nil {
			return 0, 0, err
		}
		after, err := lastSeq()
		return took, after - before, err
	}
	calls := float64(2*agentTurns - 1)
	var per, writes []float64
	for range 5 * o.runs {
		took, n, err := once()
		if err != nil {
			return err
		}
		per = append(per, float64(took.Microseconds())/calls)
		writes = append(writes, float64(n)/calls)
	}
	res.fig("agent_call_us", median(per), "µs per model turn or tool call")
	res.fig("agent_checkpoint_writes_per_call", median(writes), "writes")
	return nil
}
