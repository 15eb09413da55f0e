package runstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/jsretry"
	"github.com/sluicehq/sluice/orchestrator/approval"
)

// catchUpWait bounds how long a read waits for the approvals view to apply
// the writes made before it; past it the read scans the bucket instead.
const catchUpWait = 10 * time.Second

// approvalsView is the approvals bucket as a held call's path reads it,
// kept by one watch of the bucket (every orchestrator's writes, and on
// start every approval stored): per tool, the values of the arguments of
// the calls a person approved (approved, or approved and used), each value
// once — what a new held call is compared with for lookalikes —, the
// approvals still open (pending, or approved and not yet used) with their
// run and status alone — what a cancelled run withdraws and the list of
// held calls reads —, and the runs waiting for an answer to their
// approval, woken when it is written. Of a refused, superseded or
// cancelled approval it keeps nothing: each write is decoded for its tool,
// run and status alone.
//
// A read is answered only once the view has applied every write the
// bucket held when the read began (up to the stream's last sequence, asked
// of the server then): an approval answered through another orchestrator
// an instant before is seen. Approvals are never deleted (History 1: a
// message goes only when a later revision of its key, with a higher
// sequence, replaces it), so the last sequence is always delivered; should
// it not be within catchUpWait, or the watch end, the read scans the
// bucket as it did before the view.
type approvalsView struct {
	stop context.CancelFunc
	done chan struct{} // closed when the watch has ended

	mu sync.Mutex
	// applied is the stream sequence of the last write applied.
	applied uint64
	// progress, when a read waits, is closed as the view applies a write.
	progress chan struct{}
	// ended is why the watch ended; the view answers nothing after.
	ended error
	// approved holds, per tool, the values of the calls a person
	// approved.
	approved map[string]*approval.ApprovedValues
	// open holds, by id, the approvals pending or approved and not yet
	// used: as many as calls are held, gone once answered and done with.
	open map[string]OpenApproval
	// malformed holds the approvals whose last write could not be read,
	// with their tool ("" when even that could not be read).
	malformed map[string]malformed
	// waiting holds the runs waiting for an answer, by approval id: each
	// is sent the approval's status when the view applies a write of it.
	waiting map[string]map[chan string]struct{}

	// hooks, for tests: beforeApply is called before each write is
	// applied; readWaits when a read waits for the view to catch up.
	beforeApply, readWaits func()
}

type malformed struct {
	tool string
	err  error
}

// viewHooks are called by the view a Store starts (approvalsView's
// beforeApply and readWaits); set only by tests, before the view starts.
type viewHooks struct{ beforeApply, readWaits func() }

// view returns the store's approvals view, starting it (again, when the
// last ended) and waiting for its initial load.
func (s *Store) view(ctx context.Context) (*approvalsView, error) {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if v := s.approvalsView; v != nil && v.err() == nil {
		return v, nil
	}
	v, err := startView(ctx, s.approvals, s.hooks)
	if err != nil {
		return nil, fmt.Errorf("watch the approvals: %w", err)
	}
	s.approvalsView = v
	return v, nil
}

// Close stops the store's watch of the approvals; the next read that needs
// it starts it again.
func (s *Store) Close() {
	s.viewMu.Lock()
	v := s.approvalsView
	s.approvalsView = nil
	s.viewMu.Unlock()
	if v != nil {
		v.close()
	}
}

