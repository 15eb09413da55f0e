package audit

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The run view of an interrupted run says so, and names the steps it
// stopped at; resumed it runs again; cancelled it says cancelled.
func TestReadRunsInterruptedAndCancelled(t *testing.T) {
	const id = "01JD6Z4W8X2F3K5N7Q9R1T3V5X"
	recs := []Record{
		{Kind: KindRunStarted, RunID: id, Flow: "f", Steps: []PlanStep{{ID: "a", Tool: "t.a"}, {ID: "b", Tool: "t.b", Deps: []string{"a"}}}},
		{Kind: KindDecision, RunID: id, Step: "a", Tool: "t.a", Action: "allow"},
		{Kind: KindResult, RunID: id, Step: "a", Tool: "t.a", Status: "completed"},
		{Kind: KindDecision, RunID: id, Step: "b", Tool: "t.b", Action: "approve"},
		{Kind: KindRunInterrupted, RunID: id, Flow: "f", Status: "interrupted", Resume: "on_request", Steps: []PlanStep{{ID: "b", Tool: "t.b"}}},
	}
	read := func(recs []Record) *Run {
		t.Helper()
		var buf bytes.Buffer
		for _, r := range recs {
			b, _ := json.Marshal(r)
			buf.Write(append(b, '\n'))
		}
		runs, err := ReadRuns(&buf)
		if err != nil || len(runs) != 1 {
			t.Fatalf("ReadRuns = %v, %v", runs, err)
		}
		return runs[0]
	}
	r := read(recs)
	if r.Status != "interrupted" || r.Steps[0].Status != "completed" || r.Steps[1].Status != "interrupted" {
		t.Fatalf("interrupted run read as %s, steps %s %s", r.Status, r.Steps[0].Status, r.Steps[1].Status)
	}
	recs = append(recs, Record{Kind: KindRunResumed, RunID: id, Flow: "f"},
		Record{Kind: KindDecision, RunID: id, Step: "b", Tool: "t.b", Action: "approve"})
	if r := read(recs); r.Status != "running" || r.Steps[1].Status != "held" {
		t.Fatalf("resumed run read as %s, step b %s", r.Status, r.Steps[1].Status)
	}
	recs = append(recs, Record{Kind: KindRunFinished, RunID: id, Flow: "f", Status: "cancelled", User: "alice"})
	if r := read(recs); r.Status != "cancelled" || r.Finished == nil {
		t.Fatalf("cancelled run read as %s", r.Status)
	}
}
