package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// procStatus returns the fields of /proc/<pid>/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// The workers that sluice up starts — the real `sluice worker`, not a test
// binary — are confined by the kernel. From outside, with nothing in the
// worker that serves a test: each worker runs with no_new_privs and a
// seccomp filter (/proc/<pid>/status), and a syscall made on one of its
// threads (see injectSyscalls) to read a file outside its grant fails with EACCES
// (Landlock), to open a socket fails with EPERM (the network seal), and,
// where the kernel scopes signals (Landlock ABI 6), to signal the
// orchestrator fails with EPERM. The control: the same syscalls made in
// the orchestrator, which is not confined, succeed, so the probe sees
// what it looks for where it is.
func TestShippedWorkersAreConfined(t *testing.T) {
	abi, _, e := syscall.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if e != 0 || abi < 1 {
		t.Skip("the kernel offers no Landlock: the workers are not confined")
	}
	w := newWorkspace(t, map[string]string{
		"sluice.yaml": `workers:
  - manifest: builtin:files
    grants: {files: {root: ./files}}
  - manifest: builtin:calendar
`,
		"files/readme.txt":   "a file",
		"outside/secret.txt": "outside every grant",
	})
	outside := w.path("outside/secret.txt")
	up := w.start("up")
	up.waitLine(t, "stop with Ctrl-C", time.Minute)
	orch := up.cmd.Process.Pid

	// The control: the orchestrator is not confined, and the probe
	// succeeds there.
	ctl, err := probe(orch, outside, orch)
	if err != nil {
		t.Fatalf("probe the orchestrator: %v", err)
	}
	if ctl.open < 0 || ctl.socket < 0 || ctl.kill != 0 {
		t.Fatalf("control: in the orchestrator open %d, socket %d, kill %d: want each to succeed", ctl.open, ctl.socket, ctl.kill)
	}

	workers := childProcesses(t, orch)
	if len(workers) != 2 {
		t.Fatalf("workers %v, want 2", workers)
	}
	for pid, cmdline := range workers {
		if !strings.Contains(cmdline, " worker ") {
			t.Fatalf("process %d is not a worker: %s", pid, cmdline)
		}
		st := procStatus(t, pid)
		if st["NoNewPrivs"] != "1" || st["Seccomp"] != "2" {
			t.Errorf("worker %d (%s): NoNewPrivs %q, Seccomp %q: want 1 and 2 (a seccomp filter)", pid, cmdline, st["NoNewPrivs"], st["Seccomp"])
		}
		p, err := probe(pid, outside, orch)
		if err != nil {
			t.Fatalf("probe worker %d (%s): %v", pid, cmdline, err)
		}
		if p.open != -int64(unix.EACCES) {
			t.Errorf("worker %d (%s) opening %s outside its grant: %s, want EACCES (Landlock)", pid, cmdline, outside, errnoOf(p.open))
		}
		if p.socket != -int64(unix.EPERM) {
			t.Errorf("worker %d (%s) opening a UDP socket: %s, want EPERM (the network seal)", pid, cmdline, errnoOf(p.socket))
		}
		if abi >= 6 && p.kill != -int64(unix.EPERM) {
			t.Errorf("worker %d (%s) signalling the orchestrator: %s, want EPERM (Landlock ABI %d scopes signals)", pid, cmdline, errnoOf(p.kill), abi)
		}
	}
	up.cmd.Process.Signal(syscall.SIGINT)
	if code := up.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("up exit %d", code)
	}
}

func errnoOf(r int64) string {
	if r < 0 {
		return unix.ErrnoName(unix.Errno(-r))
	}
	return "succeeded (" + strconv.FormatInt(r, 10) + ")"
}