// startView watches every approval of kv and applies them until the watch
// has delivered every one stored (its initial load).
func startView(ctx context.Context, kv jetstream.KeyValue, h viewHooks) (*approvalsView, error) {
	// The watch lives until the view is closed: not bound to ctx, which
	// is the first reader's.
	wctx, stop := context.WithCancel(context.Background())
	var w jetstream.KeyWatcher
	err := jsretry.Do(ctx, func(context.Context) (err error) { w, err = kv.WatchAll(wctx); return err })
	if err != nil {
		stop()
		return nil, err
	}
	v := &approvalsView{stop: stop, done: make(chan struct{}),
		approved: map[string]*approval.ApprovedValues{}, open: map[string]OpenApproval{}, malformed: map[string]malformed{},
		waiting: map[string]map[chan string]struct{}{}, beforeApply: h.beforeApply, readWaits: h.readWaits}
	loaded := make(chan struct{})
	go v.run(w, loaded)
	select {
	case <-loaded:
		return v, nil
	case <-v.done:
		return nil, v.err()
	case <-ctx.Done():
		v.close()
		return nil, ctx.Err()
	}
}

// run applies each write the watch delivers, until it ends; loaded is
// closed once the approvals stored when it began are applied.
func (v *approvalsView) run(w jetstream.KeyWatcher, loaded chan struct{}) {
	defer close(v.done)
	defer func() { _ = w.Stop() }()
	for e := range w.Updates() {
		if e == nil {
			close(loaded)
			continue
		}
		if v.beforeApply != nil {
			v.beforeApply()
		}
		v.apply(e)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.ended = errors.New("the watch of the approvals ended")
	// The runs waiting are told, with no status, to watch again.
	for _, chs := range v.waiting {
		for ch := range chs {
			select {
			case <-ch:
			default:
			}
			ch <- ""
		}
	}
	v.wake()
}

func (v *approvalsView) close() {
	v.stop()
	<-v.done
}

func (v *approvalsView) err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.ended
}

