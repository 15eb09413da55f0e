// Package engine runs flows: it schedules each run's steps in the order
// their expressions require (steps that do not depend on each other run at
// the same time), labels every argument with the join of what its
// expression reads, and hands every call to the policy gate
// (orchestrator/gate), the only path to a worker, which decides it,
// records the decision, has the run hold it for a person when the policy
// says so, enforces the caps, delivers it and labels the output. The
// engine keeps what the gate decides: a run's values and their labels,
// its passes, its held calls and their answers.
//
// A call goes ahead with its context label as the policy lowered it for
// that call (by endorse and declassify rules), or endorsed by the person
// who approved it (approved:<who>); its output is labeled with the join of
// that label, the tool's declared output label and every host it reached.
// Nothing else in the run is lowered.
//
// What a held call is, and the states it may go through, is
// orchestrator/approval's; where an unfinished run and its completed calls
// are kept, so that a run outlives its orchestrator, is
// orchestrator/runstore's; an agent step's loop is orchestrator/agent's.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/ifc/expr"
	"github.com/sluicehq/sluice/ifc/policy"
	"github.com/sluicehq/sluice/internal/jsonvalue"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/orchestrator/gate"
	"github.com/sluicehq/sluice/orchestrator/internal/echo"
	"github.com/sluicehq/sluice/orchestrator/internal/fault"
	"github.com/sluicehq/sluice/orchestrator/internal/telemetry"
	"github.com/sluicehq/sluice/orchestrator/lease"
	"github.com/sluicehq/sluice/orchestrator/runstore"
	"github.com/sluicehq/sluice/schemas"
)

// Step and run statuses (schemas.Status…).
const (
	StatusCompleted   = schemas.StatusCompleted
	StatusDenied      = schemas.StatusDenied
	StatusHeld        = schemas.StatusHeld
	StatusFailed      = schemas.StatusFailed
	StatusSkipped     = schemas.StatusSkipped
	StatusInterrupted = schemas.StatusInterrupted
	StatusCancelled   = schemas.StatusCancelled
)

// Config of an engine.
type Config struct {
	Conn     *nats.Conn
	Subjects schemas.Subjects
	// Deployment names the run state's buckets and the caps bucket
	// (schemas.StoreName); "" for the default deployment.
	Deployment string
	// Policy is the policy set runs start with; SetPolicy replaces it.
	Policy    *policy.Set
	Audit     *audit.Log
	Manifests map[string]*capabilities.Manifest
	Log       *slog.Logger
	// Replicas of the engine's JetStream buckets: 1 on one server, 3 on
	// a cluster of three or more.
	Replicas int
	// LoadFlow checks a flow a run started with, to resume it in a new
	// process; file and src are the plan's File and Source.
	LoadFlow func(file string, src []byte) (*flow.Plan, error)
	// Delivered, when set, is told of every call the gate lets through,
	// as it is delivered; it must not block.
	Delivered func(Delivery)
	// Held, when set, is told of every call newly held for a person, once
	// its approval is stored; it must not block.
	Held func(Approval)
	// Secrets finds the configured secrets in every form it knows. Every
	// worker's reply is checked with it before it is labeled: a reply that
	// holds one fails its call, and the audit log records a violation that
	// names the secret, never its value. Nil checks nothing.
	Secrets *echo.Matcher
	// Fault, when set, reports that the state directory cannot be
	// written (a full disk): a write of the run state waited for fails at
	// once with that cause, and so does the run, instead of waiting for an
	// answer the server will not send. Give the audit log the same one.
	Fault *fault.Store
	// Models names, by worker, the model its configuration asks for (an
	// llm worker's model), for the traces (gate.Config.Models).
	Models map[string]string
	// Leases, when set, share the deployment's runs with other
	// orchestrators: a run is driven only under its lease (lease.go).
	Leases *lease.Leases
	// CancelAt, with Leases, asks orchestrator owner, which holds the
	// lease of run id, to cancel it there (CancelHere): Cancel through an
	// orchestrator that does not drive the run. It returns ErrNoAnswer
	// when owner does not answer (it is gone), and an error that is
	// lease.ErrHeld when owner no longer holds the lease.
	CancelAt func(ctx context.Context, owner, id, who string) (*RunInfo, error)
	// Ended, with Leases, is told of each run that ends, or is held for
	// a person, in a pass this engine resumed (taken over, or resumed by
	// an answer): its result, which no client waits for here, and the
	// error the pass ended with.
	Ended func(res *Result, err error)
}

