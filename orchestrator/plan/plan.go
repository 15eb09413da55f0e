// Package plan runs plan steps: a planner model writes a Starlark program
// from trusted text only — the step's instructions, the tools' names,
// input schemas and the manifests' words about them, the names of the
// inputs, the output schema — and package interp runs it with a label on
// every value.
//
// The planner is told everything through a fixed conversation of package
// agent (agent.Planner), which goes through the same function as an agent
// model's and refuses whatever would raise its label above the
// instructions': no tool result, no input value, and no error that depends
// on either is ever shown to it. A program that fails may be written again
// (max_rewrites) only when its error can be told.
//
// The package makes no call itself: a Host (the engine's, as for agent
// steps) mediates each call through the policy gate and records its
// outcome, and when the step runs again — after an approval, a restart or
// a crash — answers each call made before from its record: the planner is
// not asked again and no call is sent twice.
package plan

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/agent"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/orchestrator/plan/interp"
)

// Statuses of a step.
const (
	Completed = agent.Completed
	Denied    = agent.Denied
	Held      = agent.Held
	Failed    = agent.Failed
)

// Step is a plan step to run.
type Step struct {
	ID   string
	Plan *flow.PlanStep
	// Chat is the planner's chat tool.
	Chat flow.AgentTool
	// Instructions, evaluated, and Label, the label of what they read.
	Instructions string
	Label        ifc.Label
	// Context is the label of what decided that the step runs (its if
	// condition): every call and the output carry it.
	Context ifc.Label
	// Inputs are the values the program reads as inputs["name"].
	Inputs map[string]interp.Input
}

// Result of a plan step.
type Result struct {
	Status string
	// Label is the step's label: the instructions', the program counter's
	// at the end, and for a step that did not complete the label of its
	// error.
	Label ifc.Label
	// Output of a completed step, with its labels.
	Output any
	Base   ifc.Label
	Fields map[string]ifc.Label
	Error  string
	// Program is the latest program the planner wrote; Programs counts
	// the planner's answers; Calls the program's calls and inspects.
	Program  string
	Programs int
	Calls    int
}

// Run runs a plan step.
func Run(ctx context.Context, h agent.Host, s Step) (res Result) {
	res.Label = ifc.Join(s.Label, s.Context)
	defer func() {
		if p := recover(); p != nil {
			res = Result{Status: Failed, Label: res.Label, Program: res.Program, Programs: res.Programs, Error: fmt.Sprintf("plan: internal error: %v", p)}
		}
	}()
	if s.Label.Integrity() < ifc.Trusted {
		return fail(res, "plan step %s: its instructions read a value labeled %s, and the planner is shown only trusted text; pass the value through plan.inputs and read it in the program as inputs[\"name\"]", s.ID, s.Label)
	}
	p := &planner{h: h, s: s, conv: agent.NewPlanner(s.Label), tools: map[string]flow.AgentTool{}}
	for _, t := range s.Plan.Tools {
		p.tools[t.Name] = t
		var params []string
		if t.Spec.Input != nil {
			params, _ = t.Spec.Input.Shape()
		}
		p.itools = append(p.itools, interp.Tool{Name: t.Name, Params: params})
	}
	p.conv.Tell(agent.Message{Role: "system", Content: str(System(s.Plan))}, ifc.TrustedFrom())
	p.conv.Tell(agent.Message{Role: "user", Content: str(s.Instructions)}, s.Label)
	for attempt := 1; attempt <= s.Plan.MaxRewrites+1; attempt++ {
		done, ok := p.attempt(ctx, attempt, &res)
		if ok {
			return done
		}
	}
	return fail(res, "plan step %s: no program ran after %d rewrites", s.ID, s.Plan.MaxRewrites)
}

// Programs is what a Host may do besides: keep the program the planner
// wrote, with the label of the planner's answer, for the audit log.
type Programs interface {
	Program(ctx context.Context, src string, label ifc.Label) error
}

// planner is one run of a plan step.
type planner struct {
	h      agent.Host
	s      Step
	conv   *agent.Planner
	tools  map[string]flow.AgentTool
	itools []interp.Tool
}

