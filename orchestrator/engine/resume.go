package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/orchestrator/gate"
	"github.com/sluicehq/sluice/orchestrator/lease"
	"github.com/sluicehq/sluice/orchestrator/runstore"
)

// resume starts another pass over a run in the background: at once when
// no pass over it is going on, else right after the current one.
func (e *Engine) resume(id string) { e.resumeForced(id, false) }

// resumeForced is resume; with force, a run a person interrupted goes on
// too.
func (e *Engine) resumeForced(id string, force bool) {
	e.mu.Lock()
	rs := e.runs[id]
	if rs != nil && rs.active {
		rs.dirty = true
		e.mu.Unlock()
		return
	}
	if rs == nil {
		rs = &runState{id: id}
		e.runs[id] = rs
	}
	rs.active = true
	rs.force = rs.force || force
	ctx, stop := context.WithCancelCause(e.ctx)
	stopped := make(chan struct{})
	rs.stop, rs.stopped = stop, stopped
	e.mu.Unlock()
	if e.ctx.Err() != nil {
		stop(nil)
		close(stopped)
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(stopped)
		defer stop(nil)
		res, err := e.resumeRun(ctx, rs)
		e.releaseLease(id, res, err)
		if e.cfg.Ended != nil && res != nil && (ended(res.Status) || res.Status == StatusHeld) && !errors.Is(err, lease.ErrLost) {
			e.cfg.Ended(res, err)
		}
		if errors.Is(err, lease.ErrHeld) {
			e.log.Info("run not resumed here: another orchestrator drives it", "run_id", id, "err", err)
			return
		}
		if errors.Is(err, errKeptInterrupted) {
			e.log.Info("run not resumed: a person interrupted it (sluice up --resume resumes it)", "run_id", id)
			return
		}
		if err != nil {
			e.log.Error("resumed run stopped", "run_id", id, "err", err)
			return
		}
		e.log.Info("resumed run", "run_id", id, "status", res.Status)
	}()
}

// ended says whether a pass that ended with status ended its run: not
// one held for a person nor interrupted, which another pass goes on with.
func ended(status string) bool {
	return status != StatusHeld && status != StatusInterrupted
}

// errKeptInterrupted: a run a person interrupted is not resumed unless
// asked.
var errKeptInterrupted = errors.New("interrupted by a person: resumed only when asked")

func (e *Engine) resumeRun(ctx context.Context, rs *runState) (*Result, error) {
	fail := func(err error) (*Result, error) {
		e.mu.Lock()
		rs.active = false
		delete(e.runs, rs.id)
		e.mu.Unlock()
		return nil, err
	}
	st, err := e.store(ctx)
	if err != nil {
		return fail(err)
	}
	// The run's lease first: nothing of it is read or written unless this
	// orchestrator drives it.
	from, err := e.acquire(ctx, rs.id)
	if err != nil {
		return fail(err)
	}
	resumed := audit.Record{Kind: audit.KindRunResumed, RunID: rs.id}
	if from != "" {
		e.log.Info("run taken over from another orchestrator", "run_id", rs.id, "from", from, "by", e.cfg.Leases.Owner())
		resumed.User = "orchestrator:" + e.cfg.Leases.Owner()
		resumed.Reasons = []string{"taken over from orchestrator " + from + ", whose lease expired or was released"}
	}
	if rs.plan == nil {
		rec, err := st.GetRun(ctx, rs.id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return fail(fmt.Errorf("run %s is not in the store: it finished, or was never started here", rs.id))
		}
		if err != nil {
			return fail(err)
		}
		if rec.Status == runstore.Interrupted && !rs.force {
			// An answer to a held call of it was recorded; it applies
			// when the run is resumed.
			return fail(errKeptInterrupted)
		}
		if e.cfg.LoadFlow == nil {
			return fail(errors.New("this engine cannot load flows to resume runs"))
		}
		plan, err := e.cfg.LoadFlow(rec.File, rec.Source)
		if err != nil {
			return fail(fmt.Errorf("load the flow of run %s (%s): %w", rs.id, rec.File, err))
		}
		inputs, err := decodeJSON(rec.Inputs)
		if err != nil {
			return fail(fmt.Errorf("inputs of run %s: %w", rs.id, err))
		}
		in, _ := inputs.(map[string]any)
		plan.RestoreInputs(in)
		e.mu.Lock()
		rs.plan, rs.inputs, rs.inputLabel = plan, in, rec.InputLabel
		e.mu.Unlock()
	}
	if ctx.Err() != nil {
		// Cancelled (or stopped) before it went on.
		return fail(context.Cause(ctx))
	}
	if err := e.setRunStatus(ctx, st, rs, runstore.Running); err != nil {
		return fail(err)
	}
	resumed.Flow = rs.plan.Name
	if err := e.cfg.Audit.Append(ctx, resumed); err != nil {
		return fail(err)
	}
	return e.drive(ctx, rs, Options{})
}

// ResumeAll resumes, in the background, every run the store holds that was
// running when its orchestrator stopped, and every held run whose call was
// approved or denied meanwhile. It returns how many it resumed. Held runs
// still waiting for a person stay where they are until answered, and runs
// a person interrupted until asked (ResumeRuns).
func (e *Engine) ResumeAll(ctx context.Context) (int, error) {
	runs, err := e.ResumeRuns(ctx, false)
	return len(runs), err
}