// Delivery is a call the gate let through (gate.Delivery).
type Delivery = gate.Delivery

// Engine runs flows. It is safe for concurrent use.
type Engine struct {
	cfg Config
	log *slog.Logger
	// policy is the set a run takes when it starts (SetPolicy): each
	// run reads it once, so that it is decided by one set throughout.
	policy atomic.Pointer[policy.Set]

	// ctx bounds the runs the engine resumes on its own; Close ends it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	approvals map[string]*held     // approval id -> a run waiting for it
	runs      map[string]*runState // run id -> a run this engine drives or has held

	// gate is the only path from a run to a worker.
	gate *gate.Gate
	// now is the clock of per-day caps.
	now func() time.Time

	stMu sync.Mutex
	st   *runstore.Store

	// endorsed are the values people endorsed for unfinished runs: read
	// from the store when it is opened, added to as people endorse.
	enMu     sync.Mutex
	endorsed []Endorsement
}

// WorkerExited is the supervisor's hook: a process of worker exited, so
// the calls in flight to it go again (gate.Gate.WorkerExited).
func (e *Engine) WorkerExited(worker string) { e.gate.WorkerExited(worker) }

// Track is the egress broker's hook: the call msgID of worker reached
// hostport (gate.Gate.Track).
func (e *Engine) Track(worker, msgID, hostport string) bool {
	return e.gate.Track(worker, msgID, hostport)
}

// Filled is the egress broker's hook: it filled a secret into a request
// of worker serving call msgID (gate.Gate.Filled).
func (e *Engine) Filled(worker, msgID string) { e.gate.Filled(worker, msgID) }

// SpanContext is the span of call msgID in flight (gate.Gate.SpanContext),
// the egress broker's parent of its requests' spans.
func (e *Engine) SpanContext(msgID string) trace.SpanContext { return e.gate.SpanContext(msgID) }

// held is a run waiting in this process for the answer to a held call.
type held struct {
	decided chan Answer
}

// runState is a run this engine knows: one that it drives, or that it
// held and may resume.
type runState struct {
	id     string
	plan   *flow.Plan
	inputs map[string]any
	// inputLabel is the label of the inputs when it is not
	// flow.InputLabel() (Options.InputLabel).
	inputLabel *ifc.Label
	// policy decides every call of the run, in every pass: the set in
	// force when the run started, or when this engine took it up to
	// resume it. A reload (SetPolicy) changes the set of the runs that
	// start after it, never of one under way.
	policy *policy.Set
	// fresh until the end of the first pass of a run started here:
	// nothing of it is in the store to read back.
	fresh bool
	// start is the run's start, handed to the log with the first record
	// of its first pass (pipeline.go).
	start *start
	// active while a pass over the run's steps is going on; dirty when a
	// held call of it was answered during the pass, so that another pass
	// follows.
	active, dirty bool
	// stop ends the passes going on, with a cause (ErrCancelled); stopped
	// is closed once they have ended. Both are set when the run becomes
	// active.
	stop    context.CancelCauseFunc
	stopped chan struct{}
	// force resumes the run although a person interrupted it (sluice up
	// --resume).
	force bool
}

// Answer is a person's answer to a held call. Hash, when set, must be the
// hash of the call the person was shown (Approval.Hash).
type Answer struct {
	Approved bool
	Who      string
	Hash     string
	// Remember, with an approval, keeps the answer for later calls within
	// the scope the person picked (approval.Remembered).
	Remember *RememberScope
	// Endorse, with an approval, endorses the values of some of the
	// call's arguments for the rest of its run (approval.Endorsement).
	Endorse *EndorseScope
}

// New returns an engine.
func New(cfg Config) *Engine {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg, log: log, now: time.Now, approvals: map[string]*held{},
		runs: map[string]*runState{}}
	e.policy.Store(cfg.Policy)
	e.ctx, e.cancel = context.WithCancel(context.Background())
	orchestrator := ""
	if cfg.Leases != nil {
		orchestrator = cfg.Leases.Owner()
	}
	e.gate = gate.New(gate.Config{Conn: cfg.Conn, Orchestrator: orchestrator, Subjects: cfg.Subjects, Manifests: cfg.Manifests, Log: log,
		Deployment: cfg.Deployment, Replicas: cfg.Replicas, Delivered: cfg.Delivered, Secrets: cfg.Secrets, Fault: cfg.Fault, Models: cfg.Models,
		Now: func() time.Time { return e.now() }})
	return e
}

