package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/schemas"
)

type at struct {
	code      string
	line, col int
}

// Each worker's config block is checked against the schema of its kind
// when sluice.yaml is read, with the position of each problem.
func TestWorkerConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []at
		msgs []string
	}{
		{"misspelled key", "workers:\n  - manifest: builtin:payment\n    config: {ledgr: pay.jsonl}\n",
			[]at{{schemas.CodeSchemaUnknown, 3, 14}}, []string{`unknown key "ledgr" (did you mean "ledger"?)`}},
		{"unknown backend", "workers:\n  - manifest: builtin:llm\n    config:\n      backend: gpt5\n",
			[]at{{schemas.CodeSchemaMismatch, 4, 16}}, []string{"workers.0.config.backend: value must be one of 'scripted', 'hijackable', 'openai', 'anthropic'"}},
		{"key of another backend", "workers:\n  - manifest: builtin:payment\n    config: {backend: http, base_url: \"https://p.example\", ledger: x}\n",
			[]at{{schemas.CodeSchemaUnknown, 3, 60}}, []string{`unknown key "ledger"`}},
		{"wrong type", "workers:\n  - manifest: builtin:web\n  - manifest: builtin:calendar\n    config: {timezone: 2}\n",
			[]at{{schemas.CodeSchemaMismatch, 4, 24}}, []string{"workers.1.config.timezone: got number, want string"}},
		{"nested key", "workers:\n  - manifest: builtin:email\n    config:\n      address: me@home.example\n      smtp: {url: \"smtp://m.example:587\", user: me}\n",
			[]at{{schemas.CodeSchemaUnknown, 5, 43}}, []string{`unknown key "user"`}},
		{"a worker that takes no config", "workers:\n  - manifest: builtin:web\n    config: {timeout: 3}\n",
			[]at{{schemas.CodeSchemaUnknown, 3, 14}}, []string{`unknown key "timeout"`}},
		{"every problem at once", "workers:\n  - manifest: builtin:payment\n    config: {currency: eur}\n  - manifest: builtin:llm\n    config: {bakend: scripted}\n",
			[]at{{schemas.CodeSchemaMismatch, 3, 24}, {schemas.CodeSchemaUnknown, 5, 14}}, []string{"currency", `unknown key "bakend" (did you mean "backend"?)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("sluice.yaml", []byte(tc.src), t.TempDir())
			ds, ok := schemas.AsDiagnostics(err)
			if !ok {
				t.Fatalf("want diagnostics, got %v", err)
			}
			var got []at
			for _, d := range ds {
				got = append(got, at{d.Code, d.Line, d.Col})
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got  %v\nwant %v\n%v", got, tc.want, ds)
			}
			for _, m := range tc.msgs {
				if !strings.Contains(ds.Error(), m) {
					t.Errorf("diagnostics lack %q:\n%v", m, ds)
				}
			}
		})
	}
}

// A script the llm worker would read at start must exist when the
// configuration is checked, relative to the directory of sluice.yaml.
func TestWorkerConfigMissingFile(t *testing.T) {
	dir := t.TempDir()
	src := "workers:\n  - manifest: builtin:llm\n    config: {backend: scripted, script: answers.yaml}\n"
	c, err := Parse(filepath.Join(dir, "sluice.yaml"), []byte(src), dir)
	if err != nil {
		t.Fatal(err)
	}
	err = c.CheckFiles()
	ds, ok := schemas.AsDiagnostics(err)
	if !ok || len(ds) != 1 || ds[0].Code != CodeMissingFile || ds[0].Line != 3 || ds[0].Col != 41 ||
		!strings.Contains(ds[0].Message, "workers.0.config.script: no file "+filepath.Join(dir, "answers.yaml")) {
		t.Fatalf("got %v", err)
	}
	want := filepath.Join(dir, "sluice.yaml") + `:3:41: workers.0.config.script: no file ` + filepath.Join(dir, "answers.yaml") + ` (paths in a worker's config are relative to the directory of sluice.yaml)
 |     config: {backend: scripted, script: answers.yaml}
 | ........................................^
1 error
`
	if got := schemas.Render(ds, map[string][]byte{filepath.Join(dir, "sluice.yaml"): []byte(src)}); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// Once it is there, all is well.
	if err := os.WriteFile(filepath.Join(dir, "answers.yaml"), []byte("[]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckFiles(); err != nil {
		t.Fatal(err)
	}
}

// A policy file that is not there is reported where sluice.yaml names it.
func TestMissingPolicyFile(t *testing.T) {
	dir := t.TempDir()
	src := "policies:\n  - ok.yaml\n  - nope.yaml\nworkers:\n  - manifest: builtin:payment\n"
	if err := os.WriteFile(filepath.Join(dir, "ok.yaml"), []byte("rules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse(filepath.Join(dir, "sluice.yaml"), []byte(src), dir)
	if err != nil {
		t.Fatal(err)
	}
	ds, ok := schemas.AsDiagnostics(c.CheckFiles())
	if !ok || len(ds) != 1 || ds[0].Code != CodeMissingFile || ds[0].Line != 3 || ds[0].Col != 5 ||
		ds[0].Message != "policies.1: no policy file "+filepath.Join(dir, "nope.yaml")+" (paths in sluice.yaml are relative to its directory)" {
		t.Fatalf("got %v", ds)
	}
}

// Every shipped example's configuration, and the defaults, pass.
func TestWorkerConfigControls(t *testing.T) {
	paths, _ := filepath.Glob("../../examples/*/sluice*.yaml")
	if len(paths) == 0 {
		t.Fatal("no example configurations found")
	}
	for _, p := range paths {
		c, err := Load(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if err := c.CheckFiles(); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, src := range []string{
		"workers:\n  - manifest: builtin:payment\n    config: {backend: http, base_url: \"https://p.example\", api_key: \"{{secret:k}}\", currency: USD}\n    grants: {net: [\"p.example:443\"]}\n",
		"workers:\n  - manifest: builtin:llm\n    config: {backend: openai, base_url: \"https://api.openai.com/v1\", model: m, max_retries: 2}\n",
		"workers:\n  - manifest: builtin:llm\n    config: {backend: hijackable}\n",
		"workers:\n  - manifest: builtin:email\n    config: {address: me@home.example, smtp: {url: \"smtp://m.example:587\", insecure_plaintext: false}}\n",
		"workers:\n  - manifest: builtin:web\n    config: {}\n",
	} {
		if _, err := Parse("sluice.yaml", []byte(src), t.TempDir()); err != nil {
			t.Errorf("%s: %v", src, err)
		}
	}
}

// deployment names the deployment and prefixes its subjects;
// subject_prefix still works for the default deployment; the two together,
// or a name that is not one, are refused where they are written.
func TestDeployment(t *testing.T) {
	for _, tc := range []struct {
		src                string
		deployment, prefix string
	}{
		{"workers: []\n", "sluice", "sluice"},
		{"deployment: acme\nworkers: []\n", "acme", "acme"},
		{"deployment: eu-west-2\nworkers: []\n", "eu-west-2", "eu-west-2"},
		{"subject_prefix: old\nworkers: []\n", "sluice", "old"},
		{"deployment: sluice\nsubject_prefix: old\nworkers: []\n", "sluice", "old"},
	} {
		c, err := Parse("sluice.yaml", []byte(tc.src), t.TempDir())
		if err != nil {
			t.Fatalf("%q: %v", tc.src, err)
		}
		if c.Deployment != tc.deployment || c.Prefix != tc.prefix {
			t.Errorf("%q: deployment %q, prefix %q; want %q, %q", tc.src, c.Deployment, c.Prefix, tc.deployment, tc.prefix)
		}
	}
	if d := Default(t.TempDir()); d.Deployment != "sluice" || d.Prefix != "sluice" {
		t.Errorf("defaults: deployment %q, prefix %q", d.Deployment, d.Prefix)
	}
	for _, tc := range []struct {
		src  string
		want at
	}{
		{"workers: []\ndeployment: acme\nsubject_prefix: other\n", at{CodeDeploymentPrefix, 3, 17}},
		{"deployment: Acme\n", at{schemas.CodeSchemaMismatch, 1, 13}},
		{"deployment: acme_2\n", at{schemas.CodeSchemaMismatch, 1, 13}},
		{"deployment: acme.eu\n", at{schemas.CodeSchemaMismatch, 1, 13}},
		{"deployment: -acme\n", at{schemas.CodeSchemaMismatch, 1, 13}},
		{"deployment: a-very-long-deployment-name-indeed\n", at{schemas.CodeSchemaMismatch, 1, 13}},
	} {
		_, err := Parse("sluice.yaml", []byte(tc.src), t.TempDir())
		ds, ok := schemas.AsDiagnostics(err)
		if !ok || len(ds) != 1 {
			t.Errorf("%q: want one diagnostic, got %v", tc.src, err)
			continue
		}
		if got := (at{ds[0].Code, ds[0].Line, ds[0].Col}); got != tc.want {
			t.Errorf("%q: got %v, want %v (%v)", tc.src, got, tc.want, ds)
		}
	}
}
