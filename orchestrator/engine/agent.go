package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/agent"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/orchestrator/internal/telemetry"
	"github.com/sluicehq/sluice/orchestrator/runstore"
	"github.com/sluicehq/sluice/schemas"
)

// An agent step is run by package agent; the engine is its host. Each call
// the agent makes — every answer of the model, every tool call and inspect —
// goes through the policy gate like a call step's, under the idempotency
// key of the step followed by the call's key in it, and its outcome is
// recorded in the steps bucket as soon as it is known: the record is
// stored before anything else is delivered (the gate waits for the run's
// writes). When the step runs again — in the pass after a held call was
// answered, after a restart, after a crash — every recorded call returns
// its record instead of being made, so the agent replays its conversation
// to where it stopped: no call is made twice, and an approved call is
// delivered once, whatever its pages or its model would say now.

// agentHost is the engine's side of one agent step, and of one plan step
// (plan.go): the planner's answers and the program's calls are recorded
// and replayed the same way.
type agentHost struct {
	r    *run
	s    *flow.Step
	res  *StepResult
	idem string
	// held is the call the step waits on; last the last call gated.
	held, last *StepResult
	// replayed: the last call's outcome came from its record.
	replayed bool
}

// agent runs an agent step.
func (r *run) agent(ctx context.Context, s *flow.Step, sc scope, ifLabel ifc.Label) (*StepResult, *value) {
	res := &StepResult{ID: s.ID, Tool: s.Call}
	a := s.Agent
	instrLabel := a.Instructions.Label(sc.lookup)
	res.ArgLabels = map[string]ifc.Label{"instructions": instrLabel}
	label := ifc.Join(ifLabel, instrLabel)
	instr, err := a.Instructions.Eval(sc.vars)
	if err != nil {
		res.Status, res.Label, res.Error = StatusFailed, label, fmt.Sprintf("instructions: %v", err)
		return res, nil
	}
	text, ok := instr.(string)
	if !ok {
		b, _ := json.Marshal(instr)
		text = string(b)
	}
	h := &agentHost{r: r, s: s, res: res, idem: sc.idem}
	ctx, span := telemetry.Start(ctx, "invoke_agent "+s.ID, telemetry.GenAIOperation.String("invoke_agent"), telemetry.GenAIAgentName.String(s.ID))
	defer span.End()
	out := agent.Run(ctx, h, agent.Step{ID: s.ID, Agent: a, Instructions: text, Label: label,
		Chat: flow.AgentTool{Name: s.Call, Worker: s.Worker, Spec: s.Spec}})
	res.Turns, res.Label, res.Error = out.Turns, out.Label, out.Error
	if out.Status != agent.Completed {
		h.settle(out.Status)
		return res, nil
	}
	v := &value{out: out.Output, base: out.Base, fields: out.Fields}
	if v.fields == nil {
		v.fields = map[string]ifc.Label{}
	}
	all := v.all()
	res.Status, res.OutputLabel = StatusCompleted, &all
	return res, v
}

// settle gives the step's result of an agent or plan step that did not
// complete: held, it waits on the person like a held call step, and shows
// the held call; denied, it shows the last decision.
func (h *agentHost) settle(status string) {
	res := h.res
	switch status {
	case agent.Held:
		res.Status = StatusHeld
		if sub := h.held; sub != nil {
			res.Tool, res.Label, res.ArgLabels = sub.Tool, sub.Label, sub.ArgLabels
			res.Decision, res.Rules, res.Reasons, res.ApprovalID, res.Args, res.MsgID = sub.Decision, sub.Rules, sub.Reasons, sub.ApprovalID, sub.Args, sub.MsgID
			res.Why, res.Lookalikes = sub.Why, sub.Lookalikes
		}
	case agent.Denied:
		res.Status = StatusDenied
		if sub := h.last; sub != nil {
			res.Decision, res.Rules, res.Reasons, res.MsgID = sub.Decision, sub.Rules, sub.Reasons, sub.MsgID
		}
	default:
		res.Status = StatusFailed
	}
}

func isChat(key string) bool { return strings.HasPrefix(key, "chat/") }

// Call mediates one call of the agent (agent.Host).
func (h *agentHost) Call(ctx context.Context, c agent.Call) agent.Outcome {
	r := h.r
	idem := h.idem + "/" + c.Key
	if o, ok := h.recorded(ctx, idem, c.Key, c.Tool.Spec.OutputLabel); ok {
		h.replayed = true
		return o
	}
	h.replayed = false
	st := &flow.Step{ID: h.s.ID, Call: c.Tool.Name, Worker: c.Tool.Worker, Spec: c.Tool.Spec, Timeout: h.s.Timeout, Retries: h.s.Retries}
	sub := &StepResult{ID: h.s.ID, Tool: c.Tool.Name, Label: c.Label, ArgLabels: c.ArgLabels}
	body, err := json.Marshal(c.Args)
	if err != nil {
		return agent.Outcome{Status: agent.Failed, Error: fmt.Sprintf("arguments: %v", err), Label: c.Label, Stop: true}
	}
	// An agent's turn (its model's answer) and each tool call it makes are
	// spans of the step's, as the GenAI conventions name them.
	name, op := "execute_tool "+c.Tool.Name, "execute_tool"
	if isChat(c.Key) {
		name, op = "chat "+c.Tool.Name, "chat"
	}
	sctx, span := telemetry.Start(ctx, name, telemetry.GenAIOperation.String(op), telemetry.GenAIToolName.String(c.Tool.Name))
	v := r.gate(sctx, st, sub, c.Args, body, idem)
	telemetry.End(span, sub.Status)
	h.last = sub
	h.spent(c.Key, sub)
	if !isChat(c.Key) {
		h.res.Calls = append(h.res.Calls, *sub)
	}
	if v == nil && sub.Status == StatusHeld {
		h.held = sub
		return agent.Outcome{Status: agent.Held, Stop: true, Approval: sub.ApprovalID, Label: c.Label}
	}
	if v == nil && ctx.Err() != nil {
		// Interrupted: nothing is recorded, and the call goes again,
		// with its key, when the run resumes.
		return agent.Outcome{Status: agent.Failed, Error: ctx.Err().Error(), Label: c.Label, Stop: true}
	}
	args := c.Args
	if isChat(c.Key) {
		args = nil // the conversation, which the records make again
	}
	if err := h.record(ctx, idem, sub, v, args); err != nil {
		return agent.Outcome{Status: agent.Failed, Error: err.Error(), Label: c.Label, Stop: true}
	}
	return outcome(sub, v, c.Tool.Spec.OutputLabel)
}

