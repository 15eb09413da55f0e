// Package jsretry makes JetStream requests again when a cluster explains
// their failure: a server went away, a stream or the JetStream meta group
// is electing a leader, an answer was lost. Each try is bounded, so that a
// request lost with a dead server does not hold its caller until the
// caller's own deadline.
package jsretry

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bounds of Do: each try waits at most Try; tries go on for up to Total.
const (
	Try   = 5 * time.Second
	Total = 30 * time.Second
)

// Do runs op with a context bounded by Try, again while it fails in a way
// Transient says another try may not, until Total passes or ctx ends. op
// must be safe to repeat. When ctx ends with a cause of its own
// (context.WithCancelCause), Do returns that cause.
func Do(ctx context.Context, op func(context.Context) error) error {
	deadline := time.Now().Add(Total)
	backoff := 50 * time.Millisecond
	for {
		tctx, cancel := context.WithTimeout(ctx, Try)
		err := op(tctx)
		cancel()
		if ctx.Err() != nil && err != nil {
			return cause(ctx, err)
		}
		if err == nil || time.Now().After(deadline) || !Transient(err) {
			return err
		}
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, time.Second)
		case <-ctx.Done():
			return cause(ctx, err)
		}
	}
}

// cause is why ctx ended, when it was given a reason other than its end,
// and err otherwise.
func cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && c != ctx.Err() {
		return c
	}
	return err
}

// Transient reports whether err says a request was lost or came while the
// cluster was electing a leader, rather than refused.
func Transient(err error) bool {
	var e *jetstream.APIError
	if errors.As(err, &e) {
		// 503: JetStream is not available yet (no meta leader, no
		// stream leader).
		// A cluster also answers "insufficient resources" while its peers
		// catch up after an election (a replicated bucket or stream has
		// nowhere to go yet), so that one is tried again too. A store
		// that is really full is told by the bus (orchestrator's fault
		// store), which ends the tries at once with the cause.
		return e.Code == 503
	}
	for _, t := range []error{context.DeadlineExceeded, nats.ErrTimeout, nats.ErrNoResponders,
		nats.ErrConnectionReconnecting, nats.ErrDisconnected, jetstream.ErrNoStreamResponse} {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
