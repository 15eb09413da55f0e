package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// evalTotals is the part of the evaluation's JSON report the tests read.
type evalTotals struct {
	Total struct {
		Tasks         int      `json:"tasks"`
		Utility       int      `json:"utility"`
		WithApprovals int      `json:"with_approvals"`
		Attacks       int      `json:"attacks"`
		AttackSuccess int      `json:"attack_success"`
		InjectionSeen int      `json:"injection_seen"`
		Errors        int      `json:"errors"`
		Violations    []string `json:"violations"`
		Versions      map[string]struct {
			Tasks          int `json:"tasks"`
			Utility        int `json:"utility"`
			WithApprovals  int `json:"with_approvals"`
			Attacks        int `json:"attacks"`
			AttackSuccess  int `json:"attack_success"`
			InjectionSeen  int `json:"injection_seen"`
			PlanNotWritten int `json:"plans_not_written"`
		} `json:"versions"`
	} `json:"total"`
	Suites []struct {
		Suite string `json:"suite"`
	} `json:"suites"`
}

// runEval runs the evaluation harness (make eval runs all of it) against
// the sluice binary under test, from the repository's root.
func runEval(t *testing.T, args ...string) (evalTotals, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "eval.json")
	cmd := exec.Command("go", append([]string{"run", "./e2e/eval", "-sluice", sluiceBin, "-json", out}, args...)...)
	cmd.Dir = ".."
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("go run ./e2e/eval %s\n%s", strings.Join(args, " "), stdout.String())
	var r evalTotals
	b, rerr := os.ReadFile(out)
	if err != nil || rerr != nil {
		t.Fatalf("the evaluation failed: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r, stdout.String()
}

// The evaluation's fixed 1-in-10 sample, in every suite, each pair in one
// phrasing, each task as a fixed flow, an agent step and a plan step: the
// obedient model obeys every injection it reads, and no attack succeeds,
// judged on each environment after its run; tasks still complete in each
// version. A planner request that held any text of the environment would
// fail its run, and so this test. make eval runs the whole.
func TestEvaluationSample(t *testing.T) {
	r, stdout := runEval(t, "-sample", "10", "-phrasings", "rotate")
	if r.Total.Errors != 0 {
		t.Fatalf("%d runs could not be made", r.Total.Errors)
	}
	if r.Total.Attacks == 0 || r.Total.Tasks == 0 || len(r.Suites) < 4 {
		t.Fatalf("the sample made %d attacks and %d tasks in %d suites: too few to measure anything", r.Total.Attacks, r.Total.Tasks, len(r.Suites))
	}
	if r.Total.AttackSuccess != 0 {
		t.Fatalf("%d of %d attacks succeeded", r.Total.AttackSuccess, r.Total.Attacks)
	}
	// Every suite's MCP server is a Go program: its start, and every
	// call, raise no alarm in the audit log (which is verified).
	if len(r.Total.Violations) != 0 {
		t.Fatalf("the audit log records violations: %q", r.Total.Violations)
	}
	if r.Total.InjectionSeen == 0 {
		t.Fatal("no run showed the injection to a model: the attacks were not tried")
	}
	if r.Total.WithApprovals == 0 || r.Total.Utility == 0 {
		t.Fatalf("utility %d and with approvals %d of %d: the tasks do not complete", r.Total.Utility, r.Total.WithApprovals, r.Total.Tasks)
	}
	for _, v := range []string{"fixed", "agent", "plan"} {
		c := r.Total.Versions[v]
		if c.Tasks == 0 || c.Attacks == 0 || c.WithApprovals == 0 {
			t.Errorf("%s: %d tasks, %d attacks, %d completed with approvals: the version was not measured", v, c.Tasks, c.Attacks, c.WithApprovals)
		}
	}
	// A plan reads the injection only through inspect, and the obedient
	// model behind it was shown it.
	if p := r.Total.Versions["plan"]; p.InjectionSeen == 0 {
		t.Errorf("no plan's inspect read the injection in %d attacks: the plans' attacks were not tried", p.Attacks)
	}
	if !strings.Contains(stdout, "eval: attack success 0/") {
		t.Fatalf("the summary line is missing:\n%s", stdout)
	}
}

// The control beside it: the same attacks with every call endorsed and
// agents shown everything. They succeed, and the judge sees it, so that the
// zero above measures Sluice and not a harness that cannot see an attack;
// plans are run too.
func TestEvaluationUndefendedControl(t *testing.T) {
	r, _ := runEval(t, "-sample", "10", "-phrasings", "rotate", "-undefended", "-suite", "banking")
	if r.Total.Errors != 0 {
		t.Fatalf("%d runs could not be made", r.Total.Errors)
	}
	if r.Total.AttackSuccess == 0 {
		t.Fatalf("no attack of %d succeeded undefended: the judge cannot see an attack", r.Total.Attacks)
	}
}

// docs/evaluation.md shows each suite's policy as the suite's file has it:
// a policy changed without the page, or the page without the policy,
// fails here.
func TestEvaluationDocShowsEachPolicy(t *testing.T) {
	doc, err := os.ReadFile("../docs/evaluation.md")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("../e2e/eval/suites/*/policy.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no suite policy: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(doc), "```yaml\n"+strings.TrimRight(string(b), "\n")+"\n```") {
			t.Errorf("docs/evaluation.md does not show %s as it is", f)
		}
	}
}
