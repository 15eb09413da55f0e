package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mcpOnceBin builds testdata/mcponce once: a stdio MCP server whose tool
// send has an effect and cannot tell a call sent again from a new one.
var mcpOnceBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "sluice-e2e-mcponce-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "mcponce")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/mcponce").CombinedOutput(); err != nil {
		return "", &buildError{string(out)}
	}
	return bin, nil
})

// onceWorkspace is a deployment of one MCP worker, once, serving mcponce;
// with idempotent, its manifest says that send is idempotent. The file
// hold is in place: the first call blocks once its effect has happened.
func onceWorkspace(t *testing.T, idempotent bool) *workspace {
	t.Helper()
	bin, err := mcpOnceBin()
	if err != nil {
		t.Fatal(err)
	}
	rule := "  send: {}\n"
	if idempotent {
		rule = "  send: {idempotent: true}\n"
	}
	w := newWorkspace(t, map[string]string{
		"sluice.yaml": "workers:\n  - manifest: once.yaml\n",
		"once.yaml": "worker: once\nrun: mcp\ncommand: [" + bin + ", \"{{files.root}}\"]\ntools:\n" + rule +
			"grants:\n  files: {root: data, write: true, secrecy: []}\nlimits: {timeout: 60s}\n",
		"f.yaml":    "name: f\nsteps:\n  - {id: send, call: once.send, with: {to: ana}, retries: 2, timeout: 90s}\n",
		"data/hold": "",
	})
	if r := w.sluice("worker", "discover", "--manifest", "once.yaml"); r.code != 0 {
		t.Fatalf("discover: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	return w
}

// sends returns how many times the server's send took effect.
func sends(t *testing.T, w *workspace) int {
	t.Helper()
	b, err := os.ReadFile(w.path("data/sent"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// waitSends waits until the server's send took effect n times.
func waitSends(t *testing.T, w *workspace, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for sends(t, w) < n {
		if time.Now().After(deadline) {
			t.Fatalf("send took effect %d times within a minute; want %d", sends(t, w), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A third-party tool with an effect, which cannot recognize a call sent
// again, is sent at most once: when its worker dies after the effect and
// before the answer, the call is not sent again (the step has retries,
// and the engine would send a call in flight again to the restarted
// worker); the run fails saying the call may have taken effect, and the
// effect happened once. The control: the same tool declared idempotent
// in its manifest is sent again, and the run completes.
func TestAtMostOnceWhenTheWorkerDies(t *testing.T) {
	for _, idempotent := range []bool{false, true} {
		w := onceWorkspace(t, idempotent)
		up := upAndReady(t, w)
		workers := childProcesses(t, up.cmd.Process.Pid)
		if len(workers) != 1 {
			t.Fatalf("workers %v, want one", workers)
		}
		client := w.start("run", "f.yaml", "--json")
		waitSends(t, w, 1)
		for pid := range workers {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		// Only now may a call go through: the first never answers.
		if err := os.Remove(w.path("data/hold")); err != nil {
			t.Fatal(err)
		}
		code := client.wait(t, 2*time.Minute)
		run := decodeRun(t, client.stdout.String())
		if !idempotent {
			if code == 0 || run.Status != "failed" || !strings.Contains(client.stdout.String(), "once.send may have taken effect") {
				t.Fatalf("not idempotent: exit %d, run %s; want it failed, saying the call may have taken effect\n%s", code, run.Status, client.stdout.String())
			}
			if n := sends(t, w); n != 1 {
				t.Fatalf("not idempotent: send took effect %d times, want once", n)
			}
		} else {
			if code != 0 || run.Status != "completed" {
				t.Fatalf("idempotent: exit %d, run %s; want it completed\n%s", code, run.Status, client.stdout.String())
			}
			if n := sends(t, w); n != 2 {
				t.Fatalf("idempotent: send took effect %d times, want twice (sent again after the worker died)", n)
			}
		}
		up.cmd.Process.Signal(syscall.SIGINT)
		up.wait(t, 30*time.Second)
		checkAudit(t, w)
	}
}

// The same across a crash of the orchestrator: killed while the call's
// effect has happened and its answer has not come back, the next sluice
// up resumes the run and does not send the call again (the try was
// recorded before it was sent); the run fails saying why, and the effect
// happened once. The control, declared idempotent, is sent again with its
// key and the run completes.
func TestAtMostOnceWhenTheOrchestratorDies(t *testing.T) {
	for _, idempotent := range []bool{false, true} {
		w := onceWorkspace(t, idempotent)
		up := upAndReady(t, w)
		client := w.start("run", "f.yaml", "--json")
		waitSends(t, w, 1)
		killHard(t, up)
		client.cmd.Process.Kill()
		client.wait(t, time.Minute)
		if err := os.Remove(w.path("data/hold")); err != nil {
			t.Fatal(err)
		}

		up = upAndReady(t, w)
		var runID string
		deadline := time.Now().Add(time.Minute)
		for runID == "" {
			var runs []struct {
				ID string `json:"run_id"`
			}
			_ = json.Unmarshal([]byte(w.sluice("runs", "--json").stdout), &runs)
			if len(runs) == 1 {
				runID = runs[0].ID
			}
			if time.Now().After(deadline) {
				t.Fatal("the run is not listed")
			}
		}
		want := map[bool]string{false: "failed", true: "completed"}[idempotent]
		waitRunStatus(t, w, runID, want)
		trace := w.sluice("trace", runID)
		if n := sends(t, w); n != map[bool]int{false: 1, true: 2}[idempotent] {
			t.Fatalf("idempotent %v: send took effect %d times\n%s", idempotent, n, trace.stdout)
		}
		if !idempotent && !strings.Contains(trace.stdout, "once.send may have taken effect") {
			t.Fatalf("the trace does not say why the call was not sent again: exit %d\n%s%s", trace.code, trace.stdout, trace.stderr)
		}
		up.cmd.Process.Signal(syscall.SIGINT)
		up.wait(t, 30*time.Second)
		checkAudit(t, w)
	}
}
