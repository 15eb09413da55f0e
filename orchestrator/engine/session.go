package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/agent"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/schemas"
)

// A session is a run driven from outside, call by call — an MCP client's
// connection (orchestrator/mcpserver). It is an agent step whose calls a
// client chooses instead of a model (agent.Session): every call goes
// through the gate with the session's context label, every result the
// client is sent goes through the agent's conversation, and the audit log
// records the session as a run, from its start to its end. A session is not
// kept in the store: it ends with its client, and a restart does not
// resume it.

// SessionStep is the id of a session's one step in its records.
const SessionStep = "session"

// SessionOptions describe a session.
type SessionOptions struct {
	// Name is the session's flow name in the audit log and `sluice runs`.
	Name string
	// Tools are the tools the client may call.
	Tools []flow.AgentTool
	// Flows are the flows the client may start, each offered as a tool
	// named after the flow (flow.Plan.Tool): a call starts a run of it
	// whose inputs carry the label of the call (sessionflow.go).
	Flows []*flow.Plan
	// Model, when set, names the worker whose extract tool answers
	// inspect; HideUntrusted hands results below the session's integrity
	// to the client as handles.
	Model         string
	HideUntrusted bool
	// Label is what the client is taken to know when it starts.
	Label ifc.Label
	// WaitTimeout bounds how long a held call waits for a person before
	// the client is told it is held; zero means until the client gives up.
	WaitTimeout time.Duration
	// OnHeld is told of each held call as it starts to wait, with the
	// context of the Call that made it and whether its arguments carry a
	// value the client was not shown (then only a person at Sluice's own
	// pages should see them). Ending that context ends the wait: the
	// client is told the call is held.
	OnHeld func(ctx context.Context, s StepResult, hidden bool)
}

// Session is an open session. Its methods are safe for concurrent use;
// its calls are made one at a time.
type Session struct {
	e   *Engine
	r   *run
	rs  *runState
	h   *sessionHost
	a   *agent.Session
	ctx context.Context

	mu     sync.Mutex
	closed bool
}

// OpenSession records the start of a session and returns it.
func (e *Engine) OpenSession(ctx context.Context, o SessionOptions) (*Session, error) {
	if o.Name == "" {
		return nil, errors.New("a session needs a name")
	}
	step := &flow.Step{ID: SessionStep, Call: "session"}
	plan := &flow.Plan{Name: o.Name, Steps: []*flow.Step{step}}
	id := audit.NewID()
	started, err := e.cfg.Audit.Publish(audit.Record{Kind: audit.KindRunStarted, RunID: id, Flow: o.Name,
		Steps: []audit.PlanStep{{ID: SessionStep, Tool: "session"}}})
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancelCause(e.ctx)
	rs := &runState{id: id, plan: plan, policy: e.Policy(), active: true, stop: stop, stopped: make(chan struct{})}
	opts := Options{Wait: true, WaitTimeout: o.WaitTimeout}
	// Not fresh: a call the client makes again after its approval was
	// answered finds that approval under its key (sessionHost).
	r := &run{e: e, plan: plan, id: id, opts: opts, policy: rs.policy, values: map[string]*value{},
		results: map[string]*StepResult{}, acks: &acks{ws: []waiter{started}}, keys: map[string]bool{},
		read: map[string]bool{}, leaves: map[string]leaf{}}
	res := &StepResult{ID: SessionStep, Tool: "session"}
	h := &sessionHost{agentHost: agentHost{r: r, s: step, res: res, idem: id + "/" + SessionStep}, held: map[string]string{},
		e: e, ctx: sctx, wait: o.WaitTimeout, onHeld: o.OnHeld, flows: map[string]*flow.Plan{}, runs: map[string]*flowRun{}}
	tools, err := h.addFlows(o.Tools, o.Flows)
	if err != nil {
		stop(nil)
		return nil, err
	}
	if o.OnHeld != nil {
		r.opts.OnHeld = func(s StepResult) {
			h.mu.Lock()
			ctx, hidden := h.callCtx, h.hidden
			h.mu.Unlock()
			o.OnHeld(ctx, s, hidden)
		}
	}
	a := &flow.Agent{Tools: tools, HideUntrusted: o.HideUntrusted, Model: o.Model}
	if o.Model != "" {
		m := e.cfg.Manifests[o.Model]
		if m == nil {
			stop(nil)
			return nil, fmt.Errorf("session: no worker %q to inspect with", o.Model)
		}
		if a.Extract, _ = m.Tool("extract"); a.Extract == nil {
			stop(nil)
			return nil, fmt.Errorf("session: worker %s has no extract tool to inspect with", o.Model)
		}
	}
	s := &Session{e: e, r: r, rs: rs, h: h, ctx: sctx,
		a: agent.NewSession(h, agent.Step{ID: SessionStep, Agent: a, Label: o.Label,
			Chat: flow.AgentTool{Name: o.Model + ".extract", Worker: o.Model, Spec: a.Extract}})}
	e.mu.Lock()
	e.runs[id] = rs
	e.mu.Unlock()
	if err := r.acks.wait(ctx); err != nil {
		s.forget()
		return nil, err
	}
	return s, nil
}