// spent adds the tokens a turn of the agent's model spent to the step's;
// the tool calls it makes (an inspect's extract) keep theirs.
func (h *agentHost) spent(key string, sub *StepResult) {
	if sub.Usage == nil || !isChat(key) {
		return
	}
	if h.res.Usage == nil {
		h.res.Usage = &schemas.Usage{}
	}
	h.res.Usage.InputTokens += sub.Usage.InputTokens
	h.res.Usage.OutputTokens += sub.Usage.OutputTokens
}

// Refuse records the refusal of a tool the step does not offer
// (agent.Host).
func (h *agentHost) Refuse(ctx context.Context, key, tool string, label ifc.Label, reason string) agent.Outcome {
	r := h.r
	idem := h.idem + "/" + key
	if o, ok := h.recorded(ctx, idem, key, ifc.Label{}); ok {
		return o
	}
	sub := &StepResult{ID: h.s.ID, Tool: tool, Status: StatusDenied, Decision: "deny", Label: label,
		Rules: []string{"agent-tools"}, Reasons: []string{reason}, MsgID: audit.NewID()}
	rec := audit.Record{Kind: audit.KindDecision, RunID: r.id, Flow: r.plan.Name, Step: h.s.ID, Tool: tool,
		MsgID: sub.MsgID, Label: &sub.Label, Action: "deny", Rules: sub.Rules, Reasons: sub.Reasons}
	if err := r.publish(rec); err != nil {
		return agent.Outcome{Status: agent.Failed, Error: err.Error(), Label: label, Stop: true}
	}
	h.res.Calls = append(h.res.Calls, *sub)
	if err := h.record(ctx, idem, sub, nil, nil); err != nil {
		return agent.Outcome{Status: agent.Failed, Error: err.Error(), Label: label, Stop: true}
	}
	return outcome(sub, nil, ifc.Label{})
}

// outcome is what a gated call came to, for the agent. A failed call's
// error is the tool's output: it carries the label the output would have.
func outcome(sub *StepResult, v *value, outputLabel ifc.Label) agent.Outcome {
	switch {
	case v != nil:
		return agent.Outcome{Status: agent.Completed, Output: v.out, Base: v.base, Fields: v.fields}
	case sub.Status == StatusDenied:
		return agent.Outcome{Status: agent.Denied, Error: sub.Error, Reasons: sub.Reasons, Label: sub.Label}
	}
	el := ifc.Join(sub.Label, outputLabel)
	if sub.ErrorLabel != nil {
		el = el.Join(*sub.ErrorLabel)
	}
	return agent.Outcome{Status: agent.Failed, Error: sub.Error, Reasons: sub.Reasons, Label: el}
}

// record keeps the outcome of one call of the agent. It is handed to
// JetStream at once and stored before the next call is delivered.
func (h *agentHost) record(ctx context.Context, idem string, sub *StepResult, v *value, args map[string]any) error {
	r := h.r
	rec := runstore.CallRecord{Result: sub, Args: args}
	if v != nil {
		out, err := json.Marshal(v.out)
		if err != nil {
			return fmt.Errorf("record call %s: %w", idem, err)
		}
		rec.Output, rec.Base, rec.Fields = out, v.base, v.fields
	}
	b, err := json.Marshal(&rec)
	if err != nil {
		return fmt.Errorf("record call %s: %w", idem, err)
	}
	st, err := r.e.store(ctx)
	if err != nil {
		return err
	}
	r.acks.add(st.WriteCall(idem, b))
	r.wrote(idem)
	return nil
}

// recorded returns the recorded outcome of a call made in an earlier pass
// or process.
func (h *agentHost) recorded(ctx context.Context, idem, key string, outputLabel ifc.Label) (agent.Outcome, bool) {
	r := h.r
	if r.fresh {
		return agent.Outcome{}, false
	}
	st, err := r.e.store(ctx)
	if err != nil {
		return agent.Outcome{}, false
	}
	rec, err := st.GetCall(ctx, idem)
	if err != nil || rec == nil || rec.Result == nil {
		return agent.Outcome{}, false
	}
	sub := rec.Result
	var v *value
	if sub.Status == StatusCompleted {
		out, err := decodeJSON(rec.Output)
		if err != nil {
			return agent.Outcome{}, false
		}
		v = &value{out: out, base: rec.Base, fields: rec.Fields}
		if v.fields == nil {
			v.fields = map[string]ifc.Label{}
		}
		r.usage.Restore(r.policy, sub.Tool, rec.Args)
	}
	// A chat turn or an inspect that failed spent its tokens all the same.
	r.usage.Spent(r.policy, sub.Tool, sub.Usage)
	h.last = sub
	h.spent(key, sub)
	if !isChat(key) {
		h.res.Calls = append(h.res.Calls, *sub)
	}
	return outcome(sub, v, outputLabel), true
}
