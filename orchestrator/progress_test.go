package orchestrator

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/orchestrator/audit"
)

// A step's call finishes with its result record, timed from the decision
// that let it through (a person's answer, for a held call); a denied call
// finishes with its decision, or with a person's answer.
func TestStepEvent(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := []audit.Record{
		{Kind: audit.KindRunStarted, Time: t0},
		{Kind: audit.KindDecision, Step: "a", Tool: "web.fetch", MsgID: "m1", Action: "allow", Time: t0},
		{Kind: audit.KindDecision, Step: "b", Tool: "payment.charge", MsgID: "m2", Action: "approve", Time: t0},
		{Kind: audit.KindResult, Step: "a", Tool: "web.fetch", MsgID: "m1", Status: "completed", Time: t0.Add(1200 * time.Millisecond)},
		{Kind: audit.KindDecision, Step: "b", Tool: "payment.charge", MsgID: "m2", Action: "allow", Time: t0.Add(time.Minute)},
		{Kind: audit.KindResult, Step: "b", Tool: "payment.charge", MsgID: "m2", Status: "failed", Error: "boom", Time: t0.Add(time.Minute + 5*time.Millisecond)},
		{Kind: audit.KindDecision, Step: "c", Tool: "email.send", MsgID: "m3", Action: "deny", Time: t0},
		{Kind: audit.KindAnswer, Step: "d", Tool: "payment.charge", MsgID: "m4", Action: "approve", Time: t0},
		{Kind: audit.KindAnswer, Step: "e", Tool: "payment.charge", MsgID: "m5", Action: "deny", Time: t0},
	}
	want := []api.StepEvent{
		{Step: "a", Tool: "web.fetch", Status: "completed", DurationMS: 1200},
		{Step: "b", Tool: "payment.charge", Status: "failed", DurationMS: 5, Error: "boom"},
		{Step: "c", Tool: "email.send", Status: "denied"},
		{Step: "e", Tool: "payment.charge", Status: "denied"},
	}
	decided := map[string]time.Time{}
	var got []api.StepEvent
	for i := range recs {
		if ev, ok := stepEvent(&recs[i], decided); ok {
			got = append(got, ev)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if len(decided) != 0 {
		t.Errorf("decisions left behind: %v", decided)
	}
}
