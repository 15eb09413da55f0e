package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/approval"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/orchestrator/runstore"
	"github.com/sluicehq/sluice/schemas"
)

// Approval states (approval.Pending, …), by the engine's names.
const (
	ApprovalPending    = approval.Pending
	ApprovalApproved   = approval.Approved
	ApprovalDenied     = approval.Denied
	ApprovalUsed       = approval.Used
	ApprovalSuperseded = approval.Superseded
	ApprovalCancelled  = approval.Cancelled
)

// Approval is a call held for a person (approval.Approval).
type Approval = approval.Approval

// Lookalike flags an argument of a held call that looks like a value the
// person trusts (schemas.Lookalike, found by approval.Lookalikes).
type Lookalike = schemas.Lookalike

// store opens the engine's buckets the first time it is asked.
func (e *Engine) store(ctx context.Context) (*runstore.Store, error) {
	e.stMu.Lock()
	defer e.stMu.Unlock()
	if e.st != nil {
		return e.st, nil
	}
	st, err := runstore.Open(ctx, e.cfg.Conn, e.cfg.Deployment, e.cfg.Replicas, e.cfg.Fault)
	if err != nil {
		return nil, err
	}
	if err := e.loadEndorsements(ctx, st); err != nil {
		return nil, fmt.Errorf("read the endorsed values: %w", err)
	}
	e.st = st
	return st, nil
}

// Approvals lists the calls waiting for a person, oldest first, each
// flagged for lookalikes against the registries and the values people
// approved calls of its tool with, as they are now. It reads the pending
// approvals alone, not every approval ever answered.
func (e *Engine) Approvals(ctx context.Context) ([]Approval, error) {
	st, err := e.store(ctx)
	if err != nil {
		return nil, err
	}
	out, err := st.PendingApprovals(ctx)
	if err != nil {
		return nil, fmt.Errorf("list approvals: %w", err)
	}
	registries := e.Policy().Registries()
	approved := map[string]*approval.ApprovedValues{}
	for i := range out {
		a := &out[i]
		if _, ok := approved[a.Tool]; !ok {
			if approved[a.Tool], err = st.ApprovedOf(ctx, a.Tool); err != nil {
				return nil, fmt.Errorf("list approvals: %w", err)
			}
		}
		a.Lookalikes = approval.Lookalikes(a.Tool, a.Args, registries, approved[a.Tool])
	}
	return out, nil
}

// Approval returns one approval, whatever its state.
func (e *Engine) Approval(ctx context.Context, id string) (*Approval, error) {
	st, err := e.store(ctx)
	if err != nil {
		return nil, err
	}
	a, _, err := st.GetApproval(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("no held call %q", id)
	}
	return a, err
}

// Decide answers a held call. The answer is stored before anything else
// happens, so it holds across a restart; then the run goes on — in the
// process waiting for it, or resumed here. An answer to a call that is
// not waiting (never held, already answered, used, or replaced by a
// changed call) is refused, as is an approval for a call other than the
// one the person was shown (a.Hash).
func (e *Engine) Decide(ctx context.Context, id string, ans Answer) error {
	st, err := e.store(ctx)
	if err != nil {
		return err
	}
	a, rev, err := st.GetApproval(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("no held call %q", id)
	}
	if err != nil {
		return err
	}
	if err := answerable(a, ans); err != nil {
		return err
	}
	// The scope is checked before anything is stored: a scope that cannot
	// be kept refuses the whole answer.
	rem, en, err := e.scopes(a, ans)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	a.Who, a.Decided = ans.Who, &now
	event, rec := approval.Deny, answerRecord(a, ans, rem, en)
	if ans.Approved {
		event = approval.Approve
	}
	if err := a.Advance(event); err != nil {
		return err
	}
	if err := st.UpdateApproval(ctx, a, rev); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("approval %s was answered by someone else at the same time", id)
		}
		return fmt.Errorf("record the answer to %s: %w", id, err)
	}
	if err := e.cfg.Audit.Append(ctx, rec); err != nil {
		e.log.Error("audit append failed", "err", err)
	}
	if err := e.keep(ctx, st, rem, en); err != nil {
		return fmt.Errorf("approval %s is approved, but %w", id, err)
	}
	e.answered(a, ans)
	return nil
}

