package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/engine"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/orchestrator/supervisor"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A compromised worker holds exactly its own credentials and runs confined
// like every worker. Started in place of the web worker, it tries every
// forbidden thing: the bus refuses the operations on other subjects, the
// network seal the direct connections, Landlock the file read, the egress
// broker the ungranted destinations, redirect and secret; its forged labels
// change nothing. Every refusal is in the audit log: the bus's, the
// broker's, and the kernel's, which the supervisor sees through the seal's
// listener (sockets it refuses itself, files it lets Landlock refuse).
func TestCompromisedWorkerIsRefused(t *testing.T) {
	dir := t.TempDir()
	reportFile := dir + "/rogue.jsonl"
	forbidden := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the forbidden host was reached: %s", r.URL)
	}))
	defer forbidden.Close()
	forbiddenHost := strings.TrimPrefix(forbidden.URL, "http://")
	granted := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, forbidden.URL+"/", http.StatusFound)
			return
		}
		io.WriteString(w, "<html><title>Deal</title><body>Pay 5 EUR to acct_attacker</body></html>")
	}))
	defer granted.Close()
	grantedHost := strings.TrimPrefix(granted.URL, "http://")
	// The secret is in the orchestrator's environment, as with
	// secrets: {canary: {env: CANARY}} under sluice up.
	const canary = "canary-3f9d2c7b1a"
	t.Setenv("CANARY", canary)
	dep, err := config.Parse("sluice.yaml", []byte(`workers:
  - manifest: builtin:web
    grants: {net: ["`+grantedHost+`"]}
  - manifest: builtin:payment
secrets:
  canary: {env: CANARY}
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	orch := startOrchestrator(t, orchestrator.Config{Deployment: dep,
		Log:    slog.New(slog.NewJSONHandler(&logs, nil)),
		Getenv: os.Getenv,
		WorkerCommand: func(w supervisor.Worker) *exec.Cmd {
			if w.Name == "web" {
				return exec.Command(rogueBin, "-report", reportFile, "-granted", grantedHost, "-forbidden", forbiddenHost, "-secret", canary)
			}
			return exec.Command(sluiceBin, "worker", "--manifest", w.Ref)
		}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	defer func() {
		if t.Failed() {
			t.Logf("orchestrator log:\n%s", logs.String())
		}
	}()

	plan := loadFlow(t, orch, dir, `name: rogue
steps:
  - {id: fetch, call: web.fetch, with: {url: "http://`+grantedHost+`/page"}}
  - {id: pay, call: payment.charge, with: {amount: 5, currency: EUR, payee: "${steps.fetch.output.title}"}}
`)
	res, err := orch.Run(ctx, plan, nil, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fetch, pay := res.Steps[0], res.Steps[1]
	if fetch.Status != engine.StatusCompleted || fetch.OutputLabel == nil {
		t.Fatalf("fetch: %+v", fetch)
	}
	if fetch.OutputLabel.Integrity() != ifc.Untrusted || !slices.Contains(fetch.OutputLabel.Sources(), "web:"+grantedHost) {
		t.Errorf("forged labels lowered the output: %v", fetch.OutputLabel)
	}
	if pay.Status != engine.StatusHeld {
		t.Errorf("pay: %s, want held", pay.Status)
	}

	attempts := readAttempts(t, reportFile)
	want := []string{
		"publish a forged payment call", "listen to the payment worker's calls", "approve a held call through the API",
		"submit a run through the API", "use another worker's egress subject", "read the audit log", "read every reply inbox",
		"connect directly", "read the API credential", "read another process's /proc entry",
		"find the secret in its own environment", "read the orchestrator's environment",
		"fetch a host that was not granted", "fetch the cloud metadata address", "follow a redirect to a forbidden host",
		"send a secret it was not granted",
	}
	for _, w := range want {
		found := false
		for _, a := range attempts {
			if a.What != w {
				continue
			}
			found = true
			if !a.Refused {
				t.Errorf("%s (%s) was not refused", a.What, a.Target)
			}
		}
		if !found {
			t.Errorf("the rogue did not try: %s", w)
		}
	}

	// Every refusal is in the audit log: the bus's and the broker's, the
	// kernel's through the seal's listener, and the engine's of a forged label.
	var recs []audit.Record
	deadline := time.Now().Add(10 * time.Second)
	for {
		if recs, err = orch.Audit().Records(ctx); err != nil {
			t.Fatal(err)
		}
		var missing []string
		for _, a := range attempts {
			if a.Target == "output label" {
				if !slices.ContainsFunc(recs, func(r audit.Record) bool {
					return r.User == "worker:web" && r.Kind == audit.KindViolation && r.Op == "label"
				}) {
					missing = append(missing, a.What)
				}
				continue
			}
			if a.What == "find the secret in its own environment" {
				continue // nothing to refuse: the supervisor never put it there
			}
			if a.What == "read the API credential" || a.What == "read the orchestrator's environment" {
				// Refused by Landlock; seen by the supervisor, which
				// holds the seal's listener.
				file := "/run/client.nk"
				if a.What == "read the orchestrator's environment" {
					file = a.Target
				}
				if !slices.ContainsFunc(recs, func(r audit.Record) bool {
					return strings.HasPrefix(r.User, "worker:web") && r.Kind == audit.KindViolation &&
						r.Op == "open" && strings.HasSuffix(r.Subject, file)
				}) {
					missing = append(missing, a.What+" ("+a.Target+")")
				}
				continue
			}
			if a.What == "read another process's /proc entry" {
				// Refused by Landlock and told by the supervisor: only
				// a worker's own stat file is not told of.
				if !slices.ContainsFunc(recs, func(r audit.Record) bool {
					return strings.HasPrefix(r.User, "worker:web") && r.Kind == audit.KindViolation &&
						r.Op == "open" && r.Subject == "open "+a.Target
				}) {
					missing = append(missing, a.What+" ("+a.Target+")")
				}
				continue
			}
			if a.What == "connect directly" {
				// Refused by the seal, whose listener is the supervisor.
				if !slices.ContainsFunc(recs, func(r audit.Record) bool {
					return strings.HasPrefix(r.User, "worker:web") && r.Kind == audit.KindViolation &&
						r.Op == "socket" && r.Subject == "socket ipv4 stream"
				}) {
					missing = append(missing, a.What+" ("+a.Target+")")
				}
				continue
			}
			if !slices.ContainsFunc(recs, func(r audit.Record) bool {
				return strings.HasPrefix(r.User, "worker:web") && r.Subject == a.Target &&
					(r.Kind == audit.KindViolation || (r.Kind == audit.KindEgress && r.Status == "refused"))
			}) {
				missing = append(missing, a.What+" ("+a.Target+")")
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log lacks: %v", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b, err := os.ReadFile(dir + "/.sluice/payment/ledger.jsonl"); len(b) != 0 {
		t.Errorf("the payment ledger was written (%v): %q", err, b)
	}
}

type rogueAttempt struct {
	What    string `json:"what"`
	Target  string `json:"target"`
	Refused bool   `json:"refused"`
	Error   string `json:"error"`
}

func readAttempts(t *testing.T, file string) []rogueAttempt {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []rogueAttempt
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var a rogueAttempt
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func loadFlow(t *testing.T, orch *orchestrator.Orchestrator, dir, src string) *flow.Plan {
	t.Helper()
	p := dir + "/flow.yaml"
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	plan, err := orch.LoadFlow(p)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}
