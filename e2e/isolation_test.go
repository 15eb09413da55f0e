package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/supervisor"
)

// A compromised worker process holds exactly its own credentials. Started
// in place of the web worker, it tries to call the payment worker, listen
// to its calls, approve a held call, read the audit log and read other
// connections' replies: the NATS server refuses each one, the payment
// worker never sees a call, and the audit log records the refusals.
func TestCompromisedWorkerIsRefusedByTheServer(t *testing.T) {
	dir := t.TempDir()
	report := dir + "/rogue.json"
	t.Setenv("ROGUE_REPORT", report)
	dep, err := config.Parse("sluice.yaml", []byte(`workers:
  - manifest: builtin:web
    grants: {net: ["127.0.0.1:9"]}
  - manifest: builtin:payment
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	orch, err := orchestrator.New(orchestrator.Config{Deployment: dep, Executable: sluiceBin,
		WorkerCommand: func(w supervisor.Worker) *exec.Cmd {
			if w.Name == "web" {
				return exec.Command(rogueBin)
			}
			return exec.Command(sluiceBin, "worker", "--manifest", w.Ref)
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := orch.Start(ctx); err != nil {
		orch.Close()
		t.Fatal(err)
	}
	defer orch.Close()

	// The rogue writes its report before it subscribes, so it is there once
	// the orchestrator is ready.
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var attempts []struct {
		What    string `json:"what"`
		Subject string `json:"subject"`
		Refused bool   `json:"refused"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal(b, &attempts); err != nil {
		t.Fatal(err)
	}
	if len(attempts) != 5 {
		t.Fatalf("%d attempts reported, want 5", len(attempts))
	}
	for _, a := range attempts {
		if !a.Refused || !strings.Contains(a.Error, "Permissions Violation") {
			t.Errorf("%s (%s) was not refused by the server: %q", a.What, a.Subject, a.Error)
		}
	}
	if b, err := os.ReadFile(dir + "/.sluice/payment/ledger.jsonl"); len(b) != 0 {
		t.Errorf("the payment ledger was written (%v): %q", err, b)
	}

	// Every refusal is in the audit log, attributed to the web worker's user.
	want := map[string]bool{}
	for _, a := range attempts {
		want[a.Subject] = true
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, err := orch.Audit().Records(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, r := range recs {
			if r.Kind == audit.KindViolation && strings.HasPrefix(r.User, "worker:web:") {
				got[r.Subject] = true
			}
		}
		missing := []string{}
		for s := range want {
			if !got[s] {
				missing = append(missing, s)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log lacks violations on %v", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
