// Package engine runs flows: it schedules each run's steps in the order
// their expressions require (steps that do not depend on each other run at
// the same time), labels every argument with the join of what its
// expression reads, asks the policy gate about every call before it is
// delivered, sends the call to the worker over the bus, and labels the
// output.
package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/ifc/expr"
	"github.com/sluicehq/sluice/ifc/policy"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/schemas"
)

// Step and run statuses.
const (
	StatusCompleted = "completed"
	StatusDenied    = "denied"
	StatusHeld      = "held"
	StatusFailed    = "failed"
	StatusSkipped   = "skipped" // a step it depends on did not complete
)

// Config of an engine.
type Config struct {
	Conn      *nats.Conn
	Subjects  schemas.Subjects
	Policy    *policy.Set
	Audit     *audit.Log
	Manifests map[string]*capabilities.Manifest
	Log       *slog.Logger
}

// Engine runs flows. It is safe for concurrent use.
type Engine struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	inflight  map[string]*inflight // msg id -> call in flight
	approvals map[string]*held     // approval id -> held call
}

type inflight struct {
	worker string
	mu     sync.Mutex
	hosts  []string
}

type held struct {
	run, step string
	decided   chan Approval
}

// Approval is a person's answer to a held call.
type Approval struct {
	Approved bool
	Who      string
}

// New returns an engine.
func New(cfg Config) *Engine {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{cfg: cfg, log: log, inflight: map[string]*inflight{}, approvals: map[string]*held{}}
}

// Track records that the call msgID of worker reached hostport. It is the
// egress broker's hook; it returns false when worker has no such call in
// flight.
func (e *Engine) Track(worker, msgID, hostport string) bool {
	e.mu.Lock()
	f, ok := e.inflight[msgID]
	e.mu.Unlock()
	if !ok || f.worker != worker {
		return false
	}
	f.mu.Lock()
	if !slices.Contains(f.hosts, hostport) {
		f.hosts = append(f.hosts, hostport)
	}
	f.mu.Unlock()
	return true
}

// Decide answers a held call. It returns an error when no call with that
// approval id is waiting.
func (e *Engine) Decide(approvalID string, a Approval) error {
	e.mu.Lock()
	h, ok := e.approvals[approvalID]
	if ok {
		delete(e.approvals, approvalID)
	}
	e.mu.Unlock()
	if !ok {
		return fmt.Errorf("no held call %q is waiting", approvalID)
	}
	h.decided <- a
	return nil
}

// Options of one run.
type Options struct {
	// Wait for a person to answer held calls; otherwise a held call ends
	// the run with status held.
	Wait bool
	// WaitTimeout bounds the wait; zero means until the context ends.
	WaitTimeout time.Duration
	// OnHeld is told of each held call as it is held, so that a client can
	// say how to approve it.
	OnHeld func(StepResult)
	// RunID, when set, is used instead of a new id.
	RunID string
}

// Result of a run.
type Result struct {
	RunID   string         `json:"run_id"`
	Flow    string         `json:"flow"`
	Status  string         `json:"status"`
	Steps   []StepResult   `json:"steps"`
	Outputs map[string]any `json:"outputs"`
	Error   string         `json:"error,omitempty"`
}

// StepResult says what happened to one step.
type StepResult struct {
	ID     string `json:"id"`
	Tool   string `json:"tool"`
	Status string `json:"status"`
	// Label is the step's context label: the join of its arguments'.
	Label     ifc.Label            `json:"label"`
	ArgLabels map[string]ifc.Label `json:"arg_labels,omitempty"`
	// OutputLabel is the label of the output of a completed step.
	OutputLabel *ifc.Label `json:"output_label,omitempty"`
	Decision    string     `json:"decision,omitempty"`
	Rules       []string   `json:"rules,omitempty"`
	Reasons     []string   `json:"reasons,omitempty"`
	ApprovalID  string     `json:"approval_id,omitempty"`
	// Args are the exact arguments of a held call, for the person who
	// decides on it; they are given for held calls only.
	Args map[string]any `json:"args,omitempty"`
	MsgID       string     `json:"msg_id,omitempty"`
	Error       string     `json:"error,omitempty"`
	// Sources of each argument, for people deciding on a held call.
	ArgSources map[string][]string `json:"-"`
}

// value is a step's output with its labels.
type value struct {
	out    any
	base   ifc.Label
	fields map[string]ifc.Label // dotted path below output -> label
}

