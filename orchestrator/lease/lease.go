// Package lease lets several orchestrators of one deployment share its
// runs: each unfinished run that an orchestrator drives is leased to it in
// a replicated key-value bucket, one key a run, and no other orchestrator
// drives the run while the lease is kept.
//
// A lease is taken with compare-and-set: created when the run has none
// (Create), taken over with the revision last read (Update), so that of
// two orchestrators taking one lease at once, one wins. Its holder renews
// it every Config.Renew. An orchestrator that sees a lease's revision
// unchanged for Config.TTL, on its own clock, holds it expired: its holder
// died, or lost the bus. It may then take it, and resumes the run.
//
// The holder counts its lease as kept only until TTL less a margin after
// the last renewal it sent (Check): a taker counts TTL from when it saw
// that renewal, which was stored after it was sent, so a holder stops
// acting for a run before another can take it. Only durations are
// compared, each on one clock: the orchestrators' clocks need not agree.
//
// A lease is deleted when its run finishes or is held for a person (the
// orchestrator that takes the answer takes the lease), and released, left
// for another to take at once, when its orchestrator stops with the run
// unfinished. A lease left by an earlier process on the same state
// directory (Config.Home) is taken at once: the state directory's lock
// says that process is gone.
package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/jsretry"
	"github.com/sluicehq/sluice/schemas"
)

// Defaults of Config.
const (
	DefaultTTL   = 6 * time.Second
	DefaultRenew = 2 * time.Second
)

// ErrHeld: another orchestrator keeps the run's lease.
var ErrHeld = errors.New("another orchestrator drives the run")

// HeldError is ErrHeld naming the orchestrator that keeps the lease.
type HeldError struct {
	Run, Owner string
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("run %s: %s (orchestrator %s)", e.Run, ErrHeld, e.Owner)
}

// Is makes a HeldError ErrHeld.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// ErrLost: this orchestrator no longer holds the run's lease (it was not
// renewed in time, or another took it); it must not act for the run.
var ErrLost = errors.New("this orchestrator's lease on the run was lost")

// Config of the leases of one orchestrator.
type Config struct {
	Conn *nats.Conn
	// Deployment names the bucket (schemas.StoreName(Deployment,
	// "LEASES")); Replicas are its copies on a cluster.
	Deployment string
	Replicas   int
	// Owner is this orchestrator's id, new at each start; Home that of
	// its state directory, the same at each start on it.
	Owner, Home string
	// TTL is how long a lease not renewed is kept; Renew how often its
	// holder renews it. Defaults DefaultTTL and DefaultRenew; Renew must
	// be under half of TTL.
	TTL, Renew time.Duration
	// Expired is told of a run whose lease expired or was released: it
	// may be taken (Acquire). Lost is told of a run whose lease this
	// orchestrator lost. Neither may block.
	Expired func(run, from string)
	Lost    func(run string)
	Log     *slog.Logger
}

// value is what a lease holds.
type value struct {
	Run   string `json:"run_id"`
	Owner string `json:"owner"`
	Home  string `json:"home,omitempty"`
	// Released: its holder stopped with the run unfinished; anyone may
	// take it at once.
	Released bool `json:"released,omitempty"`
}

// held is a lease this orchestrator holds.
type held struct {
	rev uint64
	// until is when it stops counting as held: the last renewal sent,
	// plus TTL less the margin.
	until time.Time
}

// seen is a lease of another orchestrator as this one last saw it.
type seen struct {
	rev   uint64
	since time.Time // when this revision was first seen
	told  time.Time // when Expired was last told of it
	v     value
}

// Leases are the leases of one orchestrator, and what it sees of the
// others'.
type Leases struct {
	cfg Config
	kv  jetstream.KeyValue
	log *slog.Logger

	mu     sync.Mutex
	held   map[string]*held
	others map[string]*seen

	stop chan struct{}
	done sync.WaitGroup

	// beforeUpdate, set only by tests, is called between Acquire's read
	// of an existing lease and its update.
	beforeUpdate func()
}

// Open opens (creating it when missing) the deployment's lease bucket,
// and starts renewing this orchestrator's leases and watching the others'.
func Open(ctx context.Context, cfg Config) (*Leases, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Renew <= 0 {
		cfg.Renew = DefaultRenew
	}
	if 2*cfg.Renew >= cfg.TTL {
		return nil, fmt.Errorf("leases: renew every %s is not under half of their TTL %s", cfg.Renew, cfg.TTL)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, err
	}
	name := schemas.StoreName(cfg.Deployment, "LEASES")
	var kv jetstream.KeyValue
	err = jsretry.Do(ctx, func(ctx context.Context) error {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name,
			Description: "the orchestrator driving each unfinished run", History: 1,
			Storage: jetstream.FileStorage, Replicas: max(cfg.Replicas, 1)})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open the %s bucket: %w", name, err)
	}
	l := &Leases{cfg: cfg, kv: kv, log: log, held: map[string]*held{}, others: map[string]*seen{}, stop: make(chan struct{})}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch the %s bucket: %w", name, err)
	}
	l.done.Add(2)
	go l.watch(w)
	go l.tick()
	return l, nil
}

