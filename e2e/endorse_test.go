package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// A web page names a payee (untrusted, from the web), and a flow pays it
// three times, one payment at a time: each is held. A person
// approves the first with --endorse payee: the other two are made again
// with the payee labeled trusted (endorsed:alice) and go through with
// nobody asked. Three charges in the ledger; nothing is still held; sluice
// trace shows the endorsement and the endorsed labels; the
// same payments in another run are held again; the audit log verifies,
// records what was endorsed with the answer, and the two decisions on the
// endorsed payee.
func TestEndorseAValueThroughTheCLI(t *testing.T) {
	host := site(t, map[string]string{"/invoice": "<html><head><title>acct_hotel_1</title></head><body>Please pay.</body></html>"})
	w := newWorkspace(t, map[string]string{
		"sluice.yaml": "workers:\n  - manifest: builtin:payment\n  - manifest: builtin:web\n    grants: {net: [\"" + host + "\"]}\n",
		"pay.yaml": `name: pay-invoices
steps:
  - {id: invoice, call: web.fetch, with: {url: "http://` + host + `/invoice"}}
  - id: pay
    for_each: '${[10, 20, 30]}'
    concurrency: 1
    call: payment.charge
    with: {amount: "${item}", currency: EUR, payee: "${steps.invoice.output.title}"}
`})
	upAndReady(t, w)
	if code := w.sluice("run", "pay.yaml", "--wait=false").code; code != 4 {
		t.Fatalf("run: exit %d, want 4 (held)", code)
	}
	var first, run string
	deadline := time.Now().Add(time.Minute)
	for first == "" {
		for _, a := range validateOutput(t, "approvals.json", "approvals --json", w.sluice("approvals", "--json").stdout).([]any) {
			m := a.(map[string]any)
			if fmt.Sprint(m["index"]) == "0" {
				first, run = m["id"].(string), m["run_id"].(string)
			}
		}
		if first == "" && time.Now().After(deadline) {
			t.Fatal("the first payment was never held")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := w.sluice("approve", first, "--endorse", "iban"); r.code != 1 || !strings.Contains(r.stderr, `no argument "iban"`) {
		t.Fatalf("--endorse naming no argument of the call: exit %d %s", r.code, r.stderr)
	}
	if r := w.sluice("approve", first, "--for", "payment.charge"); r.code != 2 || !strings.Contains(r.stderr, "--for goes with --endorse") {
		t.Fatalf("--for alone: exit %d %s", r.code, r.stderr)
	}
	if r := w.sluice("deny", first, "--endorse", "payee"); r.code != 2 {
		t.Fatalf("deny --endorse: exit %d, want 2 (no such flag)", r.code)
	}
	r := w.sluice("approve", first, "--as", "alice", "--endorse", "payee")
	if r.code != 0 || !strings.Contains(r.stdout, "endorsed for the rest of run "+run+": the values of payee, for payment.charge") {
		t.Fatalf("approve --endorse: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	waitLedger(t, w, 3)
	deadline = time.Now().Add(time.Minute)
	for !strings.Contains(w.sluice("approvals").stdout, "no call is waiting") {
		if time.Now().After(deadline) {
			t.Fatalf("calls still held:\n%s", w.sluice("approvals").stdout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if tr := w.sluice("trace", run); tr.code != 0 || !strings.Contains(tr.stdout, "and endorses the values of payee (sha256:") || !strings.Contains(tr.stdout, "endorsed:alice") {
		t.Fatalf("trace: exit %d\n%s", tr.code, tr.stdout)
	}
	// Another run: the same payee is held again.
	if code := w.sluice("run", "pay.yaml", "--wait=false").code; code != 4 {
		t.Fatalf("another run: exit %d, want 4 (held)", code)
	}
	if lines := w.ledger(); len(lines) != 3 {
		t.Fatalf("ledger: %d charges, want 3: %v", len(lines), lines)
	}
	var endorsedDecisions int
	answered := false
	for _, rec := range checkAudit(t, w) {
		rules, _ := rec["rules"].([]any)
		if rec["kind"] == "answer" && rec["run_id"] == run && len(rules) == 2 && strings.HasPrefix(fmt.Sprint(rules[1]), "endorsement:") &&
			strings.Contains(fmt.Sprint(rec["reasons"]), "endorses the values of payee (sha256:") {
			answered = true
		}
		labels, _ := rec["arg_labels"].(map[string]any)
		payee, _ := labels["payee"].(map[string]any)
		sources, _ := payee["sources"].([]any)
		if rec["kind"] == "decision" && rec["run_id"] == run && slices.Contains(sources, any("endorsed:alice")) && payee["integrity"] == "trusted" {
			endorsedDecisions++
		}
	}
	if !answered || endorsedDecisions != 2 {
		t.Fatalf("audit log: answer recording the endorsement %v, decisions on the endorsed payee %d (want 2)", answered, endorsedDecisions)
	}
}
