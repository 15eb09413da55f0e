package e2e

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sluice up runs the system until stopped; sluice run submits to it, and a
// held call is answered through it. SIGINT stops it with no worker left.
func TestUpServesRuns(t *testing.T) {
	host := site(t, map[string]string{"/poisoned": poisonedPage})
	w := newWorkspace(t, map[string]string{"sluice.yaml": deployment(host, "hijackable"), "answers.yaml": answers,
		"book.yaml": bookFlow, "pay.yaml": payDirectFlow})
	up := w.start("up")
	up.waitLine(t, "stop with Ctrl-C", time.Minute)
	workers := childProcesses(t, up.cmd.Process.Pid)
	if len(workers) != 3 {
		t.Fatalf("workers %v", workers)
	}

	r := w.sluice("run", "pay.yaml", "--input", "amount=7", "--input", "payee=acct_hotel_1", "--json")
	if r.code != 0 {
		t.Fatalf("run against up: exit %d", r.code)
	}
	if run := decodeRun(t, r.stdout); run.Status != "completed" {
		t.Fatalf("status %s", run.Status)
	}

	r = w.sluice("run", "book.yaml", "--input", "url=http://"+host+"/poisoned", "--wait=false", "--json")
	if r.code != 4 {
		t.Fatalf("held run against up: exit %d", r.code)
	}

	// A waiting run, answered by sluice deny through the same orchestrator.
	p := w.start("run", "book.yaml", "--input", "url=http://"+host+"/poisoned")
	id := p.waitLine(t, "deny:    sluice deny ", time.Minute)
	if r := w.sluice("deny", id, "--as", "e2e"); r.code != 0 {
		t.Fatalf("deny: exit %d", r.code)
	}
	if code := p.wait(t, time.Minute); code != 3 {
		t.Fatalf("denied run: exit %d, want 3", code)
	}
	if lines := w.ledger(); len(lines) != 1 {
		t.Fatalf("ledger %v: want only the direct payment", lines)
	}

	// Bad input and a bad flow are reported by the client as usual.
	if r := w.sluice("run", "pay.yaml", "--input", "amount=x", "--input", "payee=p"); r.code != 2 || !strings.Contains(r.stderr, `want a number, got "x"`) {
		t.Fatalf("bad input against up: exit %d %s", r.code, r.stderr)
	}
	w.write("bad.yaml", "name: bad\nsteps:\n  - {id: a, call: payment.refund}\n")
	if r := w.sluice("run", "bad.yaml"); r.code != 1 || !strings.Contains(r.stderr, `bad.yaml:3:19: unknown tool "payment.refund"`) {
		t.Fatalf("bad flow against up: exit %d %s", r.code, r.stderr)
	}

	up.cmd.Process.Signal(syscall.SIGINT)
	if code := up.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("up exit %d", code)
	}
	for pid := range workers {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			if stat, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); !strings.Contains(string(stat), ") Z ") {
				t.Errorf("worker %d outlived sluice up", pid)
			}
		}
	}
	if _, err := os.Stat(w.path(".sluice/run/api.json")); !os.IsNotExist(err) {
		t.Errorf("api.json left behind: %v", err)
	}
}
