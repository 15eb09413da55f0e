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

// A clean start raises no alarm: every worker of sluice up lives past the
// moment the NATS server package in its binary reads its own stat file
// (a second after start), serves a run, and neither the log nor the audit
// log tells of an attempt. A real attempt is still recorded: see
// TestCompromisedWorkerIsRefused, whose worker reads the credential file
// and another process's /proc entry.
func TestCleanStartRaisesNoAlarm(t *testing.T) {
	host := site(t, map[string]string{})
	w := newWorkspace(t, map[string]string{"sluice.yaml": deployment(host, "hijackable"), "answers.yaml": answers,
		"pay.yaml": payDirectFlow})
	up := w.start("up")
	up.waitLine(t, "stop with Ctrl-C", time.Minute)
	workers := childProcesses(t, up.cmd.Process.Pid)
	if len(workers) != 3 {
		t.Fatalf("workers %v", workers)
	}
	// No clock decides the outcome: a worker's age only grows, and the
	// read it waits for is made once a second has passed.
	for pid := range workers {
		for processAge(t, pid) < 3*time.Second {
			time.Sleep(100 * time.Millisecond)
		}
	}
	r := w.sluice("run", "pay.yaml", "--input", "amount=7", "--input", "payee=acct_hotel_1", "--json")
	if r.code != 0 {
		t.Fatalf("run against up: exit %d", r.code)
	}
	up.cmd.Process.Signal(syscall.SIGINT)
	if code := up.wait(t, time.Minute); code != 0 {
		t.Fatalf("up exit %d", code)
	}
	for _, l := range up.stderrLines() {
		if strings.Contains(l, "tried something outside its grant") {
			t.Errorf("alarm on a clean start: %s", l)
		}
	}
	recs := checkAudit(t, w)
	if len(recs) == 0 {
		t.Fatal("the audit log is empty")
	}
	for _, rec := range recs {
		if rec["kind"] == "violation" {
			t.Errorf("violation recorded on a clean start: %v", rec)
		}
	}
}

// processAge is how long the process pid has existed.
func processAge(t *testing.T, pid int) time.Duration {
	t.Helper()
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatalf("worker %d: %v", pid, err)
	}
	// Field 22, the start time in clock ticks (100 a second on Linux),
	// counted from the command name, which is in parentheses.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	start, err := strconv.ParseInt(f[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	up, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	secs, err := strconv.ParseFloat(strings.Fields(string(up))[0], 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(secs*float64(time.Second)) - time.Duration(start)*time.Second/100
}