// scopes are what an answer asks to keep beyond its call, checked: a
// remembered answer, an endorsement.
func (e *Engine) scopes(a *Approval, ans Answer) (*Remembered, *Endorsement, error) {
	rem, err := e.rememberScope(a, ans)
	if err != nil {
		return nil, nil, err
	}
	en, err := e.endorseScope(a, ans)
	if err != nil {
		return nil, nil, err
	}
	return rem, en, nil
}

// answerRecord is the audit record of the answer ans to the held call a:
// who answered, and what it keeps beyond the call.
func answerRecord(a *Approval, ans Answer, rem *Remembered, en *Endorsement) audit.Record {
	action, why := "deny", "denied by "+ans.Who
	if ans.Approved {
		action, why = "allow", "approved by "+ans.Who+"; endorses this call once"
	}
	if rem != nil {
		why += ", and remembers it for " + rem.Describe()
	}
	rec := audit.Record{Kind: audit.KindAnswer, RunID: a.RunID, Flow: a.Flow, Step: a.Step, Tool: a.Tool,
		Label: &a.Label, Action: action, Rules: []string{"approval:" + a.ID}}
	if en != nil {
		why += ", and endorses " + en.Describe()
		rec.Rules = append(rec.Rules, "endorsement:"+en.ID)
	}
	rec.Reasons = []string{why}
	return rec
}

// keep stores what an approval asked to keep beyond its call: a
// remembered answer, an endorsement of values for the rest of the run.
func (e *Engine) keep(ctx context.Context, st *runstore.Store, rem *Remembered, en *Endorsement) error {
	if rem != nil {
		if err := e.remember(ctx, st, rem); err != nil {
			return fmt.Errorf("it could not be remembered: %w", err)
		}
	}
	if en != nil {
		if err := e.endorse(ctx, st, en); err != nil {
			return fmt.Errorf("the values could not be endorsed: %w", err)
		}
	}
	return nil
}

// answerable refuses an answer to a call that is not waiting, or that is
// not the one the person was shown.
func answerable(a *Approval, ans Answer) error {
	switch a.Status {
	case ApprovalPending:
	case ApprovalSuperseded:
		return fmt.Errorf("approval %s no longer applies: the call changed and was held again under a new id (sluice approvals)", a.ID)
	default:
		return fmt.Errorf("approval %s was already %s by %s", a.ID, a.Status, a.Who)
	}
	if ans.Hash != "" && ans.Hash != a.Hash {
		return fmt.Errorf("approval %s: the held call is not the one you were shown (its hash is %s)", a.ID, a.Hash)
	}
	return nil
}

// answered lets the run go on: the pass waiting for the answer, if one is,
// or a pass resumed here.
func (e *Engine) answered(a *Approval, ans Answer) {
	e.mu.Lock()
	if h, ok := e.approvals[a.ID]; ok {
		delete(e.approvals, a.ID)
		e.mu.Unlock()
		h.decided <- ans
		return
	}
	e.mu.Unlock()
	e.resume(a.RunID)
}