// apply takes one write of an approval into the view: what it keeps of an
// approved call, and the status for a run waiting for it.
func (v *approvalsView) apply(e jetstream.KeyValueEntry) {
	id := e.Key()
	var head struct {
		Tool   string `json:"tool"`
		RunID  string `json:"run_id"`
		Status string `json:"status"`
	}
	var args struct {
		Args map[string]any `json:"args"`
	}
	var err error
	if e.Operation() == jetstream.KeyValuePut {
		err = json.Unmarshal(e.Value(), &head)
	}
	approved := err == nil && (head.Status == approval.Approved || head.Status == approval.Used)
	if approved {
		err = json.Unmarshal(e.Value(), &args)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.applied = max(v.applied, e.Revision())
	delete(v.malformed, id)
	delete(v.open, id)
	if err == nil && (head.Status == approval.Pending || head.Status == approval.Approved) {
		v.open[id] = OpenApproval{ID: id, RunID: head.RunID, Status: head.Status}
	}
	switch {
	case err != nil:
		v.malformed[id] = malformed{head.Tool, err}
	case approved:
		// Values are only ever added (approved, then used: the same
		// values again).
		if v.approved[head.Tool] == nil {
			v.approved[head.Tool] = &approval.ApprovedValues{}
		}
		v.approved[head.Tool].Add(args.Args)
	}
	for ch := range v.waiting[id] {
		// The latest status only: one the run has not read yet is
		// replaced.
		select {
		case <-ch:
		default:
		}
		ch <- head.Status
	}
	v.wake()
}

// wake tells the reads waiting for the view that it moved on; v.mu is held.
func (v *approvalsView) wake() {
	if v.progress != nil {
		close(v.progress)
		v.progress = nil
	}
}

// caughtUp waits until the view has applied every write up to sequence
// last; ok is false when it did not within catchUpWait, or the watch ended.
func (v *approvalsView) caughtUp(ctx context.Context, last uint64) (ok bool, err error) {
	deadline := time.NewTimer(catchUpWait)
	defer deadline.Stop()
	v.mu.Lock()
	defer v.mu.Unlock()
	for v.applied < last && v.ended == nil {
		if v.progress == nil {
			v.progress = make(chan struct{})
		}
		progress := v.progress
		v.mu.Unlock()
		if v.readWaits != nil {
			v.readWaits()
		}
		select {
		case <-progress:
		case <-deadline.C:
			v.mu.Lock()
			return false, nil
		case <-ctx.Done():
			v.mu.Lock()
			return false, ctx.Err()
		}
		v.mu.Lock()
	}
	return v.ended == nil, nil
}

// read calls f with v.mu held once the view has applied every write up
// to sequence last; ok is false when it did not within catchUpWait, or the
// watch ended. A malformed approval of tool (of any tool for "", and one
// whose tool cannot be told for every tool) is an error: what it would
// add cannot be told.
func (v *approvalsView) read(ctx context.Context, last uint64, tool string, f func()) (ok bool, err error) {
	if ok, err := v.caughtUp(ctx, last); !ok || err != nil {
		return false, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for id, m := range v.malformed {
		if tool == "" || m.tool == "" || m.tool == tool {
			return true, fmt.Errorf("approval %s: malformed record: %w", id, m.err)
		}
	}
	f()
	return true, nil
}

// approvedOf returns the values of the calls of tool a person approved
// (nil for none), once the view has applied every write up to sequence
// last (read). They are the view's own, and grow as it applies more.
func (v *approvalsView) approvedOf(ctx context.Context, tool string, last uint64) (out *approval.ApprovedValues, ok bool, err error) {
	ok, err = v.read(ctx, last, tool, func() { out = v.approved[tool] })
	return out, ok, err
}

// openOf returns the open approvals of run, once the view has applied
// every write up to sequence last (read).
func (v *approvalsView) openOf(ctx context.Context, run string, last uint64) (out []OpenApproval, ok bool, err error) {
	ok, err = v.read(ctx, last, "", func() {
		for _, a := range v.open {
			if a.RunID == run {
				out = append(out, a)
			}
		}
	})
	return out, ok, err
}

// pendingIDs returns the ids of the approvals pending, sorted, once the
// view has applied every write up to sequence last (read).
func (v *approvalsView) pendingIDs(ctx context.Context, last uint64) (out []string, ok bool, err error) {
	ok, err = v.read(ctx, last, "", func() {
		for id, a := range v.open {
			if a.Status == approval.Pending {
				out = append(out, id)
			}
		}
		slices.Sort(out)
	})
	return out, ok, err
}

// watch registers a run waiting for an answer to approval id: ch is sent
// the approval's status each time the view applies a write of it; stop
// unregisters it.
func (v *approvalsView) watch(id string) (ch <-chan string, stop func()) {
	c := make(chan string, 1)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.waiting[id] == nil {
		v.waiting[id] = map[chan string]struct{}{}
	}
	v.waiting[id][c] = struct{}{}
	return c, func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		delete(v.waiting[id], c)
		if len(v.waiting[id]) == 0 {
			delete(v.waiting, id)
		}
	}
}

// bucketState is the sequence of the last write of kv, and how many
// values it keeps.
func bucketState(ctx context.Context, kv jetstream.KeyValue) (last, kept uint64, err error) {
	err = jsretry.Do(ctx, func(ctx context.Context) error {
		st, err := kv.Status(ctx)
		if err != nil {
			return err
		}
		js, ok := st.(*jetstream.KeyValueBucketStatus)
		if !ok {
			return fmt.Errorf("the %s bucket's status is a %T", kv.Bucket(), st)
		}
		last, kept = js.StreamInfo().State.LastSeq, js.StreamInfo().State.Msgs
		return nil
	})
	return last, kept, err
}

// WatchApproval registers a run waiting for a person's answer to approval
// id, with whatever orchestrator of the deployment it is given: changed is
// sent the approval's status each time it is written (the latest, should
// the run not have read the one before), through the store's one watch of
// the bucket, and "" should that watch end (watch again); stop unregisters
// it. A write made before WatchApproval returns may or may not be sent:
// read the approval after it.
func (s *Store) WatchApproval(ctx context.Context, id string) (changed <-chan string, stop func(), err error) {
	v, err := s.view(ctx)
	if err != nil {
		return nil, nil, err
	}
	changed, stop = v.watch(id)
	return changed, stop, nil
}
