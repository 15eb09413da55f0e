package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestPolicyTestShipped: `sluice policy test` passes on the policy and
// cases shipped with the travel example, loaded with the example's own
// configuration.
func TestPolicyTestShipped(t *testing.T) {
	cmd := exec.Command(sluiceBin, "policy", "test", "policy.yaml", "policy_test.yaml")
	cmd.Dir = "../examples/travel"
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sluice policy test: %v\n%s", err, out)
	}
	if got := lastLine(string(out)); got != "8 passed, 0 failed" {
		t.Errorf("last line %q\n%s", got, out)
	}
}

// TestPolicyTestFailsReadably: a broken case makes `sluice policy test`
// exit 1 and print what the case wanted and what it got; a policy with a
// typo does not load, and says where the typo is.
func TestPolicyTestFailsReadably(t *testing.T) {
	policy, err := os.ReadFile("../examples/travel/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w := newWorkspace(t, map[string]string{
		"policy.yaml": string(policy),
		"cases.yaml": `cases:
  - name: a page may choose any payee
    tool: {name: payment.charge, privileged: true, approvable: true, clearance: {integrity: trusted, secrecy: [payment, pii]}}
    label: {integrity: untrusted, sources: ["web:127.0.0.1:8088"]}
    args: {amount: 289, currency: EUR, payee: acct_attacker}
    want: {action: allow, rules: [known-payees]}
  - name: a known payee is endorsed
    tool: {name: payment.charge, privileged: true, approvable: true, clearance: {integrity: trusted, secrecy: [payment, pii]}}
    label: {integrity: untrusted, sources: ["web:127.0.0.1:8088"]}
    args: {amount: 289, currency: EUR, payee: acct_tap_air}
    want: {action: allow, rules: [known-payees]}
`,
		"typo.yaml": strings.Replace(string(policy), "args.payee in registry", "args.payeee in registry", 1),
	})
	r := w.sluice("policy", "test", "policy.yaml", "cases.yaml")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	for _, want := range []string{
		"--- FAIL: a page may choose any payee (cases.yaml:2:5)",
		"action: want allow, got approve",
		"rules:  want [known-payees]",
		"got  [clearance untrusted-never-pays-alone]",
		"- known-payees (wanted, not named)",
		"+ clearance (named, not wanted)",
		"+ untrusted-never-pays-alone (named, not wanted)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "a known payee is endorsed") {
		t.Errorf("a passing case is printed without -v:\n%s", r.stdout)
	}
	if got := lastLine(r.stdout); got != "1 passed, 1 failed" {
		t.Errorf("last line %q", got)
	}

	r = w.sluice("policy", "test", "typo.yaml", "cases.yaml")
	if r.code != 1 || !strings.Contains(r.stderr, "typo.yaml:15:44: ") || !strings.Contains(r.stderr, `no argument "payeee"`) {
		t.Errorf("typo: exit %d\n%s", r.code, r.stderr)
	}
	if r := w.sluice("policy", "test"); r.code != 2 {
		t.Errorf("no files: exit %d", r.code)
	}
	if r := w.sluice("policy", "check", filepath.Join(w.dir, "cases.yaml")); r.code != 2 {
		t.Errorf("unknown subcommand: exit %d", r.code)
	}
}
