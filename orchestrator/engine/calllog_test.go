package engine

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ifc/policy"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// syncBuffer is a log's output, written by the run's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A call's log lines name its run, step and tool, at the levels the
// logger writes, and nothing is written at the levels it does not.
func TestCallLogLines(t *testing.T) {
	h := newHarness(t, "", map[string]worker.Handler{
		"fail": func(context.Context, *worker.Call) (any, error) { return nil, errors.New("refused") },
	})
	nc, err := h.bus.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tools := policy.Tools{}
	for _, tool := range h.cat["t"].Tools {
		tools[tool.Name] = tool.Input
	}
	set, err := policy.Load(tools, policy.DefaultFile())
	if err != nil {
		t.Fatal(err)
	}
	const src = `name: logged
steps:
  - {id: greet, call: t.echo, with: {text: hello}}
  - {id: broken, call: t.fail, with: {text: hello}}
`
	for _, c := range []struct {
		level slog.Level
		want  []string
		not   []string
	}{
		{slog.LevelInfo, []string{
			`msg=decision run_id=%s step=greet tool=t.echo decision=allow rule="" label=trusted`,
			`msg="step failed" run_id=%s step=broken tool=t.fail err=`,
		}, nil},
		{slog.LevelWarn, []string{`msg="step failed" run_id=%s step=broken tool=t.fail err=`}, []string{"msg=decision"}},
		{slog.LevelError, nil, []string{"msg=decision", "step failed"}},
	} {
		var out syncBuffer
		log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: c.level}))
		e := New(Config{Conn: nc, Subjects: schemas.Subjects{}, Policy: set, Audit: h.log, Manifests: h.engine.cfg.Manifests, Log: log,
			LoadFlow: func(file string, src []byte) (*flow.Plan, error) { return flow.Load(file, src, h.cat, h.env) }})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		r, err := e.Run(ctx, h.plan(src), nil, Options{})
		cancel()
		e.Close()
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != StatusFailed {
			t.Fatalf("%s: run %s, want failed: %+v", c.level, r.Status, r.Steps)
		}
		got := out.String()
		for _, w := range c.want {
			if w = strings.ReplaceAll(w, "%s", r.RunID); !strings.Contains(got, w) {
				t.Errorf("%s: no line with %q in\n%s", c.level, w, got)
			}
		}
		for _, n := range c.not {
			if strings.Contains(got, n) {
				t.Errorf("%s: %q written:\n%s", c.level, n, got)
			}
		}
	}
}
