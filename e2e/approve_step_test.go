package e2e

import (
	"strings"
	"testing"
	"time"
)

// The held elements of a for_each step are listed together by sluice
// approvals, with the command that answers them together; sluice approve
// --step answers each, bound to its own hash, and the run completes with
// one charge per element. A step with none held is an error that says so.
func TestApproveStepAnswersEveryElement(t *testing.T) {
	w := newWorkspace(t, map[string]string{
		"sluice.yaml": "policies: [policy.yaml]\nworkers:\n  - manifest: builtin:payment\n",
		"policy.yaml": "rules:\n  - name: every-payment-by-hand\n    when: tool.name == \"payment.charge\"\n    action: approve\n    reason: every payment is made by hand\n",
		"pay.yaml": `name: pay-three
steps:
  - id: pay
    for_each: '${["acct_a", "acct_b", "acct_c"]}'
    call: payment.charge
    with: {amount: 5, currency: EUR, payee: "${item}"}
`})
	upAndReady(t, w)
	client := w.start("run", "pay.yaml", "--json")
	var list string
	deadline := time.Now().Add(time.Minute)
	for {
		list = w.sluice("approvals").stdout
		if strings.Count(list, "payment.charge") == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("three held calls never listed:\n%s", list)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(list, "3 calls held") || !strings.Contains(list, "sluice approve --step ") ||
		!strings.Contains(list, "the policy's rule every-payment-by-hand: every payment is made by hand") {
		t.Fatalf("sluice approvals does not group the step's calls:\n%s", list)
	}
	i := strings.Index(list, "sluice approve --step ")
	step := strings.Fields(list[i+len("sluice approve --step "):])[0]
	if r := w.sluice("approve", "--step", "nope/pay"); r.code != 1 || !strings.Contains(r.stderr, "no call of step pay") {
		t.Fatalf("an unknown run: exit %d %s", r.code, r.stderr)
	}
	r := w.sluice("approve", "--step", step, "--as", "alice")
	if r.code != 0 || strings.Count(r.stdout, "approved by alice") != 3 {
		t.Fatalf("approve --step: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for i, payee := range []string{"acct_a", "acct_b", "acct_c"} {
		if !strings.Contains(r.stdout, "item "+string(rune('0'+i))) || !strings.Contains(r.stdout, payee) {
			t.Errorf("approve --step did not show item %d (%s):\n%s", i, payee, r.stdout)
		}
	}
	if code := client.wait(t, time.Minute); code != 0 {
		t.Fatalf("run: exit %d", code)
	}
	if lines := w.ledger(); len(lines) != 3 {
		t.Fatalf("ledger: %v", lines)
	}
}
