package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The audit log exports as JSON lines whose chain verify checks: a clean
// export passes, a changed or dropped record fails with its line; the same
// works through a running orchestrator.
func TestAuditExportVerify(t *testing.T) {
	w := newWorkspace(t, map[string]string{"pay.yaml": payDirectFlow, "sluice.yaml": "workers:\n  - manifest: builtin:payment\n"})
	for i := 0; i < 2; i++ {
		if r := w.sluice("run", "pay.yaml", "--input", "amount=3", "--input", "payee=acct_x"); r.code != 0 {
			t.Fatalf("run: exit %d", r.code)
		}
	}
	if r := w.sluice("audit", "export", "--out", "audit.jsonl"); r.code != 0 || !strings.Contains(r.stderr, "records written") {
		t.Fatalf("export: exit %d %s", r.code, r.stderr)
	}
	if r := w.sluice("audit", "verify", "audit.jsonl"); r.code != 0 || !strings.Contains(r.stdout, "the chain is intact") {
		t.Fatalf("verify clean: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	checkAudit(t, w)
	b, _ := os.ReadFile(w.path("audit.jsonl"))
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) < 6 {
		t.Fatalf("only %d records", len(lines))
	}
	changed := append([]string{}, lines...)
	changed[2] = strings.Replace(changed[2], `"kind":"`, `"kind":"x`, 1)
	w.write("changed.jsonl", strings.Join(changed, "")+"\n")
	if r := w.sluice("audit", "verify", "changed.jsonl"); r.code != 1 || !strings.Contains(r.stderr, "line 4: the chain is broken") {
		t.Fatalf("verify changed: exit %d %s", r.code, r.stderr)
	}
	dropped := append(append([]string{}, lines[:3]...), lines[4:]...)
	w.write("dropped.jsonl", strings.Join(dropped, "")+"\n")
	if r := w.sluice("audit", "verify", "dropped.jsonl"); r.code != 1 || !strings.Contains(r.stderr, "the chain is broken") {
		t.Fatalf("verify dropped: exit %d %s", r.code, r.stderr)
	}

	r := w.sluice("runs")
	if r.code != 0 || strings.Count(r.stdout, "pay-direct") != 2 || !strings.Contains(r.stdout, "completed") {
		t.Fatalf("runs: exit %d\n%s", r.code, r.stdout)
	}
	id := strings.Fields(r.stdout)[0]
	if r := w.sluice("trace", id); r.code != 0 || !strings.Contains(r.stdout, "└─ pay — payment.charge: completed") || !strings.Contains(r.stdout, "arguments: trusted, from user") {
		t.Fatalf("trace: exit %d\n%s", r.code, r.stdout)
	}
	if r := w.sluice("trace", id, "--dot"); r.code != 0 || !strings.HasPrefix(r.stdout, "digraph") || !strings.Contains(r.stdout, "run -> s0;") {
		t.Fatalf("trace --dot: exit %d\n%s", r.code, r.stdout)
	}
	if r := w.sluice("trace", "01NOSUCHRUN"); r.code != 1 || !strings.Contains(r.stderr, "no run") {
		t.Fatalf("trace of an unknown run: exit %d %s", r.code, r.stderr)
	}

	up := w.start("up")
	up.waitLine(t, "stop with Ctrl-C", time.Minute)
	if r := w.sluice("audit", "verify"); r.code != 0 || !strings.Contains(r.stdout, "the chain is intact") {
		t.Fatalf("verify through sluice up: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
}
