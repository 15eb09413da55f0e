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
// sluice up started while a reader is in the middle of reading (stopped
// there with SIGSTOP) starts, and the reader then finishes with what it
// read.
func TestReadersNeverBlockAnOrchestrator(t *testing.T) {
	w := newWorkspace(t, map[string]string{"sluice.yaml": holdAllConfig, "hold.yaml": holdAllPolicy, "flow.yaml": payHeldFlow})
	id := heldRun(t, w)
	state := w.path(".sluice")
	before := treeState(t, state)
	readAll(t, w, id)
	sameTree(t, before, treeState(t, state))

	// A reader stopped while it holds its copy of the store: it made the
	// copy in a temporary directory of its own, which is how it is caught
	// in the middle. One that finished before it was caught is started
	// again (a bounded number of times).
	var reader *process
	for try := 0; reader == nil; try++ {
		if try == 50 {
			t.Fatal("no reader was caught in the middle of reading in 50 tries")
		}
		tmp := t.TempDir()
		p := w.startEnv([]string{"TMPDIR=" + tmp}, "runs")
		for {
			copies, _ := filepath.Glob(filepath.Join(tmp, "sluice-snapshot-*", "jetstream"))
			if len(copies) > 0 {
				p.cmd.Process.Signal(syscall.SIGSTOP)
				select {
				case <-p.done:
				default:
					reader = p
				}
				break
			}
			select {
			case <-p.done:
			case <-time.After(time.Millisecond):
				continue
			}
			break
		}
		if reader == nil {
			if code := p.wait(t, time.Minute); code != 0 {
				t.Fatalf("sluice runs: exit %d", code)
			}
			if copies, _ := filepath.Glob(filepath.Join(tmp, "sluice-snapshot-*")); len(copies) != 0 {
				t.Fatalf("the reader left its copy behind: %v", copies)
			}
		}
	}
	up := upAndReady(t, w)
	reader.cmd.Process.Signal(syscall.SIGCONT)
	if code := reader.wait(t, time.Minute); code != 0 || !strings.Contains(reader.stdout.String(), id) {
		t.Fatalf("the reader stopped in the middle: exit %d\n%s", code, reader.stdout.String())
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
