package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os/user"
	"slices"
	"time"

	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/orchestrator/engine"
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
		usage: name + " APPROVAL_ID [--as NAME] [--hash HASH] [--config FILE]",
		short: short,
		long: fmt.Sprintf(`Answers a call that policy held for a person (sluice approvals lists them).
approve lets that one call through, once, with exactly the arguments shown;
nothing else in the run is endorsed. deny fails the step.

The answer is bound to the call's hash (of its run, tool, arguments and
labels): it is refused if the held call is not the one shown, was already
answered or used, or was replaced by a changed call. With --hash, the hash
must be the one you reviewed (sluice approvals --json shows it).

The running orchestrator (sluice up, or a sluice run waiting) is found
through the state directory. Answers are stored durably: a held run resumes
when answered, also after the orchestrator restarted.

A call denied by a policy rule is never held, and cannot be approved.

Example:
  sluice %s 01JD6Z4W8X2F3K5N7Q9R1T3V5X`, verb),
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			as := fs.String("as", "", "who is answering (default: the OS user)")
			hash := fs.String("hash", "", "the `hash` of the call you reviewed (default: the call as it is held now)")
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			return func(c *cli, ctx context.Context, args []string) int {
				if len(args) != 1 {
					c.errorf("%s: give exactly one approval id", name)
					return exitUsage
				}
				who := *as
				if who == "" {
					who = osUser()
				}
				client, code := c.dialOrchestrator(*cfgFile, name+" "+args[0])
				if client == nil {
					return code
				}
				defer client.Close()
				ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				a, err := client.Approval(ctx, args[0])
				if err != nil {
					c.errorf("%s %s: %v", name, args[0], err)
					return exitFailure
				}
				h := *hash
				if h == "" {
					h = a.Hash
				}
				if err := client.Answer(ctx, args[0], approve, who, h); err != nil {
					c.errorf("%s %s: %v", name, args[0], err)
					return exitFailure
				}
				past := map[bool]string{true: "approved", false: "denied"}[approve]
				fmt.Fprintf(c.stdout, "%s: %s by %s: %s in run %s (step %s)\n", show(args[0]), past, show(who), show(a.Tool), show(a.RunID), show(a.Step))
				printArgs(c.stdout, a, "  ")
				return exitOK
			}
		},
	}
}

// dialOrchestrator connects to the orchestrator running on the state of
// the configuration; it reports a failure under what and returns its exit
// code.
func (c *cli) dialOrchestrator(cfgFile, what string) (*api.Client, int) {
	dep, err := c.loadConfig(cfgFile)
	if err != nil {
		c.report(err)
		return nil, exitFailure
	}
	client, err := api.Dial(dep.State)
	if err != nil {
		c.errorf("%s: %v", what, err)
		return nil, exitFailure
	}
	return client, exitOK
}

func osUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

func approvalsCommand() *command {
	return &command{
		name:  "approvals",
		usage: "approvals [--json] [--config FILE]",
		short: "list the calls waiting for a person",
		long: `Lists every call that policy held for a person and that is still waiting,
oldest first: the run and step, the tool, the exact arguments that would be
sent, each argument's label and the sources that influenced it (the page,
the sender of the mail), and why it was held. Held calls are kept in
JetStream: they outlive the orchestrator. With none running, this lists
them from a private copy of the store (it never locks the state directory
or writes to it); answering them needs a running orchestrator (sluice up).

With --json, prints one JSON array of approvals, each with its id, run_id,
step, tool, args, arg_labels, label, reasons, rules, hash and created time.

Examples:
  sluice approvals
  sluice approvals --json | jq '.[] | {id, tool, args}'`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			asJSON := fs.Bool("json", false, "print the approvals as a JSON array")
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			return func(c *cli, ctx context.Context, args []string) int {
				if len(args) > 0 {
					c.errorf("approvals takes no arguments")
					return exitUsage
				}
				r, err := c.openReader(*cfgFile)
				if err != nil {
					c.report(err)
					return exitFailure
				}
				defer r.Close()
				ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				defer cancel()
				list, err := r.approvals(ctx)
				if err != nil {
					c.errorf("approvals: %v", err)
					return exitFailure
				}
				if *asJSON {
					if list == nil {
						list = []engine.Approval{}
					}
					b, _ := json.MarshalIndent(list, "", "  ")
					fmt.Fprintln(c.stdout, string(b))
					return exitOK
				}
				if len(list) == 0 {
					fmt.Fprintln(c.stdout, "no call is waiting for approval")
					return exitOK
				}
				for i := range list {
					a := &list[i]
					fmt.Fprintf(c.stdout, "%s  %s  run %s (%s), step %s, held %s\n", show(a.ID), show(a.Tool), show(a.RunID), show(a.Flow), show(a.Step),
						a.Created.Local().Format(time.DateTime))
					printArgs(c.stdout, a, "    ")
					why := a.Why
					if len(why) == 0 {
						why = a.Reasons
					}
					for _, w := range why {
						fmt.Fprintf(c.stdout, "    why: %s\n", show(w))
					}
					fmt.Fprintf(c.stdout, "    approve: sluice approve %s    deny: sluice deny %s\n\n", show(a.ID), show(a.ID))
				}
				fmt.Fprintf(c.stdout, "%d call(s) waiting\n", len(list))
				if !r.live() {
					fmt.Fprintln(c.stderr, "no orchestrator is running on this state directory: start one (sluice up) to answer them")
				}
				return exitOK
			}
		},
	}
}

// printArgs shows exactly what a held call would send, with each
// argument's label and sources.
func printArgs(w io.Writer, a *engine.Approval, indent string) {
	for _, name := range sortedKeys(a.Args) {
		l := a.ArgLabels[name]
		fmt.Fprintf(w, "%s%-10s = %s\n%s%-10s   %s\n", indent, show(name), showJSON(a.Args[name]), indent, "",
			describe(l.Integrity().String(), l.Secrecy(), l.Sources()))
	}
	printLookalikes(w, a.Lookalikes, indent)
}