// hold keeps a call policy held as an approval in the store — the one it
// already has, when the same call was held before (an earlier pass, or
// before a restart) — and, when the run waits, waits for the answer. It
// returns who approved the call, and true when it may go ahead: the
// approval was used for it, once.
func (r *run) hold(ctx context.Context, s *flow.Step, res *StepResult, args map[string]any, idem string) (string, bool) {
	fail := func(err error) (string, bool) {
		res.Status, res.Error = StatusFailed, err.Error()
		return "", false
	}
	st, err := r.e.store(ctx)
	if err != nil {
		return fail(err)
	}
	hash := approval.Hash(idem, s.Call, args, res.Label, res.ArgLabels)
	a, rev, err := r.heldBefore(ctx, st, idem, hash)
	if err != nil {
		return fail(err)
	}
	var rem *approval.Remembered
	if a == nil || a.Status == ApprovalPending {
		// An answer a person asked to be remembered, whose scope takes
		// this call, answers it (and counts the use) before anyone is
		// asked.
		if rem, err = r.rememberedAnswer(ctx, st, s, args); err != nil {
			return fail(err)
		}
	}
	if a == nil {
		if a, err = r.newApproval(ctx, st, s, res, args, idem, hash, rem == nil); err != nil {
			return fail(err)
		}
	}
	if rem != nil {
		if a, rev, err = r.answerRemembered(ctx, st, a, rem); err != nil {
			return fail(err)
		}
	}
	res.ApprovalID = a.ID
	res.Lookalikes, res.Why = a.Lookalikes, a.Why
	if a.Status == ApprovalPending && r.opts.Wait {
		var answered bool
		if a, rev, answered, err = r.wait(ctx, st, a, res); err != nil {
			return fail(err)
		}
		if !answered {
			return "", false
		}
	}
	return r.take(ctx, st, a, rev, res)
}

// heldBefore returns the approval the same call got when it was held
// before, with its revision; nil when there is none, or when the call
// changed since (what was, or would be, approved was another call: a
// pending approval of it is superseded).
func (r *run) heldBefore(ctx context.Context, st *runstore.Store, idem, hash string) (*Approval, uint64, error) {
	if r.fresh {
		return nil, 0, nil
	}
	prev, err := st.GetCall(ctx, idem)
	if err != nil || prev == nil || prev.ApprovalID == "" {
		return nil, 0, err
	}
	a, rev, err := st.GetApproval(ctx, prev.ApprovalID)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, err
	}
	if a != nil && a.Hash != hash {
		if a.Advance(approval.Supersede) == nil {
			_ = st.UpdateApproval(ctx, a, rev)
		}
		return nil, 0, nil
	}
	return a, rev, nil
}

// newApproval holds the call as a new approval, pending, and records it as
// the call's under its idempotency key; notify tells the notifiers (not
// when a remembered answer answers it at once).
func (r *run) newApproval(ctx context.Context, st *runstore.Store, s *flow.Step, res *StepResult, args map[string]any, idem, hash string, notify bool) (*Approval, error) {
	a := &Approval{ID: audit.NewID(), RunID: r.id, Flow: r.plan.Name, Step: s.ID, Index: res.Index, Tool: s.Call,
		Args: args, ArgLabels: res.ArgLabels, Label: res.Label, Rules: res.Rules, Reasons: res.Reasons,
		Hash: hash, Status: ApprovalPending, Created: time.Now().UTC()}
	earlier, err := st.ApprovedOf(ctx, s.Call)
	if err != nil {
		return nil, err
	}
	a.Lookalikes = approval.Lookalikes(s.Call, args, r.policy.Registries(), earlier)
	var clearance ifc.Clearance
	if s.Spec != nil {
		clearance = s.Spec.Clearance
	}
	a.Why = approval.Explain(s.Call, clearance, res.Label, res.ArgLabels, res.Rules, res.Reasons)
	if err := st.CreateApproval(ctx, a); err != nil {
		return nil, err
	}
	if err := st.PutCall(ctx, idem, &runstore.CallRecord{ApprovalID: a.ID}); err != nil {
		return nil, err
	}
	r.wrote(idem)
	if f := r.e.cfg.Held; f != nil && notify {
		f(*a)
	}
	return a, nil
}

