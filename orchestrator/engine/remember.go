package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/orchestrator/approval"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/orchestrator/runstore"
)

// Remembered is an answer a person asked to be remembered
// (approval.Remembered).
type Remembered = approval.Remembered

// remember stores a remembered answer and records it in the audit log.
func (e *Engine) remember(ctx context.Context, st *runstore.Store, rem *Remembered) error {
	if err := st.CreateRemembered(ctx, rem); err != nil {
		return err
	}
	rec := audit.Record{Kind: audit.KindRemembered, Flow: rem.Flow, Tool: rem.Tool, User: rem.Who, Op: "remember",
		Subject: rem.Describe(), Rules: []string{"remembered:" + rem.ID, "approval:" + rem.Approval}}
	return e.cfg.Audit.Append(ctx, rec)
}

// rememberScope is the remembered answer an answer asks for, if any.
func (e *Engine) rememberScope(a *Approval, ans Answer) (*Remembered, error) {
	if ans.Remember == nil {
		return nil, nil
	}
	if !ans.Approved {
		return nil, errors.New("only an approval can be remembered")
	}
	return approval.Remember(audit.NewID(), a, *ans.Remember, ans.Who, e.now().UTC())
}

// RememberedAnswers lists the remembered answers, revoked and expired
// ones included, oldest first.
func (e *Engine) RememberedAnswers(ctx context.Context) ([]Remembered, error) {
	st, err := e.store(ctx)
	if err != nil {
		return nil, err
	}
	all, err := st.AllRemembered(ctx)
	if err != nil {
		return nil, fmt.Errorf("list remembered answers: %w", err)
	}
	slices.SortFunc(all, func(a, b Remembered) int { return strings.Compare(a.ID, b.ID) })
	return all, nil
}

// Revoke ends a remembered answer: no call is let through by it from now
// on. Recorded in the audit log with who revoked it.
func (e *Engine) Revoke(ctx context.Context, id, who string) (*Remembered, error) {
	st, err := e.store(ctx)
	if err != nil {
		return nil, err
	}
	for try := 0; ; try++ {
		rem, rev, err := st.GetRemembered(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("no remembered answer %q (sluice registry lists them)", id)
		}
		if err != nil {
			return nil, err
		}
		if rem.Revoked != nil {
			return nil, fmt.Errorf("remembered answer %s was already revoked by %s", id, rem.RevokedBy)
		}
		now := e.now().UTC()
		rem.Revoked, rem.RevokedBy = &now, who
		err = st.UpdateRemembered(ctx, rem, rev)
		if err == nil {
			rec := audit.Record{Kind: audit.KindRemembered, Flow: rem.Flow, Tool: rem.Tool, User: who, Op: "revoke",
				Subject: rem.Describe(), Rules: []string{"remembered:" + rem.ID}}
			return rem, e.cfg.Audit.Append(ctx, rec)
		}
		if !casLost(err) || try >= 8 {
			return nil, err
		}
	}
}

// rememberedAnswer returns the first remembered answer (oldest first)
// whose scope takes this call, with this use counted in its store; nil
// when none does. A use is counted before the call goes ahead, so two runs
// at once cannot both spend the last of a cap.
func (r *run) rememberedAnswer(ctx context.Context, st *runstore.Store, s *flow.Step, args map[string]any) (*Remembered, error) {
	all, err := st.Remembered(ctx)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(all, func(a, b Remembered) int { return strings.Compare(a.ID, b.ID) })
	for _, c := range all {
		if c.Tool != s.Call || c.Revoked != nil {
			continue
		}
		for try := 0; ; try++ {
			rem, rev, err := st.GetRemembered(ctx, c.ID)
			if err != nil {
				return nil, err
			}
			if ok, _ := rem.Admit(s.Call, r.plan.Name, args, r.e.now()); !ok {
				break
			}
			err = st.UpdateRemembered(ctx, rem, rev)
			if err == nil {
				return rem, nil
			}
			if !casLost(err) || try >= 8 {
				return nil, err
			}
		}
	}
	return nil, nil
}

// answerRemembered approves the held call a with the remembered answer
// rem, as its person would have, and records that in the audit log.
func (r *run) answerRemembered(ctx context.Context, st *runstore.Store, a *Approval, rem *Remembered) (*Approval, uint64, error) {
	a, rev, err := st.GetApproval(ctx, a.ID)
	if err != nil {
		return nil, 0, err
	}
	if a.Status != ApprovalPending {
		return a, rev, nil
	}
	now := time.Now().UTC()
	a.Who, a.Decided = rem.Who+" (remembered "+rem.ID+")", &now
	if err := a.Advance(approval.Approve); err != nil {
		return nil, 0, err
	}
	if err := st.UpdateApproval(ctx, a, rev); err != nil {
		return nil, 0, fmt.Errorf("record the remembered answer to %s: %w", a.ID, err)
	}
	rec := audit.Record{Kind: audit.KindAnswer, RunID: a.RunID, Flow: a.Flow, Step: a.Step, Tool: a.Tool,
		Label: &a.Label, Action: "allow", Rules: []string{"approval:" + a.ID, "remembered:" + rem.ID},
		Reasons: []string{"approved by the answer " + rem.Who + " asked to remember: " + rem.Describe()}}
	if err := r.publish(rec); err != nil {
		return nil, 0, err
	}
	return st.GetApproval(ctx, a.ID)
}

func casLost(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// RememberScope is what a person picks when they ask for an answer to be
// remembered (approval.Scope).
type RememberScope = approval.Scope
