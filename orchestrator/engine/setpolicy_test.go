package engine

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ifc/policy"
	"github.com/sluicehq/sluice/worker"
)

// policySet compiles the default policy and rules against the test worker.
func (h *harness) policySet(rules string) *policy.Set {
	h.t.Helper()
	tools := policy.Tools{}
	for _, m := range h.cat {
		for _, tool := range m.Tools {
			tools[tool.Name] = tool.Input
		}
	}
	set, err := policy.Load(tools, policy.DefaultFile(), policy.File{Name: "reloaded.yaml", Src: []byte(rules)})
	if err != nil {
		h.t.Fatal(err)
	}
	return set
}

// SetPolicy replaces the policy of the runs that start after it at once;
// a run under way is decided by the set it started with to its end, so no
// run is decided partly by one set and partly by another. Run explicitly
// given a set (Options.Policy) is decided by that one.
func TestSetPolicy(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	h := newHarness(t, "", map[string]worker.Handler{
		"barrier": func(ctx context.Context, c *worker.Call) (any, error) {
			arrived <- struct{}{}
			select {
			case <-release:
				return map[string]any{"ok": true}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	})
	const payFlow = `name: p
steps:
  - {id: pay, call: t.pay, with: {amount: 5, payee: acct_1}}
`
	if r := h.run(payFlow, nil, Options{}); r.Status != StatusCompleted {
		t.Fatalf("before SetPolicy: run %s %+v", r.Status, r.Steps)
	}
	before := h.engine.Policy()

	// A run under way: its first step waits at the barrier while the
	// policy is replaced.
	type outcome struct {
		r   *Result
		err error
	}
	first := make(chan outcome, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		r, err := h.engine.Run(ctx, h.plan(`name: long
steps:
  - {id: wait, call: t.barrier}
  - {id: pay, call: t.pay, with: {amount: 5, payee: acct_1, mode: "${string(steps.wait.output.ok)}"}}
`), nil, Options{})
		first <- outcome{r, err}
	}()
	select {
	case <-arrived:
	case <-time.After(2 * time.Minute):
		t.Fatal("the first step of the run under way was never called")
	}
	strict := h.policySet("rules:\n  - name: no-payments\n    when: tool.name == 't.pay'\n    action: deny\n")
	h.engine.SetPolicy(strict)
	if h.engine.Policy() != strict {
		t.Fatal("Policy does not return the set just given")
	}
	if kept := h.engine.RunsKeeping(strict); len(kept) != 1 {
		t.Fatalf("runs keeping the old set: %v, want the one under way", kept)
	}

	// A run that starts now is decided by the new set.
	r := h.run(payFlow, nil, Options{})
	if pay := step(t, r, "pay"); r.Status != StatusDenied || !slices.Contains(pay.Rules, "no-payments") {
		t.Fatalf("after SetPolicy: run %s pay %+v", r.Status, pay)
	}
	// One given the old set explicitly is decided by it.
	if r := h.run(payFlow, nil, Options{Policy: before}); r.Status != StatusCompleted {
		t.Fatalf("with Options.Policy: run %s %+v", r.Status, r.Steps)
	}

	// The run under way goes on under the set it started with.
	close(release)
	var o outcome
	select {
	case o = <-first:
	case <-time.After(2 * time.Minute):
		t.Fatal("the run under way did not finish")
	}
	if o.err != nil {
		t.Fatal(o.err)
	}
	if pay := step(t, o.r, "pay"); o.r.Status != StatusCompleted || pay.Decision != string(policy.Allow) {
		t.Fatalf("the run under way: %s, pay %+v: it was decided by the new set halfway", o.r.Status, pay)
	}
	if kept := h.engine.RunsKeeping(strict); len(kept) != 0 {
		t.Fatalf("runs keeping the old set after they finished: %v", kept)
	}
	if n := h.called("pay"); n != 3 {
		t.Fatalf("pay called %d times, want 3 (before, with the old set given, and the run under way)", n)
	}
}
