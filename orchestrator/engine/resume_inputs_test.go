package engine

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/worker"
)

// A resumed run sees its inputs with the types the flow declares, as the
// first pass did and as the flow was checked against: a number input of 5
// is read back from the store as 5, and must still be a number, not an
// integer, for "${inputs.n * 2.0}".
func TestResumedRunKeepsInputTypes(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	const f = `name: typed
inputs:
  n: {type: number}
steps:
  - {id: a, call: t.fetch, with: {}}
  - {id: b, call: t.split, with: {v: "${steps.a.output}"}}
  - {id: c, call: t.echo, with: {v: "${inputs.n * 2.0}", after: "${steps.b.output}"}}
outputs:
  v: "${steps.c.output.v}"
`
	reached := make(chan struct{})
	h1 := newHarnessIn(t, dir, "", map[string]worker.Handler{
		"fetch": func(context.Context, *worker.Call) (any, error) { return map[string]any{"page": 1}, nil },
		"split": func(ctx context.Context, c *worker.Call) (any, error) {
			close(reached)
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	p := h1.plan(f)
	in, err := p.BindInputs(map[string]string{"n": "5"})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	go func() { <-reached; cancel() }()
	r, err := h1.engine.Run(rctx, p, in, Options{})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("Run = %v, %v; want interrupted", r, err)
	}
	h1.close()

	h2 := newHarnessIn(t, dir, "", map[string]worker.Handler{
		"split": func(context.Context, *worker.Call) (any, error) { return map[string]any{"n": 7}, nil },
	})
	if n, err := h2.engine.ResumeAll(ctx); err != nil || n != 1 {
		t.Fatalf("ResumeAll = %d, %v", n, err)
	}
	waitFinished(t, h2, r.RunID)
	recs := records(t, h2, r.RunID)
	if last := recs[len(recs)-1]; !ends(last, StatusCompleted) || h2.called("echo") != 1 {
		t.Fatalf("last record %+v, echo called %d times; want the run completed", last, h2.called("echo"))
	}
}

// A run whose inputs carry a label of their own (a flow an MCP session
// started, Options.InputLabel) keeps it in every pass: resumed by another
// engine, a step that reads an input is decided with that label, not the
// user's.
func TestResumedRunKeepsInputLabel(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	const f = `name: labeled
inputs:
  n: {type: number}
steps:
  - {id: b, call: t.split, with: {}}
  - {id: c, call: t.echo, with: {v: "${inputs.n}", after: "${steps.b.output}"}}
outputs:
  v: "${steps.c.output.v}"
`
	reached := make(chan struct{})
	h1 := newHarnessIn(t, dir, "", map[string]worker.Handler{
		"split": func(ctx context.Context, c *worker.Call) (any, error) {
			close(reached)
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	p := h1.plan(f)
	in, err := p.BindValues(map[string]any{"n": 5.0})
	if err != nil {
		t.Fatal(err)
	}
	label := ifc.UntrustedFrom("session")
	rctx, cancel := context.WithCancel(ctx)
	go func() { <-reached; cancel() }()
	r, err := h1.engine.Run(rctx, p, in, Options{InputLabel: &label})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("Run = %v, %v; want interrupted", r, err)
	}
	h1.close()

	h2 := newHarnessIn(t, dir, "", map[string]worker.Handler{
		"split": func(context.Context, *worker.Call) (any, error) { return map[string]any{"n": 7}, nil },
	})
	if n, err := h2.engine.ResumeAll(ctx); err != nil || n != 1 {
		t.Fatalf("ResumeAll = %d, %v", n, err)
	}
	waitFinished(t, h2, r.RunID)
	for _, step := range []string{"c"} {
		found := false
		for _, rec := range records(t, h2, r.RunID) {
			if rec.Kind == audit.KindDecision && rec.Step == step && rec.Label != nil {
				found = true
				if rec.Label.Integrity() != ifc.Untrusted || !slices.Contains(rec.Label.Sources(), "session") {
					t.Fatalf("step %s decided with %v; want the inputs' label %v", step, *rec.Label, label)
				}
			}
		}
		if !found {
			t.Fatalf("no decision of step %s", step)
		}
	}
}
