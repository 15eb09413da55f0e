package main

import (
	"errors"
	"flag"
	"strings"

	"github.com/sluicehq/sluice/orchestrator/engine"
)

// endorseOptions are approve's flags that endorse values for the rest of
// the run.
type endorseOptions struct {
	args, tools *string
}

func endorseFlags(fs *flag.FlagSet, approve bool) *endorseOptions {
	if !approve {
		return &endorseOptions{}
	}
	return &endorseOptions{
		args:  fs.String("endorse", "", "endorse the values of the arguments `ARGS` (comma-separated, e.g. payee) for the rest of the run"),
		tools: fs.String("for", "", "with --endorse: the `TOOLS` (comma-separated) the values are trusted for (default: this call's tool)"),
	}
}

// scope is the endorsement the flags name; nil without --endorse.
func (o *endorseOptions) scope() (*engine.EndorseScope, error) {
	if o.args == nil || *o.args == "" {
		if o.tools != nil && *o.tools != "" {
			return nil, errors.New("--for goes with --endorse")
		}
		return nil, nil
	}
	sc := &engine.EndorseScope{Args: list(*o.args), Tools: list(*o.tools)}
	if len(sc.Args) == 0 {
		return nil, errors.New("--endorse wants argument names, such as payee")
	}
	return sc, nil
}

// list splits a comma-separated list, without empty items.
func list(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func endorseHelp(approve bool) string {
	if !approve {
		return ""
	}
	return `
--endorse ARGS endorses the values of this call's arguments ARGS for the
rest of its run: a later call of the run to the same tool (or to each of
--for TOOLS) that passes exactly one of those values (the same SHA-256 of
its JSON: no other spelling, no lookalike) has that argument labeled
trusted (endorsed:<you> in its sources; its secrecy kept), so policy
decides it as if the value came from you. The call's context label is
still the join of its arguments and of any if it is under; an agent's
calls keep the agent's context. Never in another run, never for another
tool. It is kept with the run (it outlives a restart) and the audit log
records it with your answer. Calls of the run still held whose arguments
it endorses are made again, and held again if they still need a person.
`
}

func endorseExample(approve bool) string {
	if !approve {
		return ""
	}
	return "\n  sluice approve 01JD6Z4W8X2F3K5N7Q9R1T3V5X --endorse payee --for pay.send,pay.refund"
}
