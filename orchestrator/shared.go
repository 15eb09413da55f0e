package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/jsretry"
	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/engine"
	"github.com/sluicehq/sluice/orchestrator/lease"
	"github.com/sluicehq/sluice/orchestrator/runstore"
	"github.com/sluicehq/sluice/schemas"
)

// What several orchestrators of one deployment do for each other
// (docs/operations.md, "Several orchestrators"), beside the leases:
//
//   - A run is cancelled by the orchestrator that holds its lease. One
//     that does not asks that one, on a subject of its own
//     (schemas.Subjects.Orchestrator), which only orchestrators may use:
//     a worker may publish on nothing but its egress subject and the
//     replies to its calls, and a client only on the API's subjects.
//   - A client whose orchestrator died while it waited for a run asks the
//     others to follow the run (api.Client.Run). A run that ends, or is
//     held for a person, in a pass another orchestrator resumed leaves its
//     result in the bucket SLUICE_RESULTS for ResultsTTL, where whichever
//     orchestrator follows it reads it: the end, or, for a client that
//     gives up waiting for a person (api.HeldWait), the run held.

// ResultsTTL is how long the result of a run that ended away from its
// client is kept for that client.
const ResultsTTL = time.Hour

// resultsGrace is how long a follower waits for the result of a run the
// store no longer keeps: the pass that ended it stores the result right
// after it forgets the run.
const resultsGrace = 10 * time.Second

// openResults opens the bucket of the results of runs that ended away
// from their client.
func (o *Orchestrator) openResults(ctx context.Context, d *config.Config) error {
	js, err := jetstream.New(o.nc)
	if err != nil {
		return err
	}
	name := schemas.StoreName(d.Deployment, "RESULTS")
	err = jsretry.Do(ctx, func(ctx context.Context) error {
		o.results, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name,
			Description: "results of runs that ended away from the client that waited for them", History: 1,
			TTL: ResultsTTL, Storage: jetstream.FileStorage, Replicas: max(d.Replicas(), 1)})
		return err
	})
	if err != nil {
		return fmt.Errorf("open the %s bucket: %w", name, err)
	}
	return nil
}

// keepResult stores the result of a run that ended, or was held for a
// person, away from its client.
func (o *Orchestrator) keepResult(res *engine.Result, runErr error) {
	if o.results == nil || res == nil || res.RunID == "" {
		return
	}
	rep := api.RunReply{}
	rep.Result, _ = json.Marshal(res)
	if runErr != nil {
		rep.Error = runErr.Error()
	}
	b, _ := json.Marshal(rep)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := o.results.Put(ctx, res.RunID, b); err != nil {
		o.log.Warn("result of a run not kept for its client", "run_id", res.RunID, "err", err)
	}
}

// cancelRequest is what one orchestrator asks of the one that holds a
// run's lease; cancelReply its answer. Held: it does not hold the lease
// (any more).
type cancelRequest struct {
	ID  string `json:"id"`
	Who string `json:"who"`
}

type cancelReply struct {
	Run   *engine.RunInfo `json:"run,omitempty"`
	Error string          `json:"error,omitempty"`
	Held  bool            `json:"held,omitempty"`
}

// cancelAt asks orchestrator owner to cancel run id (engine.Config.CancelAt).
func (o *Orchestrator) cancelAt(ctx context.Context, owner, id, who string) (*engine.RunInfo, error) {
	body, _ := json.Marshal(cancelRequest{ID: id, Who: who})
	o.log.Info("cancel of a run asked of the orchestrator holding its lease", "run_id", id, "holder", owner)
	m, err := o.nc.RequestWithContext(ctx, o.subjects.Orchestrator(owner, "cancel"), body)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("run %s: orchestrator %s: %w", id, owner, engine.ErrNoAnswer)
	}
	if err != nil {
		return nil, fmt.Errorf("cancel run %s through orchestrator %s, which drives it: %w", id, owner, err)
	}
	var rep cancelReply
	if err := json.Unmarshal(m.Data, &rep); err != nil || (rep.Run == nil && rep.Error == "") {
		return nil, fmt.Errorf("cancel run %s: malformed reply from orchestrator %s", id, owner)
	}
	switch {
	case rep.Held:
		return nil, fmt.Errorf("%s: %w", rep.Error, lease.ErrHeld)
	case rep.Error != "":
		return nil, errors.New(rep.Error)
	}
	return rep.Run, nil
}

// serveShared answers, with leases, the other orchestrators' requests to
// cancel a run this one drives, and clients' requests to follow a run.
func (o *Orchestrator) serveShared(ctx context.Context) error {
	if o.leases == nil {
		return nil
	}
	sub, err := o.nc.Subscribe(o.subjects.Orchestrator(o.id, "cancel"), func(m *nats.Msg) {
		go func() {
			var req cancelRequest
			var rep cancelReply
			if err := json.Unmarshal(m.Data, &req); err != nil || req.ID == "" || req.Who == "" {
				rep.Error = "malformed cancel request"
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				rep.Run, err = o.engine.CancelHere(ctx, req.ID, req.Who)
				cancel()
				if err != nil {
					rep.Error, rep.Held = err.Error(), errors.Is(err, lease.ErrHeld)
				}
			}
			b, _ := json.Marshal(rep)
			_ = m.Respond(b)
		}()
	})
	if err != nil {
		return err
	}
	o.subs = append(o.subs, sub)
	follow, err := api.ServeFollow(ctx, o.nc, o.subjects, o.follow)
	if err != nil {
		return err
	}
	o.subs = append(o.subs, follow)
	return nil
}

