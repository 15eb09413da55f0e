package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// userCreds is a .creds file of a user of the account that may subscribe
// to anything but the subjects in deny.
func (m operatorMode) userCreds(t *testing.T, name string, deny ...string) []byte {
	t.Helper()
	sk, err := nkeys.FromSeed(m.signingSeed)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := nkeys.CreateUser()
	uPub, _ := u.PublicKey()
	uc := jwt.NewUserClaims(uPub)
	uc.Name = name
	uc.IssuerAccount = m.accPub
	for _, s := range deny {
		uc.Sub.Deny.Add(s)
	}
	tok, err := uc.Encode(sk)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := u.Seed()
	creds, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// heldCall waits until sluice approvals through config lists pay2 held by
// a run other than those of not (what names it in the failure), and
// returns its run and approval.
func heldCall(w *workspace, c *natsCluster, what, config string, not ...string) (run, approval string) {
	w.t.Helper()
	c.waitFor(2*time.Minute, what+" listed", func() bool {
		r := w.sluice("approvals", "--config", config, "--json")
		var list []map[string]any
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil {
			return false
		}
		for _, a := range list {
			id, _ := a["run_id"].(string)
			if a["step"] == "pay2" && !slices.Contains(not, id) {
				run = id
				approval, _ = a["id"].(string)
				return true
			}
		}
		return false
	})
	return run, approval
}

// Three orchestrators share one deployment on the three-node cluster. A
// run waits in o1 for a person; sluice cancel, through an orchestrator
// that does not hold the run's lease, cancels it: that one asks o1, which
// stops the run. The answer names the person and o1, once; the sluice run
// that waited ends cancelled; the audit log records the cancel once and
// verifies; the held call is not made. Cancelling a run that does not
// exist still says so. Then o1 is stopped with Ctrl-C under another
// waiting run: the sluice run that waited follows the run to the
// orchestrator that takes it over, and ends with its result once it is
// approved. Last, o1 is started again and killed under a run waiting
// with --wait-timeout: the sluice run ends with the call held once its
// timeout is over, as it would have with o1.
//
// The API's requests go to one orchestrator of the queue group, chosen
// by the bus. So that the run is o1's and the cancel reaches another,
// each orchestrator's user is denied some of the API's subjects: o1 may
// not answer cancels, o2 and o3 may not answer runs.
func TestSeveralOrchestratorsCancelThroughAnyAndFollowAStoppedOne(t *testing.T) {
	m := newOperatorMode(t)
	c := startCluster(t, m)
	ledger := ""
	cfg := func(name string) string {
		return fmt.Sprintf(`state: .%s
policies: [policy.yaml]
nats:
  urls: [%s]
  replicas: 3
  account_seed: {file: nats/account.nk}
  creds: {file: nats/%s.creds}
secrets:
  audit_signing_key: {file: audit.key}
workers:
  - manifest: builtin:payment
    config: {ledger: %q}
`, name, strings.Join(c.urls(), ", "), name, ledger)
	}
	w := newWorkspace(t, map[string]string{
		"policy.yaml": "rules:\n  - name: large-payments-by-hand\n    when: tool.name == \"payment.charge\" && args.amount > 100\n    action: approve\n    reason: a large payment is made by hand\n",
		"pay.yaml": `name: pay-two
steps:
  - id: pay1
    call: payment.charge
    with: {amount: 10, currency: EUR, payee: acct_01, memo: first}
  - id: pay2
    call: payment.charge
    with: {amount: 500, currency: EUR, payee: acct_02, memo: "after ${steps.pay1.output.charge_id}"}
outputs:
  last: "${steps.pay2.output.charge_id}"
`,
	})
	ledger = w.path("ledger.jsonl")
	creds := map[string][]byte{
		"o1": m.userCreds(t, "sluice-o1", "sluice.api.runs.cancel"),
		"o2": m.userCreds(t, "sluice-o2", "sluice.api.run"),
		"o3": m.userCreds(t, "sluice-o3", "sluice.api.run"),
	}
	for _, name := range []string{"o1", "o2", "o3"} {
		w.write(name+".yaml", cfg(name))
		w.writePrivate("nats/"+name+".creds", string(creds[name]))
	}
	w.writePrivate("nats/account.nk", string(m.signingSeed))
	w.writePrivate("audit.key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")
	ups, ids := w.startOrchestrators("o1", "o2", "o3") // ids: o1, o2, o3 -> orchestrator id

	// The run waits in o1 for a person.
	client := w.start("run", "--config", "o1.yaml", "--use-running", "pay.yaml")
	run, _ := heldCall(w, c, "the held call", "o2.yaml")

	// Cancelled through o2's endpoint: o2 or o3 answers, neither drives
	// the run.
	r := w.sluice("cancel", run, "--config", "o2.yaml", "--as", "alice")
	if r.code != 0 {
		t.Fatalf("cancel through o2: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	want := fmt.Sprintf("%s (pay-two): cancelled by alice in orchestrator %s;", run, ids["o1"])
	if !strings.Contains(r.stdout, want) || strings.Count(r.stdout, "cancelled by") != 1 || !strings.Contains(r.stdout, "it will not be resumed") {
		t.Fatalf("cancel through o2 said:\n%s\nwant one line with %q", r.stdout, want)
	}
	asked := 0
	for _, name := range []string{"o2", "o3"} {
		for _, l := range ups[name].stderrLines() {
			if strings.Contains(l, "cancel of a run asked of the orchestrator holding its lease") && strings.Contains(l, run) && strings.Contains(l, ids["o1"]) {
				asked++
			}
		}
	}
	// Asked at least once; again should o1 answer that it did not hold
	// the lease at that instant, which is harmless: the audit log below
	// has one cancel. (Its own renewal, changing the lease as its cancel
	// read it, made it answer so: lease TestHolderAcquiresWhileItRenews.)
	if asked < 1 {
		t.Fatalf("o2 and o3 asked o1 to cancel the run %d times, want at least once", asked)
	}

	// The sluice run that waited ends: cancelled.
	if code := client.wait(t, 2*time.Minute); code != 1 {
		t.Fatalf("sluice run: exit %d, want 1\n%s", code, client.stdout.String())
	}
	if !strings.Contains(client.stdout.String(), "run "+run+" (pay-two): cancelled") {
		t.Fatalf("sluice run's output:\n%s", client.stdout.String())
	}
	if lines := ledgerLines(t, ledger); len(lines) != 1 {
		t.Fatalf("ledger: %v; want the first charge only", lines)
	}

	// Once more, and a run that never was: no such run.
	for _, id := range []string{run, "01JD6Z4W8X2F3K5N7Q9R1T3V5X"} {
		r := w.sluice("cancel", id, "--config", "o3.yaml", "--as", "alice")
		if r.code != 1 || !strings.Contains(r.stderr, "no unfinished run \""+id+"\"") {
			t.Fatalf("cancel %s: exit %d\n%s%s", id, r.code, r.stdout, r.stderr)
		}
	}

	// The audit log records the cancel once, and verifies.
	r = w.sluice("audit", "export", "--config", "o3.yaml", "--out", "audit.jsonl")
	if r.code != 0 {
		t.Fatalf("audit export: exit %d\n%s", r.code, r.stderr)
	}
	b, err := os.ReadFile(w.path("audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	cancelled := 0
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec struct {
			Kind, Status, User string
			RunID              string `json:"run_id"`
			EndsRun            string `json:"ends_run"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.RunID != run {
			continue
		}
		if rec.EndsRun != "" {
			rec.Kind, rec.Status = "run_finished", rec.EndsRun
		}
		if rec.Kind == "run_finished" && rec.Status != "held" {
			if rec.Status != "cancelled" || rec.User != "alice" {
				t.Errorf("the run ended %s by %q, want cancelled by alice", rec.Status, rec.User)
			}
			cancelled++
		}
	}
	if cancelled != 1 {
		t.Fatalf("the run ended %d times in the audit log, want once", cancelled)
	}
	if r := w.sluice("audit", "verify", "audit.jsonl", "--config", "o3.yaml"); r.code != 0 || !strings.Contains(r.stdout, "the chain is intact") {
		t.Fatalf("audit verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Another run waits in o1, which is stopped with Ctrl-C: it releases
	// the run's lease, another orchestrator takes the run over, and the
	// sluice run that waited follows it there. Approved through o2, the
	// run completes, and the sluice run ends with its result.
	client = w.start("run", "--config", "o1.yaml", "--use-running", "pay.yaml")
	run, approval := heldCall(w, c, "the second run's held call", "o2.yaml", run)
	if err := ups["o1"].cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := ups["o1"].wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("sluice up o1 stopped with exit %d", code)
	}
	client.waitLine(t, "run "+run+": the orchestrator running it stopped, and another goes on with it; following the run", time.Minute)
	// Answered once the run is held again by the orchestrator that took
	// it over, or the answer is the one it finds when it takes it.
	if r := w.sluice("approve", approval, "--config", "o2.yaml", "--as", "alice"); r.code != 0 {
		t.Fatalf("approve through o2: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if code := client.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("sluice run of the second run: exit %d, want 0\n%s", code, client.stdout.String())
	}
	last := ""
	for _, line := range ledgerLines(t, ledger) {
		var rec struct {
			Key    string `json:"idempotency_key"`
			Charge string `json:"charge_id"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Key == run+"/pay2" {
			last = rec.Charge
		}
	}
	if out := client.stdout.String(); last == "" || !strings.Contains(out, "run "+run+" (pay-two): completed") || !strings.Contains(out, last) {
		t.Fatalf("sluice run's output is not the second run's result (completed, last charge %q):\n%s", last, out)
	}

	// A third run, with --wait-timeout, waits in o1 (started again), which
	// is killed: the sluice run that waited hears nothing more, follows
	// the run, and the orchestrator that takes it over holds the call
	// again. Nobody answers: once the wait timeout is over, the sluice run
	// ends as it would have with o1, the call held (exit 4), where before
	// it waited until the run ended. Approved afterwards, the run goes on
	// there and pays once.
	again, _ := w.startOrchestrators("o1")
	client = w.start("run", "--config", "o1.yaml", "--use-running", "--wait-timeout", "15s", "pay.yaml")
	run, approval = heldCall(w, c, "the third run's held call", "o2.yaml", run)
	killHard(t, again["o1"])
	client.waitLine(t, "run "+run+": the orchestrator running it stopped answering; following the run", time.Minute)
	if code := client.wait(t, 2*time.Minute); code != 4 {
		t.Fatalf("sluice run --wait-timeout 15s of a run taken over and held: exit %d, want 4\n%s%s", code, client.stdout.String(), strings.Join(client.stderrLines(), "\n"))
	}
	if out := client.stdout.String(); !strings.Contains(out, "run "+run+" (pay-two): held") {
		t.Fatalf("sluice run's output is not the third run held:\n%s", out)
	}
	if r := w.sluice("approve", approval, "--config", "o2.yaml", "--as", "alice"); r.code != 0 {
		t.Fatalf("approve the third run's call through o2: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	c.waitFor(2*time.Minute, "the third run's second charge", func() bool {
		n := 0
		for _, line := range ledgerLines(t, ledger) {
			if strings.Contains(line, `"`+run+`/pay2"`) {
				n++
			}
		}
		return n == 1
	})
}
