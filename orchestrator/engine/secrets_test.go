package engine

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/internal/echo"
	"github.com/sluicehq/sluice/worker"
)

const engineKey = "sk-engine-canary-3c1e"

// TestReplyHoldingASecretFails: a worker that returns a configured secret
// — the web worker decoding a page's HTML entities or UTF-16 into the
// plain key the broker could not see, or a compromised worker — has its
// call fail before the reply is labeled, and the audit log records a
// violation naming the secret, never its value. Before, the key went into
// the run's values, its output and whatever read them. The control: the
// same flow with a reply that holds no secret completes.
func TestReplyHoldingASecretFails(t *testing.T) {
	var text atomic.Pointer[string]
	text.Store(ptr("decoded page: " + engineKey))
	h := newHarness(t, "", map[string]worker.Handler{
		"fetch": func(_ context.Context, c *worker.Call) (any, error) {
			return map[string]any{"text": *text.Load(), "quote": "x"}, nil
		},
	})
	cfg := h.engine.cfg
	cfg.Secrets = echo.New(map[string][]byte{"api_key": []byte(engineKey)})
	h.engine = New(cfg)
	t.Cleanup(h.engine.Close)
	const src = `name: p
steps:
  - {id: f, call: t.fetch}
  - {id: after, call: t.echo, with: {v: "${steps.f.output.text}"}}
`
	r := h.run(src, nil, Options{})
	f := step(t, r, "f")
	if f.Status != StatusFailed || strings.Contains(f.Error, engineKey) || !strings.Contains(f.Error, "api_key") {
		t.Fatalf("f: %s %q; want failed, naming api_key without its value", f.Status, f.Error)
	}
	if h.called("echo") != 0 {
		t.Error("a step read the secret")
	}
	recs, err := h.log.Records(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rec := range recs {
		if rec.Kind == audit.KindViolation && rec.Op == "secret" && rec.Step == "f" {
			found = true
		}
		if strings.Contains(rec.Subject+rec.Error, engineKey) {
			t.Errorf("an audit record holds the key: %+v", rec)
		}
	}
	if !found {
		t.Error("no violation recorded")
	}

	// Control: a reply without the secret completes.
	text.Store(ptr("decoded page: nothing secret"))
	r = h.run(src, nil, Options{})
	if f := step(t, r, "f"); f.Status != StatusCompleted || h.called("echo") != 1 {
		t.Errorf("control: f %s, echo called %d times", f.Status, h.called("echo"))
	}
}

func ptr[T any](v T) *T { return &v }
