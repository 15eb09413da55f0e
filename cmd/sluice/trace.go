package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/internal/display"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/audit"
)

// readRuns reads the runs of the deployment from its audit log, with what
// its store says of the unfinished ones.
func (c *cli) readRuns(ctx context.Context, cfgFile string) ([]*audit.Run, error) {
	r, err := c.openReader(cfgFile)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.runs(ctx)
}

func runsCommand() *command {
	return &command{
		name:  "runs",
		usage: "runs [--json] [--config FILE]",
		short: "list runs, newest first",
		long: `Lists the runs recorded in the audit log of this state directory, newest
first: id, flow, status, when it started, and how many steps it decided.
A run that has not finished says when it goes on: a held run when its call
is answered; a run interrupted because its orchestrator stopped when sluice
up starts again; a run a person interrupted (Ctrl-C on sluice run) only
with sluice up --resume. sluice cancel ends one for good.

It asks the running orchestrator when there is one; otherwise it reads a
private copy of the store, so it never locks the state directory (a sluice
up started meanwhile is not kept from starting) and never writes to it (a
read-only backup can be read).

--json prints an array of runs, each as 'sluice trace --json' prints it,
[] when there is none (schemas/output/runs.json, docs/json.md).

Examples:
  sluice runs
  sluice runs --json | jq '.[] | select(.status == "interrupted")'`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			asJSON := fs.Bool("json", false, "print the runs as JSON")
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			return func(c *cli, ctx context.Context, args []string) int {
				if len(args) > 0 {
					c.errorf("runs takes no arguments")
					return exitUsage
				}
				runs, err := c.readRuns(ctx, *cfgFile)
				if errors.Is(err, orchestrator.ErrNoState) {
					fmt.Fprintf(c.stderr, "no runs: nothing has run here yet (no state directory %s)\n", stateName(c, *cfgFile))
				} else if err != nil {
					c.errorf("runs: %v", err)
					return exitFailure
				}
				if *asJSON {
					if runs == nil {
						runs = []*audit.Run{}
					}
					b, _ := json.MarshalIndent(runs, "", "  ")
					fmt.Fprintln(c.stdout, string(b))
					return exitOK
				}
				for _, r := range runs {
					fmt.Fprintf(c.stdout, "%s  %-20s %-11s %s  %d steps", show(r.ID), show(r.Flow), show(r.Status), r.Started.Local().Format(time.DateTime), len(r.Steps))
					if len(r.StoppedAt) > 0 {
						fmt.Fprintf(c.stdout, "; stopped at %s", display.List(r.StoppedAt))
					}
					if t := resumeText(r.Resume, r.ID); t != "" {
						fmt.Fprintf(c.stdout, "; %s", t)
					}
					fmt.Fprintln(c.stdout)
				}
				return exitOK
			}
		},
	}
}

func traceCommand() *command {
	return &command{
		name:  "trace",
		usage: "trace RUN [--json | --dot] [--config FILE]",
		short: "show a run as a tree of steps with labels, decisions and rules",
		long: `Shows one run from the audit log: each step with the time it took, the label
of its arguments, the policy decision with the rules behind it, a person's
answer to a held call, and the result. Under a step that made more than one
call (an agent, a plan, a for_each) each call is listed with its status,
time, decision and label: a payment an agent proposed that was held shows
there. A plan step shows the program its planner wrote (program in --json).
A step that did not run shows as skipped. Times run from a step's (or a
call's) first audit record to its last. --json prints the same as JSON
(inner_calls, started, duration_ms; schemas/output/trace.json,
docs/json.md); --dot prints a Graphviz graph with
each step coloured by its integrity (red: untrusted), marked with its
secrecy, an agent's calls beside it, and skipped steps grey and dashed.

Like sluice runs, it asks the running orchestrator, or reads a private
copy of the store: it never locks the state directory or writes to it.

Examples:
  sluice trace 01JD6Z4W8X2F3K5N7Q9R1T3V5X
  sluice trace 01JD6Z4W8X2F3K5N7Q9R1T3V5X --dot | dot -Tsvg > run.svg`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			asJSON := fs.Bool("json", false, "print the run as JSON")
			dot := fs.Bool("dot", false, "print the run as a Graphviz graph")
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			return func(c *cli, ctx context.Context, args []string) int {
				if len(args) != 1 || (*asJSON && *dot) {
					c.errorf("trace: give one run id, and at most one of --json and --dot")
					return exitUsage
				}
				runs, err := c.readRuns(ctx, *cfgFile)
				if err != nil {
					c.errorf("trace: %v", err)
					return exitFailure
				}
				for _, r := range runs {
					if r.ID != args[0] {
						continue
					}
					switch {
					case *asJSON:
						b, _ := json.MarshalIndent(r, "", "  ")
						fmt.Fprintln(c.stdout, string(b))
					case *dot:
						printDot(c.stdout, r)
					default:
						printTrace(c.stdout, r)
					}
					return exitOK
				}
				c.errorf("trace: no run %q in the audit log (sluice runs lists them)", args[0])
				return exitFailure
			}
		},
	}
}

func labelText(l *ifc.Label) string {
	if l == nil {
		return "-"
	}
	return describe(l.Integrity().String(), l.Secrecy(), l.Sources())
}

