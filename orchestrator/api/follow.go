package api

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// followAgain is how long a client waits before it asks again to follow
// a run, when the orchestrator it asked is stopping.
const followAgain = 500 * time.Millisecond

// runWait is what Client.Run keeps while it waits for a run's reply.
type runWait struct {
	c             *Client
	inbox, events string
	heard         chan struct{} // an event came: the orchestrator is there
	replies       chan *nats.Msg
	closed        chan struct{} // the connection closed
	quiet         *time.Timer   // fires after silence without an event
	silence       time.Duration
	mu            sync.Mutex
	runID         string // from the Started event
	beating       bool   // the orchestrator says it is there (RunEvent.Alive)
	following     string // the run asked to be followed
	told          string // what OnFollow was told last
	elsewhere     *RunReply
	again         <-chan time.Time
	// waits and waitTimeout are the request's: whether and how long to
	// wait for a person to answer a held call; heldAt is when the
	// orchestrator first told of one.
	waits       bool
	waitTimeout time.Duration
	heldAt      time.Time
}

// event handles one event of the run: its id, that the orchestrator is
// there, or what onEvent is told.
func (w *runWait) event(m *nats.Msg, onEvent func(json.RawMessage)) {
	var ev RunEvent
	if json.Unmarshal(m.Data, &ev) != nil {
		return
	}
	w.mu.Lock()
	if ev.Started != "" {
		w.runID = ev.Started
	}
	w.beating = w.beating || ev.Alive
	if ev.Held != nil && w.heldAt.IsZero() {
		w.heldAt = time.Now()
	}
	w.mu.Unlock()
	select {
	case w.heard <- struct{}{}:
	default:
	}
	if !ev.Alive && onEvent != nil {
		onEvent(m.Data)
	}
}

// wait waits for the reply that ends the run, following the run when its
// orchestrator falls silent or stops.
func (w *runWait) wait(ctx context.Context) (RunReply, error) {
	for {
		var rep *RunReply
		var err error
		select {
		case <-ctx.Done():
			return RunReply{}, fmt.Errorf("ask the orchestrator: %w", ctx.Err())
		case <-w.closed:
			return RunReply{}, w.closedErr()
		case <-w.heard:
			w.quiet.Reset(w.silence)
		case m := <-w.replies:
			rep, err = w.reply(m)
		case <-w.again:
			w.again = nil
			err = w.follow(w.told)
		case <-w.quiet.C:
			err = w.silent()
		}
		if err != nil {
			return RunReply{}, err
		}
		if rep != nil {
			return *rep, nil
		}
	}
}

// closedErr says the connection to the bus closed, and where to read how
// the run goes.
func (w *runWait) closedErr() error {
	w.mu.Lock()
	id := w.runID
	w.mu.Unlock()
	err := fmt.Errorf("ask the orchestrator: the connection to the bus closed (%v)", w.c.nc.LastError())
	if id != "" {
		err = fmt.Errorf("%w: sluice runs shows whether run %s goes on, sluice trace %s how it went", err, id, id)
	}
	return err
}

// reply handles a reply: the answer (returned), or a word that the run
// goes on elsewhere (nil: followed there).
func (w *runWait) reply(m *nats.Msg) (*RunReply, error) {
	if m.Header.Get("Status") == "503" {
		switch {
		case w.following == "":
			return nil, fmt.Errorf("ask the orchestrator: %w", nats.ErrNoResponders)
		case w.elsewhere != nil:
			// The orchestrator that ran it stopped, and none is left
			// to go on with it: what it said.
			return w.elsewhere, nil
		}
		return nil, fmt.Errorf("run %s: %w, and no orchestrator of the deployment answers to follow it: "+
			"sluice runs shows whether it goes on, sluice trace %s how it went", w.following, ErrOrchestratorGone, w.following)
	}
	var out RunReply
	if err := json.Unmarshal(m.Data, &out); err != nil {
		return nil, fmt.Errorf("malformed reply from the orchestrator")
	}
	// The run's id from its result: the event that told it may not have
	// been handled yet.
	var res struct {
		ID string `json:"run_id"`
	}
	_ = json.Unmarshal(out.Result, &res)
	switch {
	case !out.Elsewhere:
		return &out, nil
	case res.ID != "":
		// The orchestrator that ran it stopped: followed where it goes
		// on.
		w.elsewhere, w.following = &out, res.ID
		return nil, w.follow("the orchestrator running it stopped, and another goes on with it")
	case w.following != "":
		// One that followed it is stopping: another is asked shortly.
		w.again = time.After(followAgain)
		return nil, nil
	}
	return &out, nil
}

// silent handles the orchestrator's silence: the run is followed, when
// the orchestrator said it would tell it is there and the run's id is
// known.
func (w *runWait) silent() error {
	w.quiet.Reset(w.silence)
	w.mu.Lock()
	id, beats := w.runID, w.beating
	w.mu.Unlock()
	if !beats {
		// An orchestrator that does not say it is there (an older one):
		// waited for as before.
		return nil
	}
	if id == "" {
		return fmt.Errorf("%w before it said whether it started the run: sluice runs shows it if it did", ErrOrchestratorGone)
	}
	w.following = id
	return w.follow("the orchestrator running it stopped answering")
}

// follow asks the deployment's orchestrators to follow the run, and says
// why to OnFollow when it did not say so last.
func (w *runWait) follow(why string) error {
	if w.c.OnFollow != nil && why != w.told {
		w.c.OnFollow(w.following, why)
	}
	w.told = why
	w.quiet.Reset(w.silence)
	b, _ := json.Marshal(FollowRequest{Run: w.following, Events: w.events, Held: w.heldWait()})
	if err := w.c.nc.PublishRequest(w.c.s.API("runs.follow"), w.inbox, b); err != nil {
		return fmt.Errorf("ask the orchestrators to follow run %s: %w", w.following, err)
	}
	return nil
}

// heldWait is how long the orchestrator following the run is to wait for
// a person to answer a held call, as this client would have: not at all
// without waiting (--wait=false), what is left of the wait timeout, or
// until the run ends (nil) without one.
func (w *runWait) heldWait() *HeldWait {
	if !w.waits {
		return &HeldWait{Began: true}
	}
	if w.waitTimeout <= 0 {
		return nil
	}
	w.mu.Lock()
	heldAt := w.heldAt
	w.mu.Unlock()
	if heldAt.IsZero() {
		return &HeldWait{MS: w.waitTimeout.Milliseconds()}
	}
	return &HeldWait{MS: max(w.waitTimeout-time.Since(heldAt), 0).Milliseconds(), Began: true}
}
