package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/orchestrator/engine"
)

// rememberOptions are approve's flags that keep an answer for later calls.
type rememberOptions struct {
	pin     *string
	anyFlow *bool
	perDay  *int
	sum     *string
	until   *string
}

func rememberFlags(fs *flag.FlagSet, approve bool) *rememberOptions {
	if !approve {
		return &rememberOptions{}
	}
	return &rememberOptions{
		pin:     fs.String("remember", "", "remember this answer for later calls with the same `ARGS` (comma-separated argument names, e.g. payee)"),
		anyFlow: fs.Bool("any-flow", false, "with --remember: in every flow, not only this call's"),
		perDay:  fs.Int("per-day", 0, "with --remember: at most `N` calls a day (this one counts)"),
		sum:     fs.String("sum-per-day", "", "with --remember: bound the day's sum of one argument, `ARG=MAX` (amount=300; this call counts)"),
		until:   fs.String("until", "", "with --remember: until `DATE` (YYYY-MM-DD, or RFC 3339; default 30 days)"),
	}
}

// scope is the scope the flags name; nil without --remember.
func (o *rememberOptions) scope() (*engine.RememberScope, error) {
	if o.pin == nil || *o.pin == "" {
		if o.pin != nil && (*o.anyFlow || *o.perDay != 0 || *o.sum != "" || *o.until != "") {
			return nil, errors.New("--any-flow, --per-day, --sum-per-day and --until go with --remember")
		}
		return nil, nil
	}
	sc := &engine.RememberScope{AnyFlow: *o.anyFlow, MaxPerDay: *o.perDay}
	for _, p := range strings.Split(*o.pin, ",") {
		if p = strings.TrimSpace(p); p != "" {
			sc.Pin = append(sc.Pin, p)
		}
	}
	if *o.sum != "" {
		arg, max, ok := strings.Cut(*o.sum, "=")
		n, err := strconv.ParseFloat(max, 64)
		if !ok || arg == "" || err != nil || n <= 0 {
			return nil, fmt.Errorf("--sum-per-day wants ARG=MAX with a positive number, such as amount=300, not %q", *o.sum)
		}
		sc.SumArg, sc.MaxSumPerDay = arg, n
	}
	if *o.until != "" {
		t, err := time.Parse(time.RFC3339, *o.until)
		if err != nil {
			d, derr := time.Parse("2006-01-02", *o.until)
			if derr != nil {
				return nil, fmt.Errorf("--until wants a date such as 2027-01-31 (or an RFC 3339 time), not %q", *o.until)
			}
			t = d.Add(24*time.Hour - time.Second)
		}
		sc.Until = t
	}
	return sc, nil
}

func rememberUsage(approve bool) string {
	if !approve {
		return ""
	}
	return "\n       approve APPROVAL_ID --remember ARGS [--any-flow] [--per-day N] [--sum-per-day ARG=MAX] [--until DATE]"
}

func rememberHelp(approve bool) string {
	if !approve {
		return ""
	}
	return `
--remember ARGS keeps the answer for later calls: a call of the same tool,
held for a person, whose arguments ARGS are exactly those of this call (the
same payee, the same host: no other spelling, no lookalike) goes ahead with
nobody asked, in this flow (every flow with --any-flow), within --per-day
calls and --sum-per-day of one argument a day (this call counts), until
--until (default 30 days, at most a year). Any call outside that scope is
held as before. sluice registry lists what is remembered, with its uses,
and revokes it; the audit log records both, and each call it let through.
`
}

func rememberExample(approve bool) string {
	if !approve {
		return ""
	}
	return "\n  sluice approve 01JD6Z4W8X2F3K5N7Q9R1T3V5X --remember payee --sum-per-day amount=300 --until 2027-03-31"
}

// printRemembered prints the remembered answer the approval id made.
func (c *cli) printRemembered(ctx context.Context, client *api.Client, id string) {
	all, err := client.Remembered(ctx)
	if err != nil {
		c.errorf("approve %s: remembered, but it cannot be listed: %v", id, err)
		return
	}
	for _, r := range all {
		if r.Approval == id {
			fmt.Fprintf(c.stdout, "remembered as %s: %s\n", show(r.ID), show(r.Describe()))
		}
	}
}

func registryCommand() *command {
	return &command{
		name:  "registry",
		usage: "registry [--json] [--config FILE] | registry revoke ID [--as NAME] [--config FILE]",
		short: "list or revoke the answers people asked to be remembered",
		long: `Lists the answers people asked to be remembered (sluice approve --remember):
the tool and the arguments kept exactly as approved, the flow (or any), the
bounds per day and today's uses, the date it ends, who answered, and whether
it was revoked. 'registry revoke ID' ends one at once: no call goes ahead
by it from then on; the audit log records who revoked it.

Both go through the running orchestrator (sluice up).

With --json, prints one JSON array of remembered answers
(schemas/output/registry.json, docs/json.md).

Examples:
  sluice registry
  sluice registry revoke 01JD6Z4W8X2F3K5N7Q9R1T3V5X`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			asJSON := fs.Bool("json", false, "print the remembered answers as a JSON array")
			as := fs.String("as", "", "who is revoking (default: the OS user)")
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			return func(c *cli, ctx context.Context, args []string) int {
				revoke := len(args) > 0 && args[0] == "revoke"
				switch {
				case revoke && len(args) != 2:
					c.errorf("registry revoke: give one id (sluice registry lists them)")
					return exitUsage
				case !revoke && len(args) > 0:
					c.errorf("registry: unknown argument %q (registry lists; registry revoke ID revokes)", args[0])
					return exitUsage
				}
				client, code := c.dialOrchestrator(*cfgFile, "registry")
				if client == nil {
					return code
				}
				defer client.Close()
				ctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				if revoke {
					who := *as
					if who == "" {
						who = osUser()
					}
					r, err := client.Revoke(ctx, args[1], who)
					if err != nil {
						c.errorf("registry revoke %s: %v", args[1], err)
						return exitFailure
					}
					fmt.Fprintf(c.stdout, "%s: revoked by %s: %s\n", show(r.ID), show(who), show(r.Describe()))
					return exitOK
				}
				all, err := client.Remembered(ctx)
				if err != nil {
					c.errorf("registry: %v", err)
					return exitFailure
				}
				return c.printRegistry(all, *asJSON)
			}
		},
	}
}

func (c *cli) printRegistry(all []engine.Remembered, asJSON bool) int {
	if asJSON {
		if all == nil {
			all = []engine.Remembered{}
		}
		b, _ := json.MarshalIndent(all, "", "  ")
		fmt.Fprintln(c.stdout, string(b))
		return exitOK
	}
	if len(all) == 0 {
		fmt.Fprintln(c.stdout, "no answer is remembered (sluice approve ID --remember ARGS keeps one)")
		return exitOK
	}
	now := time.Now()
	for _, r := range all {
		state := "in force"
		switch {
		case r.Revoked != nil:
			state = "revoked by " + r.RevokedBy
		case !now.Before(r.Until):
			state = "ended"
		}
		fmt.Fprintf(c.stdout, "%s  %s\n    %s; by %s on %s", show(r.ID), state, show(r.Describe()), show(r.Who), r.Created.UTC().Format("2006-01-02"))
		if r.Day == now.UTC().Format("2006-01-02") {
			fmt.Fprintf(c.stdout, "; today %d calls", r.Count)
			if r.SumArg != "" {
				fmt.Fprintf(c.stdout, ", %s %g", r.SumArg, r.Sum)
			}
		}
		fmt.Fprintln(c.stdout)
	}
	return exitOK
}