// ID is the session's run id in the audit log.
func (s *Session) ID() string { return s.r.id }

// Tools lists what the client is offered (agent.Session.Tools).
func (s *Session) Tools() []schemas.ChatTool { return s.a.Tools() }

// Label is the session's context label.
func (s *Session) Label() ifc.Label { return s.a.Label() }

// Call makes a call the client asked for and returns what it is sent.
// It ends when ctx does, or when the session is closed.
func (s *Session) Call(ctx context.Context, name string, args json.RawMessage) string {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	return s.a.Call(ctx, name, args)
}

// Close ends the session: calls under way stop, and the audit log records
// its end. Calling it again does nothing.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.rs.stop(errors.New("the session ended"))
	// The flows it started stop too: a held one is kept, as every
	// interrupted run is, and resumes when an orchestrator starts again
	// on this state.
	s.h.flowsDone(ctx)
	rec := audit.Record{Kind: audit.KindRunFinished, RunID: s.r.id, Flow: s.r.plan.Name, Status: StatusCompleted}
	err := s.r.publish(rec)
	if st, serr := s.e.store(ctx); serr == nil {
		s.r.keysMu.Lock()
		for k := range s.r.keys {
			s.r.acks.add(st.PurgeCall(k))
		}
		s.r.keysMu.Unlock()
	}
	if werr := s.r.acks.wait(ctx); err == nil {
		err = werr
	}
	s.forget()
	return err
}

func (s *Session) forget() {
	s.rs.stop(nil)
	s.e.mu.Lock()
	delete(s.e.runs, s.r.id)
	s.e.mu.Unlock()
	select {
	case <-s.rs.stopped:
	default:
		close(s.rs.stopped)
	}
}

// sessionHost is the engine's side of a session: an agent step's host
// whose calls are keyed so that the same call made again, after it was
// held, finds its approval.
type sessionHost struct {
	agentHost
	mu sync.Mutex
	// held maps a held call (its tool and arguments) to its key.
	held map[string]string
	// callCtx is the context of the call under way (the session makes
	// one at a time); hidden says it carries a value the client was not
	// shown (a handle's, put in its place).
	callCtx context.Context
	hidden  bool

	// The flows the client may start, and what they need: the engine,
	// the session's context (a run outlives the call that started it,
	// not the session), how long a call waits for a held run, and whom
	// to tell of a held call.
	e      *Engine
	ctx    context.Context
	wait   time.Duration
	onHeld func(context.Context, StepResult, bool)
	flows  map[string]*flow.Plan
	// runs are the flow runs not yet reported to the client, by the
	// call that started them (callSum).
	runs map[string]*flowRun
	wg   sync.WaitGroup
}

// Call mediates a call of the client (agent.Host).
func (h *sessionHost) Call(ctx context.Context, c agent.Call) agent.Outcome {
	sum := callSum(c.Tool.Name, c.Args)
	hidden := c.Handles
	for _, l := range c.ArgLabels {
		hidden = hidden || !l.Equal(c.Context)
	}
	if p := h.flows[c.Tool.Name]; p != nil {
		return h.flow(ctx, p, c, sum, hidden)
	}
	h.mu.Lock()
	if k, ok := h.held[sum]; ok {
		c.Key = k
	}
	h.callCtx, h.hidden = ctx, hidden
	h.mu.Unlock()
	o := h.agentHost.Call(ctx, c)
	// A step result lists its calls for the run's result; a session has
	// none to return, and would keep every call it ever made.
	h.res.Calls = h.res.Calls[:0]
	h.mu.Lock()
	if o.Status == agent.Held {
		h.held[sum] = c.Key
	} else {
		delete(h.held, sum)
	}
	h.mu.Unlock()
	return o
}

func callSum(tool string, args map[string]any) string {
	b, _ := json.Marshal(args)
	sum := sha256.Sum256(append([]byte(tool+"\x00"), b...))
	return hex.EncodeToString(sum[:])
}
