package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/engine"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/orchestrator/supervisor"
)

// planCalls is how many echo.echo calls the plan figures make.
const planCalls = 8

// planFlow: a plan whose program makes planCalls calls, one after the
// other; fixedFlow: the same calls as a fixed flow — a model call, then the
// echo calls, each reading the one before.
const planFlow = `name: plan
steps:
  - id: p
    plan: {model: llm, instructions: "Echo eight times.", tools: [echo.echo]}
outputs: {answer: "${steps.p.output}"}
`

func fixedFlow() string {
	var b strings.Builder
	b.WriteString("name: fixed\nsteps:\n  - id: c0\n    call: llm.chat\n    with: {messages: [{role: user, content: \"fixed flow\"}]}\n")
	prev := "${steps.c0.output.message.content}"
	for i := 1; i <= planCalls; i++ {
		fmt.Fprintf(&b, "  - id: e%d\n    call: echo.echo\n    with: {text: %q}\n", i, prev)
		prev = fmt.Sprintf("${steps.e%d.output.text}", i)
	}
	fmt.Fprintf(&b, "outputs: {answer: %q}\n", prev)
	return b.String()
}

// planScript answers the planner with the program, and the fixed flow's
// model call with a word.
const planScript = `- turn: 1
  match: "You are the planner"
  respond: |
    ` + "```python" + `
    t = "ok"
    for i in range(8):
        t = echo.echo(text=t)["text"]
    result = t
    ` + "```" + `
- turn: 1
  match: "fixed flow"
  respond: ok
`

// planFigures measures what interpreting a plan adds to a run beside its
// calls: the same model call and eight echo.echo calls, one after the
// other, as a plan step and as a fixed flow, each run one at a time
// through Orchestrator.Run; plan_overhead_us is the difference of the
// medians per run (the design's bound: 1 ms).
func planFigures(res *results, o options, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	orch, plans, err := startPlanBench(ctx, o, dir)
	if err != nil {
		return err
	}
	defer orch.Close()
	one := func(p *flow.Plan) (time.Duration, error) {
		start := time.Now()
		r, err := orch.Run(ctx, p, nil, engine.Options{})
		if err != nil {
			return 0, err
		}
		if r.Status != engine.StatusCompleted || r.Outputs["answer"] != "ok" {
			return 0, fmt.Errorf("%s run %s: %v", p.Name, r.Status, r.Outputs)
		}
		return time.Since(start), nil
	}
	// The first runs open the buckets and warm up.
	for _, p := range plans {
		if _, err := one(p); err != nil {
			return err
		}
	}
	var planUS, fixedUS []float64
	for range 5 * o.runs {
		// Alternated, so that the machine's load falls on both alike.
		tp, err := one(plans[0])
		if err != nil {
			return err
		}
		tf, err := one(plans[1])
		if err != nil {
			return err
		}
		planUS, fixedUS = append(planUS, float64(tp.Microseconds())), append(fixedUS, float64(tf.Microseconds()))
	}
	res.fig("plan_run_us", median(planUS), "µs per run (a planner call and 8 calls, as a plan)")
	res.fig("plan_fixed_run_us", median(fixedUS), "µs per run (the same calls as a fixed flow)")
	res.fig("plan_overhead_us", median(planUS)-median(fixedUS), "µs per run")
	return nil
}

// startPlanBench starts an orchestrator with the echo worker and the
// scripted llm worker, and loads the plan flow and the fixed flow.
func startPlanBench(ctx context.Context, o options, dir string) (*orchestrator.Orchestrator, []*flow.Plan, error) {
	dep, err := writeEcho(dir)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "script.yaml"), []byte(planScript), 0o600); err != nil {
		return nil, nil, err
	}
	dep += "  - manifest: builtin:llm\n    config: {script: script.yaml}\n"
	cfg, err := config.Parse("sluice.yaml", []byte(dep), dir)
	if err != nil {
		return nil, nil, err
	}
	echo, err := echoCommand()
	if err != nil {
		return nil, nil, err
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
		return nil, nil, err
	}
	if err := orch.Start(ctx); err != nil {
		orch.Close()
		return nil, nil, err
	}
	ms, err := cfg.Manifests()
	if err != nil {
		orch.Close()
		return nil, nil, err
	}
	var plans []*flow.Plan
	for name, src := range map[string]string{"plan.yaml": planFlow, "fixed.yaml": fixedFlow()} {
		p, err := flow.Load(name, []byte(src), flow.Catalog(ms), mustEnv())
		if err != nil {
			orch.Close()
			return nil, nil, err
		}
		plans = append(plans, p)
	}
	if plans[0].Name != "plan" {
		plans[0], plans[1] = plans[1], plans[0]
	}
	return orch, plans, nil
}
