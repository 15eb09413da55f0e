package e2e

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// treeState is every file under dir with its content's hash, mode and
// modification time.
func treeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		state := fmt.Sprintf("%v %d", info.Mode(), info.ModTime().UnixNano())
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			state += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		out[p] = state
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, before, after map[string]string) {
	t.Helper()
	for p, s := range before {
		if after[p] != s {
			t.Errorf("%s changed: %q, now %q", p, s, after[p])
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s was created", p)
		}
	}
}

// heldRun leaves a held run in the workspace's state, with no
// orchestrator running, and returns its id.
func heldRun(t *testing.T, w *workspace) string {
	t.Helper()
	r := w.sluice("run", "flow.yaml", "--wait=false", "--json")
	if r.code != 4 {
		t.Fatalf("run: exit %d, want 4 (held)\n%s", r.code, r.stderr)
	}
	return decodeRun(t, r.stdout).RunID
}

// readAll runs every read-only command and checks that each works.
func readAll(t *testing.T, w *workspace, id string) {
	t.Helper()
	if r := w.sluice("runs"); r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "held") {
		t.Errorf("sluice runs: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := w.sluice("trace", id); r.code != 0 || !strings.Contains(r.stdout, "pay — payment.charge: held") {
		t.Errorf("sluice trace: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := w.sluice("approvals"); r.code != 0 || !strings.Contains(r.stdout, "run "+id) || !strings.Contains(r.stdout, "1 call(s) waiting") {
		t.Errorf("sluice approvals: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	out := filepath.Join(t.TempDir(), "audit.jsonl")
	if r := w.sluice("audit", "export", "--out", out); r.code != 0 {
		t.Errorf("sluice audit export: exit %d %s", r.code, r.stderr)
	}
	if r := w.sluice("audit", "verify", out); r.code != 0 || !strings.HasPrefix(r.stdout, "ok: ") {
		t.Errorf("sluice audit verify FILE: exit %d %s", r.code, r.stderr)
	}
	if r := w.sluice("audit", "verify"); r.code != 0 || !strings.HasPrefix(r.stdout, "ok: ") {
		t.Errorf("sluice audit verify: exit %d %s", r.code, r.stderr)
	}
}

// Readers never lock the state directory and never write to it; and a
// sluice up started while a reader is in the middle of reading starts, and
// the reader then finishes with what it read.
func TestReadersNeverBlockAnOrchestrator(t *testing.T) {
	w := newWorkspace(t, map[string]string{"sluice.yaml": holdAllConfig, "hold.yaml": holdAllPolicy, "flow.yaml": payHeldFlow})
	id := heldRun(t, w)
	state := w.path(".sluice")
	before := treeState(t, state)
	readAll(t, w, id)
	sameTree(t, before, treeState(t, state))

	// A reader held in the middle of reading: sluice approvals, with no
	// orchestrator running, copies the store, opens the copy, and then
	// reads the policy files (for the registries it flags lookalikes
	// against). Its configuration names a policy file that is a FIFO, so it
	// waits there, its copy open, until the test writes the policy.
	w.write("reader.yaml", strings.Replace(holdAllConfig, "hold.yaml", "slow.yaml", 1))
	fifo := w.path("slow.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("cannot make a FIFO here: %v", err)
	}
	tmp := t.TempDir()
	reader := w.startEnv([]string{"TMPDIR=" + tmp}, "approvals", "--config", "reader.yaml")
	type openResult struct {
		f   *os.File
		err error
	}
	opened := make(chan openResult, 1)
	go func() {
		// Returns once the reader opens the FIFO to read it.
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		opened <- openResult{f, err}
	}()
	t.Cleanup(func() {
		// Lets the open above return, should the reader never come.
		if f, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			if o := <-opened; o.f != nil {
				o.f.Close()
			}
			f.Close()
		}
	})
	var policy *os.File
	select {
	case o := <-opened:
		if o.err != nil {
			t.Fatal(o.err)
		}
		policy = o.f
		opened <- openResult{} // for the cleanup
	case <-reader.done:
		t.Fatal("the reader ended without reading its policy")
	case <-time.After(2 * time.Minute):
		t.Fatal("the reader did not come to its policy file within 2 minutes")
	}
	if copies, _ := filepath.Glob(filepath.Join(tmp, "sluice-snapshot-*", "jetstream")); len(copies) != 1 {
		t.Fatalf("the reader waits, but holds no copy of the store: %v", copies)
	}
	up := upAndReady(t, w)
	if _, err := policy.WriteString(holdAllPolicy); err != nil {
		t.Fatal(err)
	}
	policy.Close()
	if code := reader.wait(t, time.Minute); code != 0 || !strings.Contains(reader.stdout.String(), "run "+id) {
		t.Fatalf("the reader held in the middle: exit %d\n%s", code, reader.stdout.String())
	}
	if copies, _ := filepath.Glob(filepath.Join(tmp, "sluice-snapshot-*")); len(copies) != 0 {
		t.Errorf("the reader left its copy behind: %v", copies)
	}
	// With the orchestrator up, readers ask it.
	readAll(t, w, id)
	up.cmd.Process.Signal(syscall.SIGINT)
	if code := up.wait(t, time.Minute); code != 0 {
		t.Fatalf("sluice up: exit %d", code)
	}
}

// A state directory that cannot be written to (a backup on a read-only
// mount) can be read, and is left exactly as it was.
func TestReadersWorkOnAReadOnlyStateDirectory(t *testing.T) {
	w := newWorkspace(t, map[string]string{"sluice.yaml": holdAllConfig, "hold.yaml": holdAllPolicy, "flow.yaml": payHeldFlow})
	id := heldRun(t, w)
	state := w.path(".sluice")
	readOnly(t, state)
	before := treeState(t, state)
	probe := filepath.Join(state, "probe")
	if err := os.WriteFile(probe, nil, 0o600); err == nil {
		os.Remove(probe)
		t.Fatal("the state directory can still be written to")
	}
	readAll(t, w, id)
	if r := w.sluice("cancel", id); r.code != 1 || !strings.Contains(r.stderr, "lock state directory") {
		t.Errorf("cancel on a read-only state directory: exit %d %s; want a clear failure", r.code, r.stderr)
	}
	sameTree(t, before, treeState(t, state))
}

// readOnly makes dir read-only for the rest of the test: a read-only bind
// mount of it on itself, or, where mounting is refused and the test does
// not run as root, its permissions.
func readOnly(t *testing.T, dir string) {
	t.Helper()
	out, err := exec.Command("mount", "--bind", dir, dir).CombinedOutput()
	if err == nil {
		t.Cleanup(func() { exec.Command("umount", dir).Run() })
		if out, err := exec.Command("mount", "-o", "remount,ro,bind", dir).CombinedOutput(); err != nil {
			t.Fatalf("remount %s read-only: %v %s", dir, err, out)
		}
		return
	}
	if os.Geteuid() == 0 {
		t.Skipf("cannot make a read-only state directory: mount refused (%v: %s), and permissions do not bind root", err, strings.TrimSpace(string(out)))
	}
	var dirs []string
	filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err == nil {
			if de.IsDir() {
				dirs = append(dirs, p)
			} else {
				os.Chmod(p, 0o400)
			}
		}
		return nil
	})
	for _, d := range dirs {
		os.Chmod(d, 0o500)
	}
	t.Cleanup(func() {
		for _, d := range dirs {
			os.Chmod(d, 0o700)
		}
	})
}