type run struct {
	e      *Engine
	plan   *flow.Plan
	id     string
	opts   Options
	inputs map[string]any

	mu      sync.Mutex
	values  map[string]*value
	results map[string]*StepResult
}

// Run executes plan with inputs and returns when every step has finished,
// been held, denied, failed or skipped.
func (e *Engine) Run(ctx context.Context, plan *flow.Plan, inputs map[string]any, opts Options) (*Result, error) {
	r := &run{e: e, plan: plan, id: opts.RunID, opts: opts, inputs: inputs,
		values: map[string]*value{}, results: map[string]*StepResult{}}
	if r.id == "" {
		r.id = audit.NewID()
	}
	if err := e.cfg.Audit.Append(ctx, audit.Record{Kind: audit.KindRunStarted, RunID: r.id, Flow: plan.Name}); err != nil {
		return nil, err
	}
	done := map[string]chan struct{}{}
	for _, s := range plan.Steps {
		done[s.ID] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for _, s := range plan.Steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[s.ID])
			for _, d := range s.Deps {
				<-done[d]
			}
			res := r.step(ctx, s)
			r.mu.Lock()
			r.results[s.ID] = res
			r.mu.Unlock()
		}()
	}
	wg.Wait()

	out := &Result{RunID: r.id, Flow: plan.Name, Status: StatusCompleted, Outputs: map[string]any{}}
	for _, s := range plan.Steps {
		res := r.results[s.ID]
		out.Steps = append(out.Steps, *res)
		out.Status = worse(out.Status, res.Status)
	}
	if out.Status == StatusCompleted {
		vars := r.vars()
		for _, name := range plan.OutputNames {
			v, err := plan.Outputs[name].Eval(vars)
			if err != nil {
				out.Status = StatusFailed
				out.Error = fmt.Sprintf("output %s: %v", name, err)
				break
			}
			out.Outputs[name] = v
		}
	}
	rec := audit.Record{Kind: audit.KindRunFinished, RunID: r.id, Flow: plan.Name, Status: out.Status, Error: out.Error}
	if err := e.cfg.Audit.Append(context.WithoutCancel(ctx), rec); err != nil {
		return out, err
	}
	return out, nil
}

