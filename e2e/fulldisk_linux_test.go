package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tmpfsNS is a process that holds a new user and mount namespace in which
// a small tmpfs is mounted on a directory; sluice commands run in it with
// nsenter, so that they all see the same small file system there.
type tmpfsNS struct {
	t     *testing.T
	pid   int
	stdin io.WriteCloser
}

// mountTmpfs mounts a tmpfs of size on dir in a namespace of its own, or
// skips the test where creating the namespace or mounting is refused.
func mountTmpfs(t *testing.T, dir, size string) *tmpfsNS {
	t.Helper()
	for _, tool := range []string{"unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: cannot mount a small tmpfs to fill", tool)
		}
	}
	// The holder execs cat, which lives until the test closes its input.
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
		`mount -t tmpfs -o size="$1" tmpfs "$0" && echo mounted && exec cat`, dir, size)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot create a user and mount namespace: %v", err)
	}
	ns := &tmpfsNS{t: t, pid: cmd.Process.Pid, stdin: stdin}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "mounted" {
		stdin.Close()
		cmd.Wait()
		t.Skipf("cannot mount a tmpfs in a new user and mount namespace here (%s)", strings.TrimSpace(stderr.String()))
	}
	return ns
}

// command runs name with args in the namespace, in directory dir.
func (ns *tmpfsNS) command(dir, name string, args ...string) *exec.Cmd {
	// nsenter leaves the working directory at the namespace's root; a
	// directory opened before entering would be the one outside.
	return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(ns.pid), "--user", "--mount", "--preserve-credentials",
		"sh", "-c", `cd "$0" && exec "$@"`, dir, name}, args...)...)
}