// SetPolicy replaces, at once, the policy set of the runs that start from
// now on, and of the runs this engine takes up again (held, or left by
// another orchestrator) that it has not yet read. A run under way keeps
// the set it started with: no run is decided partly by one set and partly
// by another.
func (e *Engine) SetPolicy(p *policy.Set) { e.policy.Store(p) }

// Policy returns the policy set runs start with now.
func (e *Engine) Policy() *policy.Set { return e.policy.Load() }

// RunsKeeping lists, sorted, the runs this engine drives or holds whose
// policy set is another than p: after SetPolicy(p), the runs under way
// that go on under the set they started with.
func (e *Engine) RunsKeeping(p *policy.Set) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for id, rs := range e.runs {
		if rs.policy != nil && rs.policy != p {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
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
	// Policy, when set, decides the run instead of the engine's current
	// set (Policy): the set a caller checked the run against.
	Policy *policy.Set
	// OnStarted, when set, is told the run's id once the run is set up,
	// before any of its records is written and any call is made.
	OnStarted func(runID string)
	// InputLabel, when set, is the label of the run's inputs instead of
	// flow.InputLabel(): a flow an MCP client starts carries the label
	// of its session. It is kept with the run, for every pass.
	InputLabel *ifc.Label
	// outputLabels, when set, is told the label of each output of a run
	// that completed (a session shows them to its client).
	outputLabels func(map[string]ifc.Label)
}

// Result of a run (schemas.RunResult).
type Result = schemas.RunResult

// StepResult says what happened to one step (schemas.StepResult).
type StepResult = schemas.StepResult

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
	// inputLabel is the label of every input (runState.inputLabel).
	inputLabel ifc.Label
	// policy decides every call of the run (runState.policy).
	policy *policy.Set

	mu      sync.Mutex
	values  map[string]*value
	results map[string]*StepResult

	usage gate.Usage // per-run cap budgets

	// fresh: the first pass of a run started here (runState.fresh).
	fresh bool
	// acks are the writes of this pass not yet known to be stored.
	acks *acks
	// pubMu orders the pass's records; start and tail are what it holds
	// back, to ride on the next record (pipeline.go): the run's start,
	// and a result. merge: the pass holds results back.
	pubMu sync.Mutex
	start *start
	tail  *audit.Record
	merge bool
	// left counts the steps of the pass that have not finished.
	left atomic.Int64
	// lost is why a record held back could not be handed on (flush).
	lost error
	// keys are the calls (idempotency keys) this pass recorded in the
	// store, to forget when the run finishes.
	keysMu sync.Mutex
	keys   map[string]bool
	// read are the steps another step reads; leaves are the records of
	// calls of the others, written only if the pass ends unfinished.
	read   map[string]bool
	leaves map[string]leaf
}

// keepLeaves writes the records of the calls no other step reads, for a
// run that goes on in another pass.
func (r *run) keepLeaves(st *runstore.Store) {
	r.keysMu.Lock()
	defer r.keysMu.Unlock()
	for idem, l := range r.leaves {
		b, err := encodeCall(&l.res, l.v, l.args)
		if err != nil {
			r.e.log.Warn("completed call not recorded; it would be made again (with the same idempotency key) if the run resumed",
				"run_id", r.id, "call", idem, "err", err)
			continue
		}
		r.acks.add(st.WriteCall(idem, b))
		r.keys[idem] = true
	}
	r.leaves = map[string]leaf{}
}

func (r *run) wrote(idem string) {
	r.keysMu.Lock()
	r.keys[idem] = true
	r.keysMu.Unlock()
}

