package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"time"

	"github.com/sluicehq/sluice/internal/display"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/orchestrator/engine"
)

func cancelCommand() *command {
	return &command{
		name:  "cancel",
		usage: "cancel RUN [RUN …] | cancel --interrupted [--as NAME] [--config FILE]",
		short: "end runs for good: never resumed",
		long: `Ends runs that have not finished — interrupted, held, or running — for
good. A step under way is stopped (a call already made stays made; none is
made again), the run's held calls can no longer be approved, the audit log
records the run as cancelled and by whom, and no orchestrator ever resumes
it. sluice runs shows it as cancelled.

--interrupted cancels every interrupted run: those a person interrupted
(Ctrl-C on sluice run), and, when no orchestrator runs, those that were
running when theirs stopped.

With an orchestrator running on the state directory (sluice up, or a
sluice run that waits), it asks that orchestrator. Otherwise it opens the
state directory itself, holding its lock as an orchestrator does for as
long as it writes.

With several orchestrators on one bus, any of them cancels any run: one
that does not drive the run asks the one that does, and says which
cancelled it ("in orchestrator ID"). When that one died, the cancel waits
until its lease expires (within 10 s), then takes it and cancels the run.

Examples:
  sluice cancel 01JD6Z4W8X2F3K5N7Q9R1T3V5X
  sluice cancel --interrupted`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			interrupted := fs.Bool("interrupted", false, "cancel every interrupted run")
			as := fs.String("as", "", "who is cancelling, recorded in the audit log (default: the OS user)")
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			return func(c *cli, ctx context.Context, args []string) int {
				if (len(args) == 0) == !*interrupted {
					c.errorf("cancel: give run ids, or --interrupted (not both)")
					return exitUsage
				}
				who := *as
				if who == "" {
					who = osUser()
				}
				return c.cancel(ctx, *cfgFile, args, *interrupted, who)
			}
		},
	}
}

// canceller is a running orchestrator or the store opened for writing.
type canceller interface {
	Unfinished(ctx context.Context) ([]engine.RunInfo, error)
	Cancel(ctx context.Context, id, who string) (*engine.RunInfo, error)
}

func (c *cli) cancel(ctx context.Context, cfgFile string, ids []string, interrupted bool, who string) int {
	dep, err := c.loadConfig(cfgFile)
	if err != nil {
		c.report(err)
		return exitFailure
	}
	ctx, stop := context.WithTimeout(ctx, 2*time.Minute)
	defer stop()
	var to canceller
	live := false
	if client, err := api.Dial(dep.State); err == nil {
		defer client.Close()
		to, live = client, true
	} else {
		off, err := orchestrator.OpenOffline(ctx, dep, c.getenv)
		if err != nil {
			c.errorf("cancel: %v", err)
			return exitFailure
		}
		defer off.Close()
		to = off
	}
	if interrupted {
		runs, err := to.Unfinished(ctx)
		if err != nil {
			c.errorf("cancel: %v", err)
			return exitFailure
		}
		for _, r := range runs {
			if r.Status == "interrupted" || (r.Status == "running" && !live) {
				ids = append(ids, r.ID)
			}
		}
		if len(ids) == 0 {
			fmt.Fprintln(c.stdout, "no interrupted run")
			return exitOK
		}
	}
	code := exitOK
	var done []string
	for _, id := range ids {
		if slices.Contains(done, id) {
			continue
		}
		done = append(done, id)
		r, err := to.Cancel(ctx, id, who)
		if err != nil {
			c.errorf("cancel %s: %v", show(id), err)
			code = exitFailure
			continue
		}
		line := fmt.Sprintf("%s (%s): cancelled by %s", show(r.ID), show(r.Flow), show(who))
		if r.CancelledIn != "" {
			line += " in orchestrator " + show(r.CancelledIn)
		}
		line += "; it was " + show(r.Status)
		if len(r.StoppedAt) > 0 {
			line += " at step " + display.List(r.StoppedAt)
		}
		if r.TakenFrom != "" {
			line += fmt.Sprintf("; orchestrator %s, which drove it, did not answer: its lease was taken once it expired", show(r.TakenFrom))
		}
		fmt.Fprintln(c.stdout, line+"; it will not be resumed")
	}
	return code
}