func printTrace(w io.Writer, r *audit.Run) {
	fmt.Fprintf(w, "run %s (%s): %s\n", show(r.ID), show(r.Flow), show(r.Status))
	for i, s := range r.Steps {
		branch, pad := "├─", "│ "
		if i == len(r.Steps)-1 {
			branch, pad = "└─", "  "
		}
		fmt.Fprintf(w, "%s %s — %s: %s%s\n", branch, show(s.ID), show(s.Tool), show(s.Status), took(s.Started != nil, s.DurationMS))
		if s.Status == "skipped" {
			continue
		}
		fmt.Fprintf(w, "%s   arguments: %s\n", pad, labelText(s.Label))
		if s.Decision != "" {
			fmt.Fprintf(w, "%s   decision: %s", pad, show(s.Decision))
			if len(s.Rules) > 0 {
				fmt.Fprintf(w, " by %s", display.List(s.Rules))
			}
			fmt.Fprintln(w)
		}
		for _, why := range s.Reasons {
			if why != "" {
				fmt.Fprintf(w, "%s     why: %s\n", pad, show(why))
			}
		}
		if s.Answer != "" {
			fmt.Fprintf(w, "%s   answered: %s\n", pad, show(s.Answer))
		}
		if s.OutputLabel != nil {
			fmt.Fprintf(w, "%s   output: %s\n", pad, labelText(s.OutputLabel))
		}
		if s.Error != "" {
			fmt.Fprintf(w, "%s   error: %s\n", pad, show(s.Error))
		}
		printProgram(w, pad, s.Program)
		if inner(&s) {
			fmt.Fprintf(w, "%s   calls:\n", pad)
			for _, c := range s.Inner {
				fmt.Fprintf(w, "%s     %s: %s%s", pad, show(c.Tool), show(c.Status), took(true, c.DurationMS))
				if c.Decision != "" {
					fmt.Fprintf(w, "; decision %s", show(c.Decision))
					if len(c.Rules) > 0 {
						fmt.Fprintf(w, " by %s", display.List(c.Rules))
					}
				}
				fmt.Fprintf(w, "; arguments %s\n", labelText(c.Label))
				if c.Answer != "" {
					fmt.Fprintf(w, "%s       answered: %s\n", pad, show(c.Answer))
				}
			}
		}
	}
}

// printProgram prints a plan step's program, a line at a time.
func printProgram(w io.Writer, pad, src string) {
	if src == "" {
		return
	}
	fmt.Fprintf(w, "%s   program:\n", pad)
	for _, line := range strings.Split(strings.TrimRight(src, "\n"), "\n") {
		fmt.Fprintf(w, "%s     | %s\n", pad, show(line))
	}
}

// inner says whether a step's calls are worth listing under it: it made
// more than one, or one of a tool other than its own (an agent's).
func inner(s *audit.StepTrace) bool {
	return len(s.Inner) > 1 || (len(s.Inner) == 1 && s.Inner[0].Tool != s.Tool)
}

// took is " (N ms)", or "" when nothing was timed.
func took(timed bool, ms int64) string {
	if !timed {
		return ""
	}
	return fmt.Sprintf(" (%s)", (time.Duration(ms) * time.Millisecond).String())
}

func printDot(w io.Writer, r *audit.Run) {
	fmt.Fprintf(w, "digraph %q {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n", "run "+r.ID)
	fmt.Fprintf(w, "  run [label=%q, fillcolor=\"#eeeeee\"];\n", r.Flow+"\n"+r.Status)
	prev := "run"
	ids := map[string]string{}
	for i, s := range r.Steps {
		ids[s.ID] = fmt.Sprintf("s%d", i)
	}
	for i, s := range r.Steps {
		color := "#c8e6c9" // trusted
		if s.Label != nil && s.Label.Integrity() == ifc.Untrusted {
			color = "#ffcdd2"
		}
		secrecy := ""
		if s.Label != nil && len(s.Label.Secrecy()) > 0 {
			secrecy = "\nsecret: " + display.List(s.Label.Secrecy())
		}
		id := fmt.Sprintf("s%d", i)
		border := ""
		switch s.Status {
		case "held":
			border = ", color=\"#f57c00\", penwidth=3"
		case "denied", "failed":
			border = ", color=\"#c62828\", penwidth=3"
		case "skipped", "":
			// It did not run: grey and dashed, whatever it would have read.
			color, border = "#eeeeee", ", style=\"rounded,filled,dashed\", fontcolor=\"#757575\""
		}
		fmt.Fprintf(w, "  %s [label=%q, fillcolor=%q%s];\n", id, show(s.ID)+"\n"+show(s.Tool)+"\n"+show(s.Status)+took(s.Started != nil, s.DurationMS)+secrecy, color, border)
		if inner(&s) {
			for j, c := range s.Inner {
				cid := fmt.Sprintf("%s_c%d", id, j)
				ccolor, cborder := "#c8e6c9", ""
				if c.Label != nil && c.Label.Integrity() == ifc.Untrusted {
					ccolor = "#ffcdd2"
				}
				switch c.Status {
				case "held":
					cborder = ", color=\"#f57c00\", penwidth=3"
				case "denied", "failed":
					cborder = ", color=\"#c62828\", penwidth=3"
				}
				fmt.Fprintf(w, "  %s [label=%q, fillcolor=%q, fontsize=10%s];\n  %s -> %s [style=dotted, arrowhead=none];\n",
					cid, show(c.Tool)+"\n"+show(c.Status)+took(true, c.DurationMS), ccolor, cborder, id, cid)
			}
		}
		switch {
		case !r.Planned:
			// An older log: the order steps were decided in.
			fmt.Fprintf(w, "  %s -> %s;\n", prev, id)
		case len(s.Deps) == 0:
			fmt.Fprintf(w, "  run -> %s;\n", id)
		default:
			for _, d := range s.Deps {
				fmt.Fprintf(w, "  %s -> %s;\n", ids[d], id)
			}
		}
		prev = id
	}
	fmt.Fprintln(w, "}")
}
