package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ifc"
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
	// Times and the calls of each step: TestTraceInnerCallsDurationsSkipped.
	for _, r := range runs {
		for i := range r.Steps {
			r.Steps[i].Started, r.Steps[i].DurationMS, r.Steps[i].Inner = nil, 0, nil
		}
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

// agentRunRecords is the log of an agent step whose model fetched a page
// and then proposed a payment that was held, and a step after it that
// was skipped: at t0, t0+1s, ... .
func agentRunRecords(t0 time.Time) []Record {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	u := ifc.UntrustedFrom("web:example.test")
	return []Record{
		{Kind: KindRunStarted, RunID: "r1", Flow: "agent-book", Time: at(0),
			Steps: []PlanStep{{ID: "booker", Tool: "llm.chat"}, {ID: "note", Tool: "web.fetch", Deps: []string{"booker"}}}},
		{Kind: KindDecision, RunID: "r1", Step: "booker", Tool: "llm.chat", MsgID: "m1", Action: "allow", Time: at(0)},
		{Kind: KindResult, RunID: "r1", Step: "booker", Tool: "llm.chat", MsgID: "m1", Status: "completed", Time: at(2)},
		{Kind: KindDecision, RunID: "r1", Step: "booker", Tool: "web.fetch", MsgID: "m2", Action: "allow", Time: at(2)},
		{Kind: KindResult, RunID: "r1", Step: "booker", Tool: "web.fetch", MsgID: "m2", Status: "completed", Label: &u, Time: at(3)},
		{Kind: KindDecision, RunID: "r1", Step: "booker", Tool: "payment.charge", MsgID: "m3", Action: "approve", Label: &u,
			Rules: []string{"untrusted-never-pays-alone (builtin/default.yaml:21:5)"}, Time: at(5)},
		{Kind: KindRunFinished, RunID: "r1", Status: "held", Time: at(5), Steps: []PlanStep{{ID: "note", Tool: "web.fetch", Status: "skipped"}}},
	}
}

func readRecords(t *testing.T, recs []Record) []*Run {
	t.Helper()
	var b bytes.Buffer
	for _, r := range recs {
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(line, '\n'))
	}
	runs, err := ReadRuns(&b)
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

// An agent's calls are each listed under its step, with the decision on
// each and how long it took; the step is timed from its first record to
// its last; a step that did not run is skipped.
func TestTraceInnerCallsDurationsSkipped(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	runs := readRecords(t, agentRunRecords(t0))
	if len(runs) != 1 || len(runs[0].Steps) != 2 {
		t.Fatalf("runs %+v", runs)
	}
	booker, note := runs[0].Steps[0], runs[0].Steps[1]
	if booker.Status != "held" || booker.Started == nil || !booker.Started.Equal(t0) || booker.DurationMS != 5000 {
		t.Errorf("booker: status %s, started %v, %d ms", booker.Status, booker.Started, booker.DurationMS)
	}
	var got []string
	for _, c := range booker.Inner {
		got = append(got, fmt.Sprintf("%s %s %s %dms", c.Tool, c.Decision, c.Status, c.DurationMS))
	}
	want := []string{"llm.chat allow completed 2000ms", "web.fetch allow completed 1000ms", "payment.charge approve held 0ms"}
	if !slices.Equal(got, want) {
		t.Errorf("inner calls %q, want %q", got, want)
	}
	if r := booker.Inner[2].Rules; len(r) != 1 || !strings.HasPrefix(r[0], "untrusted-never-pays-alone") {
		t.Errorf("the held payment's rules: %v", r)
	}
	if note.Status != "skipped" || note.Started != nil || len(note.Inner) != 0 {
		t.Errorf("note: %+v", note)
	}

	// A person approves: the answer goes with the held call, which then
	// runs.
	recs := append(agentRunRecords(t0),
		Record{Kind: KindAnswer, RunID: "r1", Step: "booker", Tool: "payment.charge", Action: "allow", Reasons: []string{"approved by alice"}, Time: t0.Add(65 * time.Second)},
		Record{Kind: KindResult, RunID: "r1", Step: "booker", Tool: "payment.charge", MsgID: "m3", Status: "completed", Time: t0.Add(66 * time.Second)})
	booker = readRecords(t, recs)[0].Steps[0]
	pay := booker.Inner[2]
	if pay.Status != "completed" || pay.Answer != "allow: approved by alice" || pay.DurationMS != 61000 {
		t.Errorf("the approved payment: %+v", pay)
	}
}
