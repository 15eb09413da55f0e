package api

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/schemas"
)

// TestServeRunsOverlapsSubmissions guards against submitted runs being
// answered one after another: each of n runs submitted at once by its own
// client is held inside the runner until all n are inside it together. If
// the subscription's handler ran the runner itself (nats.go calls a
// subscription's handler for one message at a time), or anything else put
// the runs in a line, the first run would never see the others and every
// reply would be the error below. Nothing here depends on how fast the
// machine is: the deadline only bounds how long a failure takes to show.
func TestServeRunsOverlapsSubmissions(t *testing.T) {
	const n = 4
	s := startServer(t)
	nc := connect(t, s)

	// The runner gives up on the others well before a client gives up on
	// its reply, so that a failure is told as the runner saw it.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	serveCtx, cancelServe := context.WithTimeout(ctx, 20*time.Second)
	defer cancelServe()
	var inside, most atomic.Int64
	all := make(chan struct{})
	var once sync.Once
	run := func(ctx context.Context, req RunRequest, _ func(any)) RunReply {
		k := inside.Add(1)
		defer inside.Add(-1)
		for m := most.Load(); k > m && !most.CompareAndSwap(m, k); m = most.Load() {
		}
		if k == n {
			once.Do(func() { close(all) })
		}
		select {
		case <-all:
			return RunReply{Result: json.RawMessage(`"` + req.Flow + `"`)}
		case <-ctx.Done():
			return RunReply{Error: fmt.Sprintf("run %s: the other runs never came in while it ran (%d at most at once)", req.Flow, most.Load())}
		}
	}
	subj := schemas.Subjects{Prefix: "t"}
	sub, err := ServeRuns(serveCtx, nc, subj, run)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	replies := make([]RunReply, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		c := &Client{nc: connect(t, s), s: subj}
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i], errs[i] = c.Run(ctx, RunRequest{Flow: fmt.Sprintf("flow%d.yaml", i)}, nil)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("run %d: %v", i, errs[i])
		}
		if replies[i].Error != "" {
			t.Fatalf("run %d: %s", i, replies[i].Error)
		}
		if want := fmt.Sprintf(`"flow%d.yaml"`, i); string(replies[i].Result) != want {
			t.Fatalf("run %d: result %s, want %s", i, replies[i].Result, want)
		}
	}
	if got := most.Load(); got != n {
		t.Fatalf("%d runs inside the runner at most at once, want %d", got, n)
	}
}
