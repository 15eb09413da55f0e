package engine

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/sluicehq/sluice/orchestrator/lease"
	"github.com/sluicehq/sluice/orchestrator/runstore"
)

// Several orchestrators of one deployment (Config.Leases): each run is
// driven by the orchestrator holding its lease (orchestrator/lease).
//
// A run's lease is taken before its first record (Run) and before a pass
// over it resumes (resumeRun), and checked before every audit record of
// the run is handed to the log and again once the records are stored,
// right before a call is delivered (gateRun): a stale owner records no
// decision and delivers nothing. Losing the lease stops the run's passes
// at once, and they end writing nothing more: neither the run's records
// nor its state, which the new owner now keeps.
//
// What makes a call happen once across a takeover: a call completed and
// recorded in the steps bucket is not made again (restore); a call that
// was in flight, or completed without its record (the output of a step
// no other step reads is written only when the pass ends unfinished), is
// made again by the new owner with the same idempotency key, which the
// worker keeps (the payment ledger charges a key once). The check
// before delivery leaves a window: a call checked within the lease's
// margin (TTL less twice the renewal period) before it is taken may reach
// its worker after the new owner's; the key makes that one call once too.

// acquire takes the lease of run id; from is the orchestrator it was
// taken from, if any.
func (e *Engine) acquire(ctx context.Context, id string) (from string, err error) {
	if e.cfg.Leases == nil {
		return "", nil
	}
	return e.cfg.Leases.Acquire(ctx, id)
}

// leaseUnsure bounds how long a run waits, acting on nothing, for a lease
// whose renewals fail to be renewed again.
const leaseUnsure = 30 * time.Second

// checkLease returns nil while this engine holds the lease of run id; once
// it does not, it stops the run's passes and returns why. A lease that
// lapsed because its renewals failed (the bus lost a node, and elects
// another leader) and that no other orchestrator took is waited for,
// up to leaseUnsure: the run records and delivers nothing meanwhile, and
// goes on if the next renewal keeps it.
func (e *Engine) checkLease(id string) error {
	if e.cfg.Leases == nil {
		return nil
	}
	err := e.cfg.Leases.Check(id)
	for deadline := time.Now().Add(leaseUnsure); err != nil && e.cfg.Leases.Renewing(id) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		err = e.cfg.Leases.Check(id)
	}
	if err != nil {
		e.LeaseLost(id)
		return err
	}
	return nil
}

// LeaseLost stops the passes over run id going on here, which then end
// writing nothing more: another orchestrator took the run
// (lease.Config.Lost).
func (e *Engine) LeaseLost(id string) {
	e.mu.Lock()
	var stop context.CancelCauseFunc
	if rs := e.runs[id]; rs != nil && rs.active {
		stop = rs.stop
	}
	e.mu.Unlock()
	if stop != nil {
		stop(lease.ErrLost)
	}
}

// TakeOver resumes run id, whose lease another orchestrator stopped
// renewing or released (lease.Config.Expired): the pass takes the lease
// first, and goes on only if it gets it.
func (e *Engine) TakeOver(id string) { e.resume(id) }

// releaseLease gives up the lease of run id once a pass over it ended with
// err: released for another orchestrator to take at once when this one
// stopped with the run unfinished, deleted when it finished, is held for
// a person or was cancelled, and left alone when this engine did not, or
// no longer, hold it.
//
// A run held for a person whose call was answered, through another
// orchestrator, while this one still held the lease, is resumed here:
// that orchestrator could not take the lease then.
func (e *Engine) releaseLease(id string, res *Result, err error) {
	if e.cfg.Leases == nil || errors.Is(err, lease.ErrLost) || errors.Is(err, lease.ErrHeld) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.cfg.Leases.Release(ctx, id, errors.Is(err, ErrInterrupted))
	if err != nil || res == nil || res.Status != StatusHeld || e.ctx.Err() != nil {
		return
	}
	st, serr := e.store(ctx)
	if serr != nil {
		return
	}
	answered, serr := answeredMeanwhile(ctx, st, id, res)
	if serr != nil {
		e.log.Warn("approvals not read after the run was held; an answer given meanwhile applies when the run is next resumed", "run_id", id, "err", serr)
		return
	}
	if answered {
		e.resume(id)
	}
}

// answeredMeanwhile says whether a person answered a call of run id that
// its pass, res, held. It reads the approvals the held steps name, a few
// reads whatever the number of calls held in the deployment; only a held
// step that names none (none should) makes it read every approval.
func answeredMeanwhile(ctx context.Context, st *runstore.Store, id string, res *Result) (bool, error) {
	var ids []string
	for _, s := range res.Steps {
		if s.Status != StatusHeld {
			continue
		}
		if s.ApprovalID == "" {
			ids = nil
			break
		}
		ids = append(ids, s.ApprovalID)
	}
	answered := func(a *Approval) bool {
		return a.RunID == id && (a.Status == ApprovalApproved || a.Status == ApprovalDenied)
	}
	if len(ids) == 0 {
		all, err := st.AllApprovals(ctx)
		if err != nil {
			return false, err
		}
		return slices.ContainsFunc(all, func(a Approval) bool { return answered(&a) }), nil
	}
	for _, aid := range ids {
		a, _, err := st.GetApproval(ctx, aid)
		if err != nil {
			return false, err
		}
		if answered(a) {
			return true, nil
		}
	}
	return false, nil
}
