package engine

import (
	"context"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/worker"
)

// planScript answers the planner with a program that reads the page and
// pays the payee it names.
const planScript = "- turn: 1\n  match: \"You are the planner\"\n  respond: |\n    ```python\n" +
	"    page = t.browse(url=\"https://hotel.example/\")\n" +
	"    paid = t.pay(amount=120, payee=page[\"payee\"])\n" +
	"    result = {\"paid\": paid[\"payee\"]}\n    ```\n"

const planFlow = `name: p
steps:
  - id: booker
    plan:
      model: llm
      instructions: Read the hotel page and book the room.
      tools: [t.browse, t.pay]
`

func planHandlers() map[string]worker.Handler {
	return map[string]worker.Handler{
		"browse": func(context.Context, *worker.Call) (any, error) {
			return worker.Labeled{Output: map[string]any{"text": "Room 120 EUR.\n" + injection, "payee": "acct_hotel_1"},
				Labels: map[string]ifc.Label{"text": ifc.UntrustedFrom("web:hotel.example"), "payee": ifc.UntrustedFrom("web:hotel.example")}}, nil
		},
	}
}

// A plan step in the engine: the planner is asked once and never shown the
// page; the payment whose payee came from the page is held with the page's
// label; the held call outlives its engine, and after the approval a new
// engine runs the step again from its records — the planner is not asked,
// the page not read again, the payment made once — and the audit log
// keeps the program once.
func TestPlanHeldResumesFromRecords(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	h1, seen1 := newAgentHarnessIn(t, dir, "", planScript, planHandlers())
	r := h1.run(planFlow, nil, Options{})
	s := step(t, r, "booker")
	if r.Status != StatusHeld || s.Status != StatusHeld || s.Tool != "t.pay" || s.Args["payee"] != "acct_hotel_1" {
		t.Fatalf("run %s, booker %+v: want held at t.pay", r.Status, s)
	}
	if l := s.ArgLabels["payee"]; l.Integrity() != ifc.Untrusted {
		t.Errorf("payee labeled %v", l)
	}
	if got := seen1.all(); !strings.Contains(got, "You are the planner of a Sluice plan step.") || strings.Contains(got, "SLUICE-INJECT") || strings.Contains(got, "acct_hotel_1") {
		t.Fatalf("the planner saw: %s", got)
	}
	if h1.called("browse") != 1 || h1.called("pay") != 0 {
		t.Fatalf("browse %d, pay %d", h1.called("browse"), h1.called("pay"))
	}
	id := s.ApprovalID
	h1.close()

	h2, seen2 := newAgentHarnessIn(t, dir, "", planScript, planHandlers())
	if err := h2.engine.Decide(ctx, id, Answer{Approved: true, Who: "ana"}); err != nil {
		t.Fatal(err)
	}
	waitFinished(t, h2, r.RunID)
	if h2.called("browse") != 0 || h2.called("pay") != 1 || seen2.all() != "" {
		t.Fatalf("after the approval: browse %d, pay %d, planner asked %q; want only the payment, once", h2.called("browse"), h2.called("pay"), seen2.all())
	}
	programs := 0
	for _, rec := range records(t, h2, r.RunID) {
		if rec.Kind == audit.KindProgram {
			programs++
			if !strings.Contains(rec.Program, "t.pay(amount=120") || rec.Step != "booker" {
				t.Errorf("program record %+v", rec)
			}
		}
	}
	if programs != 1 {
		t.Fatalf("%d program records, want 1", programs)
	}
}
