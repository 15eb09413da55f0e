package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/orchestrator/lease"
	"github.com/sluicehq/sluice/worker"
)

// sharing is two engines, A and B, on the harness's bus, as two
// orchestrators of one deployment: each with its leases and its audit
// log on the deployment's stream. Each reaches the other's CancelHere
// through CancelAt, as orchestrators do over the bus, unless that one is
// gone (it does not answer).
type sharing struct {
	engines map[string]*Engine
	leases  map[string]*lease.Leases
	asked   atomic.Int32 // CancelAt calls
	mu      sync.Mutex
	gone    map[string]bool
}

func newSharing(t *testing.T, h *harness) *sharing {
	t.Helper()
	s := &sharing{engines: map[string]*Engine{}, leases: map[string]*lease.Leases{}, gone: map[string]bool{}}
	for _, owner := range []string{"A", "B"} {
		e, l := h.leased(t, lease.Config{Owner: owner, Home: "home-" + owner,
			TTL: 900 * time.Millisecond, Renew: 300 * time.Millisecond}, func(cfg *Config) {
			cfg.CancelAt = func(ctx context.Context, holder, id, who string) (*RunInfo, error) {
				s.asked.Add(1)
				s.mu.Lock()
				e, gone := s.engines[holder], s.gone[holder]
				s.mu.Unlock()
				if e == nil || gone {
					return nil, ErrNoAnswer
				}
				return e.CancelHere(ctx, id, who)
			}
		})
		s.mu.Lock()
		s.engines[owner], s.leases[owner] = e, l
		s.mu.Unlock()
	}
	return s
}

// cancelRecords counts the records that end run id cancelled by who.
func cancelRecords(t *testing.T, h *harness, id, who string) int {
	t.Helper()
	n := 0
	for _, r := range records(t, h, id) {
		if ends(r, StatusCancelled) {
			if r.User != who {
				t.Errorf("the run's cancel names %q, want %q", r.User, who)
			}
			n++
		}
	}
	return n
}

// A run waiting in orchestrator A for a person is cancelled through B,
// which does not hold its lease: B asks A, A stops the run, and the
// audit log records the cancel once. Cancelling it again through either
// says there is no such run.
func TestCancelThroughAnotherOrchestrator(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, "", map[string]worker.Handler{"fetch": untrustedPage})
	s := newSharing(t, h)
	started := make(chan string, 1)
	held := make(chan struct{}, 1)
	type out struct {
		r   *Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		r, err := s.engines["A"].Run(ctx, h.plan(heldFlow), map[string]any{"amount": 5.0}, Options{Wait: true,
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
	if _, err := s.leases["B"].Acquire(ctx, id); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("B's Acquire of the run A drives = %v, want ErrHeld", err)
	}
	ri, err := s.engines["B"].Cancel(ctx, id, "alice")
	if err != nil {
		t.Fatalf("cancel through B: %v", err)
	}
	if ri.ID != id || ri.CancelledIn != "A" || ri.TakenFrom != "" || s.asked.Load() != 1 {
		t.Fatalf("cancel through B = %+v after %d requests to the holder; want cancelled in A, asked once", ri, s.asked.Load())
	}
	var o out
	select {
	case o = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("A's run did not return after the cancel")
	}
	if !errors.Is(o.err, ErrCancelled) || o.r.Status != StatusCancelled {
		t.Fatalf("A's run = %+v, %v; want cancelled", o.r, o.err)
	}
	if n := cancelRecords(t, h, id, "alice"); n != 1 {
		t.Fatalf("%d records of the cancel, want 1", n)
	}
	for _, name := range []string{"A", "B"} {
		if _, err := s.engines[name].Cancel(ctx, id, "alice"); err == nil || !strings.Contains(err.Error(), "no unfinished run") {
			t.Fatalf("cancel again through %s = %v, want no unfinished run", name, err)
		}
	}
	if h.called("spend") != 0 {
		t.Fatal("a cancelled run paid")
	}
}

// A run whose holder died (its lease no longer renewed, its requests
// unanswered) is cancelled through another orchestrator once the lease
// expires: that one takes it, records the cancel once, and says from
// whom it took it.
func TestCancelTakesTheLeaseOfAGoneHolder(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, "", map[string]worker.Handler{"fetch": untrustedPage})
	s := newSharing(t, h)
	r := s.heldInA(t, h) // and A dies
	s.leases["A"].Close()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ri, err := s.engines["B"].Cancel(cctx, r.RunID, "alice")
	if err != nil {
		t.Fatalf("cancel through B: %v", err)
	}
	if ri.CancelledIn != "B" || ri.TakenFrom != "A" || s.asked.Load() < 1 {
		t.Fatalf("cancel through B = %+v after %d requests to the holder; want cancelled in B, taken from A", ri, s.asked.Load())
	}
	if n := cancelRecords(t, h, r.RunID, "alice"); n != 1 {
		t.Fatalf("%d records of the cancel, want 1", n)
	}
	if _, err := s.engines["B"].Cancel(ctx, r.RunID, "alice"); err == nil || !strings.Contains(err.Error(), "no unfinished run") {
		t.Fatalf("cancel again = %v, want no unfinished run", err)
	}
}

// A holder that does not answer and whose lease does not expire in the
// time given (it renews, but its requests go unanswered) leaves the run
// alone: Cancel says so when its context ends, and nothing is recorded.
func TestCancelGivesUpOnAHolderThatKeepsItsLease(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, "", map[string]worker.Handler{"fetch": untrustedPage})
	s := newSharing(t, h)
	r := s.heldInA(t, h)
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := s.engines["B"].Cancel(cctx, r.RunID, "alice")
	if err == nil || !strings.Contains(err.Error(), "orchestrator A drives it and does not answer") {
		t.Fatalf("cancel through B = %v, want the holder named", err)
	}
	if n := cancelRecords(t, h, r.RunID, "alice"); n != 0 {
		t.Fatalf("%d records of a cancel that did not happen", n)
	}
}

// heldInA starts a run held for a person in A, which then drives it again
// (holds its lease) and stops answering other orchestrators.
func (s *sharing) heldInA(t *testing.T, h *harness) *Result {
	t.Helper()
	ctx := context.Background()
	r, err := s.engines["A"].Run(ctx, h.plan(heldFlow), map[string]any{"amount": 5.0}, Options{})
	if err != nil || r.Status != StatusHeld {
		t.Fatalf("run = %+v, %v; want held", r, err)
	}
	if _, err := s.leases["A"].Acquire(ctx, r.RunID); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.gone["A"] = true
	s.mu.Unlock()
	return r
}
