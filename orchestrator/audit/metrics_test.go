package audit

import (
	"context"
	"testing"

	"github.com/sluicehq/sluice/orchestrator/internal/telemetry"
)

// counter is the value of the sample of family name with the labels want.
func counter(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := telemetry.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.Metric {
			got := map[string]string{}
			for _, l := range m.Label {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			if m.Histogram != nil {
				return float64(m.Histogram.GetSampleCount())
			}
			return m.Counter.GetValue()
		}
	}
	return 0
}

// Every record stored counts in the metrics: its kind, a violation by its
// op, a decision once per rule by the rule's name, an egress request by
// host (a refused one without its host); each append is timed.
func TestRecordsAreCounted(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	before := map[string]float64{
		"violation": counter(t, "sluice_violations_total", map[string]string{"op": "secret"}),
		"rule":      counter(t, "sluice_decisions_total", map[string]string{"tool": "t.metrics", "decision": "deny", "rule": "no-metrics"}),
		"approval":  counter(t, "sluice_decisions_total", map[string]string{"tool": "t.metrics", "decision": "allow", "rule": "approval"}),
		"egress":    counter(t, "sluice_egress_requests_total", map[string]string{"host": "metrics.test:443", "outcome": "performed"}),
		"refused":   counter(t, "sluice_egress_requests_total", map[string]string{"host": "", "outcome": "refused"}),
		"appends":   counter(t, "sluice_audit_append_duration_seconds", nil),
	}
	for _, r := range []Record{
		{Kind: KindViolation, User: "worker:w", Op: "secret"},
		{Kind: KindDecision, RunID: "r", Tool: "t.metrics", Action: "deny", Rules: []string{"no-metrics (policy.yaml:3:5)"}},
		{Kind: KindDecision, RunID: "r", Tool: "t.metrics", Action: "allow", Rules: []string{"approval:01JD6Z4W8X2F3K5N7Q9R1T3V5X"}},
		{Kind: KindEgress, User: "worker:w", Subject: "metrics.test:443", Status: "performed"},
		{Kind: KindEgress, User: "worker:w", Subject: "chosen-by-the-worker.test:443", Status: "refused"},
	} {
		if err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]float64{"violation": 1, "rule": 1, "approval": 1, "egress": 1, "refused": 1, "appends": 5} {
		var got float64
		switch name {
		case "violation":
			got = counter(t, "sluice_violations_total", map[string]string{"op": "secret"})
		case "rule":
			got = counter(t, "sluice_decisions_total", map[string]string{"tool": "t.metrics", "decision": "deny", "rule": "no-metrics"})
		case "approval":
			got = counter(t, "sluice_decisions_total", map[string]string{"tool": "t.metrics", "decision": "allow", "rule": "approval"})
		case "egress":
			got = counter(t, "sluice_egress_requests_total", map[string]string{"host": "metrics.test:443", "outcome": "performed"})
		case "refused":
			got = counter(t, "sluice_egress_requests_total", map[string]string{"host": "", "outcome": "refused"})
		case "appends":
			got = counter(t, "sluice_audit_append_duration_seconds", nil)
		}
		if got-before[name] < want {
			t.Errorf("%s: counted %v more, want %v", name, got-before[name], want)
		}
	}
	if n := counter(t, "sluice_egress_requests_total", map[string]string{"host": "chosen-by-the-worker.test:443"}); n != 0 {
		t.Errorf("a refused request's host is a label: %v", n)
	}
}
