package engine

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/orchestrator/approval"
	"github.com/sluicehq/sluice/orchestrator/lease"
	"github.com/sluicehq/sluice/orchestrator/runstore"
	"github.com/sluicehq/sluice/worker"
)

// TestWaitingRunWithLeasesIsWokenByAnAnswerGivenElsewhere: with several
// orchestrators, a person's answer may be stored through another, which
// tells nothing to the process where the run waits. The run is woken by
// its store's watch of the approvals (nothing reads the approval again on
// a timer): it goes on once, paying.
func TestWaitingRunWithLeasesIsWokenByAnAnswerGivenElsewhere(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := newHarness(t, "", map[string]worker.Handler{"fetch": untrustedPage})
	e, _ := h.leased(t, lease.Config{Owner: "A", Home: "home-A", TTL: 30 * time.Second, Renew: 5 * time.Second}, nil)

	held := make(chan string, 1)
	type outcome struct {
		res *Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := e.Run(ctx, h.plan(heldFlow), map[string]any{"amount": 5.0}, Options{Wait: true,
			OnHeld: func(s StepResult) { held <- s.ApprovalID }})
		done <- outcome{res, err}
	}()
	var id string
	select {
	case id = <-held:
	case o := <-done:
		t.Fatalf("the run ended without waiting: %+v, %v", o.res, o.err)
	case <-ctx.Done():
		t.Fatal("the call was not held")
	}

	// The answer, stored through another connection's store, as another
	// orchestrator's Decide stores it.
	st := h.otherStore(t)
	if err := approveThrough(ctx, st, id); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-done:
		if o.err != nil || o.res.Status != StatusCompleted {
			t.Fatalf("the run answered elsewhere = %+v, %v; want completed", o.res, o.err)
		}
	case <-ctx.Done():
		t.Fatal("the run waiting with leases was not woken by the answer stored through another connection")
	}
	if n := h.called("spend"); n != 1 {
		t.Fatalf("spend called %d times, want once", n)
	}
	if got, _, err := st.GetApproval(ctx, id); err != nil || got.Status != ApprovalUsed {
		t.Fatalf("the approval after the run: %+v, %v; want used", got, err)
	}
}

// TestHeldRunKeepsNoFlowInMemory: a run held for a person, not waiting,
// keeps nothing of its flow or inputs in the engine (thousands may be
// held at once); answered, it resumes from what the store keeps and
// finishes, paying once the amount it was started with.
func TestHeldRunKeepsNoFlowInMemory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var paid []string
	h := newHarness(t, "", map[string]worker.Handler{"fetch": untrustedPage,
		"spend": func(_ context.Context, c *worker.Call) (any, error) {
			var args struct {
				Amount json.Number `json:"amount"`
			}
			if err := json.Unmarshal(c.Args, &args); err != nil {
				return nil, err
			}
			mu.Lock()
			paid = append(paid, args.Amount.String())
			mu.Unlock()
			return map[string]any{"ok": true}, nil
		}})
	r, err := h.engine.Run(ctx, h.plan(heldFlow), map[string]any{"amount": 7.0}, Options{})
	if err != nil || r.Status != StatusHeld {
		t.Fatalf("run = %+v, %v; want held", r, err)
	}
	h.engine.mu.Lock()
	rs := h.engine.runs[r.RunID]
	kept := rs != nil && (rs.plan != nil || rs.inputs != nil)
	h.engine.mu.Unlock()
	if rs == nil {
		t.Fatal("the held run is not known to the engine (its policy set is kept for it)")
	}
	if kept {
		t.Fatal("the held run keeps its flow and inputs in memory while it waits")
	}
	id := step(t, r, "pay").ApprovalID
	if err := h.engine.Decide(ctx, id, Answer{Approved: true, Who: "alice"}); err != nil {
		t.Fatal(err)
	}
	waitFinished(t, h, r.RunID)
	mu.Lock()
	defer mu.Unlock()
	if len(paid) != 1 || paid[0] != "7" {
		t.Fatalf("paid %v, want [7] once", paid)
	}
}

