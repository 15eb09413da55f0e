package engine

import (
	"context"
	"encoding/json"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/internal/fault"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// When the state directory stops taking writes during a call, the run
// fails with that cause: the step whose result cannot be recorded fails,
// the steps after it are not run. A run started after it is refused at
// once: nothing is called, and it leaves nothing in the run state to
// resume.
func TestStateWriteFailureFailsTheRun(t *testing.T) {
	dir := t.TempDir()
	f := fault.New(dir)
	full := fault.NewError("run state", dir, "write x: no space left on device")
	h := newHarnessIn(t, dir, "", map[string]worker.Handler{
		"fail": func(_ context.Context, c *worker.Call) (any, error) {
			f.Fail(full) // the disk fills while the call is made
			return json.RawMessage(c.Args), nil
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc, err := h.bus.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	log, err := audit.Open(ctx, nc, "sluice", audit.Options{Fault: f})
	if err != nil {
		t.Fatal(err)
	}
	e := New(Config{Conn: nc, Subjects: schemas.Subjects{}, Policy: h.engine.cfg.Policy, Audit: log,
		Manifests: h.engine.cfg.Manifests, Fault: f})
	defer e.Close()

	res, err := e.Run(ctx, h.plan(`name: f
steps:
  - {id: a, call: t.fail, with: {v: 1}}
  - {id: b, call: t.echo, with: {v: "${steps.a.output.v}"}}
`), nil, Options{})
	if !errors.Is(err, syscall.ENOSPC) || res == nil || res.Status != StatusFailed {
		t.Fatalf("run when the disk fills: %+v, %v; want failed with %v", res, err, full)
	}
	if a := step(t, res, "a"); a.Status != StatusFailed || a.Error != full.Error() {
		t.Errorf("step a: %s %q; want failed with %q", a.Status, a.Error, full)
	}
	if b := step(t, res, "b"); b.Status != StatusSkipped || h.called("echo") != 0 {
		t.Errorf("step b: %s, echo called %d times; want skipped, never called", b.Status, h.called("echo"))
	}

	res, err = e.Run(ctx, h.plan("name: g\nsteps:\n  - {id: c, call: t.echo, with: {v: 2}}\n"), nil, Options{})
	var fe *fault.Error
	if res != nil || !errors.As(err, &fe) || err.Error() != full.Error() {
		t.Fatalf("run after the disk filled: %+v, %v; want %v", res, err, full)
	}
	if h.called("echo") != 0 || h.called("fail") != 1 {
		t.Errorf("calls after the disk filled: echo %d, fail %d", h.called("echo"), h.called("fail"))
	}
	st, err := e.store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Every write handed to the run state is answered before it is read.
	select {
	case <-st.Answered():
	case <-ctx.Done():
		t.Fatal("writes to the run state still unanswered after 2 minutes")
	}
	runs, err := st.Unfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if r.Flow == "g" {
			t.Errorf("the refused run %s is in the run state, to be resumed", r.ID)
		}
	}
}
