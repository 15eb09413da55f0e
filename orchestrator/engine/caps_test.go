package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/worker"
)

// capRules hold every payment for a person and cap the spend per payee
// per day at 300.
const capRules = `rules:
  - name: every-payment-by-hand
    when: tool.name == "t.pay"
    action: approve
caps:
  - name: hotel-spend
    tool: t.pay
    per: payee
    window: day
    sum: amount
    max_total: 300
`

// payEach pays 90 to inputs.payee n times, at most concurrency at once.
func payEach(n, concurrency int) string {
	return fmt.Sprintf(`name: p
inputs: {payee: {type: string}}
steps:
  - id: pay
    call: t.pay
    for_each: "${[%s]}"
    concurrency: %d
    with: {amount: "${item}", payee: "${inputs.payee}"}
`, strings.TrimSuffix(strings.Repeat("90.0, ", n), ", "), concurrency)
}

// approveAll answers every held call with yes, as a person would.
func approveAll(h *harness, t *testing.T) Options {
	opts := Options{Wait: true}
	opts.OnHeld = func(s StepResult) {
		go func() {
			if err := h.engine.Decide(context.Background(), s.ApprovalID, Answer{Approved: true, Who: "ana"}); err != nil {
				t.Error(err)
			}
		}()
	}
	return opts
}

func statuses(items []StepResult) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Status)
	}
	return out
}

// TestCapStopsFourthApprovedPayment: four payments of 90 to one payee
// under a cap of 300 per payee: the first three go through, the fourth is
// denied by the cap, even though a person approved each.
func TestCapStopsFourthApprovedPayment(t *testing.T) {
	h := newHarness(t, capRules, nil)
	r := h.run(payEach(4, 1), map[string]any{"payee": "acct_hotel_1"}, approveAll(h, t))
	pay := step(t, r, "pay")
	want := []string{StatusCompleted, StatusCompleted, StatusCompleted, StatusDenied}
	if got := statuses(pay.Items); !slices.Equal(got, want) {
		t.Fatalf("items %v, want %v", got, want)
	}
	if h.called("pay") != 3 {
		t.Errorf("pay delivered %d times, want 3", h.called("pay"))
	}
	fourth := pay.Items[3]
	if fourth.Decision != "deny" || !slices.Equal(fourth.Rules, []string{"hotel-spend"}) || !strings.Contains(fourth.Reasons[0], "hotel-spend") {
		t.Errorf("fourth: decision %s rules %v reasons %v", fourth.Decision, fourth.Rules, fourth.Reasons)
	}
	if strings.Contains(fourth.Reasons[0], "acct_hotel_1") {
		t.Errorf("the reason quotes an argument value: %q", fourth.Reasons[0])
	}
	// The denial by the cap is in the audit log, naming the cap.
	recs, err := h.log.Records(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	denied := 0
	for _, rec := range recs {
		if rec.Kind == audit.KindDecision && rec.Action == "deny" && len(rec.Rules) == 1 && strings.HasPrefix(rec.Rules[0], "hotel-spend (test.yaml:") {
			denied++
		}
	}
	if denied != 1 {
		t.Errorf("%d audit records of the cap's denial, want 1", denied)
	}
	// Another payee has its own budget.
	r = h.run(payEach(1, 1), map[string]any{"payee": "acct_other"}, approveAll(h, t))
	if got := statuses(step(t, r, "pay").Items); !slices.Equal(got, []string{StatusCompleted}) {
		t.Errorf("another payee: %v", got)
	}
}

// TestCapHoldsUnderConcurrentCalls: calls at the same time cannot
// together overspend: the budget is changed by compare-and-swap.
func TestCapHoldsUnderConcurrentCalls(t *testing.T) {
	h := newHarness(t, capRules, nil)
	r := h.run(payEach(6, 6), map[string]any{"payee": "acct_hotel_1"}, approveAll(h, t))
	n := 0
	for _, s := range statuses(step(t, r, "pay").Items) {
		if s == StatusCompleted {
			n++
		}
	}
	if n != 3 || h.called("pay") != 3 {
		t.Fatalf("%d payments completed, %d delivered; want 3", n, h.called("pay"))
	}
}

// TestDayCapSurvivesRestart: per-day budgets are kept in JetStream, so a
// new orchestrator on the same state directory continues them; the next
// day starts afresh.
func TestDayCapSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	day := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	rules := strings.Replace(capRules, "    action: approve\n", "    action: allow\n", 1)
	h := newHarnessIn(t, dir, rules, nil)
	h.engine.now = func() time.Time { return day }
	r := h.run(payEach(2, 1), map[string]any{"payee": "acct_hotel_1"}, Options{})
	if got := statuses(step(t, r, "pay").Items); !slices.Equal(got, []string{StatusCompleted, StatusCompleted}) {
		t.Fatalf("first process: %v", got)
	}
	h.close()

	h = newHarnessIn(t, dir, rules, nil)
	h.engine.now = func() time.Time { return day.Add(13 * time.Hour) } // 23:00 the same day
	r = h.run(payEach(2, 1), map[string]any{"payee": "acct_hotel_1"}, Options{})
	if got := statuses(step(t, r, "pay").Items); !slices.Equal(got, []string{StatusCompleted, StatusDenied}) {
		t.Fatalf("second process, same day: %v", got)
	}
	h.engine.now = func() time.Time { return day.Add(24 * time.Hour) }
	r = h.run(payEach(1, 1), map[string]any{"payee": "acct_hotel_1"}, Options{})
	if got := statuses(step(t, r, "pay").Items); !slices.Equal(got, []string{StatusCompleted}) {
		t.Fatalf("next day: %v", got)
	}
}

