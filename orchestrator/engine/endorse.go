package engine

import (
	"context"
	"errors"
	"slices"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/ifc/policy"
	"github.com/sluicehq/sluice/orchestrator/approval"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/runstore"
)

// Endorsement is what a person endorsed for the rest of a run
// (approval.Endorsement).
type Endorsement = approval.Endorsement

// EndorseScope is what a person picks when they endorse values
// (approval.EndorseScope).
type EndorseScope = approval.EndorseScope

// endorseScope is the endorsement an answer asks for, if any.
func (e *Engine) endorseScope(a *Approval, ans Answer) (*Endorsement, error) {
	if ans.Endorse == nil {
		return nil, nil
	}
	if !ans.Approved {
		return nil, errors.New("only an approval can endorse values")
	}
	return approval.Endorse(audit.NewID(), a, *ans.Endorse, ans.Who, e.now().UTC())
}

// endorse stores an endorsement with its run, where the run's later calls
// find it (also after a restart). The answer's record in the audit log
// says what it endorses (Decide).
func (e *Engine) endorse(ctx context.Context, st *runstore.Store, en *Endorsement) error {
	if err := st.CreateEndorsement(ctx, en); err != nil {
		return err
	}
	e.enMu.Lock()
	e.endorsed = append(e.endorsed, *en)
	e.enMu.Unlock()
	return e.supersedeCovered(ctx, st, en)
}

// supersedeCovered supersedes the calls of en's run still held whose
// arguments en now endorses: their labels changed, so the run, resumed,
// makes each again, through the gate, and holds it again under a new id
// if it still needs a person. An endorsement covers calls of its own run
// only: the run's open approvals are read, not every approval.
func (e *Engine) supersedeCovered(ctx context.Context, st *runstore.Store, en *Endorsement) error {
	open, err := st.OpenApprovalsOf(ctx, en.RunID)
	if err != nil {
		return err
	}
	for _, o := range open {
		if o.Status != ApprovalPending {
			continue
		}
		// Read whole, and only a call still pending is superseded, at
		// its revision (an answer given meanwhile wins).
		cur, rev, err := st.GetApproval(ctx, o.ID)
		if err == nil && covered(en, cur) && cur.Advance(approval.Supersede) == nil {
			_ = st.UpdateApproval(ctx, cur, rev)
		}
	}
	return nil
}

// covered reports whether en endorses an argument of the held call a.
func covered(en *Endorsement, a *Approval) bool {
	for _, v := range a.Args {
		if en.Covers(a.RunID, approval.CallKey(a), a.Tool, v) {
			return true
		}
	}
	return false
}

// forgetEndorsements forgets the endorsements of the finished run id, in
// memory and, when it had any, in st.
func (e *Engine) forgetEndorsements(ctx context.Context, st *runstore.Store, id string) error {
	// A new slice, not one changed in place: endorsedLabel reads the one
	// it took without the lock.
	e.enMu.Lock()
	n := len(e.endorsed)
	e.endorsed = slices.DeleteFunc(slices.Clone(e.endorsed), func(en Endorsement) bool { return en.RunID == id })
	had := len(e.endorsed) < n
	e.enMu.Unlock()
	if !had {
		return nil
	}
	return st.PurgeEndorsements(ctx, id)
}

// loadEndorsements reads the endorsements of the unfinished runs from st,
// once, when the engine opens its store.
func (e *Engine) loadEndorsements(ctx context.Context, st *runstore.Store) error {
	all, err := st.AllEndorsements(ctx)
	if err != nil {
		return err
	}
	e.enMu.Lock()
	defer e.enMu.Unlock()
	e.endorsed = all
	return nil
}

// endorsedLabel is the label of argument value v of a call of tool in
// this run: l, or l raised to trusted (its secrecy kept, endorsed:<who>
// added to its sources) when a person endorsed exactly this value (the
// same hash) for this tool in this run. It is the one place a value
// endorsement lowers a label; the call's context label is then the join
// of its arguments' as always, so an if on untrusted data still taints
// it, and an agent's calls, which do not come here, keep theirs.
func (r *run) endorsedLabel(idem, tool string, v any, l ifc.Label) ifc.Label {
	if l.Integrity() == ifc.Trusted {
		return l
	}
	r.e.enMu.Lock()
	ens := r.e.endorsed
	r.e.enMu.Unlock()
	for i := range ens {
		if !ens[i].Covers(r.id, idem, tool, v) {
			continue
		}
		if out, err := policy.EndorsedValue(l, ens[i].Who); err == nil {
			return out
		}
	}
	return l
}