// ResumeRuns is ResumeAll that says which runs it resumes, each as it
// stood; with interrupted, the runs a person interrupted are resumed too.
func (e *Engine) ResumeRuns(ctx context.Context, interrupted bool) ([]RunInfo, error) {
	st, err := e.store(ctx)
	if err != nil {
		return nil, err
	}
	runs, err := st.Unfinished(ctx)
	if err != nil {
		return nil, fmt.Errorf("list unfinished runs: %w", err)
	}
	approvals, err := st.AllApprovals(ctx)
	if err != nil {
		return nil, fmt.Errorf("list approvals: %w", err)
	}
	out := toResume(runs, approvals, interrupted)
	for _, r := range out {
		e.resumeForced(r.ID, r.Status == string(runstore.Interrupted))
	}
	return out, nil
}

// toResume picks, oldest first, the runs to resume: those that were
// running when their orchestrator stopped, those with a held call a person
// answered meanwhile, and — only when interrupted is set — those a person
// interrupted.
func toResume(runs []*runstore.RunRecord, approvals []Approval, interrupted bool) []RunInfo {
	byID := map[string]*runstore.RunRecord{}
	todo := map[string]bool{}
	for _, r := range runs {
		byID[r.ID] = r
		if r.Status == runstore.Running || (interrupted && r.Status == runstore.Interrupted) {
			todo[r.ID] = true
		}
	}
	for _, a := range approvals {
		if a.Status != ApprovalApproved && a.Status != ApprovalDenied {
			continue
		}
		if r := byID[a.RunID]; r != nil && (r.Status != runstore.Interrupted || interrupted) {
			todo[a.RunID] = true
		}
	}
	var out []RunInfo
	for _, r := range runs {
		if todo[r.ID] {
			out = append(out, info(r))
		}
	}
	slices.SortFunc(out, func(a, b RunInfo) int { return a.Created.Compare(b.Created) })
	return out
}

// Close stops the runs the engine drives on its own and waits for them to
// stop: each is left in the store, to resume with the next ResumeAll. The
// store's watch of the approvals stops (a later read starts it again).
func (e *Engine) Close() {
	e.cancel()
	e.wg.Wait()
	e.stMu.Lock()
	st := e.st
	e.stMu.Unlock()
	if st != nil {
		st.Close()
	}
}

// restore returns a call's result and output from the store when it
// completed in an earlier pass or process.
func (r *run) restore(ctx context.Context, s *flow.Step, idem string) (*StepResult, *value, bool) {
	if r.fresh {
		return nil, nil, false
	}
	st, err := r.e.store(ctx)
	if err != nil {
		return nil, nil, false
	}
	rec, err := st.GetCall(ctx, idem)
	if err != nil || rec == nil || rec.Result == nil {
		return nil, nil, false
	}
	out, err := decodeJSON(rec.Output)
	if err != nil {
		return nil, nil, false
	}
	v := &value{out: out, base: rec.Base, fields: rec.Fields}
	if v.fields == nil {
		v.fields = map[string]ifc.Label{}
	}
	r.usage.Restore(r.policy, s.Call, rec.Args)
	r.usage.Spent(r.policy, s.Call, rec.Result.Usage)
	for _, c := range rec.Result.Calls {
		// The calls of a completed agent step, which is not run again.
		r.usage.Spent(r.policy, c.Tool, c.Usage)
	}
	res := *rec.Result
	return &res, v, true
}

// leaf is a completed call of a step no other step reads, kept in memory
// until its pass ends.
type leaf struct {
	res  StepResult
	v    *value
	args map[string]any
}

func encodeCall(res *StepResult, v *value, args map[string]any) ([]byte, error) {
	out, err := json.Marshal(v.out)
	if err != nil {
		return nil, err
	}
	return json.Marshal(&runstore.CallRecord{Result: res, Output: out, Base: v.base, Fields: v.fields, Args: args})
}

// save keeps a completed call's result and output, so that it is not made
// again when the run resumes. The output of a step that another step reads
// is written at once. The output of one no other step reads is kept in
// memory until the pass ends, and written only if the run did not finish:
// lost in a crash, the call goes again with its idempotency key and
// changes nothing else; and a run that finishes in one pass, as most do,
// writes two records fewer for it. A call sent at most once
// (gate.AtMostOnce) is written at once: lost, its call would not go again
// but fail as one that may have taken effect.
func (r *run) save(ctx context.Context, s *flow.Step, idem string, res *StepResult, v *value, args map[string]any) {
	if !r.read[s.ID] && !gate.AtMostOnce(s.Spec) {
		r.keysMu.Lock()
		r.leaves[idem] = leaf{res: *res, v: v, args: args}
		r.keysMu.Unlock()
		return
	}
	b, err := encodeCall(res, v, args)
	var st *runstore.Store
	if err == nil {
		st, err = r.e.store(ctx)
	}
	if err == nil {
		// Not waited for before what follows: were it lost with the
		// process, the call would go again with its key.
		r.acks.add(st.WriteCall(idem, b))
		r.wrote(idem)
	}
	if err != nil {
		r.e.log.Warn("completed call not recorded; it would be made again (with the same idempotency key) if the run resumed",
			"run_id", r.id, "call", idem, "err", err)
	}
}