// wait waits for a person to answer the pending approval a, and returns it
// as it then stands; answered is false when the wait ended first (its
// timeout, or the run stopped).
func (r *run) wait(ctx context.Context, st *runstore.Store, a *Approval, res *StepResult) (_ *Approval, rev uint64, answered bool, err error) {
	// The answer is stored before it is sent, so the approval is read
	// again once this waiter is in place: an answer given in between is
	// not missed.
	h, id := &held{decided: make(chan Answer, 1)}, a.ID
	r.e.mu.Lock()
	r.e.approvals[id] = h
	r.e.mu.Unlock()
	defer func() {
		r.e.mu.Lock()
		delete(r.e.approvals, id)
		r.e.mu.Unlock()
	}()
	// With several orchestrators the answer may be given through
	// another, which stores it and tells none here: the store's watch of
	// the approvals tells this run when its approval is written.
	w := &answerWatch{st: st, id: id, on: r.e.cfg.Leases != nil}
	defer w.close()
	if err := w.start(ctx); err != nil {
		return a, rev, false, err
	}
	if a, rev, err = st.GetApproval(ctx, id); err != nil || a.Status != ApprovalPending {
		return a, rev, err == nil, err
	}
	if r.opts.OnHeld != nil {
		r.opts.OnHeld(*res)
	}
	var timeout <-chan time.Time
	if r.opts.WaitTimeout > 0 {
		t := time.NewTimer(r.opts.WaitTimeout)
		defer t.Stop()
		timeout = t.C
	}
	for answered := false; !answered; {
		select {
		case <-h.decided:
			answered = true
		case status := <-w.changed:
			if answered, err = w.answered(ctx, status); err != nil {
				return a, rev, false, err
			}
		case <-timeout:
			return a, rev, false, nil
		case <-ctx.Done():
			return a, rev, false, nil
		}
	}
	a, rev, err = st.GetApproval(ctx, id)
	return a, rev, err == nil, err
}

// answerWatch tells a run waiting with several orchestrators when its
// approval is written (runstore.Store.WatchApproval); with one (on false)
// it tells nothing: the answer reaches the run in this process.
type answerWatch struct {
	st      *runstore.Store
	id      string
	on      bool
	changed <-chan string
	stop    func()
}

// start watches the approval (again, when its watch ended).
func (w *answerWatch) start(ctx context.Context) error {
	if !w.on {
		return nil
	}
	w.close()
	ch, stop, err := w.st.WatchApproval(ctx, w.id)
	if err != nil {
		return err
	}
	w.changed, w.stop = ch, stop
	return nil
}

func (w *answerWatch) close() {
	if w.stop != nil {
		w.stop()
		w.stop = nil
	}
}

// answered says whether status, which the watch sent, is an answer. An
// empty one says the watch ended: the approval is watched again, then
// read, for an answer given meanwhile.
func (w *answerWatch) answered(ctx context.Context, status string) (bool, error) {
	if status != "" {
		return status != ApprovalPending, nil
	}
	if err := w.start(ctx); err != nil {
		return false, err
	}
	cur, _, err := w.st.GetApproval(ctx, w.id)
	return err == nil && cur.Status != ApprovalPending, nil
}

// take acts on the answer to a held call: a pending call stays held, a
// denied one is denied, and an approved one is used — once — and goes
// ahead, as does a call whose approval was used for this very call and
// was interrupted (it goes again with the same idempotency key, so it
// happens once).
func (r *run) take(ctx context.Context, st *runstore.Store, a *Approval, rev uint64, res *StepResult) (string, bool) {
	switch a.Status {
	case ApprovalPending:
		if r.opts.OnHeld != nil && !r.opts.Wait {
			r.opts.OnHeld(*res)
		}
		return "", false
	case ApprovalDenied:
		res.Status, res.Decision = StatusDenied, "deny"
		res.Reasons = append(res.Reasons, "denied by "+a.Who)
		return "", false
	case ApprovalApproved:
		if err := a.Advance(approval.Use); err != nil {
			res.Status, res.Error = StatusFailed, err.Error()
			return "", false
		}
		if err := st.UpdateApproval(ctx, a, rev); err != nil {
			res.Status, res.Error = StatusFailed, fmt.Errorf("approval %s could not be used: %w", a.ID, err).Error()
			return "", false
		}
	case ApprovalUsed:
	default:
		res.Status, res.Error = StatusFailed, fmt.Sprintf("approval %s is %s", a.ID, a.Status)
		return "", false
	}
	res.Reasons = append(res.Reasons, "approved by "+a.Who)
	return a.Who, true
}
