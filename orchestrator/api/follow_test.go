package api

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/orchestrator/engine"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/schemas"
)

func startServer(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func connect(t *testing.T, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// dyingOrchestrator serves runs on its own connection: each run starts as
// run R1 and never ends; started is
// closed once that was sent. Closing the connection is the orchestrator's
// death: no reply, no more beats.
func dyingOrchestrator(t *testing.T, s *server.Server, subj schemas.Subjects) (nc *nats.Conn, started chan struct{}) {
	t.Helper()
	nc = connect(t, s)
	started = make(chan struct{})
	var once sync.Once
	sub, err := ServeRuns(context.Background(), nc, subj, func(ctx context.Context, _ RunRequest, events func(any)) RunReply {
		// ServeRuns said it is there before it called the runner.
		events(RunEvent{Started: "R1"})
		if nc.Flush() == nil {
			once.Do(func() { close(started) })
		}
		<-ctx.Done()
		return RunReply{Error: "stopped"}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return nc, started
}

// A client whose orchestrator dies while it waits for a run asks the
// others to follow the run by its id, once the orchestrator fell silent,
// and ends with the result the one that followed it replies with.
func TestRunFollowsARunWhoseOrchestratorFellSilent(t *testing.T) {
	s := startServer(t)
	subj := schemas.Subjects{Prefix: "t"}
	first, started := dyingOrchestrator(t, s, subj)
	other := connect(t, s)
	asked := make(chan string, 4)
	fsub, err := ServeFollow(context.Background(), other, subj, func(_ context.Context, req FollowRequest) (RunReply, bool) {
		run := req.Run
		asked <- run
		return RunReply{Result: json.RawMessage(`{"run_id":"R1","status":"completed"}`)}, true
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fsub.Unsubscribe() })
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}

	c := &Client{nc: connect(t, s), s: subj, Silence: 2 * time.Second}
	var followed []string
	var mu sync.Mutex
	c.OnFollow = func(run, _ string) { mu.Lock(); followed = append(followed, run); mu.Unlock() }
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type out struct {
		rep RunReply
		err error
	}
	done := make(chan out, 1)
	go func() {
		rep, err := c.Run(ctx, RunRequest{Flow: "pay.yaml", Wait: true}, func(json.RawMessage) {})
		done <- out{rep, err}
	}()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the run did not start")
	}
	first.Close() // the orchestrator dies
	var o out
	select {
	case o = <-done:
	case <-ctx.Done():
		t.Fatal("the client still waits")
	}
	if o.err != nil || string(o.rep.Result) != `{"run_id":"R1","status":"completed"}` {
		t.Fatalf("Run = %+v, %v; want the followed run's result", o.rep, o.err)
	}
	if run := <-asked; run != "R1" {
		t.Fatalf("followed run %q, want R1", run)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(followed) != 1 || followed[0] != "R1" {
		t.Fatalf("OnFollow told of %v, want [R1]", followed)
	}
}

// With no other orchestrator to follow the run, the client says so and
// where to read how the run goes, instead of waiting.
func TestRunSaysWhenNoOrchestratorFollows(t *testing.T) {
	s := startServer(t)
	subj := schemas.Subjects{Prefix: "t"}
	first, started := dyingOrchestrator(t, s, subj)
	c := &Client{nc: connect(t, s), s: subj, Silence: 2 * time.Second}
	err := runUntilStarted(t, c, started, first.Close)
	if !errors.Is(err, ErrOrchestratorGone) || !strings.Contains(err.Error(), "sluice trace R1") {
		t.Fatalf("Run = %v, want the orchestrator gone and how to follow R1", err)
	}
}

// A run whose orchestrator stops, and says the run goes on elsewhere, is
// followed at once: the client ends with the result the one that followed
// it replies with, not with the run interrupted.
func TestRunFollowsARunThatGoesOnElsewhere(t *testing.T) {
	s := startServer(t)
	subj := schemas.Subjects{Prefix: "t"}
	first := connect(t, s)
	sub, err := ServeRuns(context.Background(), first, subj, func(_ context.Context, _ RunRequest, events func(any)) RunReply {
		events(RunEvent{Started: "R2"})
		return RunReply{Result: json.RawMessage(`{"run_id":"R2","status":"interrupted"}`), Error: "run R2 interrupted", Elsewhere: true}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	other := connect(t, s)
	fsub, err := ServeFollow(context.Background(), other, subj, func(_ context.Context, req FollowRequest) (RunReply, bool) {
		run := req.Run
		return RunReply{Result: json.RawMessage(`{"run_id":"` + run + `","status":"completed"}`)}, true
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fsub.Unsubscribe() })
	for _, nc := range []*nats.Conn{first, other} {
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// A silence far longer than the test: only the reply makes it follow.
	c := &Client{nc: connect(t, s), s: subj, Silence: time.Hour}
	var why string
	c.OnFollow = func(_, w string) { why = w }
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := c.Run(ctx, RunRequest{Flow: "pay.yaml", Wait: true}, nil)
	if err != nil || string(rep.Result) != `{"run_id":"R2","status":"completed"}` {
		t.Fatalf("Run = %+v, %v; want the followed run's result", rep, err)
	}
	if !strings.Contains(why, "stopped, and another goes on with it") {
		t.Fatalf("OnFollow told %q", why)
	}
}

// A client whose connection to the bus closes while it waits (its
// credential expired, say) says so at once instead of waiting for a reply
// that cannot come.
func TestRunSaysWhenItsConnectionCloses(t *testing.T) {
	s := startServer(t)
	subj := schemas.Subjects{Prefix: "t"}
	_, started := dyingOrchestrator(t, s, subj)
	cn := connect(t, s)
	c := &Client{nc: cn, s: subj, Silence: time.Hour}
	err := runUntilStarted(t, c, started, cn.Close)
	if err == nil || !strings.Contains(err.Error(), "the connection to the bus closed") {
		t.Fatalf("Run = %v, want the connection closed", err)
	}
}

// An orchestrator that is stopping when asked to follow a run says so,
// and the client asks again at once, reaching one that follows it; the
// client says it follows the run once.
func TestRunAsksAgainWhenItsFollowerStops(t *testing.T) {
	s := startServer(t)
	subj := schemas.Subjects{Prefix: "t"}
	first := connect(t, s)
	sub, err := ServeRuns(context.Background(), first, subj, func(_ context.Context, _ RunRequest, events func(any)) RunReply {
		events(RunEvent{Started: "R3"})
		return RunReply{Result: json.RawMessage(`{"run_id":"R3","status":"interrupted"}`), Elsewhere: true}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	// The stopping one is the only follower until it answers; then
	// another serves follow requests, and it no longer does.
	stopping, other := connect(t, s), connect(t, s)
	var ssub *nats.Subscription
	var asked []string
	var mu sync.Mutex
	ssub, err = ServeFollow(context.Background(), stopping, subj, func(_ context.Context, req FollowRequest) (RunReply, bool) {
		run := req.Run
		mu.Lock()
		asked = append(asked, "stopping:"+run)
		mu.Unlock()
		_ = ssub.Unsubscribe()
		_ = stopping.Flush()
		osub, err := ServeFollow(context.Background(), other, subj, func(_ context.Context, req FollowRequest) (RunReply, bool) {
			run := req.Run
			mu.Lock()
			asked = append(asked, "other:"+run)
			mu.Unlock()
			return RunReply{Result: json.RawMessage(`{"run_id":"` + run + `","status":"completed"}`)}, true
		})
		if err != nil {
			t.Error(err)
		} else {
			t.Cleanup(func() { _ = osub.Unsubscribe() })
		}
		_ = other.Flush()
		return RunReply{}, false
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, nc := range []*nats.Conn{first, stopping} {
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	c := &Client{nc: connect(t, s), s: subj, Silence: time.Hour}
	told := 0
	c.OnFollow = func(string, string) { told++ }
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := c.Run(ctx, RunRequest{Flow: "pay.yaml", Wait: true}, nil)
	if err != nil || string(rep.Result) != `{"run_id":"R3","status":"completed"}` {
		t.Fatalf("Run = %+v, %v; want the followed run's result", rep, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(asked, " ") != "stopping:R3 other:R3" || told != 1 {
		t.Fatalf("followers asked: %v; OnFollow told %d times; want the stopping one, then the other, told once", asked, told)
	}
}

// A run whose only orchestrator stopped says it goes on elsewhere, but no
// orchestrator is left to follow it: the client ends with what that
// orchestrator replied (the run interrupted), as with one orchestrator.
func TestRunEndsWithTheStoppedReplyWhenNoneFollows(t *testing.T) {
	s := startServer(t)
	subj := schemas.Subjects{Prefix: "t"}
	only := connect(t, s)
	const interrupted = `{"run_id":"R4","status":"interrupted"}`
	sub, err := ServeRuns(context.Background(), only, subj, func(_ context.Context, _ RunRequest, events func(any)) RunReply {
		events(RunEvent{Started: "R4"})
		return RunReply{Result: json.RawMessage(interrupted), Error: "run R4 interrupted", Elsewhere: true}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := only.Flush(); err != nil {
		t.Fatal(err)
	}
	c := &Client{nc: connect(t, s), s: subj, Silence: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := c.Run(ctx, RunRequest{Flow: "pay.yaml", Wait: true}, nil)
	if err != nil || string(rep.Result) != interrupted || rep.Error != "run R4 interrupted" {
		t.Fatalf("Run = %+v, %v; want the interrupted reply", rep, err)
	}
}

// runUntilStarted has c run a flow, waiting; once the run started, it
// calls then (an orchestrator dies, a connection closes) and returns the
// error Run ends with.
func runUntilStarted(t *testing.T, c *Client, started <-chan struct{}, then func()) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(ctx, RunRequest{Flow: "pay.yaml", Wait: true}, nil)
		done <- err
	}()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the run did not start")
	}
	then()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		t.Fatal("the client still waits")
	}
	return nil
}

// A client that follows its run tells the follower how long it still
// waits for a held call's answer: what is left of its --wait-timeout
// since its orchestrator told it of the held call, the whole timeout when
// none was, nothing with --wait=false (reply once held), and no limit
// without a timeout.
func TestRunFollowsWithItsWaitTimeout(t *testing.T) {
	s := startServer(t)
	subj := schemas.Subjects{Prefix: "t"}
	other := connect(t, s)
	asked := make(chan FollowRequest, 1)
	fsub, err := ServeFollow(context.Background(), other, subj, func(_ context.Context, req FollowRequest) (RunReply, bool) {
		asked <- req
		return RunReply{Result: json.RawMessage(`{"run_id":"R1","status":"held"}`)}, true
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fsub.Unsubscribe() })
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// follow runs req on an orchestrator that starts the run, tells of a
	// held call for held.yaml, and dies; it returns what the client asked
	// the follower to wait.
	follow := func(req RunRequest) *HeldWait {
		t.Helper()
		first := connect(t, s)
		in := make(chan struct{})
		sub, err := ServeRuns(context.Background(), first, subj, func(ctx context.Context, req RunRequest, events func(any)) RunReply {
			events(RunEvent{Started: "R1"})
			if req.Flow == "held.yaml" {
				events(RunEvent{Held: &engine.StepResult{ID: "pay", Status: engine.StatusHeld}})
			}
			if first.Flush() == nil {
				close(in)
			}
			<-ctx.Done()
			return RunReply{Error: "stopped"}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := first.Flush(); err != nil {
			t.Fatal(err)
		}
		c := &Client{nc: connect(t, s), s: subj, Silence: 2 * time.Second}
		done := make(chan error, 1)
		go func() {
			_, err := c.Run(ctx, req, func(json.RawMessage) {})
			done <- err
		}()
		select {
		case <-in:
		case <-ctx.Done():
			t.Fatal("the run did not start")
		}
		first.Close() // the orchestrator dies
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return (<-asked).Held
	}
	if got := follow(RunRequest{Flow: "held.yaml", Wait: true, WaitTimeoutMS: 60000}); got == nil || !got.Began || got.MS <= 0 || got.MS >= 60000 {
		t.Errorf("told of a held call, then silent: the follower is asked to wait %+v; want less than the 60 s timeout, begun", got)
	}
	if got := follow(RunRequest{Flow: "run.yaml", Wait: true, WaitTimeoutMS: 60000}); got == nil || got.Began || got.MS != 60000 {
		t.Errorf("silent before any held call: the follower is asked to wait %+v; want the whole 60 s once held", got)
	}
	if got := follow(RunRequest{Flow: "held.yaml", Wait: false}); got == nil || !got.Began || got.MS != 0 {
		t.Errorf("with --wait=false: the follower is asked to wait %+v; want no wait", got)
	}
	if got := follow(RunRequest{Flow: "held.yaml", Wait: true}); got != nil {
		t.Errorf("without a wait timeout: the follower is asked to wait %+v; want until the run ends", got)
	}
}
