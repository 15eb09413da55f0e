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

// A run's first pass writes fewer records than the run's story has:
// its start rides on its first decision (audit.Record.StartsRun) and its
// end on its last result (EndsRun), so that a one-step run makes two
// audit writes, not four. To that end the start is held back until the
// pass's first record, and a result of the pass's last step still running
// until the next record or wait; nothing is held back past a wait (stored
// flushes first), so what is stored before a call is delivered, or
// before a run returns, is what it was. A record held back that cannot be
// handed on fails what comes next: the step's next record (its next try,
// an agent's next call) or the run's end.

// start is a run's start not yet handed to the log: its run_started
// record, and the write of its record in the runs bucket, made only once
// the log took the start (a log that refuses it leaves no run behind to
// resume).
type start struct {
	rec audit.Record
	put func() waiter
}

// publish hands an audit record to the log, after the run's start and a
// result held back; r.acks waits for it. A result of a run that merges
// records is held back (r.tail) until the next record or wait.
func (r *run) publish(rec audit.Record) error {
	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	if r.lost != nil {
		return r.lost
	}
	if s := r.start; s != nil {
		r.start = nil
		if rec.Kind == audit.KindDecision {
			rec.StartsRun, rec.Steps = true, s.rec.Steps
			r.lost = r.sendStart(rec, s)
			return r.lost
		}
		if r.lost = r.sendStart(s.rec, s); r.lost != nil {
			return r.lost
		}
	}
	if r.lost = r.flushTail(); r.lost != nil {
		return r.lost
	}
	if r.merge && rec.Kind == audit.KindResult && r.left.Load() == 1 {
		// A result of the pass's last step still running: it may be
		// the run's last record, and its end ride on it.
		r.tail = &rec
		return nil
	}
	return r.send(rec)
}

// send, with r.pubMu held, hands rec to the log.
func (r *run) send(rec audit.Record) error {
	p, err := r.e.cfg.Audit.Publish(rec)
	if err != nil {
		return err
	}
	r.acks.add(p)
	return nil
}

// sendStart, with r.pubMu held, hands rec, which starts the run, to the
// log, then the run's record to the runs bucket.
func (r *run) sendStart(rec audit.Record, s *start) error {
	if err := r.send(rec); err != nil {
		return err
	}
	r.acks.add(s.put())
	return nil
}

// flushTail, with r.pubMu held, hands the result held back to the log.
func (r *run) flushTail() error {
	t := r.tail
	if t == nil {
		return nil
	}
	r.tail = nil
	return r.send(*t)
}

// flush hands what the pass holds back to the log. A record it could
// not hand on fails every later wait of the pass (stored) and its end
// (finish): the pass never returns as if it had been recorded.
func (r *run) flush() error {
	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	if r.lost != nil {
		return r.lost
	}
	if s := r.start; s != nil {
		r.start = nil
		if err := r.sendStart(s.rec, s); err != nil {
			r.lost = err
			return err
		}
	}
	if err := r.flushTail(); err != nil {
		r.lost = err
		return err
	}
	return nil
}

// stored returns once every record and write of the pass so far, held
// back ones included, is stored, or with the first error.
func (r *run) stored(ctx context.Context) error {
	if err := r.flush(); err != nil {
		return err
	}
	return r.acks.wait(ctx)
}

// finish hands the record of the pass's end, rec (run_finished), to the
// log: when the pass completed the run and holds back its last result,
// on that result (EndsRun), else on its own. When the result it holds
// back cannot be handed on, step names its step: that call's result is
// not recorded.
func (r *run) finish(rec audit.Record) (step string, err error) {
	r.pubMu.Lock()
	if r.lost != nil {
		r.pubMu.Unlock()
		return "", r.lost
	}
	if t := r.tail; t != nil && r.start == nil && rec.Status == StatusCompleted && rec.Error == "" && len(rec.Steps) == 0 {
		r.tail = nil
		t.EndsRun = StatusCompleted
		err := r.send(*t)
		if err != nil {
			r.lost, step = err, t.Step
		}
		r.pubMu.Unlock()
		return step, err
	}
	if t := r.tail; t != nil {
		step = t.Step
	}
	r.pubMu.Unlock()
	if err := r.flush(); err != nil {
		return step, err
	}
	return "", r.publish(rec)
}
