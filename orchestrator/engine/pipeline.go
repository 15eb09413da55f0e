package engine

import (
	"context"
	"sync"

	"github.com/sluicehq/sluice/orchestrator/audit"
)

// A pass over a run hands its writes to JetStream — audit records, its
// record in the runs bucket, the outputs of completed calls — without
// waiting for each, and waits for all of them where it must: before a
// call is delivered (so the decision on it, and everything the pass wrote
// before, is stored first, as the audit log promises) and before the pass
// returns. A call then costs two round trips to the stream, not one per
// write.

// waiter is a write handed to JetStream, stored once Wait returns nil.
type waiter interface {
	Wait(ctx context.Context) error
}

// acks are the writes of a pass not yet known to be stored.
type acks struct {
	mu   sync.Mutex
	ws   []waiter
	done int // ws[:done] are stored
}

func (a *acks) add(w waiter) {
	a.mu.Lock()
	a.ws = append(a.ws, w)
	a.mu.Unlock()
}

// wait returns once every write added before it was called is stored, or
// the first error.
func (a *acks) wait(ctx context.Context) error {
	a.mu.Lock()
	n := len(a.ws)
	ws := a.ws[a.done:n]
	a.mu.Unlock()
	for _, w := range ws {
		if err := w.Wait(ctx); err != nil {
			return err
		}
	}
	a.mu.Lock()
	a.done = max(a.done, n)
	a.mu.Unlock()
	return nil
}

// publish hands an audit record to the log; r.acks waits for it.
func (r *run) publish(rec audit.Record) error {
	p, err := r.e.cfg.Audit.Publish(rec)
	if err != nil {
		return err
	}
	r.acks.add(p)
	return nil
}