// Owner is this orchestrator's id.
func (l *Leases) Owner() string { return l.cfg.Owner }

// margin is how long before a taker may take a lease its holder stops
// counting it as held: room for a call checked just before to be sent.
func (l *Leases) margin() time.Duration { return l.cfg.TTL - 2*l.cfg.Renew }

// Acquire takes the lease of run for this orchestrator, or keeps it: it
// creates it when there is none, and takes over one that is released,
// left by an earlier process on this state directory, or expired. It
// returns ErrHeld when another orchestrator keeps it (a *HeldError that
// names it, when it could be read), and the owner it took it from (""
// when none).
func (l *Leases) Acquire(ctx context.Context, run string) (from string, err error) {
	v, err := json.Marshal(value{Run: run, Owner: l.cfg.Owner, Home: l.cfg.Home})
	if err != nil {
		return "", err
	}
	sent := time.Now()
	var rev uint64
	err = jsretry.Do(ctx, func(ctx context.Context) error {
		rev, err = l.kv.Create(ctx, run, v)
		return err
	})
	if err == nil {
		l.keep(run, rev, sent)
		return "", nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return "", fmt.Errorf("lease of run %s: %w", run, err)
	}
	// The holder's own renewal may change the lease between its read and
	// its update here: read again, a few times, rather than answer that
	// another took it.
	for tries := 1; ; tries++ {
		from, cur, err := l.takeExisting(ctx, run, v)
		if err == nil || !errors.Is(err, errChanged) || cur.Owner != l.cfg.Owner || tries == 3 {
			return from, err
		}
	}
}

// errChanged is the lease changed between Acquire's read and its update.
var errChanged = errors.New("another took it at the same time")

// takeExisting takes (or keeps) the lease of run that exists, unless
// another orchestrator keeps it; cur is the lease as it read it.
func (l *Leases) takeExisting(ctx context.Context, run string, v []byte) (from string, cur value, err error) {
	e, err := l.kv.Get(ctx, run)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		err = fmt.Errorf("run %s: %w (its lease changed at the same time)", run, ErrHeld)
	}
	if err != nil {
		return "", cur, fmt.Errorf("lease of run %s: %w", run, err)
	}
	if err := json.Unmarshal(e.Value(), &cur); err != nil {
		return "", cur, fmt.Errorf("lease of run %s: %w", run, err)
	}
	if cur.Owner != l.cfg.Owner && !cur.Released && cur.Home != l.cfg.Home && !l.expired(run, e.Revision()) {
		return "", cur, &HeldError{Run: run, Owner: cur.Owner}
	}
	if l.beforeUpdate != nil {
		l.beforeUpdate()
	}
	sent := time.Now()
	rev, err := l.kv.Update(ctx, run, v, e.Revision())
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) {
			return "", cur, fmt.Errorf("run %s: %w (%w)", run, ErrHeld, errChanged)
		}
		return "", cur, fmt.Errorf("lease of run %s: %w", run, err)
	}
	l.keep(run, rev, sent)
	if cur.Owner == l.cfg.Owner {
		return "", cur, nil
	}
	return cur.Owner, cur, nil
}

// keep notes a lease taken or renewed at revision rev by a write sent at
// sent.
func (l *Leases) keep(run string, rev uint64, sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held[run] = &held{rev: rev, until: sent.Add(l.cfg.TTL - l.margin())}
	delete(l.others, run)
}

// expired says whether the lease of run, at revision rev, has been seen
// unchanged for TTL.
func (l *Leases) expired(run string, rev uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.others[run]
	return s != nil && s.rev == rev && time.Since(s.since) >= l.cfg.TTL
}

// Check returns nil while this orchestrator holds the lease of run, and
// ErrLost once it does not: it must then not act for the run — deliver
// a call, record a decision.
func (l *Leases) Check(run string) error {
	l.mu.Lock()
	h := l.held[run]
	ok := h != nil && time.Now().Before(h.until)
	l.mu.Unlock()
	if !ok {
		return fmt.Errorf("run %s: %w", run, ErrLost)
	}
	return nil
}

