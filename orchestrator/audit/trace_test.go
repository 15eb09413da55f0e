package audit

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
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

// Each kind of record lands where the run view shows it: the plan once,
// decisions and results per step, a person's answer (as its own record or
// as a decision by an approval: rule) beside the decision it answers, and
// runs newest first.
func TestReadRunsRecords(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	const a, b = "run-a", "run-b"
	recs := []Record{
		{Kind: KindRunStarted, RunID: a, Flow: "f", Time: t0, Steps: []PlanStep{{ID: "s1", Tool: "t.one"}, {ID: "s2", Tool: "t.two", Deps: []string{"s1"}}, {ID: "s3", Tool: "t.three"}}},
		{Kind: KindViolation, User: "w", Op: "publish", Subject: "x"},
		{Kind: KindDecision, RunID: a, Step: "s1", Tool: "t.one", Action: "allow", Rules: []string{"r1"}, Reasons: []string{"fine"}},
		{Kind: KindResult, RunID: a, Step: "s1", Tool: "t.one", Status: "failed", Error: "boom"},
		{Kind: KindResult, RunID: a, Step: "s1", Tool: "t.one", Status: "completed"},
		{Kind: KindDecision, RunID: a, Step: "s2", Tool: "t.two", Action: "approve", Rules: []string{"ask"}, Reasons: []string{"a person decides"}},
		{Kind: KindAnswer, RunID: a, Step: "s2", Tool: "t.two", Action: "allow", Reasons: []string{"looks right"}},
		{Kind: KindDecision, RunID: a, Step: "s3", Tool: "t.three", Action: "approve"},
		{Kind: KindDecision, RunID: a, Step: "s3", Tool: "t.three", Action: "deny", Rules: []string{"approval:alice"}},
		{Kind: KindDecision, RunID: a, Step: "s4", Tool: "t.four", Action: "allow", Rules: []string{"approval:"}},
		{Kind: KindAnswer, RunID: a, Step: "s5", Tool: "t.five", Action: "deny", Reasons: []string{"no"}},
		{Kind: KindDecision, RunID: a, Step: "s6", Tool: "t.six", Action: "deny", Rules: []string{"approval:bob", "other"}},
		{Kind: KindRunStarted, RunID: a, Flow: "f", Time: t0.Add(time.Minute), Steps: []PlanStep{{ID: "x", Tool: "t.x"}}},
		{Kind: KindRunFinished, RunID: a, Flow: "f", Time: t0.Add(2 * time.Minute), Status: "failed"},
		{Kind: KindRunStarted, RunID: b, Flow: "g", Time: t0.Add(time.Hour)},
	}
	var buf bytes.Buffer
	for _, r := range recs {
		line, _ := json.Marshal(r)
		buf.Write(append(line, '\n'))
	}
	runs, err := ReadRuns(&buf)
	if err != nil {
		t.Fatal(err)
	}
	end := t0.Add(2 * time.Minute)
	want := []*Run{
		{ID: b, Flow: "g", Started: t0.Add(time.Hour), Status: "running"},
		{ID: a, Flow: "f", Started: t0, Finished: &end, Status: "failed", Planned: true, Steps: []StepTrace{
			{ID: "s1", Tool: "t.one", Decision: "allow", Rules: []string{"r1"}, Reasons: []string{"fine"}, Status: "completed", Calls: 2},
			{ID: "s2", Tool: "t.two", Deps: []string{"s1"}, Decision: "approve", Rules: []string{"ask"}, Reasons: []string{"a person decides"}, Answer: "allow: looks right", Status: "held"},
			{ID: "s3", Tool: "t.three", Decision: "approve", Answer: "deny: ", Status: "denied"},
			{ID: "s4", Tool: "t.four", Decision: "allow", Rules: []string{"approval:"}, Status: "decided"},
			{ID: "s5", Tool: "t.five", Answer: "deny: no", Status: "denied"},
			{ID: "s6", Tool: "t.six", Decision: "deny", Rules: []string{"approval:bob", "other"}, Status: "denied"},
		}},
	}
	gotJSON, _ := json.MarshalIndent(runs, "", " ")
	wantJSON, _ := json.MarshalIndent(want, "", " ")
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("got\n%s\nwant\n%s", gotJSON, wantJSON)
	}
}
