package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/agent"
	"github.com/sluicehq/sluice/orchestrator/flow"
)

// A session's client may start flows (SessionOptions.Flows). Each is a
// tool of the session named after the flow: the agent session checks the
// arguments against the flow's inputs, puts handles' values in their
// place, and tells the client the outcome with the same rules as any
// call's (a handle when the flow's outputs are known to be below the
// session's integrity, the context label raised with what it is shown).
// The call starts a run, as `sluice run` does (Engine.Run), whose inputs
// carry the call's label — the session's context label and the labels of
// the handles the arguments name — instead of the user's: a client that
// read an untrusted page cannot start a flow as if the person typed its
// inputs.
//
// A run outlives the call that started it, not the session: when a call
// of it is held and the wait ends first (the session's wait, or the call
// ended to ask the client's user through elicitation), the client is told
// the run is held, and the same call made again waits for that run
// rather than starting another.

// flowRun is a run a client started, until its outcome is told.
type flowRun struct {
	done   chan struct{}
	res    *Result
	err    error
	labels map[string]ifc.Label

	mu sync.Mutex
	// held is the call of the run that waits for a person, if one does;
	// waiter is the context of the client's call waiting for the run.
	held   *StepResult
	waiter context.Context
}

func (f *flowRun) heldCall() *StepResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held
}

// setWaiter sets the context of the call waiting for the flow's run.
func (f *flowRun) setWaiter(ctx context.Context) {
	f.mu.Lock()
	f.waiter = ctx
	f.mu.Unlock()
}

// clearWaiter says that no call waits for the flow's run.
func (f *flowRun) clearWaiter() {
	f.mu.Lock()
	f.waiter = nil
	f.mu.Unlock()
}

// addFlows returns tools with a tool for each flow.
func (h *sessionHost) addFlows(tools []flow.AgentTool, flows []*flow.Plan) ([]flow.AgentTool, error) {
	tools = slices.Clone(tools)
	for _, p := range flows {
		if slices.ContainsFunc(tools, func(t flow.AgentTool) bool { return t.Name == p.Name }) {
			return nil, fmt.Errorf("session: flow %s (%s): a tool of that name is already offered", p.Name, p.File)
		}
		spec, err := p.Tool()
		if err != nil {
			return nil, fmt.Errorf("session: %w", err)
		}
		h.flows[p.Name] = p
		tools = append(tools, flow.AgentTool{Name: p.Name, Spec: spec})
	}
	return tools, nil
}

// flow starts a run of p for the client's call c, or finds the run the
// same call started before, and waits for its outcome.
func (h *sessionHost) flow(ctx context.Context, p *flow.Plan, c agent.Call, sum string, hidden bool) agent.Outcome {
	h.mu.Lock()
	f := h.runs[sum]
	if f == nil {
		inputs, err := p.BindValues(c.Args)
		if err != nil {
			h.mu.Unlock()
			return agent.Outcome{Status: agent.Failed, Error: fmt.Sprintf("inputs of flow %s: %v", p.Name, err), Label: c.Label}
		}
		f = h.start(p, inputs, c.Label, hidden)
		h.runs[sum] = f
	}
	h.mu.Unlock()
	f.setWaiter(ctx)
	defer f.clearWaiter()
	if o, ok := h.await(ctx, f); !ok {
		return o
	}
	h.mu.Lock()
	delete(h.runs, sum)
	h.mu.Unlock()
	return flowOutcome(p, f, c.Label)
}