// Renewing says whether this orchestrator still renews the lease of run:
// it holds it, no other took it, and it is not closed. A lease that lapsed
// for its holder because its renewals failed (the bus lost a node) and
// that is still renewing may be kept by the next renewal: Check then
// passes again.
func (l *Leases) Renewing(run string) bool {
	select {
	case <-l.stop:
		return false
	default:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held[run] != nil
}

// Release gives up the lease of run: deleted when the run finished or is
// held for a person; with free, marked released, for another orchestrator
// to take at once (this one stops with the run unfinished). A lease this
// orchestrator no longer holds is left as it is.
func (l *Leases) Release(ctx context.Context, run string, free bool) {
	l.mu.Lock()
	h := l.held[run]
	delete(l.held, run)
	l.mu.Unlock()
	if h == nil {
		return
	}
	var err error
	if free {
		v, _ := json.Marshal(value{Run: run, Owner: l.cfg.Owner, Home: l.cfg.Home, Released: true})
		_, err = l.kv.Update(ctx, run, v, h.rev)
	} else {
		err = l.kv.Delete(ctx, run, jetstream.LastRevision(h.rev))
	}
	if err != nil {
		l.log.Warn("lease not released; another orchestrator takes the run once it expires", "run_id", run, "err", err)
	}
}

// Close stops renewing and watching. Leases still held are left to
// expire.
func (l *Leases) Close() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.done.Wait()
}

// watch follows every change of the bucket: the others' leases, with when
// each revision was first seen.
func (l *Leases) watch(w jetstream.KeyWatcher) {
	defer l.done.Done()
	defer func() { _ = w.Stop() }()
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-l.stop:
			return
		case e, ok = <-w.Updates():
			if !ok {
				return
			}
		}
		if e == nil {
			continue // the end of the initial values
		}
		l.saw(e)
	}
}

// saw notes a change of one lease.
func (l *Leases) saw(e jetstream.KeyValueEntry) {
	run := e.Key()
	lost := false
	l.mu.Lock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(l.others, run)
		l.mu.Unlock()
		return
	}
	var v value
	if json.Unmarshal(e.Value(), &v) != nil || v.Owner == l.cfg.Owner {
		l.mu.Unlock()
		return
	}
	if h := l.held[run]; h != nil {
		// Another took it: it is lost, whatever this one believed.
		delete(l.held, run)
		lost = true
	}
	if s := l.others[run]; s == nil || s.rev != e.Revision() {
		l.others[run] = &seen{rev: e.Revision(), since: time.Now(), v: v}
	}
	l.mu.Unlock()
	if lost {
		l.log.Warn("lease of a run taken by another orchestrator", "run_id", run, "by", v.Owner)
		if l.cfg.Lost != nil {
			l.cfg.Lost(run)
		}
	}
}

// tick renews this orchestrator's leases every Renew, and every second
// tells of the others' that expired or were released.
func (l *Leases) tick() {
	defer l.done.Done()
	renew := time.NewTicker(l.cfg.Renew)
	defer renew.Stop()
	scan := time.NewTicker(min(time.Second, l.cfg.Renew))
	defer scan.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-renew.C:
			l.renew()
		case <-scan.C:
			l.scan()
		}
	}
}

// renew renews every lease held. A lease whose revision changed was taken
// by another orchestrator: it is lost.
func (l *Leases) renew() {
	l.mu.Lock()
	runs := make(map[string]uint64, len(l.held))
	for run, h := range l.held {
		runs[run] = h.rev
	}
	l.mu.Unlock()
	for run, rev := range runs {
		v, _ := json.Marshal(value{Run: run, Owner: l.cfg.Owner, Home: l.cfg.Home})
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Renew)
		sent := time.Now()
		next, err := l.kv.Update(ctx, run, v, rev)
		cancel()
		l.mu.Lock()
		h := l.held[run]
		switch {
		case h == nil || h.rev != rev:
			// Released or taken meanwhile.
		case err == nil:
			h.rev, h.until = next, sent.Add(l.cfg.TTL-l.margin())
		case errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound):
			delete(l.held, run)
			l.mu.Unlock()
			l.log.Warn("lease of a run lost: another orchestrator took it", "run_id", run)
			if l.cfg.Lost != nil {
				l.cfg.Lost(run)
			}
			continue
		default:
			// Tried again at the next tick; Check fails once it is
			// over.
			l.log.Warn("lease of a run not renewed", "run_id", run, "err", err)
		}
		l.mu.Unlock()
	}
}

// scan tells of the leases of other orchestrators that expired or were
// released, once per revision.
func (l *Leases) scan() {
	type free struct{ run, from string }
	var out []free
	l.mu.Lock()
	now := time.Now()
	for run, s := range l.others {
		gone := s.v.Released || s.v.Home == l.cfg.Home || now.Sub(s.since) >= l.cfg.TTL
		if gone && now.Sub(s.told) >= l.cfg.TTL {
			// Told again after another TTL, if it is still not taken.
			s.told = now
			out = append(out, free{run, s.v.Owner})
		}
	}
	l.mu.Unlock()
	if l.cfg.Expired == nil {
		return
	}
	for _, f := range out {
		l.cfg.Expired(f.run, f.from)
	}
}
