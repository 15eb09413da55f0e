package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// A one-step run that completes is two audit records, through the shipped
// binary: the decision on its call, which starts the run and lists its
// steps, and the call's result, which ends it. The export verifies and
// matches the record format, and sluice runs and sluice trace read the run
// from them as started, planned and completed.
func TestAuditOneStepRunIsTwoRecords(t *testing.T) {
	w := newWorkspace(t, map[string]string{"pay.yaml": payDirectFlow, "sluice.yaml": "workers:\n  - manifest: builtin:payment\n"})
	r := w.sluice("run", "pay.yaml", "--input", "amount=3", "--input", "payee=acct_x")
	f := strings.Fields(r.stdout)
	if r.code != 0 || len(f) < 4 || f[0] != "run" || f[3] != "completed" {
		t.Fatalf("run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	id := f[1]

	var kinds []string
	var recs []map[string]any
	for _, rec := range checkAudit(t, w) {
		if rec["run_id"] == id {
			kinds = append(kinds, rec["kind"].(string))
			recs = append(recs, rec)
		}
	}
	if !slices.Equal(kinds, []string{"decision", "result"}) {
		t.Fatalf("records of run %s: %v; want a decision and a result", id, kinds)
	}
	steps, _ := recs[0]["steps"].([]any)
	if recs[0]["starts_run"] != true || recs[0]["flow"] != "pay-direct" || len(steps) != 1 || recs[0]["ends_run"] != nil {
		t.Errorf("decision %v: want it to start the run and list its one step", recs[0])
	}
	if recs[1]["ends_run"] != "completed" || recs[1]["status"] != "completed" || recs[1]["starts_run"] != nil {
		t.Errorf("result %v: want it to end the run, completed", recs[1])
	}

	runs := w.sluice("runs", "--json")
	var listed []struct {
		ID     string `json:"run_id"`
		Status string `json:"status"`
	}
	if runs.code != 0 || json.Unmarshal([]byte(runs.stdout), &listed) != nil {
		t.Fatalf("runs --json: exit %d\n%s", runs.code, runs.stdout)
	}
	if !slices.ContainsFunc(listed, func(l struct {
		ID     string `json:"run_id"`
		Status string `json:"status"`
	}) bool {
		return l.ID == id && l.Status == "completed"
	}) {
		t.Errorf("runs --json does not list run %s completed:\n%s", id, runs.stdout)
	}

	tr := w.sluice("trace", id, "--json")
	var got struct {
		Status   string  `json:"status"`
		Finished *string `json:"finished"`
		Planned  bool    `json:"planned"`
		Steps    []struct {
			ID       string `json:"id"`
			Status   string `json:"status"`
			Decision string `json:"decision"`
			Results  int    `json:"results"`
		} `json:"steps"`
	}
	if tr.code != 0 || json.Unmarshal([]byte(tr.stdout), &got) != nil {
		t.Fatalf("trace --json: exit %d\n%s", tr.code, tr.stdout)
	}
	if got.Status != "completed" || got.Finished == nil || !got.Planned || len(got.Steps) != 1 ||
		got.Steps[0].ID != "pay" || got.Steps[0].Status != "completed" || got.Steps[0].Decision != "allow" || got.Steps[0].Results != 1 {
		t.Errorf("trace --json of run %s:\n%s", id, tr.stdout)
	}
}
