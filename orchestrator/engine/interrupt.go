package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/orchestrator/approval"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/lease"
	"github.com/sluicehq/sluice/orchestrator/runstore"
)

// When a kept run goes on (RunInfo.Resume).
const (
	// ResumeOnStart: the run was running when its orchestrator stopped
	// (sluice up stopped, or crashed); the next orchestrator on the state
	// resumes it, and sluice up says so.
	ResumeOnStart = "on_start"
	// ResumeOnRequest: a person interrupted the run (Ctrl-C on sluice
	// run); it goes on only when asked (sluice up --resume), and sluice
	// cancel ends it.
	ResumeOnRequest = "on_request"
	// ResumeOnAnswer: the run waits for a person to answer a held call.
	ResumeOnAnswer = "on_answer"
)

// RunInfo is a run the store keeps: one that has not finished.
type RunInfo struct {
	ID   string `json:"run_id"`
	Flow string `json:"flow"`
	// Status is running, held or interrupted.
	Status string `json:"status"`
	// Resume says when it goes on: ResumeOnStart, ResumeOnRequest or
	// ResumeOnAnswer.
	Resume string `json:"resume"`
	// StoppedAt are the steps it stopped at when it was interrupted.
	StoppedAt []string  `json:"stopped_at,omitempty"`
	Created   time.Time `json:"created"`
	// CancelledIn, with several orchestrators, is the one that cancelled
	// the run (Cancel): the one that drove it, or that took its lease.
	// TakenFrom is the orchestrator that drove it and no longer answered,
	// whose lease was taken once it expired to cancel the run.
	CancelledIn string `json:"cancelled_in,omitempty"`
	TakenFrom   string `json:"taken_from,omitempty"`
}

// info says what a stored run is and when it goes on.
func info(rec *runstore.RunRecord) RunInfo {
	i := RunInfo{ID: rec.ID, Flow: rec.Flow, Status: string(rec.Status), StoppedAt: rec.StoppedAt, Created: rec.Created}
	switch rec.Status {
	case runstore.Held:
		i.Resume = ResumeOnAnswer
	case runstore.Interrupted:
		i.Resume = ResumeOnRequest
	default:
		i.Resume = ResumeOnStart
	}
	return i
}

// interrupted ends a pass whose context ended before the run finished. A
// run being cancelled is left to Cancel. Any other is kept where it
// stopped, recorded as interrupted in the audit log and, when a person
// stopped it (ErrStoppedByUser), marked in the store so that no
// orchestrator resumes it unless asked.
func (e *Engine) interrupted(ctx context.Context, r *run, rs *runState, out *Result) (*Result, error) {
	cause := context.Cause(ctx)
	ctx = context.WithoutCancel(ctx)
	if errors.Is(cause, ErrCancelled) {
		out.Status = StatusCancelled
		_ = r.stored(ctx)
		return out, fmt.Errorf("run %s %w", r.id, ErrCancelled)
	}
	if errors.Is(cause, lease.ErrLost) {
		// Another orchestrator drives the run now: where it stands is
		// theirs to record.
		out.Status = StatusInterrupted
		_ = r.acks.wait(ctx)
		return out, fmt.Errorf("run %s: %w", r.id, cause)
	}
	out.Status = StatusInterrupted
	st, err := e.store(ctx)
	if err != nil {
		return out, err
	}
	r.keepLeaves(st)
	if err := r.stored(ctx); err != nil {
		return out, fmt.Errorf("run %s interrupted, and its last steps could not be recorded: %w", r.id, err)
	}
	var at []string
	var steps []audit.PlanStep
	for _, s := range out.Steps {
		if s.Status == StatusInterrupted {
			at = append(at, s.ID)
			steps = append(steps, audit.PlanStep{ID: s.ID, Tool: s.Tool})
		}
	}
	byUser := errors.Is(cause, ErrStoppedByUser)
	resume := ResumeOnStart
	status := runstore.Running
	why := "its orchestrator stopped; it resumes when one starts again on this state (sluice up)"
	if byUser {
		resume, status = ResumeOnRequest, runstore.Interrupted
		why = "interrupted by the user; kept, and resumed only when asked (sluice up --resume); sluice cancel ends it"
	}
	rec, err := st.GetRun(ctx, rs.id)
	if err != nil {
		if rec, err = newRunRecord(rs.id, rs.plan, rs.inputs, rs.inputLabel); err != nil {
			return out, err
		}
	}
	rec.Status, rec.StoppedAt = status, at
	if err := st.PutRun(ctx, rec); err != nil {
		return out, fmt.Errorf("run %s interrupted, and that could not be recorded: %w", r.id, err)
	}
	if err := e.cfg.Audit.Append(ctx, audit.Record{Kind: audit.KindRunInterrupted, RunID: r.id, Flow: r.plan.Name,
		Status: StatusInterrupted, Resume: resume, Steps: steps, Reasons: []string{why}}); err != nil {
		return out, fmt.Errorf("run %s interrupted, and that could not be recorded in the audit log: %w", r.id, err)
	}
	if byUser {
		return out, fmt.Errorf("run %s %w", r.id, ErrStoppedByUser)
	}
	return out, fmt.Errorf("run %s %w", r.id, ErrInterrupted)
}

