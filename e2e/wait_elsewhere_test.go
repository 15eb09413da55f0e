package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natscreds"
)

// A `sluice run` waiting for a person's answer, in an orchestrator that
// shares its deployment with others (an external bus: leases on), goes on
// when the answer is stored by another orchestrator, which tells this one
// nothing: here the answer is written straight into the bucket of held
// calls, as another's `sluice approve` stores it. The orchestrator's watch
// of that bucket wakes the run; nothing reads the approval on a timer.
func TestWaitingRunGoesOnWhenAnsweredThroughAnotherOrchestrator(t *testing.T) {
	m := newOperatorMode(t)
	url := startNATSServer(t, m)
	w := newWorkspace(t, map[string]string{
		"policy.yaml": "rules:\n  - name: large-payments-by-hand\n    when: tool.name == \"payment.charge\" && args.amount > 100\n    action: approve\n    reason: a large payment is made by hand\n",
		"pay.yaml":    "name: pay-large\nsteps:\n  - id: pay\n    call: payment.charge\n    with: {amount: 500, currency: EUR, payee: acct_02}\n",
	})
	ledger := w.path("ledger.jsonl")
	w.write("sluice.yaml", fmt.Sprintf(`policies: [policy.yaml]
nats:
  url: %s
  account_seed: {file: nats/account.nk}
  creds: {file: nats/orchestrator.creds}
workers:
  - manifest: builtin:payment
    config: {ledger: %q}
`, url, ledger))
	w.writePrivate("nats/account.nk", string(m.signingSeed))
	w.writePrivate("nats/orchestrator.creds", string(m.orchestratorCred))
	up := w.start("up", "--http", "off")
	up.waitLine(t, "stop with Ctrl-C", 2*time.Minute)

	client := w.start("run", "--use-running", "pay.yaml")
	var id string
	deadline := time.Now().Add(2 * time.Minute)
	for id == "" {
		if r := w.sluice("approvals", "--json"); r.code == 0 {
			var list []struct {
				ID string `json:"id"`
			}
			if json.Unmarshal([]byte(r.stdout), &list) == nil && len(list) == 1 {
				id = list[0].ID
			}
		}
		if id == "" && time.Now().After(deadline) {
			t.Fatal("the large payment is not held")
		}
		time.Sleep(100 * time.Millisecond)
	}

	opt, err := natscreds.Option(m.orchestratorCred)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, opt, nats.Name("another orchestrator"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kv, err := js.KeyValue(ctx, "SLUICE_APPROVALS")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var a map[string]any
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		t.Fatal(err)
	}
	if a["status"] != "pending" {
		t.Fatalf("held call %s is %v, want pending", id, a["status"])
	}
	a["status"], a["who"], a["decided"] = "approved", "alice", time.Now().UTC().Format(time.RFC3339Nano)
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(ctx, id, b, e.Revision()); err != nil {
		t.Fatal(err)
	}

	if code := client.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("sluice run: exit %d after the answer\n%s", code, strings.Join(client.stderrLines(), "\n"))
	}
	lines := ledgerLines(t, ledger)
	if len(lines) != 1 || !strings.Contains(lines[0], "acct_02") {
		t.Fatalf("ledger after the answer: %v, want the one payment", lines)
	}
}