// Run executes plan with inputs and returns when every step has finished,
// been held, denied, failed or skipped. The run is kept in the store until
// it finishes: a held run resumes when its call is answered, here or in
// the next orchestrator on the same state, and a run interrupted by the
// end of ctx or of the process resumes with the next ResumeAll.
func (e *Engine) Run(ctx context.Context, plan *flow.Plan, inputs map[string]any, opts Options) (*Result, error) {
	st, err := e.store(ctx)
	if err != nil {
		return nil, err
	}
	// A state directory that cannot be written refuses the run at once,
	// before its start is handed to the audit log (which would refuse it
	// too, at its first record).
	if err := e.cfg.Fault.Err(); err != nil {
		return nil, err
	}
	id := opts.RunID
	if id == "" {
		id = audit.NewID()
	}
	if _, err := e.acquire(ctx, id); err != nil {
		return nil, err
	}
	rec, err := newRunRecord(id, plan, inputs, opts.InputLabel)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	// Both are handed on with the first record of the run, its start on
	// it when it is a decision, and stored before the first call is
	// delivered (pipeline.go). The run is put in the store only once the
	// audit log took its start: a log that refuses it (the state
	// directory cannot be written) leaves no run behind to resume.
	steps := make([]audit.PlanStep, len(plan.Steps))
	for i, s := range plan.Steps {
		steps[i] = audit.PlanStep{ID: s.ID, Tool: s.Call, Deps: s.Deps}
	}
	started := &start{rec: audit.Record{Kind: audit.KindRunStarted, RunID: id, Flow: plan.Name, Steps: steps},
		put: func() waiter { return st.WriteRun(id, b) }}
	pol := opts.Policy
	if pol == nil {
		pol = e.Policy()
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	stopped := make(chan struct{})
	defer close(stopped)
	rs := &runState{id: id, plan: plan, inputs: inputs, inputLabel: opts.InputLabel, policy: pol, active: true, fresh: true,
		start: started, stop: stop, stopped: stopped}
	e.mu.Lock()
	e.runs[id] = rs
	e.mu.Unlock()
	if opts.OnStarted != nil {
		opts.OnStarted(id)
	}
	res, err := e.drive(ctx, rs, opts)
	e.releaseLease(id, res, err)
	return res, err
}

// ErrInterrupted says a run stopped before it finished because its
// context ended; it is kept. Stopped by its orchestrator's end, it
// resumes when the next one starts (ResumeAll); stopped by a person (a
// context cancelled with cause ErrStoppedByUser), only when asked
// (ResumeRuns with interrupted).
var ErrInterrupted = errors.New("interrupted")

// ErrStoppedByUser is the cause a command gives the context of a run that
// a person interrupted (Ctrl-C on sluice run): the run is kept as
// interrupted and not resumed by itself.
var ErrStoppedByUser = errors.New("interrupted by the user")

// ErrCancelled says a run was ended for good (Cancel).
var ErrCancelled = errors.New("cancelled")

// drive makes passes over a run's steps until no held call of it was
// answered during the last one.
func (e *Engine) drive(ctx context.Context, rs *runState, opts Options) (*Result, error) {
	for {
		res, err := e.pass(ctx, rs, opts)
		e.mu.Lock()
		if err == nil && res.Status == StatusHeld && rs.dirty {
			rs.dirty = false
			e.mu.Unlock()
			if err := e.cfg.Audit.Append(ctx, audit.Record{Kind: audit.KindRunResumed, RunID: rs.id, Flow: rs.plan.Name}); err != nil {
				return res, err
			}
			continue
		}
		rs.active = false
		switch {
		case err != nil || res.Status != StatusHeld:
			delete(e.runs, rs.id)
		case e.cfg.LoadFlow != nil:
			// A held run waits for an answer with nothing of it in
			// memory but its id and policy set: its flow and inputs
			// are read back from the store when it resumes, as after a
			// restart, not kept for each of thousands held.
			rs.plan, rs.inputs, rs.inputLabel, rs.stop, rs.stopped = nil, nil, nil, nil, nil
		}
		e.mu.Unlock()
		return res, err
	}
}

// pass runs every step of a run that has not completed before (a
// completed call's output is read back from the store), and records the
// outcome: a finished run is removed from the store, a held one is kept.
func (e *Engine) pass(ctx context.Context, rs *runState, opts Options) (res *Result, err error) {
	// Each pass is a trace: a held run that resumes is another one.
	ctx, span := telemetry.Start(ctx, "run "+rs.plan.Name)
	defer func() {
		status := StatusFailed
		if err == nil && res != nil {
			status = res.Status
		}
		telemetry.End(span, status, telemetry.AttrRunID.String(rs.id), telemetry.AttrFlow.String(rs.plan.Name))
	}()
	r := e.newPass(rs, opts)
	r.schedule(ctx)
	out := r.outcome()
	if ctx.Err() != nil {
		return e.interrupted(ctx, r, rs, out)
	}
	r.outputs(out)
	return e.record(context.WithoutCancel(ctx), r, rs, out)
}

// newPass prepares one pass of a run, decided throughout by the policy set
// the run holds (the engine's, when it first runs here).
func (e *Engine) newPass(rs *runState, opts Options) *run {
	e.mu.Lock()
	if rs.policy == nil {
		rs.policy = e.Policy()
	}
	pol := rs.policy
	e.mu.Unlock()
	r := &run{e: e, plan: rs.plan, id: rs.id, opts: opts, inputs: rs.inputs, inputLabel: flow.InputLabel(), policy: pol, fresh: rs.fresh,
		values: map[string]*value{}, results: map[string]*StepResult{}, acks: &acks{}, keys: map[string]bool{},
		read: map[string]bool{}, leaves: map[string]leaf{}, start: rs.start, merge: true}
	if rs.inputLabel != nil {
		r.inputLabel = *rs.inputLabel
	}
	for _, s := range rs.plan.Steps {
		for _, d := range s.Deps {
			r.read[d] = true
		}
	}
	rs.fresh, rs.start = false, nil
	return r
}

// schedule runs every step once the steps it reads have finished: steps
// that do not depend on each other run at the same time. A run of one
// step runs it in this goroutine: there is nothing to run beside it.
func (r *run) schedule(ctx context.Context) {
	r.left.Store(int64(len(r.plan.Steps)))
	if len(r.plan.Steps) == 1 && len(r.plan.Steps[0].Deps) == 0 {
		r.runStep(ctx, r.plan.Steps[0])
		return
	}
	done := map[string]chan struct{}{}
	for _, s := range r.plan.Steps {
		done[s.ID] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for _, s := range r.plan.Steps {
		wg.Go(func() {
			defer close(done[s.ID])
			for _, d := range s.Deps {
				<-done[d]
			}
			r.runStep(ctx, s)
		})
	}
	wg.Wait()
}

// runStep runs step s of the run and keeps its result.
func (r *run) runStep(ctx context.Context, s *flow.Step) {
	start := time.Now()
	sctx, span := telemetry.Start(ctx, "step "+s.ID)
	res := r.step(sctx, s)
	if ctx.Err() != nil && res.Status != StatusCompleted && res.Status != StatusDenied {
		// Stopped, not failed: the step did not finish (or did
		// not start) because the run was interrupted.
		res.Status = StatusInterrupted
		res.Error = ""
	}
	telemetry.End(span, res.Status, telemetry.AttrStep.String(s.ID))
	telemetry.Step(s.Call, res.Status, time.Since(start))
	r.mu.Lock()
	r.results[s.ID] = res
	r.mu.Unlock()
	r.left.Add(-1)
}

// outcome is the run's result once its steps ran: the worst of their
// statuses.
func (r *run) outcome() *Result {
	out := &Result{RunID: r.id, Flow: r.plan.Name, Status: StatusCompleted, Outputs: map[string]any{}}
	for _, s := range r.plan.Steps {
		res := r.results[s.ID]
		out.Steps = append(out.Steps, *res)
		out.Status = worse(out.Status, res.Status)
	}
	return out
}

// outputs evaluates the flow's outputs when every step completed.
func (r *run) outputs(out *Result) {
	if out.Status != StatusCompleted {
		return
	}
	vars := r.vars()
	labels := make(map[string]ifc.Label, len(r.plan.OutputNames))
	for _, name := range r.plan.OutputNames {
		v, err := r.plan.Outputs[name].Eval(vars)
		if err != nil {
			out.Status = StatusFailed
			out.Error = fmt.Sprintf("output %s: %v", name, err)
			return
		}
		out.Outputs[name] = v
		labels[name] = r.plan.Outputs[name].Label(r.lookup)
	}
	if r.opts.outputLabels != nil {
		r.opts.outputLabels(labels)
	}
}

// record records how the pass ended: the run's last audit record, then a
// held run is kept in the store, and a finished one removed from it.
func (e *Engine) record(ctx context.Context, r *run, rs *runState, out *Result) (*Result, error) {
	if err := e.checkLease(r.id); err != nil {
		// Another orchestrator drives the run now: its outcome is theirs
		// to record.
		out.Status = StatusInterrupted
		_ = r.acks.wait(ctx)
		return out, err
	}
	if err := r.recordEnd(out); err != nil {
		return notRecorded(out, err)
	}
	st, err := e.store(ctx)
	if err != nil {
		return notRecorded(out, err)
	}
	if out.Status == StatusHeld {
		return e.keepHeld(ctx, st, r, rs, out)
	}
	if err := e.removeFinished(ctx, st, r); err != nil {
		return notRecorded(out, err)
	}
	return out, nil
}

// recordEnd hands the record of the pass's end to the log. A step whose
// result cannot be handed on with it did not complete.
func (r *run) recordEnd(out *Result) error {
	rec := audit.Record{Kind: audit.KindRunFinished, RunID: r.id, Flow: r.plan.Name, Status: out.Status, Error: out.Error}
	for _, s := range out.Steps {
		if s.Status == StatusSkipped {
			// Recorded by nothing else: no call was decided.
			rec.Steps = append(rec.Steps, audit.PlanStep{ID: s.ID, Tool: s.Tool, Status: s.Status})
		}
	}
	step, err := r.finish(rec)
	if err == nil {
		return nil
	}
	for i := range out.Steps {
		if s := &out.Steps[i]; s.ID == step && s.Status == StatusCompleted {
			// A try that cannot be recorded does not count.
			s.Status, s.Error = StatusFailed, err.Error()
		}
	}
	return err
}

// keepHeld keeps a run held for a person in the store, with the outputs
// its later steps will read.
func (e *Engine) keepHeld(ctx context.Context, st *runstore.Store, r *run, rs *runState, out *Result) (*Result, error) {
	r.keepLeaves(st)
	if err := r.stored(ctx); err != nil {
		return notRecorded(out, err)
	}
	if err := e.setRunStatus(ctx, st, rs, runstore.Held); err != nil {
		return notRecorded(out, err)
	}
	return out, nil
}

// removeFinished removes a finished run from the store. A run that wrote
// few keys, all in this pass, purges each with its other writes; one that
// wrote more (an agent records every call) or that ran before removes
// them all with one request.
func (e *Engine) removeFinished(ctx context.Context, st *runstore.Store, r *run) error {
	few := r.fresh && len(r.keys) <= 2
	if few {
		for k := range r.keys {
			r.acks.add(st.PurgeCall(k))
		}
		r.acks.add(st.PurgeRun(r.id))
	}
	if err := r.stored(ctx); err != nil {
		return err
	}
	if !few {
		if err := st.Finish(ctx, r.id); err != nil {
			e.log.Warn("finished run not removed from the store", "run_id", r.id, "err", err)
		}
	}
	if err := e.forgetEndorsements(ctx, st, r.id); err != nil {
		e.log.Warn("the finished run's endorsements not removed from the store", "run_id", r.id, "err", err)
	}
	return nil
}

// notRecorded is the outcome of a run whose records could not all be
// stored (the state directory cannot be written, say): failed, with that
// error, whatever its steps did — a run is never reported completed, or
// held for an answer, without its records.
func notRecorded(out *Result, err error) (*Result, error) {
	out.Status, out.Error = StatusFailed, err.Error()
	return out, err
}

func (e *Engine) setRunStatus(ctx context.Context, st *runstore.Store, rs *runState, status runstore.Phase) error {
	rec, err := st.GetRun(ctx, rs.id)
	if err != nil {
		if rec, err = newRunRecord(rs.id, rs.plan, rs.inputs, rs.inputLabel); err != nil {
			return err
		}
	}
	rec.Status = status
	if status == runstore.Running {
		rec.StoppedAt = nil
	}
	return st.PutRun(ctx, rec)
}

// newRunRecord is the record of a run as it starts.
func newRunRecord(id string, plan *flow.Plan, inputs map[string]any, inputLabel *ifc.Label) (*runstore.RunRecord, error) {
	in, err := json.Marshal(inputs)
	if err != nil {
		return nil, fmt.Errorf("inputs: %w", err)
	}
	return &runstore.RunRecord{ID: id, Flow: plan.Name, File: plan.File, Source: plan.Source, Inputs: in,
		InputLabel: inputLabel, Status: runstore.Running, Created: time.Now().UTC()}, nil
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
		return r.inputLabel
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

// shape returns the label of the value at p itself, without what lies
// below it: the label of which elements a list has, not of their contents.
func (r *run) shape(p expr.Path) ifc.Label {
	if len(p) < 4 || p[0] != "steps" {
		return r.lookup(p)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.values[p[1]]
	if !ok {
		return ifc.UntrustedFrom()
	}
	return v.labels().Shape(p[3:])
}

// labels is the label arithmetic of the value (ifc.Fields).
func (v *value) labels() ifc.Fields { return ifc.Fields{Base: v.base, Fields: v.fields} }

func (v *value) all() ifc.Label { return v.labels().All() }

// at returns what reading path inside the value reveals (ifc.Fields.At).
func (v *value) at(path []string) ifc.Label { return v.labels().At(path) }

// decodeJSON decodes into the values expressions work with: integers as
// int64, other numbers as float64.
func decodeJSON(b []byte) (any, error) { return jsonvalue.Decode(b) }
