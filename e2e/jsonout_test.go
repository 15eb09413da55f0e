package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/schemas"
)

// validateOutput checks out, what a command printed with --json, against
// the schema in schemas/output/ that documents it.
func validateOutput(t *testing.T, schema, what, out string) any {
	t.Helper()
	sch, err := schemas.Load("output/" + schema)
	if err != nil {
		t.Fatal(err)
	}
	v, err := sch.ValidateJSON([]byte(out))
	if err != nil {
		t.Fatalf("%s does not match schemas/output/%s: %v\n%s", what, schema, err, out)
	}
	return v
}

// Every --json output, as the commands print it in a real deployment (a
// completed run, a run held with its approval, the audit log's runs and a
// trace, lint's diagnostics), matches the JSON Schema in schemas/output/
// that documents it, with no undocumented field.
func TestJSONOutputsMatchSchemas(t *testing.T) {
	host := startTravelSite(t)
	w := newWorkspace(t, nil)
	copyTree(t, "../examples/travel", w.path("examples/travel"), map[string]string{"127.0.0.1:8088": host})
	cfg := "examples/travel/sluice.yaml"

	r := w.sluice("runs", "--json", "--config", cfg)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("runs --json before any run: exit %d %q", r.code, r.stdout)
	}
	validateOutput(t, "runs.json", "runs --json (none)", r.stdout)

	r = w.sluice("run", "examples/travel/pay-direct.yaml", "--config", cfg, "--input", "payee=acct_hotel_1", "--input", "amount=120", "--json")
	if r.code != 0 {
		t.Fatalf("run pay-direct: exit %d", r.code)
	}
	validateOutput(t, "run.json", "run --json (completed)", r.stdout)

	r = w.sluice("run", "examples/travel/book.yaml", "--config", cfg, "--input", "destination=Lisbon", "--input", "budget=400", "--wait=false", "--json")
	if r.code != 4 {
		t.Fatalf("run book: exit %d, want 4 (held)", r.code)
	}
	held := validateOutput(t, "run.json", "run --json (held)", r.stdout).(map[string]any)
	id, _ := held["run_id"].(string)

	r = w.sluice("approvals", "--json", "--config", cfg)
	if list := validateOutput(t, "approvals.json", "approvals --json", r.stdout).([]any); r.code != 0 || len(list) != 1 {
		t.Fatalf("approvals --json: exit %d, %d approvals, want 1", r.code, len(list))
	}
	r = w.sluice("runs", "--json", "--config", cfg)
	if list := validateOutput(t, "runs.json", "runs --json", r.stdout).([]any); r.code != 0 || len(list) != 2 {
		t.Fatalf("runs --json: exit %d, %d runs, want 2", r.code, len(list))
	}
	r = w.sluice("trace", id, "--json", "--config", cfg)
	if r.code != 0 {
		t.Fatalf("trace --json: exit %d", r.code)
	}
	validateOutput(t, "trace.json", "trace --json", r.stdout)

	w.write("bad.yaml", "name: bad\nsteps:\n  - id: page\n    call: web.fetch\n    with: {url: \"${inputs.nope}\"}\n")
	r = w.sluice("lint", "bad.yaml", "examples/travel/book.yaml", "--json")
	var lint struct {
		Diagnostics []schemas.Diagnostic `json:"diagnostics"`
	}
	validateOutput(t, "lint.json", "lint --json", r.stdout)
	if err := json.Unmarshal([]byte(r.stdout), &lint); err != nil || r.code != 1 || len(lint.Diagnostics) != 2 ||
		lint.Diagnostics[0].Severity != "error" || lint.Diagnostics[1].Severity != "warning" {
		t.Fatalf("lint --json: exit %d, %v: %s", r.code, err, r.stdout)
	}
}

// Each schema of schemas/output/ names the version of the shape it
// documents.
func TestOutputSchemasHaveVersions(t *testing.T) {
	files, err := filepath.Glob("../schemas/output/*.json")
	if err != nil || len(files) < 5 {
		t.Fatalf("%d output schemas: %v", len(files), err)
	}
	for _, f := range files {
		sch, err := schemas.Load("output/" + filepath.Base(f))
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := sch.Doc().(map[string]any)
		if v, ok := doc["version"].(json.Number); ok {
			if n, err := v.Int64(); err == nil && n >= 1 {
				continue
			}
		}
		if v, ok := doc["version"].(float64); ok && v >= 1 {
			continue
		}
		t.Errorf("%s: no version (want \"version\": 1 or more), got %v", f, doc["version"])
	}
}
