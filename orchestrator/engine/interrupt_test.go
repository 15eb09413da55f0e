package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/worker"
)

const longFlow = `name: long
steps:
  - {id: a, call: t.fetch, with: {}}
  - {id: b, call: t.split, with: {v: "${steps.a.output}"}}
  - {id: c, call: t.echo, with: {v: "${steps.b.output.n}"}}
outputs:
  n: "${steps.c.output.v}"
`

// interruptAtSplit runs longFlow until its step b is in the worker's hands,
// then cancels the run's context with cause.
func interruptAtSplit(t *testing.T, dir string, cause error) (*Result, error) {
	t.Helper()
	reached := make(chan struct{})
	h := newHarnessIn(t, dir, "", map[string]worker.Handler{
		"fetch": func(context.Context, *worker.Call) (any, error) { return map[string]any{"page": 1}, nil },
		"split": func(ctx context.Context, c *worker.Call) (any, error) {
			close(reached)
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	defer h.close()
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() { <-reached; cancel(cause) }()
	return h.engine.Run(ctx, h.plan(longFlow), map[string]any{}, Options{})
}

// A run a person interrupts is reported as interrupted, step by step (not
// failed, not skipped), recorded as such in the audit log and the store,
// and no new orchestrator resumes it unless asked; asked, it goes on from
// where it stopped.
func TestRunInterruptedByAPersonIsKept(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	r, err := interruptAtSplit(t, dir, ErrStoppedByUser)
	if !errors.Is(err, ErrStoppedByUser) {
		t.Fatalf("Run = %v; want ErrStoppedByUser", err)
	}
	if r.Status != StatusInterrupted {
		t.Fatalf("run %s, want interrupted", r.Status)
	}
	for id, want := range map[string]string{"a": StatusCompleted, "b": StatusInterrupted, "c": StatusInterrupted} {
		if s := step(t, r, id); s.Status != want || s.Error != "" {
			t.Errorf("step %s: %s %q, want %s", id, s.Status, s.Error, want)
		}
	}

	h2 := newHarnessIn(t, dir, "", map[string]worker.Handler{
		"split": func(context.Context, *worker.Call) (any, error) { return map[string]any{"n": 7}, nil },
	})
	recs := records(t, h2, r.RunID)
	last := recs[len(recs)-1]
	if last.Kind != audit.KindRunInterrupted || last.Status != StatusInterrupted || last.Resume != ResumeOnRequest ||
		len(last.Steps) != 2 || last.Steps[0].ID != "b" {
		t.Fatalf("last audit record %+v; want run_interrupted, on_request, at b and c", last)
	}
	kept, err := h2.engine.Unfinished(ctx)
	if err != nil || len(kept) != 1 || kept[0].Status != StatusInterrupted || kept[0].Resume != ResumeOnRequest ||
		!slices.Equal(kept[0].StoppedAt, []string{"b", "c"}) {
		t.Fatalf("Unfinished = %+v, %v", kept, err)
	}
	if n, err := h2.engine.ResumeAll(ctx); err != nil || n != 0 {
		t.Fatalf("ResumeAll = %d, %v; a run a person interrupted is resumed only when asked", n, err)
	}
	resumed, err := h2.engine.ResumeRuns(ctx, true)
	if err != nil || len(resumed) != 1 || resumed[0].ID != r.RunID {
		t.Fatalf("ResumeRuns(interrupted) = %+v, %v", resumed, err)
	}
	waitFinished(t, h2, r.RunID)
	if h2.called("fetch") != 0 || h2.called("split") != 1 || h2.called("echo") != 1 {
		t.Fatalf("calls after resuming: fetch %d split %d echo %d", h2.called("fetch"), h2.called("split"), h2.called("echo"))
	}
}

// A run stopped by the end of its orchestrator is interrupted too, but
// kept to resume when the next one starts.
func TestRunStoppedWithItsOrchestratorResumesOnStart(t *testing.T) {
	dir := t.TempDir()
	r, err := interruptAtSplit(t, dir, context.Canceled)
	if !errors.Is(err, ErrInterrupted) || r.Status != StatusInterrupted {
		t.Fatalf("Run = %s, %v; want interrupted", r.Status, err)
	}
	h2 := newHarnessIn(t, dir, "", nil)
	recs := records(t, h2, r.RunID)
	if last := recs[len(recs)-1]; last.Kind != audit.KindRunInterrupted || last.Resume != ResumeOnStart {
		t.Fatalf("last audit record %+v; want run_interrupted, on_start", last)
	}
	resumed, err := h2.engine.ResumeRuns(context.Background(), false)
	if err != nil || len(resumed) != 1 || !slices.Equal(resumed[0].StoppedAt, []string{"b", "c"}) {
		t.Fatalf("ResumeRuns = %+v, %v", resumed, err)
	}
	waitFinished(t, h2, r.RunID)
}

// Cancel ends a held run for good: its call can no longer be approved,
// the audit log says who cancelled it, and nothing resumes it.
func TestCancelEndsAHeldRun(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	h1 := newHarnessIn(t, dir, "", map[string]worker.Handler{"fetch": untrustedPage})
	r := h1.run(heldFlow, map[string]any{"amount": 5.0}, Options{})
	if r.Status != StatusHeld {
		t.Fatalf("run %s, want held", r.Status)
	}
	id := step(t, r, "pay").ApprovalID
	info, err := h1.engine.Cancel(ctx, r.RunID, "alice")
	if err != nil || info.Status != StatusHeld {
		t.Fatalf("Cancel = %+v, %v", info, err)
	}
	if _, err := h1.engine.Cancel(ctx, r.RunID, "alice"); err == nil || !strings.Contains(err.Error(), "no unfinished run") {
		t.Fatalf("cancelling again: %v", err)
	}
	if err := h1.engine.Decide(ctx, id, Answer{Approved: true, Who: "bob"}); err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("approving a call of a cancelled run: %v", err)
	}
	h1.close()

	h2 := newHarnessIn(t, dir, "", nil)
	if n, err := h2.engine.ResumeAll(ctx); err != nil || n != 0 {
		t.Fatalf("ResumeAll = %d, %v", n, err)
	}
	if kept, err := h2.engine.Unfinished(ctx); err != nil || len(kept) != 0 {
		t.Fatalf("Unfinished = %+v, %v", kept, err)
	}
	if list, err := h2.engine.Approvals(ctx); err != nil || len(list) != 0 {
		t.Fatalf("Approvals = %+v, %v", list, err)
	}
	if h2.called("spend") != 0 {
		t.Fatal("a cancelled run paid")
	}
	recs := records(t, h2, r.RunID)
	last := recs[len(recs)-1]
	if last.Kind != audit.KindRunFinished || last.Status != StatusCancelled || last.User != "alice" {
		t.Fatalf("last audit record %+v; want run_finished cancelled by alice", last)
	}
}

// Cancel stops a run waiting in this process for a person: Run returns
// at once, cancelled.
func TestCancelStopsAWaitingRun(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, "", map[string]worker.Handler{"fetch": untrustedPage})
	started := make(chan string, 1)
	held := make(chan struct{}, 1)
	type out struct {
		r   *Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		r, err := h.engine.Run(ctx, h.plan(heldFlow), map[string]any{"amount": 5.0}, Options{Wait: true,
			OnStarted: func(id string) { started <- id },
			OnHeld:    func(StepResult) { held <- struct{}{} }})
		done <- out{r, err}
	}()
	id := <-started
	select {
	case <-held:
	case <-time.After(2 * time.Minute):
		t.Fatal("the call was not held")
	}
	if _, err := h.engine.Cancel(ctx, id, "alice"); err != nil {
		t.Fatal(err)
	}
	var o out
	select {
	case o = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("Run did not return after Cancel")
	}
	if !errors.Is(o.err, ErrCancelled) || o.r.Status != StatusCancelled {
		t.Fatalf("Run = %+v, %v; want cancelled", o.r, o.err)
	}
	if h.called("spend") != 0 {
		t.Fatal("a cancelled run paid")
	}
}

// Cancel stops a run the engine resumed on its own, in the middle of a
// call, and it stays cancelled: the next engine has nothing to resume.
func TestCancelStopsAResumedRun(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	r, err := interruptAtSplit(t, dir, context.Canceled)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("Run = %v", err)
	}
	reached := make(chan struct{})
	h2 := newHarnessIn(t, dir, "", map[string]worker.Handler{
		"split": func(ctx context.Context, c *worker.Call) (any, error) {
			close(reached)
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	if n, err := h2.engine.ResumeAll(ctx); err != nil || n != 1 {
		t.Fatalf("ResumeAll = %d, %v", n, err)
	}
	select {
	case <-reached:
	case <-time.After(2 * time.Minute):
		t.Fatal("the resumed run did not reach its step b")
	}
	if _, err := h2.engine.Cancel(ctx, r.RunID, "alice"); err != nil {
		t.Fatal(err)
	}
	if kept, err := h2.engine.Unfinished(ctx); err != nil || len(kept) != 0 {
		t.Fatalf("Unfinished after Cancel = %+v, %v", kept, err)
	}
	h2.close()
	h3 := newHarnessIn(t, dir, "", nil)
	if n, err := h3.engine.ResumeAll(ctx); err != nil || n != 0 {
		t.Fatalf("ResumeAll after Cancel = %d, %v", n, err)
	}
	if h3.called("echo") != 0 {
		t.Fatal("a cancelled run went on")
	}
}
