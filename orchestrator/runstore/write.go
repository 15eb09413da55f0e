package runstore

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/jsretry"
)

// Write is a put or purge of a bucket key handed to JetStream. When its
// answer does not come, it is made again, synchronously: both may be
// repeated.
type Write struct {
	fut  jetstream.PubAckFuture
	redo func(context.Context) error
	s    *Store

	mu   sync.Mutex
	done bool
	err  error
}

// Wait returns once the write is stored, or with why it could not be.
func (w *Write) Wait(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return w.err
	}
	if w.fut != nil {
		// A write is most often answered by the time it is waited for
		// (its answer came with the audit record's waited for before
		// it): that needs no timer.
		select {
		case <-w.fut.Ok():
			w.done = true
			return nil
		default:
		}
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
func (s *Store) write(kv jetstream.KeyValue, key string, b []byte, purge bool) *Write {
	msg := nats.NewMsg("$KV." + kv.Bucket() + "." + key)
	msg.Data = b
	w := &Write{s: s, redo: func(ctx context.Context) error {
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

// WriteCall hands the record of the call idem to JetStream.
func (s *Store) WriteCall(idem string, b []byte) *Write {
	return s.write(s.steps, CallKey(idem), b, false)
}

// PurgeCall hands the removal of the call idem's record to JetStream.
func (s *Store) PurgeCall(idem string) *Write { return s.write(s.steps, CallKey(idem), nil, true) }

// WriteRun hands the record of run id to JetStream.
func (s *Store) WriteRun(id string, b []byte) *Write { return s.write(s.runs, id, b, false) }

// PurgeRun hands the removal of run id's record to JetStream.
func (s *Store) PurgeRun(id string) *Write { return s.write(s.runs, id, nil, true) }

// Answered is closed once every write handed to JetStream so far was
// answered, stored or not.
func (s *Store) Answered() <-chan struct{} { return s.js.PublishAsyncComplete() }
