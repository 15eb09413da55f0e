package main

import (
	"context"
	"flag"
	"fmt"
	"os/user"
	"slices"
	"time"

	"github.com/sluicehq/sluice/orchestrator/api"
)

func slicesSort(s []string) { slices.Sort(s) }

func approveCommand(approve bool) *command {
	name, verb := "approve", "approve"
	short := "approve a held call"
	if !approve {
		name, verb, short = "deny", "deny", "deny a held call"
	}
	return &command{
		name:  name,
		usage: name + " APPROVAL_ID [--as NAME] [--config FILE]",
		short: short,
		long: fmt.Sprintf(`Answers a call that policy held for a person: %s lets that one call
through with exactly the arguments that were shown, nothing else in the run.
The running orchestrator is found through the state directory.

A call denied by a policy rule is never held, and cannot be approved.

Example:
  sluice %s 01JD6Z4W8X2F3K5N7Q9R1T3V5X`, verb, name),
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			as := fs.String("as", "", "who is answering (default: the OS user)")
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			return func(c *cli, ctx context.Context, args []string) int {
				if len(args) != 1 {
					c.errorf("%s: give exactly one approval id", name)
					return exitUsage
				}
				who := *as
				if who == "" {
					if u, err := user.Current(); err == nil {
						who = u.Username
					} else {
						who = "unknown"
					}
				}
				dep, err := c.loadConfig(*cfgFile)
				if err != nil {
					c.report(err)
					return exitFailure
				}
				ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				if err := api.Answer(ctx, dep.State, args[0], approve, who); err != nil {
					c.errorf("%s %s: %v", name, args[0], err)
					return exitFailure
				}
				past := map[bool]string{true: "approved", false: "denied"}[approve]
				fmt.Fprintf(c.stdout, "%s: %s by %s\n", args[0], past, who)
				return exitOK
			}
		},
	}
}
