package jsretry

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nats.ErrNoResponders, true},
		{fmt.Errorf("create stream: %w", context.DeadlineExceeded), true},
		{&jetstream.APIError{Code: 503, Description: "JetStream system temporarily unavailable"}, true},
		{&jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use"}, false},
		// The store is full: a 503 too, but no other try is stored.
		{&jetstream.APIError{Code: 503, ErrorCode: 10023, Description: "insufficient resources"}, true},
		{jetstream.ErrKeyExists, false},
		{errors.New("permissions violation"), false},
	} {
		if got := Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// Do tries again while the failure is transient, and stops at the first
// refusal.
func TestDo(t *testing.T) {
	tries := 0
	err := Do(context.Background(), func(context.Context) error {
		tries++
		if tries < 3 {
			return nats.ErrNoResponders
		}
		return nil
	})
	if err != nil || tries != 3 {
		t.Fatalf("Do = %v after %d tries; want nil after 3", err, tries)
	}
	tries = 0
	refused := errors.New("refused")
	if err := Do(context.Background(), func(context.Context) error { tries++; return refused }); err != refused || tries != 1 {
		t.Fatalf("Do = %v after %d tries; want the refusal after 1", err, tries)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tries = 0
	if err := Do(ctx, func(context.Context) error { tries++; return nats.ErrTimeout }); err == nil || tries != 1 {
		t.Fatalf("Do with an ended context = %v after %d tries", err, tries)
	}
}

// A context ended with a cause of its own (the state directory cannot be
// written) ends Do with that cause, not with the error of the try it cut.
func TestDoReturnsTheCause(t *testing.T) {
	full := errors.New("run state: cannot write: no space left on device")
	ctx, cancel := context.WithCancelCause(context.Background())
	tries := 0
	err := Do(ctx, func(ctx context.Context) error {
		tries++
		cancel(full)
		<-ctx.Done()
		return ctx.Err()
	})
	if err != full || tries != 1 {
		t.Fatalf("Do = %v after %d tries; want the cause after 1", err, tries)
	}
	// Ended without a cause of its own: the try's error.
	ctx, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := Do(ctx, func(context.Context) error { return nats.ErrTimeout }); err != nats.ErrTimeout {
		t.Fatalf("Do with a cancelled context = %v", err)
	}
}
