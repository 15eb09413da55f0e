package engine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
	"github.com/sluicehq/sluice/worker/llm"
)

// modelSpends120 answers t.model as a model API would, spending 100 input
// and 20 output tokens; with mode fail it spends them and fails.
func modelSpends120() map[string]worker.Handler {
	return map[string]worker.Handler{
		"model": func(_ context.Context, c *worker.Call) (any, error) {
			c.AddUsage(100, 20)
			var a struct {
				Mode string `json:"mode"`
			}
			c.Decode(&a)
			if a.Mode == "fail" {
				return nil, worker.Failed("the model could not answer")
			}
			return map[string]any{"text": "ok"}, nil
		},
	}
}

// askEach calls t.model once for each mode, one after the other.
func askEach(modes string) string {
	return `name: ask
steps:
  - id: ask
    call: t.model
    for_each: "${[` + modes + `]}"
    concurrency: 1
    with: {mode: "${item}"}
`
}

func tokenCap(window string) string {
	return `caps:
  - {name: model-tokens, tool: [t.model, t.echo], window: ` + window + `, max_tokens: 250}
`
}

// TestTokenCapPerRun: a token budget refuses the next call of its tools
// once the tokens spent reach it — a call that failed spent its tokens too
// — and the denial names the cap, what was spent and the budget, in the
// step result and in the audit log. Another run has its own budget.
func TestTokenCapPerRun(t *testing.T) {
	h := newHarness(t, tokenCap("run"), modelSpends120())
	r := h.run(askEach(`'ok', 'fail', 'ok', 'ok'`), nil, Options{})
	ask := step(t, r, "ask")
	want := []string{StatusCompleted, StatusFailed, StatusCompleted, StatusDenied}
	if got := statuses(ask.Items); !slices.Equal(got, want) {
		t.Fatalf("items %v, want %v", got, want)
	}
	if h.called("model") != 3 {
		t.Errorf("t.model delivered %d times, want 3", h.called("model"))
	}
	if u := ask.Items[0].Usage; u == nil || u.InputTokens != 100 || u.OutputTokens != 20 {
		t.Errorf("usage of the first call: %+v", u)
	}
	denied := ask.Items[3]
	wantReason := "cap model-tokens (test.yaml:2:5): the calls of t.model, t.echo have spent 360 tokens of the 250 allowed per run"
	if denied.Decision != "deny" || !slices.Equal(denied.Rules, []string{"model-tokens"}) || len(denied.Reasons) != 1 || denied.Reasons[0] != wantReason {
		t.Fatalf("denied: decision %s rules %v reasons %q", denied.Decision, denied.Rules, denied.Reasons)
	}
	recs, err := h.log.Records(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rec := range recs {
		if rec.Kind == audit.KindDecision && rec.Action == "deny" && slices.Equal(rec.Rules, []string{"model-tokens (test.yaml:2:5)"}) &&
			slices.Equal(rec.Reasons, []string{wantReason}) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d audit records of the cap's denial, want 1", n)
	}
	// The other tool of the cap counts against the same budget; a new run
	// starts from nothing.
	r = h.run(`name: both
steps:
  - {id: a, call: t.model, with: {mode: ok}}
  - {id: b, call: t.model, with: {mode: ok, after: "${steps.a.output}"}}
  - {id: c, call: t.model, with: {mode: ok, after: "${steps.b.output}"}}
  - {id: d, call: t.echo, with: {after: "${steps.c.output}"}}
`, nil, Options{})
	for id, want := range map[string]string{"a": StatusCompleted, "b": StatusCompleted, "c": StatusCompleted, "d": StatusDenied} {
		if got := step(t, r, id).Status; got != want {
			t.Errorf("second run, step %s: %s, want %s", id, got, want)
		}
	}
}

// TestTokenCapPerDaySurvivesRestart: a per-day token budget is kept in
// the caps bucket: a new orchestrator on the same state directory goes on
// from what the first spent, and the next day starts afresh.
func TestTokenCapPerDaySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	day := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	h := newHarnessIn(t, dir, tokenCap("day"), modelSpends120())
	h.engine.now = func() time.Time { return day }
	r := h.run(askEach(`'ok', 'ok'`), nil, Options{})
	if got := statuses(step(t, r, "ask").Items); !slices.Equal(got, []string{StatusCompleted, StatusCompleted}) {
		t.Fatalf("first process: %v", got)
	}
	h.close()

	h = newHarnessIn(t, dir, tokenCap("day"), modelSpends120())
	h.engine.now = func() time.Time { return day.Add(13 * time.Hour) }
	r = h.run(askEach(`'ok', 'ok'`), nil, Options{})
	items := step(t, r, "ask").Items
	if got := statuses(items); !slices.Equal(got, []string{StatusCompleted, StatusDenied}) {
		t.Fatalf("second process, same day: %v", got)
	}
	if !strings.Contains(items[1].Reasons[0], "spent 360 tokens of the 250 allowed per day") {
		t.Errorf("reason %q", items[1].Reasons[0])
	}
	h.engine.now = func() time.Time { return day.Add(24 * time.Hour) }
	r = h.run(askEach(`'ok'`), nil, Options{})
	if got := statuses(step(t, r, "ask").Items); !slices.Equal(got, []string{StatusCompleted}) {
		t.Fatalf("next day: %v", got)
	}
}

