package engine

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// stallDialer connects to the bus over TCP and can stall what the client
// sends: while stalled, what is written is held back (stallConn), and the
// first write closes blocked; resume sends it on and closes release.
type stallDialer struct {
	mu      sync.Mutex
	stalled bool
	conns   []*stallConn // those holding bytes back
	release chan struct{}
	blocked chan struct{}
	once    sync.Once
}

func newStallDialer() *stallDialer {
	return &stallDialer{release: make(chan struct{}), blocked: make(chan struct{})}
}

func (d *stallDialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return &stallConn{Conn: c, d: d}, nil
}

func (d *stallDialer) stall() { d.mu.Lock(); d.stalled = true; d.mu.Unlock() }

// resume sends on what the stall held back, in order, and lets later
// writes through.
func (d *stallDialer) resume() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.stalled {
		return
	}
	d.stalled = false
	for _, c := range d.conns {
		c.flushHeld()
	}
	close(d.release)
}

// stallConn holds back, while its dialer is stalled, every byte written
// to it: the writer is told they were written, so nothing of the client
// blocks (the NATS client holds its connection's lock while it writes),
// and the server gets none of them until resume.
type stallConn struct {
	net.Conn
	d    *stallDialer
	mu   sync.Mutex
	held []byte
}

func (c *stallConn) Write(p []byte) (int, error) {
	c.d.mu.Lock()
	if c.d.stalled {
		c.mu.Lock()
		if c.held == nil {
			c.d.conns = append(c.d.conns, c)
		}
		c.held = append(c.held, p...)
		c.mu.Unlock()
		c.d.mu.Unlock()
		c.d.once.Do(func() { close(c.d.blocked) })
		return len(p), nil
	}
	c.d.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.Write(p)
}

// flushHeld writes what was held back, with the dialer's lock held, so
// that no later write overtakes it.
func (c *stallConn) flushHeld() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.held) > 0 {
		_, _ = c.Conn.Write(c.held)
	}
	c.held = nil
}

// Nothing reaches a worker before the decision on its call is stored: with
// the audit log's connection stalled, so that no record reaches the
// stream, the run waits, and the worker gets nothing; once the connection
// goes on, the call is delivered, and when the worker gets it the stream
// already holds the decision that allowed it. The worker looks at the
// stream itself (over another connection), so the test does not depend on
// how long anything takes: a call delivered early finds no decision there.
// earlyDeliveryWindow is how long TestNothingIsDeliveredBeforeItsDecisionIsStored
// keeps the audit log stalled for a call delivered too early to reach the
// worker: far more than a run needs from its first record to a delivery,
// even under -race on a loaded machine.
const earlyDeliveryWindow = 10 * time.Second

func TestNothingIsDeliveredBeforeItsDecisionIsStored(t *testing.T) {
	var mu sync.Mutex
	var decisionsAtCall []audit.Record
	calls := 0
	called := make(chan struct{}, 1)
	var h *harness
	h = newHarness(t, "", map[string]worker.Handler{
		"echo": func(ctx context.Context, c *worker.Call) (any, error) {
			recs, err := h.log.Records(ctx)
			if err != nil {
				return nil, err
			}
			mu.Lock()
			calls++
			for _, r := range recs {
				if r.Kind == audit.KindDecision && r.Step == "a" {
					decisionsAtCall = append(decisionsAtCall, r)
				}
			}
			mu.Unlock()
			select {
			case called <- struct{}{}:
			default:
			}
			return map[string]any{"ok": true}, nil
		},
	})
	// The engine under test writes its audit records over a connection
	// of its own, which the test can stall.
	seed, _, err := h.bus.AddUser("audit", capabilities.Permissions{Publish: []string{">"}, Subscribe: []string{">"}})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	d := newStallDialer()
	anc, err := nats.Connect(h.bus.ClientURL(), nats.Nkey(pub, kp.Sign), nats.SetCustomDialer(d))
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alog, err := audit.Open(ctx, anc, "sluice")
	if err != nil {
		t.Fatal(err)
	}
	cfg := h.engine.cfg
	e := New(Config{Conn: cfg.Conn, Subjects: schemas.Subjects{}, Policy: cfg.Policy, Audit: alog, Manifests: cfg.Manifests, LoadFlow: cfg.LoadFlow})
	defer e.Close()

	p := h.plan("name: p\nsteps:\n  - {id: a, call: t.echo, with: {v: x}}\n")
	d.stall()
	defer d.resume()
	type outcome struct {
		r   *Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		r, err := e.Run(ctx, p, nil, Options{})
		done <- outcome{r, err}
	}()
	// The run has written to the audit log, and nothing it wrote is
	// stored. A call delivered now would reach the worker, which records
	// what the stream held when it was called; give a run that would
	// deliver early ample time to (it goes on as soon as it does: a fast
	// machine does not wait), then let the records through. Only the code
	// under test, which waits for the records, waits out the whole time:
	// a slow machine cannot make an early delivery pass unseen.
	select {
	case <-d.blocked:
	case <-ctx.Done():
		t.Fatal("the run wrote nothing to the audit log")
	}
	select {
	case <-called:
	case <-time.After(earlyDeliveryWindow):
	}
	d.resume()
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	if s := step(t, o.r, "a"); s.Status != StatusCompleted {
		t.Fatalf("step a: %s (%s), want completed once the log goes on", s.Status, s.Error)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Fatalf("the worker got %d calls, want 1", calls)
	}
	if len(decisionsAtCall) != 1 || decisionsAtCall[0].Action != "allow" {
		t.Errorf("when the worker got the call, the stream held the decisions %+v: want the one that allowed it", decisionsAtCall)
	}
}