// attempt asks the planner for a program and runs it. ok false means the
// planner was told why the program failed and is asked again.
func (p *planner) attempt(ctx context.Context, k int, res *Result) (Result, bool) {
	s := p.s
	res.Programs = k
	o := p.h.Call(ctx, agent.Call{Key: "chat/plan/" + strconv.Itoa(k), Tool: s.Chat,
		Args: map[string]any{"messages": p.conv.Messages()}, Label: p.conv.Label(), Context: p.conv.Label(),
		ArgLabels: map[string]ifc.Label{"messages": p.conv.Label()}})
	switch o.Status {
	case agent.Completed:
	case agent.Held:
		return end(*res, Held, p.conv.Label(), "program %d: the call to %s is held for approval", k, s.Chat.Name), true
	case agent.Denied:
		return end(*res, Denied, o.Label, "program %d: the call to %s was denied: %s", k, s.Chat.Name, strings.Join(o.Reasons, "; ")), true
	default:
		return end(*res, Failed, o.Label, "program %d: the planner did not answer: %s", k, o.Error), true
	}
	answer, ok := content(o.Output)
	if !ok {
		return end(*res, Failed, outputLabel(o), "program %d: %s answered with something that is not a message", k, s.Chat.Name), true
	}
	res.Program = Program(answer)
	if pr, ok := p.h.(Programs); ok {
		if err := pr.Program(ctx, res.Program, outputLabel(o)); err != nil {
			return end(*res, Failed, ifc.TrustedFrom(), "program %d: %v", k, err), true
		}
	}
	// The planner's own answer: telling it back raises nothing unless
	// the model's output is below the planner's context.
	canRewrite := p.conv.Tell(agent.Message{Role: "assistant", Content: str(answer)}, outputLabel(o))
	prog, err := interp.Compile(s.ID+".star", res.Program, p.itools)
	if err != nil {
		// A compile error depends on the program alone.
		return p.retry(k, res, canRewrite, "did not compile: "+err.Error(), outputLabel(o))
	}
	h := &host{p: p, k: k}
	r := prog.Run(ctx, h, s.Inputs, limits(s.Plan.Limits))
	res.Calls += r.Calls
	res.Label = res.Label.Join(r.PC)
	switch {
	case r.Status == interp.Completed:
		return p.output(k, res, canRewrite, r)
	case r.Status == interp.Held && h.held:
		return end(*res, Held, r.PC, "program %d: a call is held for approval", k), true
	case r.Status == interp.Held:
		// Interrupted, or an outcome could not be recorded: the step
		// runs again from its records.
		why := h.stopped
		if why == "" && ctx.Err() != nil {
			why = ctx.Err().Error()
		}
		return end(*res, Failed, r.PC, "program %d stopped: %s", k, why), true
	case r.Status == interp.Denied:
		return end(*res, Denied, r.ErrorLabel, "program %d: %s", k, r.Error), true
	}
	return p.retry(k, res, canRewrite, "failed: "+r.Error, r.ErrorLabel)
}

// output takes a completed program's result, checked against the output
// schema.
func (p *planner) output(k int, res *Result, canRewrite bool, r interp.Result) (Result, bool) {
	fields := r.Fields
	if fields == nil {
		fields = map[string]ifc.Label{}
	}
	base := ifc.Join(r.Base, r.PC, p.s.Context)
	if sch := p.s.Plan.OutputSchema; sch != nil {
		if ms := sch.Mismatches(r.Output); len(ms) > 0 {
			// Whether the result fits depends on all of it.
			all := base
			for _, f := range slices.Sorted(maps.Keys(fields)) {
				all = all.Join(fields[f])
			}
			return p.retry(k, res, canRewrite, "returned a result that does not satisfy the output schema ("+strings.Join(ms, "; ")+")", all)
		}
	}
	out := *res
	out.Status, out.Output, out.Base, out.Fields = Completed, r.Output, base, fields
	return out, true
}

// retry tells the planner why program k failed, through the planner's
// conversation, and asks for another; when that is not allowed — no
// rewrite left, or the error depends on something the planner may not
// know — the step fails with the error, labeled with what it depends on.
func (p *planner) retry(k int, res *Result, canRewrite bool, why string, dep ifc.Label) (Result, bool) {
	if canRewrite && k <= p.s.Plan.MaxRewrites &&
		p.conv.Tell(agent.Message{Role: "user", Content: str("The program " + why + "\nWrite the whole program again.")}, dep) {
		return Result{}, false
	}
	note := ""
	if agent.Raises(p.conv.Label(), dep) {
		note = " (not shown to the planner: the error depends on values it may not see)"
	}
	return end(*res, Failed, dep, "program %d %s%s", k, why, note), true
}

func end(res Result, status string, l ifc.Label, format string, a ...any) Result {
	res.Status, res.Error, res.Label = status, fmt.Sprintf(format, a...), res.Label.Join(l)
	return res
}

func fail(res Result, format string, a ...any) Result {
	return end(res, Failed, ifc.TrustedFrom(), format, a...)
}

// content is the text of the chat tool's answer.
func content(out any) (string, bool) {
	m, _ := out.(map[string]any)
	b, err := json.Marshal(m["message"])
	var msg agent.Message
	if err != nil || json.Unmarshal(b, &msg) != nil || msg.Content == nil {
		return "", false
	}
	return *msg.Content, true
}

func outputLabel(o agent.Outcome) ifc.Label {
	l := o.Base
	for _, k := range slices.Sorted(maps.Keys(o.Fields)) {
		l = l.Join(o.Fields[k])
	}
	return l
}

func limits(l flow.PlanLimits) interp.Limits {
	return interp.Limits{Steps: l.Steps, Memory: l.Memory, Time: l.Time}
}

func str(s string) *string { return &s }
