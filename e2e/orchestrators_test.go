package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natscreds"
)

// Three orchestrators, each sluice up with its own state directory, share
// one deployment on the three-node cluster. A run of three charges, the
// second held for a person, is submitted through the first orchestrator's
// endpoint and waits for the answer in whichever orchestrator took it.
// That orchestrator is killed with SIGKILL; another takes the run's
// lease within 10 s (the lease's TTL is 6 s), resumes it and holds the
// call again. The answer, given through the third orchestrator's
// endpoint, lets the run finish: exactly once, with one ledger line per
// charge, and the audit log, appended to by all three, verifies. The
// sluice run that submitted the run, whose orchestrator was killed,
// follows it through the others and ends with its result.
func TestSeveralOrchestratorsTakeOverARun(t *testing.T) {
	m := newOperatorMode(t)
	c := startCluster(t, m)
	var ledger string
	cfg := func(state string) string {
		return fmt.Sprintf(`state: %s
policies: [policy.yaml]
nats:
  urls: [%s]
  replicas: 3
  account_seed: {file: nats/account.nk}
  creds: {file: nats/orchestrator.creds}
secrets:
  audit_signing_key: {file: audit.key}
workers:
  - manifest: builtin:payment
    config: {ledger: %q}
`, state, strings.Join(c.urls(), ", "), ledger)
	}
	w := newWorkspace(t, map[string]string{
		"policy.yaml": "rules:\n  - name: large-payments-by-hand\n    when: tool.name == \"payment.charge\" && args.amount > 100\n    action: approve\n    reason: a large payment is made by hand\n",
		"pay.yaml": `name: pay-three
steps:
  - id: pay1
    call: payment.charge
    with: {amount: 10, currency: EUR, payee: acct_01, memo: first}
  - id: pay2
    call: payment.charge
    with: {amount: 500, currency: EUR, payee: acct_02, memo: "after ${steps.pay1.output.charge_id}"}
  - id: pay3
    call: payment.charge
    with: {amount: 30, currency: EUR, payee: acct_03, memo: "after ${steps.pay2.output.charge_id}"}
outputs:
  last: "${steps.pay3.output.charge_id}"
`,
	})
	// The payment workers of the three share one ledger, as replicas of
	// one worker do.
	ledger = w.path("ledger.jsonl")
	for _, name := range []string{"o1", "o2", "o3"} {
		w.write(name+".yaml", cfg("."+name))
	}
	w.writePrivate("nats/account.nk", string(m.signingSeed))
	w.writePrivate("nats/orchestrator.creds", string(m.orchestratorCred))
	w.writePrivate("audit.key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")

	// The three orchestrators, each with its id.
	ups, ids := w.startOrchestrators("o1", "o2", "o3")
	names := map[string]string{} // orchestrator id -> o1, o2, o3
	for name, id := range ids {
		names[id] = name
	}

	// The lease bucket, as the orchestrators write it.
	opt, err := natscreds.Option(m.orchestratorCred)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(strings.Join(c.urls(), ","), opt, nats.Name("test"), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, "SLUICE_LEASES")
	if err != nil {
		t.Fatal(err)
	}
	owner := func(run string) string {
		e, err := kv.Get(ctx, run)
		if err != nil {
			return ""
		}
		var v struct {
			Owner    string `json:"owner"`
			Released bool   `json:"released"`
		}
		if json.Unmarshal(e.Value(), &v) != nil || v.Released {
			return ""
		}
		return names[v.Owner]
	}
	approvals := func(config string) []map[string]any {
		r := w.sluice("approvals", "--config", config, "--json")
		if r.code != 0 {
			return nil
		}
		var list []map[string]any
		if json.Unmarshal([]byte(r.stdout), &list) != nil {
			return nil
		}
		return list
	}
	heldCall := func(config string) (id, run string) {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			for _, a := range approvals(config) {
				if a["step"] == "pay2" {
					return a["id"].(string), a["run_id"].(string)
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the held call is not listed through %s", config)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The run, submitted through o1's endpoint, waits for the answer in
	// the orchestrator that took it.
	// Each orchestrator runs the same files from its own state directory,
	// which is part of its configuration's fingerprint: the run goes to
	// whichever answers, under its configuration (--use-running).
	client := w.start("run", "--config", "o1.yaml", "--use-running", "pay.yaml")
	approval, run := heldCall("o1.yaml")
	var first string
	c.waitFor(30*time.Second, "the run's lease", func() bool { first = owner(run); return first != "" })
	if lines := ledgerLines(t, ledger); len(lines) != 1 {
		t.Fatalf("ledger before the kill: %v", lines)
	}

	killHard(t, ups[first])
	killed := time.Now()
	var next string
	c.waitFor(60*time.Second, "another orchestrator takes the run's lease", func() bool {
		next = owner(run)
		return next != "" && next != first
	})
	took := time.Since(killed)
	t.Logf("%s killed; %s took the run over %s later", first, next, took.Round(time.Millisecond))
	// The lease's TTL is 6 s, watched every second: within 10 s of the
	// kill, however loaded the machine (the kill is measured from after
	// the workers were gone, later than the last renewal).
	if took > 10*time.Second {
		t.Fatalf("the run was taken over %s after the kill, want within 10s", took)
	}
	// The new owner says so, and holds the call again: the answer comes
	// from a person, not from the orchestrator that died.
	var takeover string
	c.waitFor(30*time.Second, next+" logs the takeover", func() bool {
		for _, l := range ups[next].stderrLines() {
			if strings.Contains(l, "run taken over from another orchestrator") && strings.Contains(l, run) {
				takeover = l
				return true
			}
		}
		return false
	})
	if !strings.Contains(takeover, `"from":`) {
		t.Fatalf("takeover line: %s", takeover)
	}
	if id, _ := heldCall(next + ".yaml"); id != approval {
		t.Fatalf("after the takeover the call is held as %s, was %s", id, approval)
	}

	// The answer, through the third orchestrator's endpoint.
	third := "o1"
	for _, name := range []string{"o1", "o2", "o3"} {
		if name != first && name != next {
			third = name
		}
	}
	if r := w.sluice("approve", approval, "--config", third+".yaml", "--as", "alice"); r.code != 0 {
		t.Fatalf("approve through %s: exit %d\n%s%s", third, r.code, r.stdout, r.stderr)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for len(ledgerLines(t, ledger)) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the run did not finish: ledger %v", ledgerLines(t, ledger))
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.waitFor(30*time.Second, "the run's lease removed", func() bool {
		_, err := kv.Get(ctx, run)
		return err != nil
	})

	// The sluice run whose orchestrator was killed noticed it fell
	// silent, followed the run through the others, and ends with the
	// run's result, as if nothing had happened: completed, exit 0, the
	// last charge as the flow's output.
	if code := client.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("sluice run through the killed orchestrator: exit %d, want 0\n%s", code, client.stdout.String())
	}
	followed := false
	for _, l := range client.stderrLines() {
		followed = followed || strings.Contains(l, "run "+run+": the orchestrator running it stopped answering; following the run")
	}
	if !followed {
		t.Fatalf("sluice run did not say it follows the run: %v", client.stderrLines())
	}

	// One ledger line per charge.
	keys := map[string]int{}
	lastCharge := ""
	for _, line := range ledgerLines(t, ledger) {
		var rec struct {
			Key    string `json:"idempotency_key"`
			Charge string `json:"charge_id"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("ledger line %q: %v", line, err)
		}
		keys[rec.Key]++
		if rec.Key == run+"/pay3" {
			lastCharge = rec.Charge
		}
	}
	out := client.stdout.String()
	if !strings.Contains(out, "run "+run+" (pay-three): completed") || lastCharge == "" || !strings.Contains(out, lastCharge) {
		t.Fatalf("sluice run's output is not the run's result (completed, last charge %q):\n%s", lastCharge, out)
	}
	for _, step := range []string{"pay1", "pay2", "pay3"} {
		if k := run + "/" + step; keys[k] != 1 {
			t.Errorf("charge %s is on the ledger %d times", k, keys[k])
		}
	}
	if len(keys) != 3 {
		t.Errorf("%d charges on the ledger, want 3: %v", len(keys), keys)
	}

	// The run finished once, and the chain all three appended to
	// verifies.
	r := w.sluice("audit", "export", "--config", third+".yaml", "--out", "audit.jsonl")
	if r.code != 0 {
		t.Fatalf("audit export: exit %d\n%s", r.code, r.stderr)
	}
	b, err := os.ReadFile(w.path("audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	finished, resumed := 0, 0
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
			// The run's end rides on its last result.
			rec.Kind, rec.Status = "run_finished", rec.EndsRun
		}
		switch rec.Kind {
		case "run_finished":
			// A pass that ends held for a person says so; the run ends
			// once.
			if rec.Status != "held" {
				finished++
			}
			if rec.Status != "completed" && rec.Status != "held" {
				t.Errorf("the run finished %s", rec.Status)
			}
		case "run_resumed":
			if strings.HasPrefix(rec.User, "orchestrator:") {
				resumed++
			}
		}
	}
	if finished != 1 || resumed != 1 {
		t.Fatalf("the run finished %d times, was taken over %d times; want once each", finished, resumed)
	}
	if r := w.sluice("audit", "verify", "audit.jsonl", "--config", third+".yaml"); r.code != 0 || !strings.Contains(r.stdout, "the chain is intact") {
		t.Fatalf("audit verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// ledgerLines reads the payment ledger at path: one line a charge.
func ledgerLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}
