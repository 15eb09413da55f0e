package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/bus"
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

// rechainFrom sets the prev of every line after i to the hash of the line
// before it, as someone who rewrote line i and can write the stream (or
// edit the export) would, leaving the signatures as they were.
func rechainFrom(lines []string, i int) []string {
	out := append([]string{}, lines...)
	for j := i + 1; j < len(out); j++ {
		sum := sha256.Sum256([]byte(out[j-1]))
		var rec struct {
			Prev string `json:"prev"`
		}
		json.Unmarshal([]byte(out[j]), &rec)
		out[j] = strings.Replace(out[j], `"prev":"`+rec.Prev+`"`, `"prev":"`+hex.EncodeToString(sum[:])+`"`, 1)
	}
	return out
}

// The audit log is signed: an export ends with a checkpoint signed by the
// key sluice doctor prints, and verify, given that key, fails naming the
// line when the tail is cut, when a record is rewritten and the chain
// recomputed, when a checkpoint is removed, and when another key is given;
// the untouched export verifies. The stream itself refuses to delete a
// record or be purged.
func TestAuditCheckpoints(t *testing.T) {
	w := newWorkspace(t, map[string]string{"pay.yaml": payDirectFlow, "sluice.yaml": "workers:\n  - manifest: builtin:payment\n"})
	r := w.sluice("doctor")
	key := ""
	for _, l := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[1] == "audit" && f[3] == "key" {
			key = f[4]
		}
	}
	if key != "none" {
		t.Fatalf("doctor before the first start: key %q\n%s", key, r.stdout)
	}
	for i := 0; i < 2; i++ {
		if r := w.sluice("run", "pay.yaml", "--input", "amount=3", "--input", "payee=acct_x"); r.code != 0 {
			t.Fatalf("run: exit %d", r.code)
		}
	}
	st, err := os.Stat(w.path(".sluice/audit-signing.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("signing key file: %v %v", st, err)
	}
	for _, l := range strings.Split(w.sluice("doctor").stdout, "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[1] == "audit" && f[3] == "key" {
			key = f[4]
		}
	}
	if !strings.HasPrefix(key, "ed25519:") {
		t.Fatalf("doctor prints no public key: %q", key)
	}
	if r := w.sluice("audit", "export", "--out", "audit.jsonl"); r.code != 0 {
		t.Fatalf("export: exit %d %s", r.code, r.stderr)
	}
	b, _ := os.ReadFile(w.path("audit.jsonl"))
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	var checkpoints, decision []int
	for i, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatal(err)
		}
		switch rec["kind"] {
		case "checkpoint":
			if rec["key"] != key {
				t.Fatalf("line %d is signed by %v, doctor prints %s", i+1, rec["key"], key)
			}
			checkpoints = append(checkpoints, i)
		case "decision":
			decision = append(decision, i)
		}
	}
	last := len(lines) - 1
	if len(checkpoints) < 2 || checkpoints[len(checkpoints)-1] != last || len(decision) != 2 || checkpoints[0] > decision[1] {
		t.Fatalf("checkpoints at %v, decisions at %v, of %d lines: want one after each run, the last at the end", checkpoints, decision, len(lines))
	}
	verify := func(name string, ls []string, args ...string) result {
		t.Helper()
		w.write(name, strings.Join(ls, "\n")+"\n")
		return w.sluice(append([]string{"audit", "verify", name}, args...)...)
	}
	if r := verify("clean.jsonl", lines, "--public-key", key); r.code != 0 || !strings.Contains(r.stdout, "ends with a checkpoint signed") {
		t.Fatalf("untouched export: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	// Without --public-key, verify takes the deployment's own key.
	if r := verify("clean.jsonl", lines); r.code != 0 {
		t.Fatalf("untouched export, the deployment's key: exit %d %s", r.code, r.stderr)
	}

	mid := checkpoints[0]
	rewritten := append([]string{}, lines...)
	rewritten[decision[1]] = strings.Replace(rewritten[decision[1]], `"action":"allow"`, `"action":"deny"`, 1)
	if rewritten[decision[1]] == lines[decision[1]] {
		t.Fatalf("no action to rewrite in %s", lines[decision[1]])
	}
	withoutLast := append([]string{}, lines[:last]...)
	withoutMid := append(append([]string{}, lines[:mid]...), lines[mid+1:]...)
	other := "ed25519:" + base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, c := range []struct {
		name  string
		lines []string
		args  []string
		want  string
	}{
		{"cut-one.jsonl", withoutLast, nil, fmt.Sprintf("line %d: no checkpoint covers lines %d to %d", last, checkpoints[len(checkpoints)-2]+2, last)},
		{"cut-after-a-decision.jsonl", lines[:decision[1]+1], nil, fmt.Sprintf("line %d: no checkpoint covers", decision[1]+1)},
		{"recomputed.jsonl", rechainFrom(rewritten, decision[1]), nil, fmt.Sprintf("line %d: the checkpoint's signature does not verify", nextCheckpoint(checkpoints, decision[1])+1)},
		{"changed.jsonl", rewritten, nil, fmt.Sprintf("line %d: the chain is broken", decision[1]+2)},
		{"no-mid-checkpoint.jsonl", withoutMid, nil, fmt.Sprintf("line %d: the chain is broken", mid+1)},
		{"no-mid-checkpoint-recomputed.jsonl", rechainFrom(withoutMid, mid-1), nil, fmt.Sprintf("line %d: the checkpoint covers", nextCheckpoint(checkpoints, mid))},
		{"no-last-checkpoint-recomputed.jsonl", rechainFrom(withoutLast, 0), nil, fmt.Sprintf("line %d: no checkpoint covers", last)},
		{"other-key.jsonl", lines, []string{"--public-key", other}, fmt.Sprintf("line %d: the checkpoint is signed by %s, which is not the key", checkpoints[0]+1, key)},
	} {
		args := c.args
		if args == nil {
			args = []string{"--public-key", key}
		}
		r := verify(c.name, c.lines, args...)
		if r.code != 1 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: exit %d %q, want %q", c.name, r.code, r.stderr, c.want)
		}
	}

	// Through a running orchestrator, an export ends with a checkpoint
	// signed for it.
	up := w.start("up")
	up.waitLine(t, "stop with Ctrl-C", time.Minute)
	if r := w.sluice("audit", "export", "--out", "live.jsonl"); r.code != 0 {
		t.Fatalf("export through sluice up: exit %d %s", r.code, r.stderr)
	}
	if r := w.sluice("audit", "verify", "live.jsonl", "--public-key", key); r.code != 0 {
		t.Fatalf("verify the export of sluice up: exit %d %s", r.code, r.stderr)
	}
	up.cmd.Process.Signal(syscall.SIGINT)
	if code := up.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("sluice up: exit %d", code)
	}

	// The server refuses, to anyone, to delete a record or purge the
	// stream: the stream on the state directory sluice wrote, opened by
	// a NATS server with every right.
	b2, err := bus.Start(bus.Config{StoreDir: w.path(".sluice")})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Shutdown()
	nc, err := b2.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stream, err := js.Stream(ctx, audit.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	before := stream.CachedInfo().State.Msgs
	if err := stream.DeleteMsg(ctx, 2); err == nil || !strings.Contains(err.Error(), "message delete not permitted") {
		t.Errorf("delete a record: %v", err)
	}
	if err := stream.Purge(ctx); err == nil || !strings.Contains(err.Error(), "stream purge not permitted") {
		t.Errorf("purge the stream: %v", err)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.State.Msgs != before || before < uint64(len(lines)) {
		t.Fatalf("records: %d before, %v after (%v)", before, info.State.Msgs, err)
	}
}

// nextCheckpoint is the index of the first checkpoint after line index i.
func nextCheckpoint(checkpoints []int, i int) int {
	for _, c := range checkpoints {
		if c > i {
			return c
		}
	}
	return -1
}
