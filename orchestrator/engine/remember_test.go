package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/orchestrator/audit"
)

const everyPaymentByHand = `rules:
  - name: every-payment-by-hand
    when: tool.name == "t.pay"
    action: approve
`

func payOnce(flowName, payee string, amount float64) string {
	return fmt.Sprintf(`name: %s
steps:
  - id: pay
    call: t.pay
    with: {amount: %v, payee: %q}
`, flowName, amount, payee)
}

// A person approves a payment and asks for the answer to be remembered for
// this payee in this flow, up to 300 a day. A later payment to exactly
// that payee goes ahead with nobody asked; every call just outside the
// scope — a near-miss payee, a confusable one, an amount that splits past
// the day's sum, another flow — is held as before, and so is everything
// once the answer is revoked. Both are in the audit log.
func TestRememberedAnswerKeepsItsScope(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, everyPaymentByHand, nil)
	opts := Options{Wait: true}
	opts.OnHeld = func(s StepResult) {
		go func() {
			scope := &RememberScope{Pin: []string{"payee"}, SumArg: "amount", MaxSumPerDay: 300}
			if err := h.engine.Decide(ctx, s.ApprovalID, Answer{Approved: true, Who: "ana", Remember: scope}); err != nil {
				t.Error(err)
			}
		}()
	}
	if r := h.run(payOnce("pay-invoice", "acct_hotel_1", 120), nil, opts); r.Status != StatusCompleted {
		t.Fatalf("first payment: %s", r.Status)
	}
	// Control: the same payee, in the same flow, within the day's sum.
	r := h.run(payOnce("pay-invoice", "acct_hotel_1", 100), nil, Options{})
	s := step(t, r, "pay")
	if r.Status != StatusCompleted || !strings.Contains(strings.Join(s.Reasons, " "), "remembered") {
		t.Fatalf("a payment within the remembered scope: %s %v", r.Status, s.Reasons)
	}
	if n := h.called("pay"); n != 2 {
		t.Fatalf("pay called %d times, want 2", n)
	}
	for _, c := range []struct {
		name, flow, payee string
		amount            float64
	}{
		{"a near-miss payee", "pay-invoice", "acct_hotel_1 ", 10},
		{"a confusable payee", "pay-invoice", "acct_h\u043etel_1", 10},
		{"a split amount past the day's sum", "pay-invoice", "acct_hotel_1", 90},
		{"another flow", "refund", "acct_hotel_1", 10},
	} {
		if r := h.run(payOnce(c.flow, c.payee, c.amount), nil, Options{}); r.Status != StatusHeld {
			t.Errorf("%s: %s, want held", c.name, r.Status)
		}
	}
	all, err := h.engine.RememberedAnswers(ctx)
	if err != nil || len(all) != 1 {
		t.Fatalf("remembered answers %v %v", all, err)
	}
	if all[0].Sum != 220 || all[0].Count != 2 {
		t.Errorf("uses counted: %d calls, sum %g; want 2 and 220", all[0].Count, all[0].Sum)
	}
	if _, err := h.engine.Revoke(ctx, all[0].ID, "ana"); err != nil {
		t.Fatal(err)
	}
	if r := h.run(payOnce("pay-invoice", "acct_hotel_1", 10), nil, Options{}); r.Status != StatusHeld {
		t.Errorf("after the revocation: %s, want held", r.Status)
	}
	if n := h.called("pay"); n != 2 {
		t.Errorf("pay called %d times, want 2", n)
	}
	var ops []string
	recs, err := h.log.Records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if rec.Kind == audit.KindRemembered {
			ops = append(ops, rec.Op+" by "+rec.User)
		}
	}
	if strings.Join(ops, ", ") != "remember by ana, revoke by ana" {
		t.Errorf("audit log: %v", ops)
	}
}

// A scope that cannot be kept refuses the whole answer: the call stays
// held and nothing is remembered.
func TestRememberRefusesABadScopeWhole(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, everyPaymentByHand, nil)
	r := h.run(payOnce("pay-invoice", "acct_hotel_1", 120), nil, Options{})
	id := step(t, r, "pay").ApprovalID
	err := h.engine.Decide(ctx, id, Answer{Approved: true, Who: "ana", Remember: &RememberScope{Pin: []string{"iban"}}})
	if err == nil || !strings.Contains(err.Error(), `no argument "iban"`) {
		t.Fatalf("answer with a bad scope: %v", err)
	}
	a, err := h.engine.Approval(ctx, id)
	if err != nil || a.Status != ApprovalPending {
		t.Fatalf("approval after a refused answer: %v %v", a, err)
	}
	if all, _ := h.engine.RememberedAnswers(ctx); len(all) != 0 {
		t.Fatalf("remembered: %v", all)
	}
}