// worse orders run outcomes: failed > denied > held > completed.
func worse(a, b string) string {
	rank := map[string]int{StatusCompleted: 0, StatusSkipped: 0, StatusHeld: 1, StatusDenied: 2, StatusFailed: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

func (r *run) vars() map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	steps := make(map[string]any, len(r.values))
	for id, v := range r.values {
		steps[id] = map[string]any{"output": v.out}
	}
	return map[string]any{"inputs": r.inputs, "steps": steps}
}

// lookup returns the label of what path reads.
func (r *run) lookup(p expr.Path) ifc.Label {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch p[0] {
	case "inputs":
		return flow.InputLabel()
	case "steps":
		if len(p) < 2 {
			var all []ifc.Label
			for _, v := range r.values {
				all = append(all, v.all())
			}
			return ifc.Join(all...)
		}
		v, ok := r.values[p[1]]
		if !ok {
			// Not produced: nothing to read. The step is skipped anyway.
			return ifc.UntrustedFrom()
		}
		if len(p) < 4 {
			return v.all()
		}
		return v.at(p[3:])
	}
	return ifc.UntrustedFrom()
}

func (v *value) all() ifc.Label {
	return ifc.Join(append([]ifc.Label{v.base}, slices.Collect(maps.Values(v.fields))...)...)
}

// at joins the base label with the labels of fields that are the path, its
// ancestors or its descendants.
func (v *value) at(path []string) ifc.Label {
	l := v.base
	p := strings.Join(path, ".")
	for f, fl := range v.fields {
		if f == p || strings.HasPrefix(p, f+".") || strings.HasPrefix(f, p+".") {
			l = l.Join(fl)
		}
	}
	return l
}

func (r *run) step(ctx context.Context, s *flow.Step) *StepResult {
	res := &StepResult{ID: s.ID, Tool: s.Call, ArgLabels: map[string]ifc.Label{}, ArgSources: map[string][]string{}}
	for _, d := range s.Deps {
		r.mu.Lock()
		dep := r.results[d]
		r.mu.Unlock()
		if dep == nil || dep.Status != StatusCompleted {
			res.Status = StatusSkipped
			res.Error = fmt.Sprintf("step %s did not complete", d)
			return res
		}
	}
	log := r.e.log.With("run_id", r.id, "step", s.ID, "tool", s.Call)
	vars := r.vars()
	args := map[string]any{}
	var labels []ifc.Label
	for _, name := range s.ArgNames {
		v := s.With[name]
		l := v.Label(r.lookup)
		res.ArgLabels[name] = l
		res.ArgSources[name] = l.Sources()
		labels = append(labels, l)
		x, err := v.Eval(vars)
		if err != nil {
			res.Status, res.Error = StatusFailed, fmt.Sprintf("argument %s: %v", name, err)
			return res
		}
		args[name] = x
	}
	res.Label = ifc.Join(labels...)
	body, err := json.Marshal(args)
	if err != nil {
		res.Status, res.Error = StatusFailed, fmt.Sprintf("arguments: %v", err)
		return res
	}
	if _, err := s.Spec.Input.ValidateJSON(body); err != nil {
		res.Status, res.Error = StatusFailed, fmt.Sprintf("arguments of %s: %v", s.Call, err)
		return res
	}

	// The policy gate: nothing is delivered before this decision.
	m := r.e.cfg.Manifests[s.Worker]
	d := r.e.cfg.Policy.Decide(policy.Input{
		Tool: policy.Tool{Name: s.Call, Worker: s.Worker, Privileged: s.Spec.Privileged,
			Approvable: s.Spec.Approvable, Egress: s.Spec.Egress, Clearance: s.Spec.Clearance},
		Label: res.Label, ArgLabels: res.ArgLabels, Args: args,
		Run: policy.Run{ID: r.id, Flow: r.plan.Name, Step: s.ID},
	})
	res.Decision = string(d.Action)
	for _, rule := range d.Rules {
		res.Rules = append(res.Rules, rule.Name)
	}
	res.Reasons = d.Reasons
	res.MsgID = audit.NewID()
	rec := audit.Record{Kind: audit.KindDecision, RunID: r.id, Flow: r.plan.Name, Step: s.ID, Tool: s.Call,
		MsgID: res.MsgID, Label: &res.Label, ArgLabels: res.ArgLabels, Action: res.Decision,
		Rules: ruleRefs(d.Rules), Reasons: d.Reasons}
	if len(d.Errors) > 0 {
		rec.Error = strings.Join(d.Errors, "; ")
	}
	if err := r.e.cfg.Audit.Append(ctx, rec); err != nil {
		res.Status, res.Error = StatusFailed, err.Error()
		return res
	}
	log.Info("decision", "decision", res.Decision, "rule", strings.Join(res.Rules, ","), "label", res.Label.String())
	switch d.Action {
	case policy.Deny:
		res.Status = StatusDenied
		return res
	case policy.Approve:
		res.ApprovalID = audit.NewID()
		res.Status = StatusHeld
		res.Args = args
		if !r.hold(ctx, res) {
			return res
		}
	}
	return r.call(ctx, s, m, body, res, log)
}

func ruleRefs(rs []policy.RuleRef) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

// hold waits for a person to approve the call, when the run waits. It
// returns true when the call was approved.
func (r *run) hold(ctx context.Context, res *StepResult) bool {
	if !r.opts.Wait {
		if r.opts.OnHeld != nil {
			r.opts.OnHeld(*res)
		}
		return false
	}
	h := &held{run: r.id, step: res.ID, decided: make(chan Approval, 1)}
	r.e.mu.Lock()
	r.e.approvals[res.ApprovalID] = h
	r.e.mu.Unlock()
	defer func() {
		r.e.mu.Lock()
		delete(r.e.approvals, res.ApprovalID)
		r.e.mu.Unlock()
	}()
	if r.opts.OnHeld != nil {
		r.opts.OnHeld(*res)
	}
	var timeout <-chan time.Time
	if r.opts.WaitTimeout > 0 {
		t := time.NewTimer(r.opts.WaitTimeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case a := <-h.decided:
		rec := audit.Record{Kind: audit.KindDecision, RunID: r.id, Flow: r.plan.Name, Step: res.ID, Tool: res.Tool,
			MsgID: res.MsgID, Label: &res.Label, Rules: []string{"approval:" + res.ApprovalID}}
		if a.Approved {
			rec.Action, rec.Reasons = "allow", []string{"approved by " + a.Who}
		} else {
			rec.Action, rec.Reasons = "deny", []string{"denied by " + a.Who}
		}
		if err := r.e.cfg.Audit.Append(ctx, rec); err != nil {
			res.Status, res.Error = StatusFailed, err.Error()
			return false
		}
		if !a.Approved {
			res.Status, res.Decision = StatusDenied, "deny"
			res.Reasons = append(res.Reasons, "denied by "+a.Who)
			return false
		}
		res.Reasons = append(res.Reasons, "approved by "+a.Who)
		res.Args = nil
		return true
	case <-timeout:
		return false
	case <-ctx.Done():
		return false
	}
}

// call delivers the call to the worker and labels the output.
func (r *run) call(ctx context.Context, s *flow.Step, m *capabilities.Manifest, body []byte, res *StepResult, log *slog.Logger) *StepResult {
	e := r.e
	f := &inflight{worker: s.Worker}
	e.mu.Lock()
	e.inflight[res.MsgID] = f
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.inflight, res.MsgID)
		e.mu.Unlock()
	}()
	msg := nats.NewMsg(e.cfg.Subjects.Tool(s.Worker, s.Spec.Name[len(s.Worker)+1:]))
	msg.Data = body
	msg.Header.Set(schemas.HeaderRun, r.id)
	msg.Header.Set(schemas.HeaderStep, s.ID)
	msg.Header.Set(schemas.HeaderMsg, res.MsgID)
	msg.Header.Set(schemas.HeaderIdempotencyKey, r.id+"/"+s.ID)
	if lb, err := json.Marshal(res.Label); err == nil {
		msg.Header.Set(schemas.HeaderLabel, string(lb))
	}
	ctx, cancel := context.WithTimeout(ctx, m.Limits.Timeout+2*time.Second)
	defer cancel()
	var reply *nats.Msg
	var err error
	backoff := 20 * time.Millisecond
	for {
		reply, err = e.cfg.Conn.RequestMsgWithContext(ctx, msg)
		if !errors.Is(err, nats.ErrNoResponders) {
			break
		}
		// The worker is starting or restarting: try again until the deadline.
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, 500*time.Millisecond)
		case <-ctx.Done():
			err = fmt.Errorf("worker %s is not running", s.Worker)
		}
		if ctx.Err() != nil {
			break
		}
	}
	out, labels, err := decodeReply(reply, err, s)
	status := StatusCompleted
	if err != nil {
		status = StatusFailed
		res.Error = err.Error()
	}
	f.mu.Lock()
	hosts := slices.Clone(f.hosts)
	f.mu.Unlock()
	base := ifc.Join(res.Label, s.Spec.OutputLabel)
	for _, h := range hosts {
		// Whatever came over the network was written by whoever controls
		// that host.
		base = base.Join(ifc.UntrustedFrom(ifc.WebSource(h)))
	}
	rec := audit.Record{Kind: audit.KindResult, RunID: r.id, Flow: r.plan.Name, Step: s.ID, Tool: s.Call,
		MsgID: res.MsgID, Label: &base, Status: status, Error: res.Error}
	if aerr := e.cfg.Audit.Append(context.WithoutCancel(ctx), rec); aerr != nil && err == nil {
		status, res.Error = StatusFailed, aerr.Error()
	}
	res.Status = status
	if status != StatusCompleted {
		log.Warn("step failed", "err", res.Error)
		return res
	}
	v := &value{out: out, base: base, fields: map[string]ifc.Label{}}
	for path, l := range labels {
		v.fields[path] = l
	}
	all := v.all()
	res.OutputLabel = &all
	r.mu.Lock()
	r.values[s.ID] = v
	r.mu.Unlock()
	return res
}

func decodeReply(reply *nats.Msg, err error, s *flow.Step) (any, map[string]ifc.Label, error) {
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return nil, nil, fmt.Errorf("%s timed out", s.Call)
		}
		return nil, nil, fmt.Errorf("%s: %w", s.Call, err)
	}
	var rep schemas.Reply
	if err := json.Unmarshal(reply.Data, &rep); err != nil {
		return nil, nil, fmt.Errorf("%s: malformed reply from worker %s", s.Call, s.Worker)
	}
	if rep.Error != nil {
		return nil, nil, fmt.Errorf("%s: %s", s.Call, rep.Error.Error())
	}
	out, err := decodeJSON(rep.Output)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: malformed output from worker %s", s.Call, s.Worker)
	}
	if s.Spec.Output != nil {
		if _, err := s.Spec.Output.ValidateJSON(rep.Output); err != nil {
			return nil, nil, fmt.Errorf("%s: output does not match the tool's output schema: %v", s.Call, err)
		}
	}
	return out, rep.Labels, nil
}

// decodeJSON decodes into the values expressions work with: integers as
// int64, other numbers as float64.
func decodeJSON(b []byte) (any, error) {
	if len(b) == 0 {
		return nil, nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return numbers(v), nil
}

func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	}
	return v
}
