package lease

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/orchestrator/bus"
)

// Short leases, so that the tests take seconds; the proportions are the
// defaults'.
const (
	testTTL   = 900 * time.Millisecond
	testRenew = 300 * time.Millisecond
)

func startBus(t *testing.T) *bus.Bus {
	t.Helper()
	b, err := bus.Start(bus.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	return b
}

// orchestrator is the leases of one orchestrator, with what its hooks
// were told.
type orchestrator struct {
	*Leases
	mu      sync.Mutex
	expired []string
	lost    []string
}

func open(t *testing.T, b *bus.Bus, owner, home string) *orchestrator {
	t.Helper()
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return openOn(t, nc, owner, home)
}

func openOn(t *testing.T, nc *nats.Conn, owner, home string) *orchestrator {
	t.Helper()
	o := &orchestrator{}
	l, err := Open(context.Background(), Config{Conn: nc, Owner: owner, Home: home, TTL: testTTL, Renew: testRenew,
		Expired: func(run, from string) { o.mu.Lock(); o.expired = append(o.expired, run+" from "+from); o.mu.Unlock() },
		Lost:    func(run string) { o.mu.Lock(); o.lost = append(o.lost, run); o.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	o.Leases = l
	return o
}

func (o *orchestrator) told() ([]string, []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.expired...), append([]string(nil), o.lost...)
}

// waitFor polls cond until it holds, or fails after a bound generous for
// a loaded machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A lease renewed is kept: another orchestrator cannot take it, however
// long it waits, and is never told it expired.
func TestRenewedLeaseIsKept(t *testing.T) {
	b := startBus(t)
	a, other := open(t, b, "A", "home-a"), open(t, b, "B", "home-b")
	ctx := context.Background()
	if from, err := a.Acquire(ctx, "run1"); err != nil || from != "" {
		t.Fatalf("Acquire = %q, %v", from, err)
	}
	// Several TTLs: B sees each renewal.
	for end := time.Now().Add(4 * testTTL); time.Now().Before(end); time.Sleep(testRenew / 2) {
		if err := a.Check("run1"); err != nil {
			t.Fatalf("the holder's check: %v", err)
		}
	}
	if _, err := other.Acquire(ctx, "run1"); !errors.Is(err, ErrHeld) {
		t.Fatalf("another's Acquire of a kept lease = %v, want ErrHeld", err)
	}
	if expired, _ := other.told(); len(expired) != 0 {
		t.Fatalf("told of expired leases: %v", expired)
	}
}

// An orchestrator that stops renewing (it died) loses its runs: the
// holder's own check fails first, then another orchestrator is told the
// lease expired and takes it with compare-and-set; of two takers one
// wins.
func TestExpiredLeaseIsTakenOverOnce(t *testing.T) {
	b := startBus(t)
	a := open(t, b, "A", "home-a")
	takers := []*orchestrator{open(t, b, "B", "home-b"), open(t, b, "C", "home-c")}
	ctx := context.Background()
	if _, err := a.Acquire(ctx, "run1"); err != nil {
		t.Fatal(err)
	}
	died := time.Now()
	a.Close() // renews nothing more
	if a.Renewing("run1") {
		t.Fatal("a closed holder still counts as renewing its lease")
	}
	waitFor(t, "the holder's check to fail", func() bool { return errors.Is(a.Check("run1"), ErrLost) })
	checkFailed := time.Since(died)
	for _, o := range takers {
		waitFor(t, o.Owner()+" told the lease expired", func() bool { e, _ := o.told(); return len(e) > 0 })
		if e, _ := o.told(); e[0] != "run1 from A" {
			t.Fatalf("%s told %v", o.Owner(), e)
		}
	}
	told := time.Since(died)
	if told <= checkFailed {
		t.Fatalf("a taker was told %s after the holder stopped, before its check failed (%s)", told, checkFailed)
	}
	var won []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, o := range takers {
		wg.Go(func() {
			from, err := o.Acquire(ctx, "run1")
			switch {
			case err == nil:
				if from != "A" {
					t.Errorf("%s took the lease from %q, want A", o.Owner(), from)
				}
				mu.Lock()
				won = append(won, o.Owner())
				mu.Unlock()
			case !errors.Is(err, ErrHeld):
				t.Errorf("%s: %v", o.Owner(), err)
			}
		})
	}
	wg.Wait()
	if len(won) != 1 {
		t.Fatalf("taken by %v, want one", won)
	}
}

// A holder whose lease another took is told it lost it, and its check
// fails at once.
func TestTakenLeaseIsLost(t *testing.T) {
	b := startBus(t)
	a := open(t, b, "A", "home-a")
	ctx := context.Background()
	if _, err := a.Acquire(ctx, "run1"); err != nil {
		t.Fatal(err)
	}
	if !a.Renewing("run1") {
		t.Fatal("A does not renew the lease it holds")
	}
	// A later process on A's state directory takes it at once: the
	// state directory's lock says A is gone.
	again := open(t, b, "A2", "home-a")
	if from, err := again.Acquire(ctx, "run1"); err != nil || from != "A" {
		t.Fatalf("Acquire on the same home = %q, %v", from, err)
	}
	waitFor(t, "A told it lost the lease", func() bool { _, lost := a.told(); return len(lost) == 1 })
	if err := a.Check("run1"); !errors.Is(err, ErrLost) {
		t.Fatalf("check after losing the lease = %v", err)
	}
	// Taken: no renewal can keep it, and a run does not wait for one.
	if a.Renewing("run1") {
		t.Fatal("A still renews a lease another took")
	}
}

// A lease released by an orchestrator that stops is taken at once by
// another; one deleted (the run finished, or is held) is created anew.
func TestReleasedLeaseIsTakenAtOnce(t *testing.T) {
	b := startBus(t)
	a, other := open(t, b, "A", "home-a"), open(t, b, "B", "home-b")
	ctx := context.Background()
	for _, run := range []string{"run1", "run2"} {
		if _, err := a.Acquire(ctx, run); err != nil {
			t.Fatal(err)
		}
	}
	a.Release(ctx, "run1", true)
	a.Release(ctx, "run2", false)
	if err := a.Check("run1"); !errors.Is(err, ErrLost) {
		t.Fatalf("check of a released lease = %v", err)
	}
	waitFor(t, "B told run1 was released", func() bool { e, _ := other.told(); return len(e) == 1 })
	if from, err := other.Acquire(ctx, "run1"); err != nil || from != "A" {
		t.Fatalf("Acquire of a released lease = %q, %v", from, err)
	}
	if from, err := other.Acquire(ctx, "run2"); err != nil || from != "" {
		t.Fatalf("Acquire of a deleted lease = %q, %v", from, err)
	}
	if _, err := a.Acquire(ctx, "run1"); !errors.Is(err, ErrHeld) {
		t.Fatalf("Acquire of a lease B took = %v", err)
	}
}

// The holder of a lease keeps it when it acquires it again (as a cancel
// does, under the lease) while its own renewal changes it between
// Acquire's read and its update: that is not another orchestrator taking
// it. Another's change, in the same place, is.
func TestHolderAcquiresWhileItRenews(t *testing.T) {
	b := startBus(t)
	a, other := open(t, b, "A", "home-a"), open(t, b, "B", "home-b")
	ctx := context.Background()
	if _, err := a.Acquire(ctx, "run1"); err != nil {
		t.Fatal(err)
	}
	renewed := 0
	a.beforeUpdate = func() {
		if renewed == 0 {
			a.renew()
		}
		renewed++
	}
	if from, err := a.Acquire(ctx, "run1"); err != nil || from != "" {
		t.Fatalf("the holder's acquire as it renews = %q, %v; want it kept", from, err)
	}
	if renewed != 2 {
		t.Fatalf("Acquire read the lease %d times, want twice: once before the renewal, once after", renewed)
	}
	if err := a.Check("run1"); err != nil {
		t.Fatalf("the holder's check after: %v", err)
	}
	// The control: B, once A released it, finds it taken by A again in
	// the same place, and says so.
	a.beforeUpdate = nil
	a.Release(ctx, "run1", true)
	took := false
	other.beforeUpdate = func() {
		if !took {
			took = true
			if _, err := a.Acquire(ctx, "run1"); err != nil {
				t.Errorf("A takes its released lease back: %v", err)
			}
		}
	}
	if _, err := other.Acquire(ctx, "run1"); !errors.Is(err, ErrHeld) {
		t.Fatalf("B's acquire of a lease A took back meanwhile = %v, want ErrHeld", err)
	}
}
