package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/approval"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/worker"
)

// heldFlow pays an amount with a note read from an untrusted page: policy
// holds the payment; after it runs once paid.
const heldFlow = `name: held
inputs: {amount: {type: number}}
steps:
  - {id: f, call: t.fetch, with: {}}
  - {id: pay, call: t.spend, with: {amount: "${inputs.amount}", note: "${steps.f.output.text}"}}
  - {id: after, call: t.echo, with: {v: "${steps.pay.output}"}}
`

func untrustedPage(context.Context, *worker.Call) (any, error) {
	return worker.Labeled{Output: map[string]any{"text": "pay me"},
		Labels: map[string]ifc.Label{"text": ifc.UntrustedFrom("web:evil.example")}}, nil
}

// waitFinished waits until a run has left the store: it finished.
// ends says whether rec ends its run with status: a run_finished record,
// or the run's last result that ends it too.
func ends(rec audit.Record, status string) bool {
	s, end := rec.Ends()
	return end && s == status
}

func waitFinished(t *testing.T, h *harness, runID string) {
	t.Helper()
	ctx := context.Background()
	st, err := h.engine.store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := st.GetRun(ctx, runID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s did not finish (last error %v)", runID, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func records(t *testing.T, h *harness, runID string) []audit.Record {
	t.Helper()
	all, err := h.log.Records(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, r := range all {
		if r.RunID == runID {
			out = append(out, r)
		}
	}
	return out
}

// A held call outlives the engine that held it: a new engine on the same
// state lists it with its arguments and sources, and approving it there
// resumes the run, which delivers that one call, once.
func TestApprovalSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	h1 := newHarnessIn(t, dir, "", map[string]worker.Handler{"fetch": untrustedPage})
	r := h1.run(heldFlow, map[string]any{"amount": 5.0}, Options{})
	if r.Status != StatusHeld {
		t.Fatalf("run %s, want held", r.Status)
	}
	id := step(t, r, "pay").ApprovalID
	h1.close()

	h2 := newHarnessIn(t, dir, "", map[string]worker.Handler{"fetch": untrustedPage})
	if n, err := h2.engine.ResumeAll(ctx); err != nil || n != 0 {
		t.Fatalf("ResumeAll = %d, %v; a run waiting for a person has nothing to do", n, err)
	}
	list, err := h2.engine.Approvals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != id || list[0].RunID != r.RunID || list[0].Tool != "t.spend" {
		t.Fatalf("approvals after restart: %+v", list)
	}
	a := list[0]
	if a.Args["amount"] != 5.0 || a.Args["note"] != "pay me" || a.Hash == "" {
		t.Errorf("held call shown as %+v", a)
	}
	if src := a.Sources()["note"]; !slices.Contains(src, "web:evil.example") {
		t.Errorf("sources of note: %v; want the page", src)
	}
	if !slices.Contains(a.Rules, "untrusted-never-pays-alone") {
		t.Errorf("rules %v", a.Rules)
	}

	// Bound to the call that was shown.
	if err := h2.engine.Decide(ctx, id, Answer{Approved: true, Who: "ana", Hash: strings.Repeat("0", 64)}); err == nil {
		t.Fatal("an approval for another call's hash was accepted")
	}
	if err := h2.engine.Decide(ctx, id, Answer{Approved: true, Who: "ana", Hash: a.Hash}); err != nil {
		t.Fatal(err)
	}
	waitFinished(t, h2, r.RunID)
	if h2.called("spend") != 1 || h2.called("echo") != 1 || h2.called("fetch") != 0 {
		t.Fatalf("calls after approval: spend %d echo %d fetch %d; want the payment and what follows once, the page read from the store",
			h2.called("spend"), h2.called("echo"), h2.called("fetch"))
	}
	// Used once: it cannot be answered again.
	err = h2.engine.Decide(ctx, id, Answer{Approved: true, Who: "ana"})
	if err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("second approval: %v; want already used", err)
	}
	if list, _ := h2.engine.Approvals(ctx); len(list) != 0 {
		t.Fatalf("approvals left: %+v", list)
	}
	recs := records(t, h2, r.RunID)
	last := recs[len(recs)-1]
	if !ends(last, StatusCompleted) {
		t.Fatalf("last record %+v", last)
	}
	var answered, resumed bool
	for _, rec := range recs {
		answered = answered || (rec.Kind == audit.KindAnswer && rec.Action == "allow" && slices.Contains(rec.Rules, "approval:"+id))
		resumed = resumed || rec.Kind == audit.KindRunResumed
	}
	if !answered || !resumed {
		t.Fatalf("audit: answer recorded %v, resume recorded %v", answered, resumed)
	}
}