// follow waits for the end of the run req names and returns its result
// (api.Follower): the one kept in the results bucket, or, when the store
// no longer keeps the run and no result comes, where to read how it
// ended. With req.Held, a run held for a person as long as it says is
// replied with as it stands, held, as its own orchestrator would have.
func (o *Orchestrator) follow(ctx context.Context, req api.FollowRequest) (api.RunReply, bool) {
	w, err := o.results.Watch(ctx, req.Run)
	if err != nil {
		if ctx.Err() != nil {
			return api.RunReply{}, false // stopping
		}
		return api.RunReply{Error: fmt.Sprintf("follow run %s: %v", req.Run, err)}, true
	}
	defer func() { _ = w.Stop() }()
	f := &follower{o: o, id: req.Run}
	f.hw.start(req.Held)
	defer f.hw.stop()
	check := time.NewTicker(5 * time.Second)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return api.RunReply{}, false
		case e, ok := <-w.Updates():
			if !ok {
				return api.RunReply{}, false
			}
			if rep, done := f.update(ctx, e); done {
				return rep, true
			}
		case <-f.hw.timer():
			if rep, ok := f.hw.over(); ok && f.heldNow(ctx) {
				return rep, true
			}
		case <-check.C:
			f.kept(ctx)
		case <-f.grace:
			return api.RunReply{Error: fmt.Sprintf("run %s ended, and its result was not kept: sluice trace %s shows how it ended", f.id, f.id)}, true
		}
	}
}

// follower is what Orchestrator.follow keeps of the run it follows.
type follower struct {
	o  *Orchestrator
	id string
	// grace fires resultsGrace after the store was seen not to keep the
	// run.
	grace <-chan time.Time
	hw    heldWait
}

// update handles a write of the results bucket, e (nil at the end of what
// it held): the reply, when it is the run's end, or the run held past the
// client's wait.
func (f *follower) update(ctx context.Context, e jetstream.KeyValueEntry) (api.RunReply, bool) {
	if e == nil {
		f.kept(ctx)
		return api.RunReply{}, false
	}
	var rep api.RunReply
	if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &rep) != nil {
		return api.RunReply{}, false
	}
	if !isHeld(rep) {
		return rep, true
	}
	return rep, f.hw.held(rep) && f.heldNow(ctx)
}

// phase is how the store keeps the run, "" once it finished.
func (f *follower) phase(ctx context.Context) (runstore.Phase, error) {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return f.o.engine.RunPhase(sctx, f.id)
}

// kept starts the grace when the store no longer keeps the run: its
// result should come at once.
func (f *follower) kept(ctx context.Context) {
	if f.grace != nil {
		return
	}
	if p, err := f.phase(ctx); err == nil && p == "" {
		f.grace = time.After(resultsGrace)
	}
}

// heldNow says whether the store keeps the run held for a person: a held
// result kept before it was answered and went on is not replied with.
func (f *follower) heldNow(ctx context.Context) bool {
	p, err := f.phase(ctx)
	return err == nil && p == runstore.Held
}

// isHeld says whether rep is of a run held for a person, not ended.
func isHeld(rep api.RunReply) bool {
	var res struct {
		Status string `json:"status"`
	}
	return rep.Error == "" && json.Unmarshal(rep.Result, &res) == nil && res.Status == engine.StatusHeld
}

// heldWait is how long a follower waits for a person to answer a call
// of the run held, for a client that waits so long (api.HeldWait).
type heldWait struct {
	w    *api.HeldWait
	t    *time.Timer
	done bool          // the client's wait is over
	last *api.RunReply // the run held, as last kept
}

// start starts the client's wait when it began before it asked.
func (h *heldWait) start(w *api.HeldWait) {
	h.w = w
	if w != nil && w.Began {
		h.t = time.NewTimer(time.Duration(w.MS) * time.Millisecond)
	}
}

func (h *heldWait) stop() {
	if h.t != nil {
		h.t.Stop()
	}
}

// timer fires when the client's wait is over (never without one).
func (h *heldWait) timer() <-chan time.Time {
	if h.t == nil || h.done {
		return nil
	}
	return h.t.C
}

// held takes the run as kept held, and says whether to reply with it: the
// client's wait is over. Its wait starts now if it had not.
func (h *heldWait) held(rep api.RunReply) bool {
	if h.w == nil {
		return false // the client waits until the run ends
	}
	h.last = &rep
	if h.t == nil {
		h.t = time.NewTimer(time.Duration(h.w.MS) * time.Millisecond)
	}
	return h.done
}

// over marks the client's wait over: the run as last kept held is the
// reply, if it was held.
func (h *heldWait) over() (api.RunReply, bool) {
	h.done = true
	if h.last == nil {
		return api.RunReply{}, false
	}
	return *h.last, true
}
