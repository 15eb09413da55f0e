package e2e

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// With audit.max_size in sluice.yaml, each orchestrator start drops the
// head of the audit log up to a signed checkpoint: the export starts with
// that checkpoint and holds the record of the drop, verify passes and says
// where the log starts, a record changed after the start is caught, an
// export cut anywhere but at a checkpoint is refused, and sluice runs
// still lists the runs left. A limit that is not one is reported at its
// position, and nothing runs.
func TestAuditRetention(t *testing.T) {
	w := newWorkspace(t, map[string]string{"pay.yaml": payDirectFlow,
		"sluice.yaml": "workers:\n  - manifest: builtin:payment\naudit:\n  max_size: 3KiB\n  max_age: 90d\n"})
	for i := 0; i < 4; i++ {
		if r := w.sluice("run", "pay.yaml", "--input", "amount=3", "--input", "payee=acct_x"); r.code != 0 {
			t.Fatalf("run %d: exit %d", i+1, r.code)
		}
	}
	if r := w.sluice("audit", "export", "--out", "audit.jsonl"); r.code != 0 {
		t.Fatalf("export: exit %d %s", r.code, r.stderr)
	}
	b, _ := os.ReadFile(w.path("audit.jsonl"))
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	var first, drop map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatal(err)
		}
		if rec["kind"] == "retention" {
			drop = rec
		}
	}
	if first["kind"] != "checkpoint" || first["count"] == nil {
		t.Fatalf("the export starts with %s, want a checkpoint after dropped records", lines[0])
	}
	if drop == nil || drop["count"] == nil || drop["checkpoint"] != first["id"] ||
		!strings.Contains(strings.Join(toStrings(drop["reasons"]), " "), "max_size 3072 bytes") {
		t.Fatalf("the drop is not recorded after the checkpoint it kept: %v", drop)
	}
	dropped := int(first["count"].(float64))
	r := w.sluice("audit", "verify", "audit.jsonl")
	if r.code != 0 || !strings.Contains(r.stdout, "records, starts after "+strconv.Itoa(dropped)+" dropped records at a checkpoint signed ") ||
		!strings.Contains(r.stdout, "the chain is intact") {
		t.Fatalf("verify: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	checkAudit(t, w)

	changed := append([]string{}, lines...)
	changed[1] = strings.Replace(changed[1], `"kind":"`, `"kind":"x`, 1)
	w.write("changed.jsonl", strings.Join(changed, "\n")+"\n")
	if r := w.sluice("audit", "verify", "changed.jsonl"); r.code != 1 || !strings.Contains(r.stderr, "line 3: the chain is broken") {
		t.Fatalf("verify a record changed after the start: exit %d %s", r.code, r.stderr)
	}
	w.write("cut.jsonl", strings.Join(lines[1:], "\n")+"\n")
	if r := w.sluice("audit", "verify", "cut.jsonl"); r.code != 1 || !strings.Contains(r.stderr, "line 1: the chain does not start here, and not at a checkpoint either") {
		t.Fatalf("verify an export cut after the checkpoint: exit %d %s", r.code, r.stderr)
	}

	r = w.sluice("runs")
	if r.code != 0 || !strings.Contains(r.stdout, "pay-direct") || !strings.Contains(r.stdout, "completed") {
		t.Fatalf("runs: exit %d\n%s", r.code, r.stdout)
	}

	w.write("sluice.yaml", "workers:\n  - manifest: builtin:payment\naudit:\n  max_age: 3 months\n")
	if r := w.sluice("run", "pay.yaml", "--input", "amount=3", "--input", "payee=acct_x"); r.code == 0 ||
		!strings.Contains(r.stderr, `sluice.yaml:4:12: audit.max_age "3 months": not a duration`) {
		t.Fatalf("a bad max_age: exit %d %s", r.code, r.stderr)
	}
	w.write("sluice.yaml", "workers:\n  - manifest: builtin:payment\n")
	if r := w.sluice("audit", "export", "--out", "after.jsonl"); r.code != 0 {
		t.Fatalf("export after a refused start: exit %d %s", r.code, r.stderr)
	}
	after, _ := os.ReadFile(w.path("after.jsonl"))
	if !strings.HasPrefix(string(after), lines[0]+"\n") {
		t.Fatal("the log changed after a refused start")
	}
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// Under sluice up, a limit put in force by sluice reload is applied by the
// orchestrator's next check, within a minute: the log then starts with a
// checkpoint, verifies, and sluice runs still answers through it.
func TestAuditRetentionAfterReload(t *testing.T) {
	w := newWorkspace(t, map[string]string{"pay.yaml": payDirectFlow, "sluice.yaml": "workers:\n  - manifest: builtin:payment\n"})
	up := w.start("up")
	up.waitLine(t, "stop with Ctrl-C", time.Minute)
	for i := 0; i < 3; i++ {
		if r := w.sluice("run", "pay.yaml", "--input", "amount=3", "--input", "payee=acct_x"); r.code != 0 {
			t.Fatalf("run %d: exit %d", i+1, r.code)
		}
	}
	w.write("sluice.yaml", "workers:\n  - manifest: builtin:payment\naudit:\n  max_size: 2KiB\n")
	if r := w.sluice("reload"); r.code != 0 {
		t.Fatalf("reload: exit %d %s", r.code, r.stderr)
	}
	deadline := time.Now().Add(3 * time.Minute) // the check runs every minute
	for {
		if r := w.sluice("audit", "export", "--out", "audit.jsonl"); r.code != 0 {
			t.Fatalf("export: exit %d %s", r.code, r.stderr)
		}
		b, _ := os.ReadFile(w.path("audit.jsonl"))
		if strings.HasPrefix(string(b), `{"v":1,"prev":`) && strings.Contains(string(b), `"kind":"retention"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no records dropped within 3 minutes of the reload; the log starts with %.200s", b)
		}
		time.Sleep(2 * time.Second)
	}
	if r := w.sluice("audit", "verify", "audit.jsonl"); r.code != 0 || !strings.Contains(r.stdout, "dropped records at a checkpoint signed") {
		t.Fatalf("verify: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := w.sluice("runs"); r.code != 0 {
		t.Fatalf("runs: exit %d %s", r.code, r.stderr)
	}
	up.cmd.Process.Signal(syscall.SIGINT)
	if code := up.wait(t, time.Minute); code != 0 {
		t.Fatalf("sluice up: exit %d", code)
	}
}
