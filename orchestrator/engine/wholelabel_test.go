package engine

import (
	"context"
	"testing"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/worker"
)

// A worker may label its whole output more than its manifest does (an MCP
// server's _meta.ifc claim that a third party wrote the result). A flow
// that reads one field of that output must carry the label: the field
// used to be read as the manifest's trusted label, and a payee a
// stranger wrote was paid without a person.
func TestWholeOutputLabelReachesEveryField(t *testing.T) {
	const payFromEcho = `name: a
steps:
  - id: read
    call: t.echo
  - id: pay
    call: t.pay
    with: {amount: 30, payee: "${steps.read.output.payee}"}
`
	echo := func(whole bool) worker.Handler {
		return func(context.Context, *worker.Call) (any, error) {
			out := map[string]any{"payee": "acct_attacker"}
			if !whole {
				return out, nil
			}
			return worker.Labeled{Output: out, Labels: map[string]ifc.Label{"": ifc.UntrustedFrom("tool:t.echo")}}, nil
		}
	}
	t.Run("attack", func(t *testing.T) {
		h := newHarness(t, "", map[string]worker.Handler{"echo": echo(true)})
		r := h.run(payFromEcho, nil, Options{})
		s := step(t, r, "pay")
		if s.Status != StatusHeld {
			t.Fatalf("pay = %s %s; want held: the payee came from an untrusted output", s.Status, s.Error)
		}
		if l := s.ArgLabels["payee"]; l.Integrity() != ifc.Untrusted {
			t.Errorf("payee labeled %v", l)
		}
		if n := h.called("pay"); n != 0 {
			t.Errorf("pay was called %d times", n)
		}
	})
	t.Run("control", func(t *testing.T) {
		h := newHarness(t, "", map[string]worker.Handler{"echo": echo(false)})
		r := h.run(payFromEcho, nil, Options{})
		if s := step(t, r, "pay"); s.Status != StatusCompleted {
			t.Fatalf("pay = %s %s; want completed", s.Status, s.Error)
		}
	})
}