// sluice runs the binary in the namespace, in the workspace, and waits.
func (ns *tmpfsNS) sluice(w *workspace, args ...string) result {
	ns.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := ns.command(w.dir, sluiceBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		ns.t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		ns.t.Fatalf("sluice %v: still running after 2 minutes", args)
	}
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		ns.t.Fatalf("sluice %v: %v", args, err)
	}
	ns.t.Cleanup(func() {
		if ns.t.Failed() {
			ns.t.Logf("sluice %s\nexit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	})
	return r
}

// start runs sluice in the namespace in the background, as
// workspace.start does outside it.
func (ns *tmpfsNS) start(w *workspace, args ...string) *process {
	ns.t.Helper()
	p := &process{cmd: ns.command(w.dir, sluiceBin, args...), done: make(chan struct{})}
	p.run(ns.t, args)
	return p
}

// run runs a command in the namespace and returns its exit code.
func (ns *tmpfsNS) run(w *workspace, name string, args ...string) int {
	ns.t.Helper()
	err := ns.command(w.dir, name, args...).Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		ns.t.Fatal(err)
	}
	return 0
}

// When the disk of the state directory fills while sluice up runs, a run
// fails at once, saying the audit log or the run state could not be
// written and why — not after its writes time out with "context deadline
// exceeded" — and so does every run after it, and a run started alone on
// the full disk; no payment is made past the failure, and every payment
// made has its decision in the audit log.
// Once space is freed and sluice up restarted, the runs recorded before
// are still listed, the audit log verifies, and a run completes again.
func TestFullDiskFailsRunsAtOnce(t *testing.T) {
	w := newWorkspace(t, map[string]string{"pay.yaml": payDirectFlow})
	// The ledger is outside the small disk: a payment made while it is
	// full must show.
	w.write("sluice.yaml", "state: state\nworkers:\n  - manifest: builtin:payment\n    config: {ledger: "+
		strconv.Quote(w.path("ledger.jsonl"))+"}\n")
	if err := os.Mkdir(w.path("state"), 0o700); err != nil {
		t.Fatal(err)
	}
	ns := mountTmpfs(t, w.path("state"), "4m")
	up := ns.start(w, "up")
	up.waitLine(t, "stop with Ctrl-C", time.Minute)
	pay := func(payee string) result {
		return ns.sluice(w, "run", "pay.yaml", "--input", "amount=2", "--input", "payee="+payee)
	}

	// The runs sluice run said completed.
	var completedIDs []string
	completed := func(r result) {
		t.Helper()
		if f := strings.Fields(r.stdout); len(f) > 3 && f[0] == "run" && f[3] == "completed" {
			completedIDs = append(completedIDs, f[1])
		} else {
			t.Fatalf("exit 0 without a completed run:\n%s", r.stdout)
		}
	}
	// With space: the run completes and pays.
	r := pay("acct_before")
	if r.code != 0 {
		t.Fatalf("run with space: exit %d", r.code)
	}
	completed(r)
	if n := len(w.charges()); n != 1 {
		t.Fatalf("ledger after the first run: %d charges, want 1", n)
	}

	// Fill the disk. The last pages of the store's files may still take a
	// few records, so runs go on until one fails.
	if code := ns.run(w, "dd", "if=/dev/zero", "of=state/filler", "bs=64k"); code == 0 {
		t.Fatal("dd filled no disk: the state directory is not on the small tmpfs")
	}
	var failed result
	for i := 0; i < 20 && failed.stderr == ""; i++ {
		if r := pay("acct_during"); r.code == 0 {
			completed(r)
		} else {
			failed = r
		}
	}
	if failed.stderr == "" {
		t.Fatal("20 runs completed on a full disk")
	}
	checkDiskFull := func(r result, alone bool) {
		t.Helper()
		if r.code != 1 {
			t.Errorf("run on a full disk: exit %d, want 1", r.code)
		}
		named := false
		for _, what := range []string{"audit log", "run state", "API endpoint"} {
			named = named || strings.Contains(r.stderr, what+": cannot write: no space left on device (state directory "+w.path("state"))
		}
		if alone {
			// Starting alone, the first write may be the worker's
			// credentials, in the state directory, before any record:
			// which comes first depends on the bytes the runs before
			// left free.
			named = named || (strings.Contains(r.stderr, "write credentials: write "+w.path("state")) &&
				strings.Contains(r.stderr, ": no space left on device"))
		}
		if !named {
			t.Errorf("run on a full disk does not say the audit log or run state could not be written, and why:\n%s", r.stderr)
		}
		for _, s := range []string{"deadline exceeded", "not stored within", "timeout"} {
			if strings.Contains(r.stderr+r.stdout, s) {
				t.Errorf("run on a full disk failed waiting (%q), not with the cause:\n%s", s, r.stderr)
			}
		}
	}
	checkDiskFull(failed, false)
	paid := len(w.charges())
	// Every run after it fails the same way; none pays.
	for i := 0; i < 2; i++ {
		checkDiskFull(pay("acct_after"), false)
	}
	if n := len(w.charges()); n != paid {
		t.Fatalf("%d charges made after the disk filled", n-paid)
	}
	if paid < len(completedIDs) || paid > len(completedIDs)+1 {
		t.Fatalf("%d charges for %d completed runs", paid, len(completedIDs))
	}
	up.cmd.Process.Signal(syscall.SIGINT)
	up.wait(t, 2*time.Minute)
	// Without sluice up, a run starts its own orchestrator on the full
	// disk, and fails at once the same way.
	checkDiskFull(pay("acct_alone"), true)
	if n := len(w.charges()); n != paid {
		t.Fatalf("%d charges made by a run alone on the full disk", n-paid)
	}

	// Space freed: nothing recorded before is lost.
	if code := ns.run(w, "rm", "state/filler"); code != 0 {
		t.Fatalf("rm filler: exit %d", code)
	}
	r = ns.sluice(w, "runs", "--json")
	if r.code != 0 {
		t.Fatalf("runs after the disk was freed: exit %d", r.code)
	}
	var runs []struct {
		ID     string `json:"run_id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &runs); err != nil {
		t.Fatalf("runs --json: %v", err)
	}
	listed := map[string]string{}
	for _, run := range runs {
		listed[run.ID] = run.Status
	}
	if r := ns.sluice(w, "audit", "export", "--out", "audit.jsonl"); r.code != 0 {
		t.Fatalf("audit export after the disk was freed: exit %d", r.code)
	}
	if r := ns.sluice(w, "audit", "verify", "audit.jsonl"); r.code != 0 || !strings.Contains(r.stdout, "the chain is intact") {
		t.Fatalf("audit verify after the disk was freed: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	export, err := os.ReadFile(w.path("audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range w.charges() {
		if !decided(string(export), c.RunID) {
			t.Errorf("charge %s of run %s has no allow decision in the audit log", c.ChargeID, c.RunID)
		}
	}
	// A run said completed is: its records are all stored.
	for _, id := range completedIDs {
		if listed[id] != "completed" {
			t.Errorf("run %s, said completed, is listed as %q", id, listed[id])
		}
	}

	// And runs complete again.
	up = ns.start(w, "up")
	up.waitLine(t, "stop with Ctrl-C", time.Minute)
	if r := pay("acct_again"); r.code != 0 {
		t.Fatalf("run after the disk was freed: exit %d", r.code)
	}
}

// decided says whether export holds an allow decision on step pay of run.
func decided(export, run string) bool {
	for _, line := range strings.Split(export, "\n") {
		var rec struct {
			Kind   string `json:"kind"`
			RunID  string `json:"run_id"`
			Step   string `json:"step"`
			Action string `json:"action"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if rec.Kind == "decision" && rec.RunID == run && rec.Step == "pay" && rec.Action == "allow" {
			return true
		}
	}
	return false
}

type charge struct {
	ChargeID string `json:"charge_id"`
	Payee    string `json:"payee"`
	RunID    string `json:"run_id"`
}

// charges returns the charges of the ledger at ledger.jsonl in the
// workspace.
func (w *workspace) charges() []charge {
	w.t.Helper()
	b, err := os.ReadFile(w.path("ledger.jsonl"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		w.t.Fatal(err)
	}
	var out []charge
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var c charge
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			w.t.Fatalf("ledger line %q: %v", l, err)
		}
		out = append(out, c)
	}
	return out
}