// TestRunCapAndRelease: a per-run count lives with its run; a call the
// worker refused releases what it reserved, a call that timed out does
// not.
func TestRunCapAndRelease(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	h := newHarness(t, `caps:
  - {name: two-per-run, tool: t.pay, window: run, max_count: 2}
`, map[string]worker.Handler{
		"pay": func(ctx context.Context, c *worker.Call) (any, error) {
			var a struct {
				Mode string `json:"mode"`
			}
			c.Decode(&a)
			switch a.Mode {
			case "refuse":
				return nil, worker.Failed("declined")
			case "hang":
				select {
				case <-ctx.Done():
				case <-release:
				}
				return nil, worker.Failed("too late")
			}
			return map[string]any{"ok": true}, nil
		},
	})
	flow := func(modes string) string {
		return `name: p
steps:
  - id: pay
    call: t.pay
    for_each: "${[` + modes + `]}"
    concurrency: 1
    timeout: 300ms
    with: {amount: 1, payee: p, mode: "${item}"}
`
	}
	r := h.run(flow(`'refuse', 'ok', 'ok', 'ok'`), nil, Options{})
	want := []string{StatusFailed, StatusCompleted, StatusCompleted, StatusDenied}
	if got := statuses(step(t, r, "pay").Items); !slices.Equal(got, want) {
		t.Errorf("refused first: %v, want %v", got, want)
	}
	r = h.run(flow(`'hang', 'ok', 'ok'`), nil, Options{})
	want = []string{StatusFailed, StatusCompleted, StatusDenied}
	if got := statuses(step(t, r, "pay").Items); !slices.Equal(got, want) {
		t.Errorf("timed out first: %v, want %v", got, want)
	}
}

// TestDayCapPerDeployment: another deployment on the same bus keeps its
// per-day budgets in a bucket of its own (SLUICE_<NAME>_CAPS), and so does
// its run state: the budget the default deployment spent is not its.
func TestDayCapPerDeployment(t *testing.T) {
	day := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	rules := strings.Replace(capRules, "    action: approve\n", "    action: allow\n", 1)
	h := newHarness(t, rules, nil)
	h.engine.now = func() time.Time { return day }
	r := h.run(payEach(2, 1), map[string]any{"payee": "acct_hotel_1"}, Options{})
	if got := statuses(step(t, r, "pay").Items); !slices.Equal(got, []string{StatusCompleted, StatusCompleted}) {
		t.Fatalf("default deployment: %v", got)
	}
	cfg := h.engine.cfg
	cfg.Deployment = "acme"
	acme := New(cfg)
	defer acme.Close()
	acme.now = func() time.Time { return day }
	h.engine = acme
	r = h.run(payEach(2, 1), map[string]any{"payee": "acct_hotel_1"}, Options{})
	if got := statuses(step(t, r, "pay").Items); !slices.Equal(got, []string{StatusCompleted, StatusCompleted}) {
		t.Fatalf("deployment acme, same day: %v", got)
	}
	r = h.run(payEach(2, 1), map[string]any{"payee": "acct_hotel_1"}, Options{})
	if got := statuses(step(t, r, "pay").Items); !slices.Equal(got, []string{StatusCompleted, StatusDenied}) {
		t.Fatalf("deployment acme, up to its own budget: %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"SLUICE_CAPS", "SLUICE_ACME_CAPS", "SLUICE_ACME_RUNS", "SLUICE_ACME_STEPS", "SLUICE_ACME_APPROVALS"} {
		if _, err := js.KeyValue(ctx, name); err != nil {
			t.Errorf("bucket %s: %v", name, err)
		}
	}
}
