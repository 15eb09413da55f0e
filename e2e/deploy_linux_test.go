package e2e

import (
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// doctorLine returns the status and detail of one check of sluice doctor's
// output.
func doctorLine(out, what string) (status, detail string) {
	m := regexp.MustCompile(`(?m)^(ok|warn|fail)\s+` + regexp.QuoteMeta(what) + `\s+(.*)$`).FindStringSubmatch(out)
	if m == nil {
		return "", ""
	}
	return m[1], m[2]
}

// TestDoctorSaysWhatASeccompFilterRefuses runs sluice doctor under a
// seccomp filter that refuses the Landlock calls and seccomp(2), as a
// container runtime's profile or a unit's SystemCallFilter= can: doctor
// says that a filter refuses them and which calls to allow, and fails,
// since workers cannot start unsealed; and without the filter it does not.
func TestDoctorSaysWhatASeccompFilterRefuses(t *testing.T) {
	deny := filepath.Join(t.TempDir(), "denysyscalls")
	if out, err := exec.Command("go", "build", "-o", deny, "./testdata/denysyscalls").CombinedOutput(); err != nil {
		t.Fatalf("build denysyscalls: %v\n%s", err, out)
	}
	w := newWorkspace(t, map[string]string{"sluice.yaml": "workers:\n  - manifest: builtin:payment\n"})
	doctor := func(args ...string) (string, int) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = w.dir
		out, err := runBounded(cmd)
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}

	out, _ := doctor(sluiceBin, "doctor")
	if st, detail := doctorLine(out, "landlock"); strings.Contains(detail, "refused") || st == "" {
		t.Fatalf("doctor without a filter: landlock %s %q\n%s", st, detail, out)
	}
	st, detail := doctorLine(out, "network seal")
	if st != "ok" {
		t.Skipf("this kernel offers no seal to refuse (network seal: %s %s)", st, detail)
	}

	out, code := doctor(deny, "EPERM", "landlock,seccomp", "--", sluiceBin, "doctor")
	if strings.HasPrefix(out, "denysyscalls: seccomp:") {
		t.Skipf("cannot install a seccomp filter here: %s", out)
	}
	if code != 1 {
		t.Errorf("doctor under the filter exited %d, want 1\n%s", code, out)
	}
	st, detail = doctorLine(out, "landlock")
	if st != "warn" || !strings.Contains(detail, "refused (operation not permitted) by a seccomp filter on this process") ||
		!strings.Contains(detail, "allow landlock_create_ruleset, landlock_add_rule and landlock_restrict_self") {
		t.Errorf("doctor under the filter: landlock %s %q", st, detail)
	}
	st, detail = doctorLine(out, "network seal")
	if st != "fail" || !strings.Contains(detail, "a seccomp filter on this process refuses seccomp(2)") || !strings.Contains(detail, "cannot start") {
		t.Errorf("doctor under the filter: network seal %s %q", st, detail)
	}

	// A profile older than Landlock answers its calls as unknown.
	out, _ = doctor(deny, "ENOSYS", "landlock", "--", sluiceBin, "doctor")
	st, detail = doctorLine(out, "landlock")
	if st != "warn" || !strings.Contains(detail, "refuses the Landlock calls as unknown") {
		t.Errorf("doctor under an ENOSYS filter: landlock %s %q\n%s", st, detail, out)
	}
	if st, _ := doctorLine(out, "network seal"); st != "ok" {
		t.Errorf("doctor under a filter of the Landlock calls only: network seal %s\n%s", st, out)
	}
}
