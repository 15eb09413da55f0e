package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A person approves a held payment and asks for the answer to be
// remembered for this payee, up to 300 a day. The next payment to exactly
// that payee goes through sluice up with nobody asked (the control); a
// near-miss payee, a confusable one and an amount that splits past the
// day's sum are each held; sluice registry lists the answer with its uses
// (matching its schema), revoke ends it, and the next payment is held
// again. Two charges in the ledger; the audit log verifies and records the
// remembering, its use and its revocation.
func TestRememberedAnswerThroughTheCLI(t *testing.T) {
	w := newWorkspace(t, map[string]string{
		"sluice.yaml": "policies: [policy.yaml]\nworkers:\n  - manifest: builtin:payment\n",
		"policy.yaml": "rules:\n  - name: every-payment-by-hand\n    when: tool.name == \"payment.charge\"\n    action: approve\n    reason: every payment is made by hand\n",
		"pay.yaml": `name: pay
inputs:
  payee: {type: string}
  amount: {type: number}
steps:
  - id: pay
    call: payment.charge
    with: {amount: "${inputs.amount}", currency: EUR, payee: "${inputs.payee}"}
`})
	upAndReady(t, w)
	pay := func(payee, amount string) int {
		return w.sluice("run", "pay.yaml", "--input", "payee="+payee, "--input", "amount="+amount, "--wait=false").code
	}
	if code := pay("acct_hotel_1", "120"); code != 4 {
		t.Fatalf("first payment: exit %d, want 4 (held)", code)
	}
	list := validateOutput(t, "approvals.json", "approvals --json", w.sluice("approvals", "--json").stdout).([]any)
	if len(list) != 1 {
		t.Fatalf("%d held calls, want 1", len(list))
	}
	id := list[0].(map[string]any)["id"].(string)
	if r := w.sluice("approve", id, "--remember", "iban"); r.code != 1 || !strings.Contains(r.stderr, `no argument "iban"`) {
		t.Fatalf("a scope naming no argument of the call: exit %d %s", r.code, r.stderr)
	}
	if r := w.sluice("deny", id, "--remember", "payee"); r.code != 2 {
		t.Fatalf("deny --remember: exit %d, want 2 (no such flag)", r.code)
	}
	r := w.sluice("approve", id, "--as", "alice", "--remember", "payee", "--sum-per-day", "amount=300")
	if r.code != 0 || !strings.Contains(r.stdout, "remembered as ") || !strings.Contains(r.stdout, `payee "acct_hotel_1" in flow pay, amount at most 300 a day`) {
		t.Fatalf("approve --remember: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	waitLedger(t, w, 1)

	if code := pay("acct_hotel_1", "100"); code != 0 {
		t.Fatalf("control: a payment within the remembered scope: exit %d, want 0", code)
	}
	for _, c := range []struct{ name, payee, amount string }{
		{"a near-miss payee", "acct_hotel_l", "10"},
		{"a confusable payee", "acct_h\u043etel_1", "10"},
		{"an amount past the day's sum", "acct_hotel_1", "90"},
	} {
		if code := pay(c.payee, c.amount); code != 4 {
			t.Errorf("%s: exit %d, want 4 (held)", c.name, code)
		}
	}
	reg := validateOutput(t, "registry.json", "registry --json", w.sluice("registry", "--json").stdout).([]any)
	if len(reg) != 1 {
		t.Fatalf("registry: %d entries, want 1", len(reg))
	}
	entry := reg[0].(map[string]any)
	if fmt.Sprint(entry["count"]) != "2" || fmt.Sprint(entry["sum"]) != "220" {
		t.Fatalf("registry: uses %v, sum %v; want 2 and 220", entry["count"], entry["sum"])
	}
	rid := entry["id"].(string)
	if r := w.sluice("registry"); r.code != 0 || !strings.Contains(r.stdout, "in force") || !strings.Contains(r.stdout, "today 2 calls, amount 220") {
		t.Fatalf("registry: exit %d\n%s", r.code, r.stdout)
	}
	if r := w.sluice("registry", "revoke", rid, "--as", "alice"); r.code != 0 || !strings.Contains(r.stdout, "revoked by alice") {
		t.Fatalf("registry revoke: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if code := pay("acct_hotel_1", "10"); code != 4 {
		t.Fatalf("after the revocation: exit %d, want 4 (held)", code)
	}
	if lines := w.ledger(); len(lines) != 2 {
		t.Fatalf("ledger: %d charges, want 2: %v", len(lines), lines)
	}
	var ops []string
	used := false
	for _, rec := range checkAudit(t, w) {
		if rec["kind"] == "remembered" {
			ops = append(ops, rec["op"].(string))
		}
		if rules, _ := rec["rules"].([]any); rec["kind"] == "answer" && len(rules) == 2 && rules[1] == "remembered:"+rid {
			used = true
		}
	}
	if strings.Join(ops, ",") != "remember,revoke" || !used {
		t.Fatalf("audit log: remembered records %v, its use recorded %v", ops, used)
	}
}

// waitLedger waits until the ledger holds n charges.
func waitLedger(t *testing.T, w *workspace, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for len(w.ledger()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("ledger: %d charges, want %d", len(w.ledger()), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
