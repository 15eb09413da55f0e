package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/orchestrator"
)

func upCommand() *command {
	return &command{
		name:  "up",
		usage: "up [--config FILE] [-q]",
		short: "run the orchestrator, the bus and every worker until stopped",
		long: `Starts the orchestrator with its embedded NATS server (JetStream state under
the state directory), or on the external server named by nats: in sluice.yaml
(docs/operations.md), and every configured worker as its own process, each
with credentials of its own; restarts workers that die; stops everything on
SIGINT or SIGTERM, leaving no worker behind.

While it runs, 'sluice run' submits runs to it and 'sluice approve' answers
its held calls. Where it is reachable is written to <state>/run/api.json.

Examples:
  sluice up
  sluice up --config deploy/sluice.yaml`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			quiet := fs.Bool("q", false, "log warnings and errors only")
			return func(c *cli, ctx context.Context, args []string) int {
				if len(args) > 0 {
					c.errorf("up takes no arguments")
					return exitUsage
				}
				level := slog.LevelInfo
				if *quiet {
					level = slog.LevelWarn
				}
				log := c.logger(level, false)
				dep, err := c.loadConfig(*cfgFile)
				if err != nil {
					c.report(err)
					return exitFailure
				}
				orch, err := orchestrator.New(orchestrator.Config{Deployment: dep, Log: log, Getenv: c.getenv, ResumeRuns: true})
				if err != nil {
					c.report(err)
					return exitFailure
				}
				start := time.Now()
				if err := orch.Start(ctx); err != nil {
					orch.Close()
					c.report(err)
					return exitFailure
				}
				pids := orch.Pids()
				var workers []string
				for name, ps := range pids {
					workers = append(workers, fmt.Sprintf("%s %v", name, ps))
				}
				slices.Sort(workers)
				fmt.Fprintf(c.stderr, "sluice is up in %s: state %s, bus %s\n  workers: %s\n  stop with Ctrl-C\n",
					time.Since(start).Round(time.Millisecond), dep.State, orch.ClientURL(), strings.Join(workers, ", "))
				<-ctx.Done()
				fmt.Fprintln(c.stderr, "stopping…")
				orch.Close()
				fmt.Fprintln(c.stderr, "stopped")
				return exitOK
			}
		},
	}
}