// TestTokenCapRestoredOnResume: a run that waits on a person and goes on
// in a later pass, here after a restart, keeps what it spent before: the
// tokens of its recorded calls are counted again, and the budget is not
// fresh.
func TestTokenCapRestoredOnResume(t *testing.T) {
	rules := `rules:
  - {name: spend-by-hand, when: 'tool.name == "t.spend"', action: approve}
` + tokenCap("run")
	dir := t.TempDir()
	h1 := newHarnessIn(t, dir, rules, modelSpends120())
	r := h1.run(`name: resume
steps:
  - id: ask
    call: t.model
    for_each: "${['ok', 'ok', 'ok']}"
    concurrency: 1
    with: {mode: "${item}"}
  - {id: spend, call: t.spend, with: {after: "${steps.ask.output}"}}
  - {id: again, call: t.model, with: {mode: ok, after: "${steps.spend.output}"}}
`, nil, Options{})
	spend := step(t, r, "spend")
	if r.Status != StatusHeld || spend.Status != StatusHeld || h1.called("model") != 3 {
		t.Fatalf("run %s, spend %s, t.model delivered %d times", r.Status, spend.Status, h1.called("model"))
	}
	h1.close()

	h2 := newHarnessIn(t, dir, rules, modelSpends120())
	if err := h2.engine.Decide(context.Background(), spend.ApprovalID, Answer{Approved: true, Who: "ana"}); err != nil {
		t.Fatal(err)
	}
	waitFinished(t, h2, r.RunID)
	if h2.called("model") != 0 || h2.called("spend") != 1 {
		t.Fatalf("after the approval: t.model delivered %d times, t.spend %d; want 0 and 1", h2.called("model"), h2.called("spend"))
	}
	denied := false
	for _, rec := range records(t, h2, r.RunID) {
		if rec.Kind == audit.KindDecision && rec.Step == "again" && rec.Action == "deny" && len(rec.Reasons) == 1 &&
			strings.Contains(rec.Reasons[0], "spent 360 tokens of the 250 allowed per run") {
			denied = true
		}
	}
	if !denied {
		t.Fatal("no denial of step again by the token cap in the audit log")
	}
}

