package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/schemas"
)

type approvalJSON struct {
	ID        string         `json:"id"`
	RunID     string         `json:"run_id"`
	Tool      string         `json:"tool"`
	Args      map[string]any `json:"args"`
	ArgLabels map[string]struct {
		Integrity string   `json:"integrity"`
		Sources   []string `json:"sources"`
	} `json:"arg_labels"`
	Hash string `json:"hash"`
}

// upAndReady starts sluice up in the workspace and waits for its banner.
func upAndReady(t *testing.T, w *workspace) *process {
	t.Helper()
	up := w.start("up")
	up.waitLine(t, "stop with Ctrl-C", time.Minute)
	return up
}

// killHard kills sluice up with SIGKILL, as a crash would, and waits until
// its workers are gone too.
func killHard(t *testing.T, p *process) {
	t.Helper()
	workers := childProcesses(t, p.cmd.Process.Pid)
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(t, 30*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for pid := range workers {
		for {
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil || strings.Contains(string(stat), ") Z ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("worker %d outlived its orchestrator", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func runStatus(t *testing.T, w *workspace, runID string) string {
	t.Helper()
	r := w.sluice("runs", "--json")
	if r.code != 0 {
		t.Fatalf("sluice runs: exit %d", r.code)
	}
	var runs []struct {
		ID     string `json:"run_id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &runs); err != nil {
		t.Fatalf("sluice runs --json: %v", err)
	}
	for _, run := range runs {
		if run.ID == runID {
			return run.Status
		}
	}
	return ""
}

func waitRunStatus(t *testing.T, w *workspace, runID, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := runStatus(t, w, runID)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s is %q, want %q", runID, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A held call outlives the orchestrator: after a crash, the next sluice up
// lists it with its exact arguments and the page behind them; approving it
// lets exactly that call through, once, and the run completes.
func TestApprovalSurvivesOrchestratorRestart(t *testing.T) {
	host := site(t, map[string]string{"/poisoned": poisonedPage})
	w := newWorkspace(t, map[string]string{"sluice.yaml": deployment(host, "hijackable"), "answers.yaml": answers,
		"book.yaml": bookFlow})
	up := upAndReady(t, w)
	r := w.sluice("run", "book.yaml", "--input", "url=http://"+host+"/poisoned", "--wait=false", "--json")
	if r.code != 4 {
		t.Fatalf("run: exit %d, want 4 (held)", r.code)
	}
	run := decodeRun(t, r.stdout)
	id := run.Steps[run.step(t, "pay")].ApprovalID
	killHard(t, up)

	up = upAndReady(t, w)
	r = w.sluice("approvals", "--json")
	if r.code != 0 {
		t.Fatalf("approvals: exit %d", r.code)
	}
	var list []approvalJSON
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("approvals --json: %v", err)
	}
	if len(list) != 1 || list[0].ID != id || list[0].RunID != run.RunID || list[0].Tool != "payment.charge" {
		t.Fatalf("approvals after the restart: %+v; want %s", list, id)
	}
	a := list[0]
	if a.Args["payee"] != "acct_attacker" || a.Args["amount"] != 5.0 {
		t.Errorf("held call shown with arguments %v", a.Args)
	}
	if src := a.ArgLabels["payee"].Sources; len(src) == 0 || !strings.Contains(strings.Join(src, " "), "web:"+host) {
		t.Errorf("payee sources %v; want the page web:%s", src, host)
	}
	if text := w.sluice("approvals").stdout; !strings.Contains(text, id) || !strings.Contains(text, "acct_attacker") ||
		!strings.Contains(text, "web:"+host) {
		t.Errorf("sluice approvals does not show the call, its payee and the page:\n%s", text)
	} else if !strings.Contains(text, "why: ") || !strings.Contains(text, "the web page "+host) || strings.Contains(text, "does not flow to clearance") {
		// Why, in plain words naming the page; the lattice stays in --json.
		t.Errorf("sluice approvals does not say in plain words why the call is held:\n%s", text)
	}
	if lines := w.ledger(); len(lines) != 0 {
		t.Fatalf("ledger before approval: %v", lines)
	}

	if r := w.sluice("approve", id, "--hash", strings.Repeat("ab", 32), "--as", "e2e"); r.code != 1 || !strings.Contains(r.stderr, "not the one you were shown") {
		t.Fatalf("approve with another call's hash: exit %d %s", r.code, r.stderr)
	}
	if r := w.sluice("approve", id, "--as", "e2e"); r.code != 0 || !strings.Contains(r.stdout, "approved by e2e") {
		t.Fatalf("approve: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	waitRunStatus(t, w, run.RunID, "completed")
	if lines := w.ledger(); len(lines) != 1 || !strings.Contains(lines[0], "acct_attacker") {
		t.Fatalf("ledger %v: want exactly the approved charge", lines)
	}
	if r := w.sluice("approve", id, "--as", "e2e"); r.code != 1 || !strings.Contains(r.stderr, "already used") {
		t.Fatalf("approving again: exit %d %s", r.code, r.stderr)
	}
	if r := w.sluice("approvals"); !strings.Contains(r.stdout, "no call is waiting") {
		t.Fatalf("approvals after: %s", r.stdout)
	}
	up.cmd.Process.Signal(syscall.SIGINT)
	up.wait(t, 30*time.Second)
	if lines := w.ledger(); len(lines) != 1 {
		t.Fatalf("ledger %v", lines)
	}
	kinds := map[string]bool{}
	for _, rec := range checkAudit(t, w) {
		kinds[rec["kind"].(string)] = true
		// The run's start rides on its first decision, and its end on
		// the last result of the pass that completed it.
		if rec["kind"] == "decision" && rec["starts_run"] == true {
			kinds["decision that starts the run"] = true
		}
		if rec["kind"] == "result" && rec["ends_run"] == "completed" {
			kinds["result that ends the run"] = true
		}
	}
	for _, k := range []string{"decision that starts the run", "decision", "answer", "run_resumed", "result", "result that ends the run", "egress"} {
		if !kinds[k] {
			t.Errorf("no %s record in the audit log", k)
		}
	}
}

// provider is a payment provider's HTTP API on loopback that honours
// idempotency keys. A charge to payee "acct_slow" is recorded and then
// answered only once release is closed: an orchestrator killed meanwhile
// never learns that it happened.
type provider struct {
	mu      sync.Mutex
	charges map[string]string // idempotency key -> payee
	posts   map[string]int    // payee -> requests
	slow    chan struct{}     // closed when the slow charge arrived
	release chan struct{}
}

func newProvider(t *testing.T) (*provider, string) {
	p := &provider{charges: map[string]string{}, posts: map[string]int{}, slow: make(chan struct{}), release: make(chan struct{})}
	var slowOnce sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer sk_test_durable" || r.URL.Path != "/v1/charges" || r.ParseForm() != nil {
			http.Error(w, `{"error": {"code": "bad_request"}}`, http.StatusBadRequest)
			return
		}
		key, payee := r.Header.Get("Idempotency-Key"), r.PostForm.Get("payee")
		p.mu.Lock()
		p.posts[payee]++
		_, seen := p.charges[key]
		if !seen {
			p.charges[key] = payee
		}
		p.mu.Unlock()
		if payee == "acct_slow" && !seen {
			slowOnce.Do(func() { close(p.slow) })
			select {
			case <-p.release:
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, `{"id": "ch_%s", "status": "succeeded"}`, strings.ReplaceAll(key, "/", "_"))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-p.release:
		default:
			close(p.release)
		}
	})
	return p, strings.TrimPrefix(srv.URL, "http://")
}

// providerDeployment runs the payment worker, in replicas processes,
// against the provider at host, with its API key filled in by the broker.
func providerDeployment(host string, replicas int) string {
	return fmt.Sprintf(`workers:
  - manifest: builtin:payment
    replicas: %d
    config: {backend: http, base_url: "http://%s", api_key: "{{secret:payments_key}}"}
    grants:
      net: [%q]
      secrets: [{name: payments_key, hosts: ["127.0.0.1"]}]
secrets:
  payments_key: {env: PAY_KEY}
`, replicas, host, host)
}

const threeChargesFlow = `name: three-charges
steps:
  - {id: a, call: payment.charge, with: {amount: 10, currency: EUR, payee: acct_a}}
  - {id: slow, call: payment.charge, with: {amount: 20, currency: EUR, payee: acct_slow}}
  - {id: c, call: payment.charge, with: {amount: 30, currency: EUR, payee: acct_c}}
`

// An orchestrator killed with SIGKILL in the middle of a run, while a
// charge is at the provider: the next sluice up resumes the run, sends
// that charge again with the same idempotency key (the provider keeps one),
// and the run completes with exactly one charge each; the audit log
// verifies and records a decision and a result for every charge.
func TestOrchestratorKilledMidRun(t *testing.T) {
	p, host := newProvider(t)
	t.Setenv("PAY_KEY", "sk_test_durable")
	w := newWorkspace(t, map[string]string{"flow.yaml": threeChargesFlow, "sluice.yaml": providerDeployment(host, 1)})
	up := upAndReady(t, w)
	client := w.start("run", "flow.yaml", "--json")
	select {
	case <-p.slow:
	case <-time.After(time.Minute):
		t.Fatal("the slow charge never reached the provider")
	}
	killHard(t, up)
	client.wait(t, 30*time.Second)

	up = upAndReady(t, w)
	// It says which run it resumes.
	announced := up.waitLine(t, "resuming run ", time.Second)
	var runID string
	deadline := time.Now().Add(time.Minute)
	for runID == "" {
		r := w.sluice("runs", "--json")
		var runs []struct {
			ID   string `json:"run_id"`
			Flow string `json:"flow"`
		}
		_ = json.Unmarshal([]byte(r.stdout), &runs)
		for _, run := range runs {
			if run.Flow == "three-charges" {
				runID = run.ID
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the run is not in the audit log")
		}
	}
	if !strings.HasPrefix(announced, runID+" (three-charges): ") {
		t.Errorf("sluice up announced %q; want run %s (three-charges)", announced, runID)
	}
	waitRunStatus(t, w, runID, "completed")
	p.mu.Lock()
	charges, posts := len(p.charges), p.posts["acct_slow"]
	p.mu.Unlock()
	if charges != 3 {
		t.Fatalf("provider holds %d charges, want 3", charges)
	}
	if posts < 2 {
		t.Fatalf("the interrupted charge was sent %d times: it was not sent again after the restart", posts)
	}

	up.cmd.Process.Signal(syscall.SIGINT)
	up.wait(t, 30*time.Second)
	records := checkAudit(t, w)
	decided, completed := map[string]bool{}, map[string]bool{}
	for _, rec := range records {
		if rec["run_id"] != runID {
			continue
		}
		step, _ := rec["step"].(string)
		if rec["kind"] == "decision" && rec["action"] == "allow" {
			decided[step] = true
		}
		if rec["kind"] == "result" && rec["status"] == "completed" {
			completed[step] = true
		}
	}
	for _, s := range []string{"a", "slow", "c"} {
		if !decided[s] || !completed[s] {
			t.Errorf("step %s: decision recorded %v, result recorded %v", s, decided[s], completed[s])
		}
	}
}

// A worker process killed while it has a call in hand: the call goes again,
// with the same idempotency key, to the other replica of the worker's queue
// group; the supervisor restarts the dead one; the run completes with one
// charge each.
func TestWorkerKilledMidCall(t *testing.T) {
	p, host := newProvider(t)
	t.Setenv("PAY_KEY", "sk_test_durable")
	w := newWorkspace(t, map[string]string{"flow.yaml": threeChargesFlow, "sluice.yaml": providerDeployment(host, 2)})
	up := upAndReady(t, w)
	before := childProcesses(t, up.cmd.Process.Pid)
	if len(before) != 2 {
		t.Fatalf("workers %v, want two payment replicas", before)
	}
	client := w.start("run", "flow.yaml", "--json")
	select {
	case <-p.slow:
	case <-time.After(time.Minute):
		t.Fatal("the slow charge never reached the provider")
	}
	// The bus does not say which replica has the call, so the engine
	// sends every call in flight to the worker again when one of its
	// processes exits: whichever replica is killed, the slow charge goes
	// again, and the provider keeps one.
	var victim int
	for pid := range before {
		victim = pid
		break
	}
	syscall.Kill(victim, syscall.SIGKILL)
	if code := client.wait(t, time.Minute); code != 0 {
		t.Fatalf("run: exit %d, want 0", code)
	}
	run := decodeRun(t, client.stdout.String())
	if run.Status != "completed" {
		t.Fatalf("run %s", run.Status)
	}
	p.mu.Lock()
	charges, posts := len(p.charges), p.posts["acct_slow"]
	p.mu.Unlock()
	if charges != 3 || posts < 2 {
		t.Fatalf("provider holds %d charges (want 3); the interrupted one was sent %d times (want 2 or more)", charges, posts)
	}
	// The supervisor restarted the dead replica.
	deadline := time.Now().Add(30 * time.Second)
	for {
		now := childProcesses(t, up.cmd.Process.Pid)
		if _, dead := now[victim]; len(now) == 2 && !dead {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers %v: the killed replica was not restarted", now)
		}
		time.Sleep(50 * time.Millisecond)
	}
	up.cmd.Process.Signal(syscall.SIGINT)
	up.wait(t, 30*time.Second)
}

// checkAudit verifies the chain of the workspace's audit log and checks
// every record against the record format, schemas/audit-record.json. It
// returns the records.
func checkAudit(t *testing.T, w *workspace) []map[string]any {
	t.Helper()
	if r := w.sluice("audit", "export", "--out", "audit-check.jsonl"); r.code != 0 {
		t.Fatalf("audit export: exit %d %s", r.code, r.stderr)
	}
	if r := w.sluice("audit", "verify", "audit-check.jsonl"); r.code != 0 {
		t.Fatalf("audit verify: exit %d %s", r.code, r.stderr)
	}
	sch, err := schemas.Load("audit-record.json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(w.path("audit-check.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		v, err := sch.ValidateJSON([]byte(line))
		if err != nil {
			t.Fatalf("audit record %d does not match schemas/audit-record.json: %v\n%s", i+1, err, line)
		}
		out = append(out, v.(map[string]any))
	}
	return out
}
