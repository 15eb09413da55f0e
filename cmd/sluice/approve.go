package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/user"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/orchestrator/approval"
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
		usage: name + " APPROVAL_ID… | --step RUN/STEP [--as NAME] [--hash HASH] [--config FILE]" + rememberUsage(approve),
		short: short,
		long: fmt.Sprintf(`Answers a call that policy held for a person (sluice approvals lists them).
approve lets that one call through, once, with exactly the arguments shown;
nothing else in the run is endorsed (unless --endorse). deny fails the step.

The answer is bound to the call's hash (of its run, tool, arguments and
labels): it is refused if the held call is not the one shown, was already
answered or used, or was replaced by a changed call. With --hash, the hash
must be the one you reviewed (sluice approvals --json shows it).

The running orchestrator (sluice up, or a sluice run waiting) is found
through the state directory. Answers are stored durably: a held run resumes
when answered, also after the orchestrator restarted.

Several ids answer several calls; --step RUN/STEP answers every call of
that step still held (the elements of a for_each, listed together by sluice
approvals). Each is answered on its own and bound to its own hash; the
command prints each call it answered, and exits 1 if any answer was refused.

A call denied by a policy rule is never held, and cannot be approved.
%s%s
Examples:
  sluice %s 01JD6Z4W8X2F3K5N7Q9R1T3V5X
  sluice %s --step 01JD6Z2A8C1M0QWN5V7X9B3D4F/pay%s%s`, rememberHelp(approve), endorseHelp(approve), verb, verb, rememberExample(approve), endorseExample(approve)),
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			as := fs.String("as", "", "who is answering (default: the OS user)")
			hash := fs.String("hash", "", "the `hash` of the call you reviewed (default: the call as it is held now)")
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			step := fs.String("step", "", "answer every call still held in `RUN/STEP` (a for_each's elements)")
			remember := rememberFlags(fs, approve)
			endorse := endorseFlags(fs, approve)
			return func(c *cli, ctx context.Context, args []string) int {
				scope, err := remember.scope()
				if err != nil {
					c.errorf("%s: %v", name, err)
					return exitUsage
				}
				en, err := endorse.scope()
				if err != nil {
					c.errorf("%s: %v", name, err)
					return exitUsage
				}
				if scope != nil && (len(args) != 1 || *step != "") {
					c.errorf("%s: --remember keeps one answer: give exactly one approval id with it", name)
					return exitUsage
				}
				if en != nil && (len(args) != 1 || *step != "") {
					c.errorf("%s: --endorse endorses the values of one call: give exactly one approval id with it", name)
					return exitUsage
				}
				switch {
				case *step == "" && len(args) == 0:
					c.errorf("%s: give an approval id (sluice approvals lists them), or --step RUN/STEP", name)
					return exitUsage
				case *step != "" && len(args) > 0:
					c.errorf("%s: give approval ids or --step, not both", name)
					return exitUsage
				case *hash != "" && (len(args) != 1 || *step != ""):
					c.errorf("%s: --hash binds one answer: give exactly one approval id with it", name)
					return exitUsage
				}
				who := *as
				if who == "" {
					who = osUser()
				}
				what := name + " " + strings.Join(args, " ")
				if *step != "" {
					what = name + " --step " + *step
				}
				client, code := c.dialOrchestrator(*cfgFile, what)
				if client == nil {
					return code
				}
				defer client.Close()
				ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				defer cancel()
				ids := args
				if *step != "" {
					var err error
					if ids, err = heldInStep(ctx, client, *step); err != nil {
						c.errorf("%s --step %s: %v", name, *step, err)
						return exitFailure
					}
				}
				failed := false
				for _, id := range ids {
					req := api.AnswerRequest{ID: id, Approved: approve, Who: who, Hash: *hash, Remember: scope, Endorse: en}
					if !c.answer(ctx, client, name, req) {
						failed = true
					}
				}
				if failed {
					return exitFailure
				}
				return exitOK
			}
		},
	}
}

// answer answers one held call, bound to hash (the call as held now when
// empty), and prints it; false when the answer was refused.
func (c *cli) answer(ctx context.Context, client *api.Client, name string, req api.AnswerRequest) bool {
	id, approve, who := req.ID, req.Approved, req.Who
	a, err := client.Approval(ctx, id)
	if err != nil {
		c.errorf("%s %s: %v", name, id, err)
		return false
	}
	if req.Hash == "" {
		req.Hash = a.Hash
	}
	if err := client.AnswerAndRemember(ctx, req); err != nil {
		c.errorf("%s %s: %v", name, id, err)
		return false
	}
	if req.Remember != nil {
		c.printRemembered(ctx, client, id)
	}
	if en := req.Endorse; en != nil {
		tools := en.Tools
		if len(tools) == 0 {
			tools = []string{a.Tool}
		}
		fmt.Fprintf(c.stdout, "endorsed for the rest of run %s: the values of %s, for %s\n", show(a.RunID), show(strings.Join(en.Args, ", ")), show(strings.Join(tools, ", ")))
	}
	past := map[bool]string{true: "approved", false: "denied"}[approve]
	item := ""
	if a.Index != nil {
		item = fmt.Sprintf(", item %d", *a.Index)
	}
	fmt.Fprintf(c.stdout, "%s: %s by %s: %s in run %s (step %s%s)\n", show(id), past, show(who), show(a.Tool), show(a.RunID), show(a.Step), item)
	printArgs(c.stdout, a, "  ")
	return true
}