// TestApprovalsListFlagsLookalikesOfApprovedCallsOnly: the list people
// read flags a held call whose payee is one letter from a payee approved
// before, and not one like a payee still waiting for an answer.
func TestApprovalsListFlagsLookalikesOfApprovedCallsOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := newHarness(t, "", nil)
	st, err := h.engine.store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []Approval{
		{ID: "01", Tool: "payment.charge", Status: ApprovalUsed, Args: map[string]any{"payee": "acct_alice_main"}},
		{ID: "02", Tool: "payment.charge", Status: ApprovalPending, Args: map[string]any{"payee": "acct_bob_savings"}},
		{ID: "03", Tool: "payment.charge", Status: ApprovalPending, Args: map[string]any{"payee": "acct_a1ice_main"}},
		{ID: "04", Tool: "payment.charge", Status: ApprovalPending, Args: map[string]any{"payee": "acct_b0b_savings"}},
	} {
		if err := st.CreateApproval(ctx, &a); err != nil {
			t.Fatal(err)
		}
	}
	list, err := h.engine.Approvals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	flagged := map[string]int{}
	for _, a := range list {
		flagged[a.ID] = len(a.Lookalikes)
	}
	if len(list) != 3 || flagged["03"] == 0 || flagged["02"] != 0 || flagged["04"] != 0 {
		t.Fatalf("lookalikes flagged per held call: %v (of %d listed); want 03 flagged (like the used 01), 02 and 04 not (alike, both waiting)", flagged, len(list))
	}
}

// TestAnsweredWhileHoldingTheLeaseResumesHere: with several orchestrators,
// a person may answer a held call, through another one, while the pass
// that held it still holds the run's lease: that orchestrator cannot take
// the run then, so this one, releasing the lease, reads the answer (of the
// approvals its held steps name) and resumes the run itself. It goes on
// once, paying.
func TestAnsweredWhileHoldingTheLeaseResumesHere(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := newHarness(t, "", map[string]worker.Handler{"fetch": untrustedPage})
	e, _ := h.leased(t, lease.Config{Owner: "A", Home: "home-A", TTL: 30 * time.Second, Renew: 5 * time.Second}, nil)
	st := h.otherStore(t)
	// The answer is stored through another store while the pass that held
	// the call is still going: OnHeld is called before the pass ends and
	// its lease is released.
	var id string
	r, err := e.Run(ctx, h.plan(heldFlow), map[string]any{"amount": 5.0}, Options{OnHeld: func(s StepResult) {
		id = s.ApprovalID
		if err := approveThrough(ctx, st, id); err != nil {
			t.Error(err)
		}
	}})
	if err != nil || r.Status != StatusHeld || id == "" {
		t.Fatalf("run = %+v, %v; want held, its approval answered meanwhile", r, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for h.called("spend") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the run answered while its lease was held was not resumed when the lease was released")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		got, _, err := st.GetApproval(ctx, id)
		if err == nil && got.Status == ApprovalUsed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the approval after the run: %+v, %v; want used", got, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := h.called("spend"); n != 1 {
		t.Fatalf("spend called %d times, want once", n)
	}
}

// otherStore is a run store on a connection of its own, as another
// orchestrator's.
func (h *harness) otherStore(t *testing.T) *runstore.Store {
	t.Helper()
	other, err := h.bus.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	st, err := runstore.Open(context.Background(), other, "", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// approveThrough approves held call id through st, as alice, the way
// another orchestrator's Decide stores an answer.
func approveThrough(ctx context.Context, st *runstore.Store, id string) error {
	a, rev, err := st.GetApproval(ctx, id)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	a.Who, a.Decided = "alice", &now
	if err := a.Advance(approval.Approve); err != nil {
		return err
	}
	return st.UpdateApproval(ctx, a, rev)
}