// A denied call fails its step; the run finishes denied and nothing is
// delivered.
func TestDenyAfterRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	h1 := newHarnessIn(t, dir, "", map[string]worker.Handler{"fetch": untrustedPage})
	r := h1.run(heldFlow, map[string]any{"amount": 5.0}, Options{})
	id := step(t, r, "pay").ApprovalID
	h1.close()
	h2 := newHarnessIn(t, dir, "", map[string]worker.Handler{"fetch": untrustedPage})
	if err := h2.engine.Decide(ctx, id, Answer{Approved: false, Who: "ana"}); err != nil {
		t.Fatal(err)
	}
	waitFinished(t, h2, r.RunID)
	if h2.called("spend") != 0 || h2.called("echo") != 0 {
		t.Fatal("a denied call was delivered")
	}
	recs := records(t, h2, r.RunID)
	if last := recs[len(recs)-1]; last.Status != StatusDenied {
		t.Fatalf("run finished %q, want denied", last.Status)
	}
	if err := h2.engine.Decide(ctx, id, Answer{Approved: true, Who: "eve"}); err == nil {
		t.Fatal("a denied call was approved afterwards")
	}
}

// An approval lets through only the call it was given for: an approved
// record whose hash is another call's (changed, forged or replayed) is
// not used, and the call is held again under a new id.
func TestApprovalForAnotherCallIsNotUsed(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	h1 := newHarnessIn(t, dir, "", map[string]worker.Handler{"fetch": untrustedPage})
	r := h1.run(heldFlow, map[string]any{"amount": 5.0}, Options{})
	id := step(t, r, "pay").ApprovalID
	// Someone with write access to the bucket marks it approved, for a
	// call of other arguments.
	st, err := h1.engine.store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, rev, err := st.GetApproval(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	a.Status, a.Who = ApprovalApproved, "mallory"
	a.Hash = approval.Hash(r.RunID+"/pay", "t.spend", map[string]any{"amount": 5000.0, "note": "pay me"}, a.Label, a.ArgLabels)
	if err := st.UpdateApproval(ctx, a, rev); err != nil {
		t.Fatal(err)
	}
	h1.close()

	h2 := newHarnessIn(t, dir, "", map[string]worker.Handler{"fetch": untrustedPage})
	if n, err := h2.engine.ResumeAll(ctx); err != nil || n != 1 {
		t.Fatalf("ResumeAll = %d, %v", n, err)
	}
	var list []Approval
	deadline := time.Now().Add(10 * time.Second)
	for len(list) == 0 && time.Now().Before(deadline) {
		list, _ = h2.engine.Approvals(ctx)
		time.Sleep(10 * time.Millisecond)
	}
	if len(list) != 1 || list[0].ID == id {
		t.Fatalf("approvals %+v; want the call held again under a new id", list)
	}
	if h2.called("spend") != 0 {
		t.Fatal("the call went through on an approval given for another call")
	}
}

// A run interrupted in the middle (its orchestrator stopped) resumes in the
// next: what completed is read back, not done again; the rest runs.
func TestRunResumesAfterInterruption(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	const f = `name: long
steps:
  - {id: a, call: t.fetch, with: {}}
  - {id: b, call: t.split, with: {v: "${steps.a.output}"}}
  - {id: c, call: t.echo, with: {v: "${steps.b.output.n}"}}
outputs:
  n: "${steps.c.output.v}"
`
	reached := make(chan struct{})
	h1 := newHarnessIn(t, dir, "", map[string]worker.Handler{
		"fetch": func(context.Context, *worker.Call) (any, error) { return map[string]any{"page": 1}, nil },
		"split": func(ctx context.Context, c *worker.Call) (any, error) {
			close(reached)
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	p := h1.plan(f)
	rctx, cancel := context.WithCancel(ctx)
	go func() { <-reached; cancel() }()
	r, err := h1.engine.Run(rctx, p, map[string]any{}, Options{})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("Run = %v, %v; want interrupted", r, err)
	}
	h1.close()

	h2 := newHarnessIn(t, dir, "", map[string]worker.Handler{
		"split": func(context.Context, *worker.Call) (any, error) { return map[string]any{"n": 7}, nil },
	})
	if n, err := h2.engine.ResumeAll(ctx); err != nil || n != 1 {
		t.Fatalf("ResumeAll = %d, %v", n, err)
	}
	waitFinished(t, h2, r.RunID)
	if h2.called("fetch") != 0 || h2.called("split") != 1 || h2.called("echo") != 1 {
		t.Fatalf("calls after resuming: fetch %d split %d echo %d", h2.called("fetch"), h2.called("split"), h2.called("echo"))
	}
	recs := records(t, h2, r.RunID)
	if last := recs[len(recs)-1]; !ends(last, StatusCompleted) {
		t.Fatalf("last record %+v", last)
	}
}

// A per-run cap counts the calls of earlier passes: approved one by one,
// each in its own pass after a restart, three payments of 90 under a
// per-run cap of 200 are two payments, not three.
func TestRunCapsHoldAcrossResumes(t *testing.T) {
	const rules = `rules:
  - name: every-payment-by-hand
    when: tool.name == "t.pay"
    action: approve
caps:
  - name: run-spend
    tool: t.pay
    window: run
    sum: amount
    max_total: 200
`
	dir := t.TempDir()
	ctx := context.Background()
	h1 := newHarnessIn(t, dir, rules, nil)
	r := h1.run(payEach(3, 1), map[string]any{"payee": "acct_hotel_1"}, Options{})
	items := step(t, r, "pay").Items
	if len(items) != 3 || r.Status != StatusHeld {
		t.Fatalf("run %s items %v", r.Status, statuses(items))
	}
	h1.close()

	h2 := newHarnessIn(t, dir, rules, nil)
	for i, it := range items[:2] {
		if err := h2.engine.Decide(ctx, it.ApprovalID, Answer{Approved: true, Who: "ana"}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for h2.called("pay") != i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("payment %d not delivered after its approval", i+1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := h2.engine.Decide(ctx, items[2].ApprovalID, Answer{Approved: true, Who: "ana"}); err != nil {
		t.Fatal(err)
	}
	waitFinished(t, h2, r.RunID)
	if h2.called("pay") != 2 {
		t.Fatalf("pay delivered %d times, want 2: the cap of the run forgot earlier passes", h2.called("pay"))
	}
	recs := records(t, h2, r.RunID)
	if last := recs[len(recs)-1]; last.Status != StatusDenied {
		t.Fatalf("run finished %q, want denied", last.Status)
	}
}

// A finished run leaves nothing in the run-state buckets: neither its
// record nor the outputs of its calls — whether it finished in its first
// pass, or after being held and resumed.
func TestFinishedRunLeavesNothing(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, "", map[string]worker.Handler{"fetch": untrustedPage})
	left := func(runID string) []string {
		js, err := jetstream.New(h.engine.cfg.Conn)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, name := range []string{RunsBucket, StepsBucket} {
			kv, err := js.KeyValue(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			l, err := kv.ListKeys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for k := range l.Keys() {
				if strings.HasPrefix(k, runID) {
					keys = append(keys, kv.Bucket()+"/"+k)
				}
			}
		}
		return keys
	}
	const f = `name: two
steps:
  - {id: a, call: t.echo, with: {v: 1}}
  - {id: b, call: t.echo, with: {v: "${steps.a.output.v}"}}
`
	r := h.run(f, nil, Options{})
	if r.Status != StatusCompleted {
		t.Fatalf("run %s", r.Status)
	}
	if keys := left(r.RunID); len(keys) != 0 {
		t.Fatalf("a finished run left %v", keys)
	}
	r = h.run(heldFlow, map[string]any{"amount": 5.0}, Options{})
	if keys := left(r.RunID); len(keys) < 3 {
		t.Fatalf("a held run keeps its record, its page and its held call; found %v", keys)
	}
	if err := h.engine.Decide(ctx, step(t, r, "pay").ApprovalID, Answer{Approved: true, Who: "ana"}); err != nil {
		t.Fatal(err)
	}
	waitFinished(t, h, r.RunID)
	if keys := left(r.RunID); len(keys) != 0 {
		t.Fatalf("a run finished after a resume left %v", keys)
	}
}