// await waits for the run to end: ok when it did. A run held past the
// session's wait, or when ctx ends, is told as held; a call whose ctx
// ended while the run was not held is told it did not finish.
func (h *sessionHost) await(ctx context.Context, f *flowRun) (agent.Outcome, bool) {
	var timeout <-chan time.Time
	if h.wait > 0 {
		t := time.NewTimer(h.wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		select {
		case <-f.done:
			return agent.Outcome{}, true
		case <-timeout:
			timeout = nil
			if st := f.heldCall(); st != nil {
				return heldOutcome(st), false
			}
			// Not held: a slow run is waited for.
		case <-ctx.Done():
			if st := f.heldCall(); st != nil {
				return heldOutcome(st), false
			}
			return agent.Outcome{Status: agent.Failed, Stop: true,
				Error: "the call ended before the flow's run did; make the same call again for its outcome"}, false
		}
	}
}

func heldOutcome(st *StepResult) agent.Outcome {
	// Whether a call of the run is held depends on what the call
	// carried: the client learns that much.
	return agent.Outcome{Status: agent.Held, Stop: true, Approval: st.ApprovalID, Label: st.Label}
}

// start starts a run of p in the session's context, its inputs labeled
// with label.
func (h *sessionHost) start(p *flow.Plan, inputs map[string]any, label ifc.Label, hidden bool) *flowRun {
	f := &flowRun{done: make(chan struct{})}
	in := flow.InputLabel().Join(label)
	opts := Options{Wait: true, InputLabel: &in,
		outputLabels: func(m map[string]ifc.Label) { f.labels = m },
		OnHeld: func(st StepResult) {
			f.mu.Lock()
			f.held = &st
			waiter := f.waiter
			f.mu.Unlock()
			if h.onHeld == nil || waiter == nil {
				return
			}
			// A call that carries what the client was not shown (a
			// value other than the inputs it gave) is never described
			// to it.
			shown := hidden
			for _, l := range st.ArgLabels {
				shown = shown || adds(in, l)
			}
			h.onHeld(waiter, st, shown)
		}}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(f.done)
		f.res, f.err = h.e.Run(h.ctx, p, inputs, opts)
	}()
	return f
}

// adds says whether l carries something ctx does not: lower integrity or
// another secrecy tag.
func adds(ctx, l ifc.Label) bool {
	j := ctx.Join(l)
	return j.Integrity() != ctx.Integrity() || !slices.Equal(j.Secrecy(), ctx.Secrecy())
}

// flowOutcome is the outcome of a run as the client is told it. The fact
// that the run completed, was denied or failed depends on every step's
// context label; the outputs carry their own.
func flowOutcome(p *flow.Plan, f *flowRun, label ifc.Label) agent.Outcome {
	if f.err != nil && f.res == nil {
		return agent.Outcome{Status: agent.Failed, Error: fmt.Sprintf("flow %s: %v", p.Name, f.err), Label: label}
	}
	base := label
	var reasons, errs []string
	for _, st := range f.res.Steps {
		base = base.Join(st.Label)
		reasons = append(reasons, st.Reasons...)
		if st.Error != "" && st.Status != StatusSkipped {
			errs = append(errs, "step "+st.ID+": "+st.Error)
		}
	}
	switch f.res.Status {
	case StatusCompleted:
		fields := make(map[string]ifc.Label, len(f.labels))
		for k, l := range f.labels {
			fields[k] = l
		}
		return agent.Outcome{Status: agent.Completed, Output: f.res.Outputs, Base: base, Fields: fields}
	case StatusDenied:
		return agent.Outcome{Status: agent.Denied, Reasons: reasons, Label: base,
			Error: fmt.Sprintf("run %s of flow %s was denied", f.res.RunID, p.Name)}
	}
	why := f.res.Error
	if why == "" {
		why = strings.Join(errs, "; ")
	}
	if why == "" && f.err != nil {
		why = f.err.Error()
	}
	return agent.Outcome{Status: agent.Failed, Label: base,
		Error: fmt.Sprintf("run %s of flow %s ended %s: %s", f.res.RunID, p.Name, f.res.Status, why)}
}

// flowsDone waits for the session's runs to stop, once the session's
// context ended.
func (h *sessionHost) flowsDone(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		h.e.log.Warn("the flows of a session did not stop in time", "err", errors.New("timeout"))
	}
}