// heldInStep lists the calls of RUN/STEP still held, in element order.
func heldInStep(ctx context.Context, client *api.Client, step string) ([]string, error) {
	run, st, ok := strings.Cut(step, "/")
	if !ok || run == "" || st == "" {
		return nil, fmt.Errorf("want RUN/STEP (a run id and a step id, as sluice approvals shows them)")
	}
	list, err := client.Approvals(ctx)
	if err != nil {
		return nil, err
	}
	for _, group := range approval.ByStep(list) {
		if group[0].RunID != run || group[0].Step != st {
			continue
		}
		ids := make([]string, len(group))
		for i, a := range group {
			ids[i] = a.ID
		}
		return ids, nil
	}
	return nil, fmt.Errorf("no call of step %s in run %s is held (sluice approvals lists those that are)", st, run)
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
	if errors.Is(err, api.ErrNotRunning) {
		c.errorf("%s: %v: answers go through a running orchestrator; start one in another terminal with\n  %s\nand try again (it finishes the run once answered)", what, err, upCommandLine(cfgFile))
		return nil, exitFailure
	}
	if err != nil {
		c.errorf("%s: %v", what, err)
		return nil, exitFailure
	}
	return client, exitOK
}

// upCommandLine is the sluice up that runs on the state of cfgFile.
func upCommandLine(cfgFile string) string {
	if cfgFile == "" {
		return "sluice up"
	}
	return "sluice up --config " + cfgFile
}

// stateName is the state directory of cfgFile's configuration, for
// messages.
func stateName(c *cli, cfgFile string) string {
	if dep, err := c.loadConfig(cfgFile); err == nil {
		return dep.State
	}
	return ".sluice"
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
step, tool, args, arg_labels, label, reasons, rules, hash and created time
([] when none waits; schemas/output/approvals.json, docs/json.md).

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
				var list []engine.Approval
				r, err := c.openReader(*cfgFile)
				switch {
				case errors.Is(err, orchestrator.ErrNoState):
					// Nothing has run: nothing waits.
				case err != nil:
					c.report(err)
					return exitFailure
				default:
					defer r.Close()
					ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
					defer cancel()
					if list, err = r.approvals(ctx); err != nil {
						c.errorf("approvals: %v", err)
						return exitFailure
					}
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
					if r == nil {
						fmt.Fprintf(c.stderr, "(nothing has run here yet: no state directory %s)\n", stateName(c, *cfgFile))
					}
					return exitOK
				}
				// The held calls of one step (a for_each's elements) are
				// listed together, and can be answered together.
				for _, group := range approval.ByStep(list) {
					if len(group) > 1 {
						a := group[0]
						k := a.RunID + "/" + a.Step
						fmt.Fprintf(c.stdout, "step %s of run %s (%s): %d calls held; answer them together with\n  sluice approve --step %s    or    sluice deny --step %s\n\n",
							show(a.Step), show(a.RunID), show(a.Flow), len(group), show(k), show(k))
					}
					for i := range group {
						c.printHeld(&group[i])
					}
				}
				fmt.Fprintf(c.stdout, "%d call(s) waiting\n", len(list))
				if !r.live() {
					cfg := ""
					if *cfgFile != "" {
						cfg = " --config " + *cfgFile
					}
					fmt.Fprintf(c.stderr, "no orchestrator is running on this state directory: to answer them, start one in another terminal with\n  %s\nthen sluice approve ID%s or sluice deny ID%s here (or use the web page it prints)\n", upCommandLine(*cfgFile), cfg, cfg)
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

// printHeld shows one held call as sluice approvals lists it.
func (c *cli) printHeld(a *engine.Approval) {
	item := ""
	if a.Index != nil {
		item = fmt.Sprintf(" item %d", *a.Index)
	}
	fmt.Fprintf(c.stdout, "%s  %s  run %s (%s), step %s%s, held %s\n", show(a.ID), show(a.Tool), show(a.RunID), show(a.Flow), show(a.Step),
		item, a.Created.Local().Format(time.DateTime))
	printArgs(c.stdout, a, "    ")
	for _, w := range a.WhyHeld() {
		fmt.Fprintf(c.stdout, "    why: %s\n", show(w))
	}
	fmt.Fprintf(c.stdout, "    approve: sluice approve %s    deny: sluice deny %s\n\n", show(a.ID), show(a.ID))
}
