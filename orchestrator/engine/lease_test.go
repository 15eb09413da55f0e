package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/lease"
	"github.com/sluicehq/sluice/worker"
)

// leased is another engine of h's deployment, as another orchestrator on
// the bus: its own connection, audit log (on the deployment's stream) and
// leases of runs (lc, its connection set here); edit, when given, changes
// its configuration before it starts.
func (h *harness) leased(t testing.TB, lc lease.Config, edit func(*Config)) (*Engine, *lease.Leases) {
	t.Helper()
	ctx := context.Background()
	nc, err := h.bus.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	log, err := audit.Open(ctx, nc, "sluice")
	if err != nil {
		t.Fatal(err)
	}
	lc.Conn = nc
	l, err := lease.Open(ctx, lc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	cfg := h.engine.cfg
	cfg.Conn, cfg.Audit, cfg.Leases = nc, log, l
	if edit != nil {
		edit(&cfg)
	}
	e := New(cfg)
	t.Cleanup(e.Close)
	return e, l
}

// Two engines share a deployment, as two orchestrators on one bus do. A
// drives a run and stops renewing its lease in the middle of a call (its
// process hangs); B takes the run over once the lease expires and
// finishes it. A's call then returns: A delivers nothing more and records
// nothing more — no decision, no end of the run — and the run finishes
// once, in B's hands.
func TestStaleOwnerDeliversNothing(t *testing.T) {
	ctx := context.Background()
	const f = `name: shared
steps:
  - {id: a, call: t.fetch, with: {}}
  - {id: b, call: t.split, with: {v: "${steps.a.output}"}}
  - {id: c, call: t.echo, with: {v: "${steps.b.output.n}"}}
outputs:
  n: "${steps.c.output.v}"
`
	reached, release := make(chan struct{}), make(chan struct{})
	var splits atomic.Int32
	h := newHarness(t, "", map[string]worker.Handler{
		"fetch": func(context.Context, *worker.Call) (any, error) { return map[string]any{"page": 1}, nil },
		"split": func(ctx context.Context, c *worker.Call) (any, error) {
			if splits.Add(1) == 1 {
				// A's call: it hangs until the test lets it return.
				close(reached)
				<-release
			}
			return map[string]any{"n": 7}, nil
		},
	})
	engines := map[string]*Engine{}
	var mu sync.Mutex
	leases := map[string]*lease.Leases{}
	for _, owner := range []string{"A", "B"} {
		e, l := h.leased(t, lease.Config{Owner: owner, Home: "home-" + owner,
			TTL: 900 * time.Millisecond, Renew: 300 * time.Millisecond,
			Expired: func(run, _ string) {
				mu.Lock()
				e := engines[owner]
				mu.Unlock()
				if e != nil {
					e.TakeOver(run)
				}
			}}, nil)
		mu.Lock()
		engines[owner], leases[owner] = e, l
		mu.Unlock()
	}
	type outcome struct {
		res *Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := engines["A"].Run(ctx, h.plan(f), map[string]any{}, Options{})
		done <- outcome{res, err}
	}()
	<-reached
	leases["A"].Close() // A renews nothing more, and hears nothing more
	var runID string
	for _, r := range allRecords(t, h) {
		if r.Starts() {
			runID = r.RunID
		}
	}
	waitFinished(t, h, runID)
	// B finished the run; now A's call returns.
	close(release)
	var out outcome
	select {
	case out = <-done:
	case <-time.After(time.Minute):
		t.Fatal("A's run did not return")
	}
	if !errors.Is(out.err, lease.ErrLost) {
		t.Fatalf("A's run = %+v, %v; want the lease lost", out.res, out.err)
	}
	if n := h.called("echo"); n != 1 {
		t.Fatalf("c delivered %d times, want once (by B)", n)
	}
	var finished, decisionsC int
	var takenOver bool
	for _, r := range records(t, h, runID) {
		status, ends := r.Ends()
		switch {
		case ends:
			finished++
			if status != StatusCompleted {
				t.Errorf("run finished %s", status)
			}
		case r.Kind == audit.KindDecision && r.Step == "c":
			decisionsC++
		case r.Kind == audit.KindRunResumed && r.User == "orchestrator:B" && len(r.Reasons) == 1:
			takenOver = true
		}
	}
	if finished != 1 || decisionsC != 1 || !takenOver {
		t.Fatalf("records of the run: %d run_finished, %d decisions on c, taken over %v; want 1, 1, true", finished, decisionsC, takenOver)
	}
}

func allRecords(t *testing.T, h *harness) []audit.Record {
	t.Helper()
	all, err := h.log.Records(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return all
}
