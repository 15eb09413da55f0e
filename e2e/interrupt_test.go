package e2e

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// holdAllConfig runs the payment worker on the local ledger under a policy
// that holds every payment for a person.
const holdAllConfig = `policies: [hold.yaml]
workers:
  - manifest: builtin:payment
`

const holdAllPolicy = `rules:
  - name: hold-every-payment
    when: tool.name == "payment.charge"
    action: approve
    reason: every payment waits for a person
`

// payHeldFlow reads the balance, then pays: the payment is held. Its last
// step waits for the payment (and then finds nothing to do).
const payHeldFlow = `name: pay-held
steps:
  - {id: balance, call: payment.balance, with: {}}
  - {id: pay, call: payment.charge, with: {amount: 10, currency: EUR, payee: acct_a, memo: "${steps.balance.output.currency}"}}
  - {id: after, call: payment.balance, with: {}, if: "${steps.pay.output.status == 'refunded'}"}
`

type runView struct {
	ID        string   `json:"run_id"`
	Flow      string   `json:"flow"`
	Status    string   `json:"status"`
	Resume    string   `json:"resume"`
	StoppedAt []string `json:"stopped_at"`
}

func runsView(t *testing.T, w *workspace, id string) runView {
	t.Helper()
	r := w.sluice("runs", "--json")
	if r.code != 0 {
		t.Fatalf("sluice runs: exit %d %s", r.code, r.stderr)
	}
	var runs []runView
	if err := json.Unmarshal([]byte(r.stdout), &runs); err != nil {
		t.Fatalf("sluice runs --json: %v", err)
	}
	for _, run := range runs {
		if run.ID == id {
			return run
		}
	}
	t.Fatalf("run %s not in sluice runs: %s", id, r.stdout)
	return runView{}
}

// interruptHeldRun starts sluice run (no orchestrator running: it starts
// one in-process), waits until its payment is held and waiting for a
// person, presses Ctrl-C, and returns the run's id.
func interruptHeldRun(t *testing.T, w *workspace) string {
	t.Helper()
	p := w.start("run", "flow.yaml")
	p.waitLine(t, "step pay (payment.charge) is held for approval", 2*time.Minute)
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t, time.Minute); code != 130 {
		t.Fatalf("sluice run after Ctrl-C: exit %d, want 130 (interrupted)", code)
	}
	out := p.stdout.String()
	first := strings.SplitN(out, "\n", 2)[0]
	if !strings.HasPrefix(first, "run ") || !strings.HasSuffix(first, "(pay-held): interrupted") {
		t.Fatalf("first line %q: want the run reported interrupted", first)
	}
	id := strings.Fields(first)[1]
	if strings.Contains(out, "failed") || strings.Contains(out, "skipped") {
		t.Errorf("an interrupted run is reported with failed or skipped steps:\n%s", out)
	}
	for _, want := range []string{"step pay — payment.charge: interrupted", "step after — payment.balance: interrupted", "step balance — payment.balance: completed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if stderr := strings.Join(p.stderrLines(), "\n"); !strings.Contains(stderr, "run "+id+" was interrupted at step pay, after and is kept") ||
		!strings.Contains(stderr, "sluice cancel "+id) {
		t.Errorf("stderr does not say the run is kept and how to end it:\n%s", stderr)
	}
	return id
}

