package engine

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/worker"
)

// pages is a t.browse handler serving the payee it is asked for, labeled
// untrusted (from the web); a call with wait: true answers only once late
// is closed.
func pages(late <-chan struct{}) worker.Handler {
	return func(ctx context.Context, c *worker.Call) (any, error) {
		var in struct {
			Payee string `json:"payee"`
			Wait  bool   `json:"wait"`
		}
		if err := json.Unmarshal(c.Args, &in); err != nil {
			return nil, err
		}
		if in.Wait {
			select {
			case <-late:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return worker.Labeled{Output: map[string]any{"payee": in.Payee},
			Labels: map[string]ifc.Label{"": ifc.UntrustedFrom("web:hotel.example")}}, nil
	}
}

// payThrice pays the payee a web page names three times, one payment at
// a time.
const payThrice = `name: pay-invoices
steps:
  - {id: page, call: t.browse, with: {payee: "acct_hotel_1"}}
  - id: pay
    for_each: "${[10, 20, 30]}"
    concurrency: 1
    call: t.pay
    with: {amount: "${item}", payee: "${steps.page.output.payee}"}
`

// A person approves the first of three payments to a payee a web page
// named, endorsing the payee: the other two go through with nobody asked,
// the payee's label trusted and recorded as endorsed by them. In the same
// run, a payee one byte off, a confusable payee, and the endorsed payee
// passed to another tool are each held; so is the same payee in another
// run.
func TestEndorsedValueIsTrustedOnlyForItsRunToolAndHash(t *testing.T) {
	ctx := context.Background()
	late := make(chan struct{})
	h := newHarness(t, "", map[string]worker.Handler{"browse": pages(late)})
	var mu sync.Mutex
	var held []string
	opts := Options{Wait: true}
	opts.OnHeld = func(s StepResult) {
		mu.Lock()
		first := len(held) == 0
		held = append(held, s.ID)
		mu.Unlock()
		go func() {
			ans := Answer{Approved: false, Who: "ana"}
			if first {
				ans = Answer{Approved: true, Who: "ana", Endorse: &EndorseScope{Args: []string{"payee"}}}
			}
			if err := h.engine.Decide(ctx, s.ApprovalID, ans); err != nil {
				t.Error(err)
			}
			if first {
				close(late) // the steps that read the late pages go on
			}
		}()
	}
	r := h.run(payThrice+`  - {id: near_page, call: t.browse, with: {payee: "acct_hotel_1 ", wait: true}}
  - {id: near, call: t.pay, with: {amount: 1, payee: "${steps.near_page.output.payee}"}}
  - {id: confusable_page, call: t.browse, with: {payee: "acct_h\u043etel_1", wait: true}}
  - {id: confusable, call: t.pay, with: {amount: 1, payee: "${steps.confusable_page.output.payee}"}}
  - {id: same_page, call: t.browse, with: {payee: "acct_hotel_1", wait: true}}
  - {id: other_tool, call: t.spend, with: {payee: "${steps.same_page.output.payee}"}}
`, nil, opts)
	slices.Sort(held)
	if want := []string{"confusable", "near", "other_tool", "pay"}; !slices.Equal(held, want) {
		t.Fatalf("held %v, want %v (run %s)", held, want, r.Status)
	}
	if n := h.called("pay"); n != 3 {
		t.Fatalf("pay called %d times, want 3", n)
	}
	if n := h.called("spend"); n != 0 {
		t.Fatalf("spend called %d times, want 0", n)
	}
	pay := step(t, r, "pay")
	for i, it := range pay.Items {
		l := it.ArgLabels["payee"]
		endorsed := slices.Contains(l.Sources(), "endorsed:ana")
		if (i > 0) != endorsed || (i > 0 && l.Integrity() != ifc.Trusted) {
			t.Errorf("payment %d: payee labeled %s", i, l)
		}
	}
	// The decisions on the two later payments record the endorsed label;
	// the answer records what was endorsed.
	var decided, answered int
	for _, rec := range records(t, h, r.RunID) {
		if rec.Kind == audit.KindDecision && rec.Tool == "t.pay" && slices.Contains(rec.ArgLabels["payee"].Sources(), "endorsed:ana") {
			decided++
		}
		if rec.Kind == audit.KindAnswer && rec.Action == "allow" && strings.Contains(strings.Join(rec.Reasons, " "), "endorses the values of payee") {
			answered++
		}
	}
	if decided != 2 || answered != 1 {
		t.Errorf("audit log: %d decisions with the endorsed payee (want 2), %d answers endorsing it (want 1)", decided, answered)
	}
	// Another run: the same payee from the same page is held.
	if r := h.run(payThrice, nil, Options{}); r.Status != StatusHeld {
		t.Errorf("another run: %s, want held", r.Status)
	}
}

// Answered while the run is not waiting, the endorsement supersedes the
// other held payments; the run, resumed, makes them again and they go
// through. It is kept with the run: after a restart, the rest of the run
// still finds it.
func TestEndorsementOutlivesARestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	reached := make(chan struct{})
	h1 := newHarnessIn(t, dir, "", map[string]worker.Handler{
		"browse": pages(nil),
		"pay": func(ctx context.Context, c *worker.Call) (any, error) {
			if strings.Contains(string(c.Args), `"amount":20`) {
				close(reached)
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return json.RawMessage(c.Args), nil
		},
	})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { <-reached; cancel() }()
	opts := Options{Wait: true}
	opts.OnHeld = func(s StepResult) {
		go func() {
			ans := Answer{Approved: true, Who: "ana", Endorse: &EndorseScope{Args: []string{"payee"}, Tools: []string{"t.pay"}}}
			if err := h1.engine.Decide(ctx, s.ApprovalID, ans); err != nil {
				t.Error(err)
			}
		}()
	}
	r, err := h1.engine.Run(rctx, h1.plan(payThrice), nil, opts)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("Run = %v, %v; want interrupted", r, err)
	}
	h1.close()

	h2 := newHarnessIn(t, dir, "", map[string]worker.Handler{"browse": pages(nil)})
	if n, err := h2.engine.ResumeAll(ctx); err != nil || n != 1 {
		t.Fatalf("ResumeAll = %d, %v", n, err)
	}
	waitFinished(t, h2, r.RunID)
	if n := h2.called("pay"); n != 2 {
		t.Fatalf("pay called %d times after the restart, want 2", n)
	}
	recs := records(t, h2, r.RunID)
	if last := recs[len(recs)-1]; !ends(last, StatusCompleted) {
		t.Fatalf("last record %+v", last)
	}
	if list, _ := h2.engine.Approvals(ctx); len(list) != 0 {
		t.Fatalf("calls still held: %+v", list)
	}
}

// Answered while the run is not waiting: the other two held payments are
// superseded, and the resumed run pays all three.
func TestEndorsementAnswersTheOtherHeldElements(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, "", map[string]worker.Handler{"browse": pages(nil)})
	r := h.run(payThrice, nil, Options{})
	if r.Status != StatusHeld {
		t.Fatalf("run %s, want held", r.Status)
	}
	pay := step(t, r, "pay")
	if len(pay.Items) != 3 || pay.Items[1].ApprovalID == "" {
		t.Fatalf("pay %+v", pay)
	}
	ans := Answer{Approved: true, Who: "ana", Endorse: &EndorseScope{Args: []string{"payee"}}}
	if err := h.engine.Decide(ctx, pay.Items[0].ApprovalID, ans); err != nil {
		t.Fatal(err)
	}
	waitFinished(t, h, r.RunID)
	if n := h.called("pay"); n != 3 {
		t.Fatalf("pay called %d times, want 3", n)
	}
	for _, it := range pay.Items[1:] {
		a, err := h.engine.Approval(ctx, it.ApprovalID)
		if err != nil || a.Status != ApprovalSuperseded {
			t.Fatalf("the held payment %d: %v %v, want superseded", *it.Index, a, err)
		}
	}
	// The finished run's endorsement is forgotten, in the store too.
	st, err := h.engine.store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		all, err := st.AllEndorsements(ctx)
		if err == nil && len(all) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("endorsements of finished runs still stored: %+v %v", all, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// An endorsement needs an argument the call has, and an approval.
	r2 := h.run(payThrice, nil, Options{})
	id := step(t, r2, "pay").Items[0].ApprovalID
	if err := h.engine.Decide(ctx, id, Answer{Approved: true, Who: "ana", Endorse: &EndorseScope{Args: []string{"iban"}}}); err == nil || !strings.Contains(err.Error(), `no argument "iban"`) {
		t.Fatalf("endorse a missing argument: %v", err)
	}
	if err := h.engine.Decide(ctx, id, Answer{Who: "ana", Endorse: &EndorseScope{Args: []string{"payee"}}}); err == nil {
		t.Fatal("a denial endorsed a value")
	}
	if a, _ := h.engine.Approval(ctx, id); a.Status != ApprovalPending {
		t.Fatalf("after refused answers: %s", a.Status)
	}
}
