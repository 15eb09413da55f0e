package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/schemas"
)

func lintCommand() *command {
	return &command{
		name:  "lint",
		usage: "lint [FLOW.yaml …] [--json] [--config FILE] [--max-errors N]",
		short: "check flows, policies, manifests and sluice.yaml without running anything",
		long: `Checks the configuration (sluice.yaml, else the built-in defaults), the
manifests and policies it names, and each flow given, exactly as 'sluice run'
would before starting anything. Prints nothing and exits 0 when all is well;
otherwise prints every problem with its file:line:col and exits 1.
Warnings are printed too, and alone do not fail: a step that calls a tool
reaching the network (web.fetch) when its worker has no net grant is one.

Besides the shape of each file, it finds what would fail only once a run
is under way: a field a step's output does not have (by its tool's output
schema or its agent's output_schema), an expression whose types do not
go together ('x' + a number input), and a worker config block with an
unknown key, backend or value, or a script file that is not there.

--json prints {"diagnostics": [{file, line, col, code, severity, message}]}
for editors and CI (schemas/output/lint.json, docs/json.md).

Examples:
  sluice lint --config examples/travel/sluice.yaml examples/travel/book.yaml
  sluice lint --config deploy/sluice.yaml flows/*.yaml --json`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			asJSON := fs.Bool("json", false, "print diagnostics as JSON")
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			maxErrors := fs.Int("max-errors", 50, "show at most `N` problems (0: all)")
			return func(c *cli, _ context.Context, args []string) int {
				ds := c.lint(*cfgFile, args)
				ds.Sort()
				if *asJSON {
					out := struct {
						Diagnostics schemas.Diagnostics `json:"diagnostics"`
					}{append(schemas.Diagnostics{}, ds...)}
					b, _ := json.MarshalIndent(out, "", "  ")
					fmt.Fprintln(c.stdout, string(b))
				} else if len(ds) > 0 {
					shown := ds
					if *maxErrors > 0 && len(ds) > *maxErrors {
						shown = ds[:*maxErrors]
					}
					c.report(shown)
					if len(shown) < len(ds) {
						fmt.Fprintf(c.stderr, "… and %d more\n", len(ds)-len(shown))
					}
				}
				if ds.Err() != nil {
					return exitFailure
				}
				return exitOK
			}
		},
	}
}

// lint collects every problem of the configuration, its manifests and
// policies, and the flows.
func (c *cli) lint(cfgFile string, flows []string) schemas.Diagnostics {
	var ds schemas.Diagnostics
	var add func(file string, err error)
	add = func(file string, err error) {
		if err == nil {
			return
		}
		if d, ok := schemas.AsDiagnostics(err); ok {
			ds = append(ds, d...)
			return
		}
		var joined interface{ Unwrap() []error }
		if errors.As(err, &joined) {
			for _, e := range joined.Unwrap() {
				add(file, e)
			}
			return
		}
		ds = append(ds, schemas.Diagnostic{File: file, Code: "io_error", Severity: schemas.SeverityError, Message: err.Error()})
	}
	dep, err := c.loadConfig(cfgFile)
	if err != nil {
		add(cfgFile, err)
		return ds
	}
	orch, err := orchestrator.New(orchestrator.Config{Deployment: dep})
	if err != nil {
		add(dep.File, err)
		return ds
	}
	for _, f := range flows {
		if _, err := os.Stat(f); err != nil {
			add(f, err)
			continue
		}
		plan, err := orch.LoadFlow(f)
		add(f, err)
		if plan != nil {
			ds = append(ds, netGrantWarnings(plan, orch.Manifests(), dep)...)
		}
	}
	return ds
}

// netGrantWarnings warns of each step that calls a tool that reaches the
// network (egress: true in its manifest), itself or as an agent's or a
// plan's tool, when the tool's worker has no net grant: every such call
// would be refused by the egress broker. The warning names the line to add.
func netGrantWarnings(plan *flow.Plan, manifests map[string]*capabilities.Manifest, dep *config.Config) schemas.Diagnostics {
	where := "sluice.yaml"
	if dep.File != "" {
		where = dep.File
	}
	var ds schemas.Diagnostics
	local := localBackends(dep)
	warn := func(s *flow.Step, tool, worker string) {
		m := manifests[worker]
		if m == nil || len(m.Grants.Net) > 0 || local[worker] {
			return
		}
		how := fmt.Sprintf("add grants: {net: [\"HOST:PORT\"]} to the %s worker in %s", worker, where)
		if dep.File == "" {
			how = fmt.Sprintf("the built-in defaults grant none: write a sluice.yaml whose workers include {manifest: builtin:%s, grants: {net: [\"HOST:PORT\"]}}", worker)
		}
		ds = append(ds, schemas.Diagnostic{File: plan.File, Line: s.Pos.Line, Col: s.Pos.Col, Code: "flow_no_net_grant", Severity: schemas.SeverityWarning,
			Message: fmt.Sprintf("step %q calls %s, but worker %s has no net grant, so every host it asks for will be refused; %s", s.ID, tool, worker, how)})
	}
	for _, s := range plan.Steps {
		var tools []flow.AgentTool
		switch {
		case s.Agent != nil:
			tools = s.Agent.Tools
		case s.Plan != nil:
			tools = s.Plan.Tools
		default:
			if s.Spec != nil && s.Spec.Egress {
				warn(s, s.Call, s.Worker)
			}
			continue
		}
		for _, t := range tools {
			if t.Spec != nil && t.Spec.Egress {
				warn(s, t.Name, t.Worker)
			}
		}
	}
	return ds
}

// localBackends names the built-in workers whose configuration keeps their
// egress tools off the network: email without smtp (sent mail goes to the
// outbox), llm with a scripted model, payment on its local ledger. Their
// calls leave Sluice's labels behind (so the tools are egress), but never
// ask the broker for a host.
func localBackends(dep *config.Config) map[string]bool {
	out := map[string]bool{}
	for _, w := range dep.Workers {
		name, ok := strings.CutPrefix(w.Manifest, capabilities.BuiltinPrefix)
		if !ok {
			continue
		}
		var c struct {
			Backend string          `json:"backend"`
			SMTP    json.RawMessage `json:"smtp"`
		}
		_ = json.Unmarshal(w.Config, &c)
		switch name {
		case "email":
			out[name] = len(c.SMTP) == 0 || string(c.SMTP) == "null"
		case "llm":
			out[name] = c.Backend == "" || c.Backend == "scripted" || c.Backend == "hijackable"
		case "payment":
			out[name] = c.Backend == "" || c.Backend == "ledger"
		}
	}
	return out
}
