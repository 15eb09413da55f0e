package engine

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/jsretry"
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

// kvWrite is a put or purge of a bucket key handed to JetStream. When its
// answer does not come, it is made again, synchronously: both may be
// repeated.
type kvWrite struct {
	fut  jetstream.PubAckFuture
	redo func(context.Context) error
	s    *store

	mu   sync.Mutex
	done bool
	err  error
}

func (w *kvWrite) Wait(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return w.err
	}
	if w.fut != nil {
		t := time.NewTimer(jsretry.Try)
		defer t.Stop()
		select {
		case <-w.fut.Ok():
			w.done = true
			return nil
		case <-w.fut.Err():
		case <-t.C:
		case <-w.s.fault.Done():
			// The server does not answer a write it could not store.
			select {
			case <-w.fut.Ok():
				w.done = true
				return nil
			default:
			}
			w.err, w.done = w.s.fault.Err(), true
			return w.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.err, w.done = w.s.do(ctx, w.redo), true
	return w.err
}

// write hands a put (or, with purge, a purge) of key to kv's stream and
// returns at once.
func (s *store) write(kv jetstream.KeyValue, key string, b []byte, purge bool) *kvWrite {
	msg := nats.NewMsg("$KV." + kv.Bucket() + "." + key)
	msg.Data = b
	w := &kvWrite{s: s, redo: func(ctx context.Context) error {
		if purge {
			return kv.Purge(ctx, key)
		}
		_, err := kv.Put(ctx, key, b)
		return err
	}}
	if purge {
		// As jetstream.KeyValue.Purge writes it: a marker that drops the
		// key's earlier values.
		msg.Header.Set("KV-Operation", "PURGE")
		msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	}
	if fut, err := s.js.PublishMsgAsync(msg); err == nil {
		w.fut = fut
	}
	return w
}
