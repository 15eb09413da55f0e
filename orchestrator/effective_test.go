package orchestrator

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/ifc/policy"
	"github.com/sluicehq/sluice/orchestrator/config"
)

// A deployment with a policy file, a built-in worker with a config block
// and a WASM worker whose manifest reads schema files beside it.
var fingerprintBase = map[string]string{
	"sluice.yaml": `policies: [policy.yaml]
workers:
  - manifest: builtin:payment
  - manifest: tools/money.yaml
  - manifest: builtin:llm
    config: {backend: scripted, script: answers.yaml}
secrets:
  key: {env: API_KEY}
`,
	"policy.yaml": `rules:
  - name: no-big-payments
    when: tool.name == "payment.charge" && args.amount > 100
    action: approve
    reason: big payments need a person
`,
	"tools/money.yaml": `worker: money
run: wasm:money.wasm
tools:
  split:
    input_schema: split.input.json
`,
	"tools/split.input.json": `{"type": "object", "properties": {"amount": {"type": "number"}}}`,
	"tools/money.wasm":       "\x00asm\x01\x00\x00\x00",
	"answers.yaml":           "[]\n",
}

func loadEffectiveFiles(t *testing.T, dir string, files map[string]string) *Effective {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d, err := config.Load(filepath.Join(dir, "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	eff, err := LoadEffective(d)
	if err != nil {
		t.Fatal(err)
	}
	return eff
}

// The fingerprint is equal for equal inputs, and differs when any policy
// byte, manifest, schema or module byte, or behaviour-changing setting
// changes; Restart names what a reload cannot apply.
func TestFingerprint(t *testing.T) {
	dir := t.TempDir()
	base := loadEffectiveFiles(t, dir, fingerprintBase)
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(base.Fingerprint) {
		t.Fatalf("fingerprint %q", base.Fingerprint)
	}
	if again := loadEffectiveFiles(t, dir, fingerprintBase); again.Fingerprint != base.Fingerprint {
		t.Fatalf("the same files give %s, then %s", base.Fingerprint, again.Fingerprint)
	}
	if other := loadEffectiveFiles(t, t.TempDir(), fingerprintBase); other.Fingerprint == base.Fingerprint {
		t.Fatal("the same files in another directory (the workers' working directory, the state) give the same fingerprint")
	}
	edit := func(name, old, new string) func(map[string]string) {
		return func(f map[string]string) {
			if !strings.Contains(f[name], old) {
				t.Fatalf("%s has no %q", name, old)
			}
			f[name] = strings.Replace(f[name], old, new, 1)
		}
	}
	for _, tc := range []struct {
		name   string
		change func(map[string]string)
		same   bool
		// restart is what Restart names (nil: a reload applies it), with
		// DIR for the case's directory.
		restart []string
	}{
		{name: "a comment in sluice.yaml", change: edit("sluice.yaml", "workers:\n", "# the workers\nworkers:\n"), same: true},
		{name: "the workers in another order", change: edit("sluice.yaml",
			"  - manifest: builtin:payment\n  - manifest: tools/money.yaml\n", "  - manifest: tools/money.yaml\n  - manifest: builtin:payment\n"), same: true},
		{name: "keys of a config block in another order", change: edit("sluice.yaml",
			"{backend: scripted, script: answers.yaml}", "{script: answers.yaml, backend: scripted}"), same: true},
		{name: "one byte of a policy", change: edit("policy.yaml", "> 100", "> 101")},
		{name: "a comment in a policy", change: edit("policy.yaml", "rules:", "# reviewed\nrules:")},
		{name: "a policy file added", change: func(f map[string]string) {
			f["more.yaml"] = "rules: []\n"
			edit("sluice.yaml", "[policy.yaml]", "[policy.yaml, more.yaml]")(f)
		}},
		{name: "a worker's config block", change: edit("sluice.yaml", "backend: scripted", "backend: hijackable"),
			restart: []string{"worker llm (config)"}},
		{name: "a worker's grants", change: edit("sluice.yaml", "  - manifest: builtin:payment\n", "  - manifest: builtin:payment\n    grants: {net: [\"pay.example:443\"]}\n"),
			restart: []string{"worker payment (grants)"}},
		{name: "a worker's replicas", change: edit("sluice.yaml", "  - manifest: builtin:payment\n", "  - manifest: builtin:payment\n    replicas: 2\n"),
			restart: []string{"worker payment (replicas)"}},
		{name: "a worker added", change: edit("sluice.yaml", "workers:\n", "workers:\n  - manifest: builtin:calendar\n"),
			restart: []string{"worker calendar (added)"}},
		{name: "a worker removed", change: edit("sluice.yaml", "  - manifest: tools/money.yaml\n", ""),
			restart: []string{"worker money (removed)"}},
		{name: "a manifest", change: edit("tools/money.yaml", "run: wasm:money.wasm", "run: wasm:money.wasm\nlimits: {timeout: 3s}"),
			restart: []string{"worker money (manifest)"}},
		{name: "a schema file a manifest reads", change: edit("tools/split.input.json", `"number"`, `"integer"`),
			restart: []string{"worker money (manifest)"}},
		{name: "a WASM module", change: edit("tools/money.wasm", "\x01", "\x02"), restart: []string{"worker money (manifest)"}},
		{name: "the state directory", change: edit("sluice.yaml", "policies:", "state: elsewhere\npolicies:"),
			restart: []string{"the state directory (DIR/elsewhere, was DIR/.sluice)"}},
		{name: "the subject prefix", change: edit("sluice.yaml", "policies:", "subject_prefix: other\npolicies:"),
			restart: []string{"subject_prefix (other, was sluice)"}},
		{name: "how much of the audit log to keep", change: edit("sluice.yaml", "policies:", "audit: {max_age: 30d}\npolicies:")},
		{name: "the deployment's name", change: edit("sluice.yaml", "policies:", "deployment: acme\npolicies:"),
			restart: []string{"deployment (acme, was sluice)", "subject_prefix (acme, was sluice)"}},
		{name: "the default deployment named", change: edit("sluice.yaml", "policies:", "deployment: sluice\npolicies:"), same: true},
		{name: "where a secret comes from", change: edit("sluice.yaml", "API_KEY", "OTHER_KEY"), restart: []string{"secrets"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			old := loadEffectiveFiles(t, dir, fingerprintBase)
			files := maps.Clone(fingerprintBase)
			tc.change(files)
			eff := loadEffectiveFiles(t, dir, files)
			if same := eff.Fingerprint == old.Fingerprint; same != tc.same {
				t.Fatalf("fingerprint before %s, after %s: same %v, want %v", old.Fingerprint, eff.Fingerprint, same, tc.same)
			}
			var want []string
			for _, r := range tc.restart {
				want = append(want, strings.ReplaceAll(r, "DIR", dir))
			}
			if got := Restart(old, eff); !slices.Equal(got, want) {
				t.Fatalf("Restart: %q, want %q", got, want)
			}
		})
	}
}

// The default policy is part of the fingerprint: a binary with another
// default policy runs another configuration.
func TestFingerprintCoversTheDefaultPolicy(t *testing.T) {
	eff := loadEffectiveFiles(t, t.TempDir(), fingerprintBase)
	if eff.PolicyFiles[0].Name != policy.DefaultFileName {
		t.Fatalf("first policy file %s, want the default", eff.PolicyFiles[0].Name)
	}
	files := slices.Clone(eff.PolicyFiles)
	files[0] = policy.File{Name: files[0].Name, Src: append(slices.Clone(files[0].Src), '\n')}
	if Fingerprint(eff.Deployment, eff.Manifests, files) == eff.Fingerprint {
		t.Fatal("a changed default policy gives the same fingerprint")
	}
	if Fingerprint(eff.Deployment, eff.Manifests, eff.PolicyFiles) != eff.Fingerprint {
		t.Fatal("Fingerprint of the same inputs differs from LoadEffective's")
	}
}

// A policy that does not compile is reported, with the fingerprint of
// what was read, so that a refused reload can record it.
func TestLoadEffectiveBrokenPolicy(t *testing.T) {
	files := maps.Clone(fingerprintBase)
	files["policy.yaml"] = "rules:\n  - name: broken\n    when: tool.name ==\n    action: deny\n"
	dir := t.TempDir()
	loadEffectiveFiles(t, dir, fingerprintBase)
	for name, content := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
	d, err := config.Load(filepath.Join(dir, "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	eff, err := LoadEffective(d)
	if err == nil || eff == nil || eff.Policy != nil || eff.Fingerprint == "" {
		t.Fatalf("LoadEffective of a broken policy: %v, %+v", err, eff)
	}
	if !strings.Contains(err.Error(), "policy.yaml:3:") {
		t.Fatalf("error without the policy's position: %v", err)
	}
}