// newSpendingAgentHarnessIn serves the real llm worker (hijackable backend,
// with script) whose every chat answer spends 100 input and 20 output
// tokens, as a model API's would, beside the test worker t; turns counts
// the answers.
func newSpendingAgentHarnessIn(t *testing.T, dir, rules, script string, turns *atomic.Int32) *harness {
	t.Helper()
	sp := filepath.Join(dir, "script.yaml")
	if err := os.WriteFile(sp, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]string{"backend": "hijackable", "script": sp})
	handlers, err := llm.New(worker.Env{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	chat := handlers["chat"]
	handlers["chat"] = func(ctx context.Context, c *worker.Call) (any, error) {
		turns.Add(1)
		c.AddUsage(100, 20)
		return chat(ctx, c)
	}
	m, err := capabilities.Load("builtin:llm")
	if err != nil {
		t.Fatal(err)
	}
	return newHarnessWith(t, dir, rules, nil, &worker.Service{Manifest: m, Handlers: handlers, Subjects: schemas.Subjects{}})
}

// TestTokenCapCountsAgentTurnsAcrossARestart: an agent step's chat turns
// count against a token budget on its model's chat tool, and a run held
// on one of its calls and approved after a restart counts the turns it
// recorded before: two turns (240 tokens) before the hold, one more after
// it (240 is under the 250), and the next is denied — with a fresh budget
// the agent would have finished.
func TestTokenCapCountsAgentTurnsAcrossARestart(t *testing.T) {
	script := `- turn: 1
  match: "book"
  respond: {tool_calls: [{name: t__echo, arguments: {v: "look"}}]}
- turn: 2
  match: "look"
  respond: {tool_calls: [{name: t__pay, arguments: {amount: 120, payee: acct_hotel_1}}]}
- turn: 3
  match: "."
  respond: {tool_calls: [{name: t__echo, arguments: {v: "paid"}}]}
- turn: 4
  match: "."
  respond: {content: "booked"}
`
	rules := `rules:
  - {name: pay-by-hand, when: 'tool.name == "t.pay"', action: approve}
caps:
  - {name: model-tokens, tool: llm.chat, window: run, max_tokens: 250}
`
	flowSrc := bookFlow + "outputs: {answer: \"${steps.booker.output}\"}\n"
	dir := t.TempDir()
	var turns1, turns2 atomic.Int32
	h1 := newSpendingAgentHarnessIn(t, dir, rules, script, &turns1)
	r := h1.run(flowSrc, nil, Options{})
	s := step(t, r, "booker")
	if r.Status != StatusHeld || s.Tool != "t.pay" || turns1.Load() != 2 {
		t.Fatalf("run %s at %s after %d turns; want held at t.pay after 2", r.Status, s.Tool, turns1.Load())
	}
	h1.close()

	h2 := newSpendingAgentHarnessIn(t, dir, rules, script, &turns2)
	if err := h2.engine.Decide(context.Background(), s.ApprovalID, Answer{Approved: true, Who: "ana"}); err != nil {
		t.Fatal(err)
	}
	waitFinished(t, h2, r.RunID)
	if turns2.Load() != 1 || h2.called("pay") != 1 || h2.called("echo") != 1 {
		t.Fatalf("after the restart: %d turns, pay %d, echo %d; want 1, 1, 1", turns2.Load(), h2.called("pay"), h2.called("echo"))
	}
	var finished string
	denied := false
	for _, rec := range records(t, h2, r.RunID) {
		if rec.Kind == audit.KindDecision && rec.Tool == "llm.chat" && rec.Action == "deny" && len(rec.Reasons) == 1 &&
			strings.Contains(rec.Reasons[0], "spent 360 tokens of the 250 allowed per run") {
			denied = true
		}
		if status, end := rec.Ends(); end {
			finished = status
		}
	}
	if !denied || finished != StatusDenied {
		t.Fatalf("the fourth turn was not denied by the cap (run finished %q)", finished)
	}
}

// TestTokenCapCountsACompletedAgentStepOnResume: an agent step that
// completed before its run was held is not run again when the run
// resumes, and the tokens of its turns are counted again from its
// record: three turns (360 tokens) pass the budget of 250, so after the
// restart the next call of the cap's tools is denied.
func TestTokenCapCountsACompletedAgentStepOnResume(t *testing.T) {
	script := `- turn: 1
  match: "."
  respond: {tool_calls: [{name: t__echo, arguments: {v: "one"}}]}
- turn: 2
  match: "."
  respond: {tool_calls: [{name: t__echo, arguments: {v: "two"}}]}
- turn: 3
  match: "."
  respond: {content: "done"}
`
	rules := `rules:
  - {name: spend-by-hand, when: 'tool.name == "t.spend"', action: approve}
caps:
  - {name: model-tokens, tool: [llm.chat, t.model], window: run, max_tokens: 250}
`
	flowSrc := `name: a
steps:
  - id: agent
    agent:
      model: llm
      instructions: Say something.
      tools: [t.echo]
  - {id: spend, call: t.spend, with: {after: "${steps.agent.output}"}}
  - {id: again, call: t.model, with: {after: "${steps.spend.output}"}}
`
	dir := t.TempDir()
	var turns1, turns2 atomic.Int32
	h1 := newSpendingAgentHarnessIn(t, dir, rules, script, &turns1)
	r := h1.run(flowSrc, nil, Options{})
	a, spend := step(t, r, "agent"), step(t, r, "spend")
	if r.Status != StatusHeld || a.Status != StatusCompleted || spend.Status != StatusHeld {
		t.Fatalf("run %s, agent %s, spend %s", r.Status, a.Status, spend.Status)
	}
	if a.Usage == nil || a.Usage.InputTokens != 300 || a.Usage.OutputTokens != 60 {
		t.Errorf("the agent step's usage %+v, want its three turns'", a.Usage)
	}
	h1.close()

	h2 := newSpendingAgentHarnessIn(t, dir, rules, script, &turns2)
	if err := h2.engine.Decide(context.Background(), spend.ApprovalID, Answer{Approved: true, Who: "ana"}); err != nil {
		t.Fatal(err)
	}
	waitFinished(t, h2, r.RunID)
	if turns2.Load() != 0 || h2.called("model") != 0 || h2.called("spend") != 1 {
		t.Fatalf("after the restart: %d turns, model %d, spend %d; want 0, 0, 1", turns2.Load(), h2.called("model"), h2.called("spend"))
	}
}