// Ctrl-C on sluice run: the run is reported interrupted (not failed, not
// skipped), sluice runs shows it interrupted and that it resumes only when
// asked; sluice up does not resume it and says it keeps it; sluice cancel
// ends it for good, recorded in the audit log; the next sluice up says
// nothing of it, and no payment is made.
func TestCtrlCInterruptsAndCancelEnds(t *testing.T) {
	w := newWorkspace(t, map[string]string{"sluice.yaml": holdAllConfig, "hold.yaml": holdAllPolicy, "flow.yaml": payHeldFlow})
	id := interruptHeldRun(t, w)

	v := runsView(t, w, id)
	if v.Status != "interrupted" || v.Resume != "on_request" || !slices.Equal(v.StoppedAt, []string{"pay", "after"}) {
		t.Fatalf("sluice runs --json: %+v; want interrupted, on_request, stopped at pay and after", v)
	}
	if text := w.sluice("runs").stdout; !strings.Contains(text, id) || !strings.Contains(text, "interrupted") ||
		!strings.Contains(text, "resumes only with sluice up --resume") {
		t.Fatalf("sluice runs does not say the run is interrupted and when it resumes:\n%s", text)
	}

	if r := w.sluice("trace", id); !strings.Contains(r.stdout, "run "+id+" (pay-held): interrupted") ||
		!strings.Contains(r.stdout, "pay — payment.charge: interrupted") {
		t.Errorf("sluice trace does not show the run and its step interrupted:\n%s", r.stdout)
	}

	// sluice up keeps it, and says so; nothing is paid.
	up := upAndReady(t, w)
	kept := up.waitLine(t, "kept, not resumed: run "+id, time.Second)
	if !strings.Contains(kept, "at step pay, after") {
		t.Errorf("kept line %q does not say where the run stopped", kept)
	}
	for _, l := range up.stderrLines() {
		if strings.Contains(l, "resuming run") {
			t.Errorf("sluice up resumed a run a person interrupted: %s", l)
		}
	}
	if v := runsView(t, w, id); v.Status != "interrupted" {
		t.Fatalf("with sluice up running the run is %q, want interrupted", v.Status)
	}
	up.cmd.Process.Signal(syscall.SIGINT)
	up.wait(t, time.Minute)

	// Cancelled without an orchestrator: the command takes the lock.
	r := w.sluice("cancel", id, "--as", "e2e")
	if r.code != 0 || !strings.Contains(r.stdout, id+" (pay-held): cancelled by e2e") {
		t.Fatalf("cancel: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := w.sluice("cancel", id); r.code != 1 || !strings.Contains(r.stderr, "no unfinished run") {
		t.Fatalf("cancelling again: exit %d %s", r.code, r.stderr)
	}
	if v := runsView(t, w, id); v.Status != "cancelled" || v.Resume != "" {
		t.Fatalf("after cancel: %+v; want cancelled", v)
	}

	up = upAndReady(t, w)
	for _, l := range up.stderrLines() {
		if strings.Contains(l, id) {
			t.Errorf("sluice up speaks of the cancelled run: %s", l)
		}
	}
	if r := w.sluice("approvals"); !strings.Contains(r.stdout, "no call is waiting") {
		t.Errorf("a cancelled run's held call is still listed:\n%s", r.stdout)
	}
	up.cmd.Process.Signal(syscall.SIGINT)
	up.wait(t, time.Minute)
	if lines := w.ledger(); len(lines) != 0 {
		t.Fatalf("ledger %v: a cancelled run paid", lines)
	}
	var interrupted, cancelled bool
	for _, rec := range checkAudit(t, w) {
		if rec["run_id"] != id {
			continue
		}
		switch {
		case rec["kind"] == "run_interrupted" && rec["resume"] == "on_request":
			interrupted = true
		case rec["kind"] == "run_finished" && rec["status"] == "cancelled" && rec["user"] == "e2e":
			cancelled = true
		case rec["kind"] == "run_resumed":
			t.Errorf("the run was resumed: %v", rec)
		}
	}
	if !interrupted || !cancelled {
		t.Fatalf("audit log: interrupted recorded %v, cancelled by e2e recorded %v", interrupted, cancelled)
	}
}

// The control: a run interrupted and not cancelled is resumed by sluice up
// --resume, which says so on its output with where the run stopped; the
// run then goes on from there (its held call waits again, under the same
// approval) and pays once approved.
func TestInterruptedRunResumesOnlyWhenAskedAndSaysSo(t *testing.T) {
	w := newWorkspace(t, map[string]string{"sluice.yaml": holdAllConfig, "hold.yaml": holdAllPolicy, "flow.yaml": payHeldFlow})
	id := interruptHeldRun(t, w)

	up := w.start("up", "--resume")
	up.waitLine(t, "stop with Ctrl-C", time.Minute)
	line := up.waitLine(t, "resuming run "+id, time.Second)
	if line != " (pay-held): stopped at step pay, after" {
		t.Fatalf("announcement %q: want the flow and where it stopped", line)
	}
	var approval string
	deadline := time.Now().Add(time.Minute)
	for approval == "" {
		var list []approvalJSON
		r := w.sluice("approvals", "--json")
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
			t.Fatalf("approvals --json: %v\n%s", err, r.stdout)
		}
		for _, a := range list {
			if a.RunID == id {
				approval = a.ID
			}
		}
		if approval == "" && time.Now().After(deadline) {
			t.Fatal("the resumed run's payment is not waiting for approval")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := w.sluice("approve", approval, "--as", "e2e"); r.code != 0 {
		t.Fatalf("approve: exit %d %s", r.code, r.stderr)
	}
	waitRunStatus(t, w, id, "completed")
	up.cmd.Process.Signal(syscall.SIGINT)
	up.wait(t, time.Minute)
	if lines := w.ledger(); len(lines) != 1 || !strings.Contains(lines[0], id) {
		t.Fatalf("ledger %v: want the one payment of the resumed run", lines)
	}
}

// Ctrl-C on a sluice run submitted to sluice up stops the waiting, not the
// run: the command says the run goes on and how to end it; sluice cancel,
// through the orchestrator, ends it.
func TestCtrlCOnARunSubmittedToUpLeavesItThere(t *testing.T) {
	w := newWorkspace(t, map[string]string{"sluice.yaml": holdAllConfig, "hold.yaml": holdAllPolicy, "flow.yaml": payHeldFlow})
	up := upAndReady(t, w)
	p := w.start("run", "flow.yaml")
	p.waitLine(t, "step pay (payment.charge) is held for approval", 2*time.Minute)
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t, time.Minute); code != 130 {
		t.Fatalf("sluice run after Ctrl-C: exit %d, want 130", code)
	}
	first := strings.TrimSpace(p.stdout.String())
	if !strings.HasSuffix(first, "(flow.yaml): interrupted here; it goes on in the orchestrator (pid "+
		strconv.Itoa(up.cmd.Process.Pid)+")") {
		t.Fatalf("output %q: want the run said to go on in the orchestrator", first)
	}
	id := strings.Fields(first)[1]
	if v := runsView(t, w, id); v.Status != "running" {
		t.Fatalf("sluice runs: %+v; want the run still running in the orchestrator (its call waits for a person)", v)
	}
	if r := w.sluice("cancel", id, "--as", "e2e"); r.code != 0 || !strings.Contains(r.stdout, "cancelled by e2e; it was running") {
		t.Fatalf("cancel through sluice up: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if v := runsView(t, w, id); v.Status != "cancelled" {
		t.Fatalf("after cancel: %+v", v)
	}
	if r := w.sluice("approvals"); !strings.Contains(r.stdout, "no call is waiting") {
		t.Errorf("a cancelled run's held call is still listed:\n%s", r.stdout)
	}
	up.cmd.Process.Signal(syscall.SIGINT)
	up.wait(t, time.Minute)
	if lines := w.ledger(); len(lines) != 0 {
		t.Fatalf("ledger %v", lines)
	}
}

// sluice cancel --interrupted ends every interrupted run at once.
func TestCancelEveryInterruptedRun(t *testing.T) {
	w := newWorkspace(t, map[string]string{"sluice.yaml": holdAllConfig, "hold.yaml": holdAllPolicy, "flow.yaml": payHeldFlow})
	first, second := interruptHeldRun(t, w), interruptHeldRun(t, w)
	r := w.sluice("cancel", "--interrupted", "--as", "e2e")
	if r.code != 0 || strings.Count(r.stdout, "cancelled by e2e") != 2 || !strings.Contains(r.stdout, first) || !strings.Contains(r.stdout, second) {
		t.Fatalf("cancel --interrupted: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, id := range []string{first, second} {
		if v := runsView(t, w, id); v.Status != "cancelled" {
			t.Errorf("run %s is %q after cancel --interrupted", id, v.Status)
		}
	}
	if r := w.sluice("cancel", "--interrupted"); r.code != 0 || strings.TrimSpace(r.stdout) != "no interrupted run" {
		t.Fatalf("cancel --interrupted with none left: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
}
