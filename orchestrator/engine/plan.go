package engine

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/orchestrator/internal/telemetry"
	"github.com/sluicehq/sluice/orchestrator/plan"
	"github.com/sluicehq/sluice/orchestrator/plan/interp"
)

// A plan step is run by package plan with the engine's agent host: the
// planner's answer ("chat/plan/K" for program K) and each call of the
// program ("K/call/N") go through the policy gate like a call step's and
// are recorded as they happen, so a step that runs again after an
// approval, a restart or a crash takes the planner's answer and the calls
// made before from their records: the planner is not asked again and no
// call is sent twice.

// planStep runs a plan step.
func (r *run) planStep(ctx context.Context, s *flow.Step, sc scope, ifLabel ifc.Label) (*StepResult, *value) {
	res := &StepResult{ID: s.ID, Tool: s.Call}
	ps := s.Plan
	instrLabel := ps.Instructions.Label(sc.lookup)
	res.ArgLabels = map[string]ifc.Label{"instructions": instrLabel}
	res.Label = ifc.Join(ifLabel, instrLabel)
	instr, err := ps.Instructions.Eval(sc.vars)
	if err != nil {
		res.Status, res.Error = StatusFailed, fmt.Sprintf("instructions: %v", err)
		return res, nil
	}
	text, ok := instr.(string)
	if !ok {
		b, _ := json.Marshal(instr)
		text = string(b)
	}
	inputs := make(map[string]interp.Input, len(ps.InputNames))
	for _, name := range ps.InputNames {
		v := ps.Inputs[name]
		x, err := v.Eval(sc.vars)
		if err != nil {
			res.Status, res.Error = StatusFailed, fmt.Sprintf("plan input %s: %v", name, err)
			return res, nil
		}
		inputs[name] = interp.Input{Value: x, Base: v.Label(sc.lookup)}
	}
	h := &agentHost{r: r, s: s, res: res, idem: sc.idem}
	ctx, span := telemetry.Start(ctx, "invoke_agent "+s.ID, telemetry.GenAIOperation.String("invoke_agent"), telemetry.GenAIAgentName.String(s.ID))
	defer span.End()
	out := plan.Run(ctx, h, plan.Step{ID: s.ID, Plan: ps, Instructions: text, Label: instrLabel, Context: ifLabel, Inputs: inputs,
		Chat: flow.AgentTool{Name: s.Call, Worker: s.Worker, Spec: s.Spec}})
	res.Turns, res.Program, res.Label, res.Error = out.Programs, out.Program, out.Label, out.Error
	if out.Status != plan.Completed {
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

// Program records in the audit log the program a plan step's planner
// wrote, when the step first gets it: not again when the planner's answer
// comes from its record (plan.Programs).
func (h *agentHost) Program(_ context.Context, src string, label ifc.Label) error {
	if h.replayed {
		return nil
	}
	r := h.r
	return r.publish(audit.Record{Kind: audit.KindProgram, RunID: r.id, Flow: r.plan.Name, Step: h.s.ID, Tool: h.s.Call, Label: &label, Program: src})
}
