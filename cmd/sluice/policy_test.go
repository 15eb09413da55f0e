package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPolicyTestConfig: --config brings in the deployment's policies and
// tools, loaded as run loads them.
func TestPolicyTestConfig(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"deploy/sluice.yaml": "workers:\n  - manifest: builtin:payment\npolicies: [mine.yaml]\n",
		"deploy/mine.yaml":   "rules:\n  - name: no-usd\n    when: tool.name == \"payment.charge\" && args.currency == \"USD\"\n    action: deny\n",
		"cases.yaml": `cases:
  - name: dollars are refused
    tool: {name: payment.charge, privileged: true, approvable: true, clearance: {integrity: trusted, secrecy: [payment, pii]}}
    label: {integrity: trusted, sources: [user]}
    args: {amount: 5, currency: USD, payee: p}
    want: {action: deny, rules: [no-usd]}
`,
		"typo.yaml": "rules:\n  - name: t\n    when: tool.name == \"web.fetch\"\n    action: deny\n",
	}
	for name, src := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs := runCLI(t, dir, "policy", "test", "--config", "deploy/sluice.yaml", "cases.yaml", "-v")
	if code != exitOK || !strings.Contains(out, "--- PASS: dollars are refused") || !strings.HasSuffix(out, "1 passed, 0 failed\n") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	// The deployment has no web worker: a rule about web.fetch does not load.
	code, _, errs = runCLI(t, dir, "policy", "test", "--config", "deploy/sluice.yaml", "typo.yaml", "cases.yaml")
	if code != exitFailure || !strings.Contains(errs, "typo.yaml:3:24: ") || !strings.Contains(errs, `no tool "web.fetch"`) {
		t.Errorf("exit %d\nstderr:\n%s", code, errs)
	}
	if code, _, _ := runCLI(t, dir, "policy", "test", "--config", "deploy/sluice.yaml", "typo.yaml"); code != exitUsage {
		t.Errorf("no cases file: exit %d, want %d", code, exitUsage)
	}
}