// Unfinished lists the runs the store keeps, oldest first.
func (e *Engine) Unfinished(ctx context.Context) ([]RunInfo, error) {
	st, err := e.store(ctx)
	if err != nil {
		return nil, err
	}
	return unfinishedInfo(ctx, st)
}

// RunPhase is how the store keeps run id (running, held, interrupted),
// "" once it no longer keeps it: the run finished.
func (e *Engine) RunPhase(ctx context.Context, id string) (runstore.Phase, error) {
	st, err := e.store(ctx)
	if err != nil {
		return "", err
	}
	rec, err := st.GetRun(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return rec.Status, nil
}

// Unfinished lists the runs of deployment ("" for the default one) kept in
// the store reached by nc, oldest first: what a reader of a copy of the
// store shows.
func Unfinished(ctx context.Context, nc *nats.Conn, deployment string) ([]RunInfo, error) {
	st, err := runstore.Open(ctx, nc, deployment, 1, nil)
	if err != nil {
		return nil, err
	}
	return unfinishedInfo(ctx, st)
}

func unfinishedInfo(ctx context.Context, st *runstore.Store) ([]RunInfo, error) {
	recs, err := st.Unfinished(ctx)
	if err != nil {
		return nil, fmt.Errorf("list unfinished runs: %w", err)
	}
	out := make([]RunInfo, 0, len(recs))
	for _, r := range recs {
		out = append(out, info(r))
	}
	slices.SortFunc(out, func(a, b RunInfo) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// ErrNoAnswer: the orchestrator holding a run's lease did not answer a
// request to cancel the run (Config.CancelAt).
var ErrNoAnswer = errors.New("the orchestrator driving the run did not answer")

// cancelRetry is how often Cancel tries again to reach the run's holder
// or take its lease while the holder does not answer.
const cancelRetry = 250 * time.Millisecond

// Cancel ends an unfinished run for good: a pass over it going on in this
// engine is stopped (a call in flight is abandoned; a call already made
// stays made), its held calls can no longer be approved, the audit log
// records who cancelled it, and the store forgets it, so that no
// orchestrator resumes it.
//
// With several orchestrators, the one that holds the run's lease cancels
// it (another would remove the run under it): a run another orchestrator
// drives is cancelled there, through Config.CancelAt. When that one does
// not answer (it died), Cancel tries again until its lease expires, takes
// it, and cancels the run here; until ctx ends.
func (e *Engine) Cancel(ctx context.Context, id, who string) (*RunInfo, error) {
	gone := "" // the holder that did not answer
	for {
		ri, err := e.CancelHere(ctx, id, who)
		if e.cfg.CancelAt == nil || !errors.Is(err, lease.ErrHeld) {
			if ri != nil && gone != "" {
				ri.TakenFrom = gone
			}
			return ri, err
		}
		// A lease that changed as it was read names no holder: read
		// again.
		if held := (*lease.HeldError)(nil); errors.As(err, &held) {
			ri, err = e.cfg.CancelAt(ctx, held.Owner, id, who)
			switch {
			case err == nil:
				return ri, nil
			case errors.Is(err, ErrNoAnswer):
				gone = held.Owner
			case !errors.Is(err, lease.ErrHeld):
				return nil, err
			}
		}
		// The holder is gone, or gave the lease up meanwhile: the lease
		// is taken here once it expires, or asked of its new holder.
		select {
		case <-ctx.Done():
			if gone != "" {
				return nil, fmt.Errorf("cancel run %s: orchestrator %s drives it and does not answer, and its lease did not expire in the time given: "+
					"try again (another orchestrator takes the run over within 10 s of its holder's end)", id, gone)
			}
			return nil, fmt.Errorf("cancel run %s: %w", id, context.Cause(ctx))
		case <-time.After(cancelRetry):
		}
	}
}

// CancelHere is Cancel without asking another orchestrator: it cancels
// the run only when this engine holds its lease or can take it, and
// returns a *lease.HeldError naming the holder otherwise.
func (e *Engine) CancelHere(ctx context.Context, id, who string) (*RunInfo, error) {
	st, err := e.store(ctx)
	if err != nil {
		return nil, err
	}
	notFound := fmt.Errorf("no unfinished run %q: it finished or was cancelled (sluice runs shows it), or never ran here", id)
	rec, err := st.GetRun(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	if e.cfg.Leases != nil {
		if _, err := e.acquire(ctx, id); err != nil {
			return nil, fmt.Errorf("cancel run %s: %w", id, err)
		}
		defer e.releaseLease(id, nil, nil)
		// Its holder may have finished it just before giving the lease
		// up: read again under the lease.
		rec, err = st.GetRun(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, notFound
		}
		if err != nil {
			return nil, err
		}
	}
	if err := e.stopRun(ctx, id); err != nil {
		return nil, err
	}
	if err := e.withdrawHeld(ctx, st, id, who); err != nil {
		return nil, err
	}
	if err := e.cfg.Audit.Append(ctx, audit.Record{Kind: audit.KindRunFinished, RunID: id, Flow: rec.Flow,
		Status: StatusCancelled, User: who, Reasons: []string{"cancelled by " + who}}); err != nil {
		return nil, fmt.Errorf("cancel run %s: %w", id, err)
	}
	if err := st.Finish(ctx, id); err != nil {
		return nil, fmt.Errorf("cancel run %s: recorded as cancelled, but not removed from the store: %w", id, err)
	}
	_ = e.forgetEndorsements(ctx, st, id) // Finish removed them from the store
	e.mu.Lock()
	delete(e.runs, id)
	e.mu.Unlock()
	ri := info(rec)
	if e.cfg.Leases != nil {
		ri.CancelledIn = e.cfg.Leases.Owner()
	}
	return &ri, nil
}

// stopRun stops the run if it is under way here, and waits until its
// steps have stopped.
func (e *Engine) stopRun(ctx context.Context, id string) error {
	e.mu.Lock()
	rs := e.runs[id]
	var stopped chan struct{}
	if rs != nil && rs.active && rs.stop != nil {
		rs.stop(ErrCancelled)
		stopped = rs.stopped
	}
	e.mu.Unlock()
	if stopped == nil {
		return nil
	}
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cancel run %s: its steps did not stop: %w", id, ctx.Err())
	}
}

// withdrawHeld cancels the held calls of run id that were not yet made,
// so that no answer can let one through. It reads the run's open
// approvals from the store's view of them, not every approval.
func (e *Engine) withdrawHeld(ctx context.Context, st *runstore.Store, id, who string) error {
	open, err := st.OpenApprovalsOf(ctx, id)
	if err != nil {
		return fmt.Errorf("cancel run %s: list its held calls: %w", id, err)
	}
	for _, a := range open {
		cur, rev, err := st.GetApproval(ctx, a.ID)
		if err != nil {
			return fmt.Errorf("cancel run %s: %w", id, err)
		}
		if cur.Advance(approval.Cancel) != nil {
			continue // answered and used meanwhile: nothing to withdraw
		}
		now := time.Now().UTC()
		cur.Who, cur.Decided = who, &now
		if err := st.UpdateApproval(ctx, cur, rev); err != nil {
			return fmt.Errorf("cancel run %s: withdraw held call %s: %w", id, a.ID, err)
		}
		e.mu.Lock()
		delete(e.approvals, a.ID)
		e.mu.Unlock()
	}
	return nil
}
