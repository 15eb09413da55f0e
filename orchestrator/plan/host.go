package plan

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/agent"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/orchestrator/plan/interp"
)

// host hands a program's calls to the step's host: program k's call n is
// "k/call/n" there, labeled with the program counter, the labels of its
// arguments and the step's context.
type host struct {
	p *planner
	k int
	// held: a call is held for a person; stopped: why a call stopped the
	// step otherwise.
	held    bool
	stopped string
}

func (h *host) key(n int) string { return strconv.Itoa(h.k) + "/call/" + strconv.Itoa(n) }

// Call makes one call of the program (interp.Host).
func (h *host) Call(ctx context.Context, c interp.Call) interp.Outcome {
	pc := c.PC.Join(h.p.s.Context)
	label := pc
	for _, l := range c.ArgLabels {
		label = label.Join(l)
	}
	t, ok := h.p.tools[c.Tool]
	if !ok {
		// Compile checks the names a program calls; a name made at run
		// time depends on what made it.
		return interp.Outcome{Status: interp.Failed, Error: fmt.Sprintf("%s is not a tool of this plan", c.Tool), Label: label}
	}
	if t.Spec.Input != nil {
		if ms := t.Spec.Input.Mismatches(c.Args); len(ms) > 0 {
			// Whether the arguments fit depends on their values.
			return interp.Outcome{Status: interp.Failed, Label: label,
				Error: fmt.Sprintf("the arguments of %s do not match its input schema (%s)", t.Name, strings.Join(ms, "; "))}
		}
	}
	o := h.p.h.Call(ctx, agent.Call{Key: h.key(c.N), Tool: t, Args: c.Args, Label: label, ArgLabels: c.ArgLabels, Context: pc})
	return h.outcome(o, label)
}

// Inspect asks the model's extract tool one question about one value,
// quarantined as an agent's inspect is: it reads the value, the question
// and the schema only. The schema may be any JSON Schema (inspectSchema):
// the answer stays in the program, never shown to the planner, and keeps
// the value's label unless a policy rule endorses the call (interp.Host).
func (h *host) Inspect(ctx context.Context, i interp.Inspection) interp.Outcome {
	ps := h.p.s.Plan
	pc := i.PC.Join(h.p.s.Context)
	if ps.Extract == nil {
		return interp.Outcome{Status: interp.Failed, Error: "inspect: model " + ps.Model + " has no extract tool", Label: pc}
	}
	if strings.TrimSpace(i.Question) == "" {
		return interp.Outcome{Status: interp.Failed, Error: "inspect: the question is empty", Label: pc}
	}
	if problem := inspectSchema(i.Schema); problem != "" {
		return interp.Outcome{Status: interp.Failed, Error: "inspect: " + problem, Label: pc}
	}
	text, ok := i.Value.(string)
	if !ok {
		b, _ := json.Marshal(i.Value)
		text = string(b)
	}
	extract := flow.AgentTool{Name: ps.Model + ".extract", Worker: ps.Model, Spec: ps.Extract}
	label := pc.Join(i.Label)
	o := h.p.h.Call(ctx, agent.Call{Key: h.key(i.N), Tool: extract, Label: label, Context: pc,
		Args:      map[string]any{"text": text, "instruction": i.Question, "schema": i.Schema},
		ArgLabels: map[string]ifc.Label{"text": i.Label, "instruction": pc, "schema": pc}})
	out := h.outcome(o, label)
	// The answer is labeled like the value asked about.
	out.Base = out.Base.Join(i.Label)
	return out
}

// outcome is what the host's outcome comes to for the program. A held
// call, or one that stops the step (an interrupted run, an outcome that
// could not be recorded), stops the program; h remembers which.
func (h *host) outcome(o agent.Outcome, label ifc.Label) interp.Outcome {
	switch {
	case o.Status == agent.Completed:
		return interp.Outcome{Status: interp.Completed, Output: o.Output, Base: o.Base, Fields: o.Fields}
	case o.Status == agent.Held:
		h.held = true
		return interp.Outcome{Status: interp.Held, Stop: true, Label: label}
	case o.Stop:
		h.stopped = o.Error
		return interp.Outcome{Status: interp.Failed, Stop: true, Error: o.Error, Label: label.Join(o.Label)}
	case o.Status == agent.Denied:
		return interp.Outcome{Status: interp.Denied, Error: strings.Join(o.Reasons, "; "), Label: label.Join(o.Label)}
	}
	return interp.Outcome{Status: interp.Failed, Error: o.Error, Label: label.Join(o.Label)}
}
