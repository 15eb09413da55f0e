package orchestrator

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/orchestrator/audit"
)

// FollowSteps tells fn of each step's call of the run runID names as it
// finishes, from the run's audit records as the audit stream receives
// them: its result, or a policy decision that denied it. runID is asked
// for each record: "" until the run is recorded (engine.Options.OnStarted
// tells it before any of the run's decisions). fn is called from one
// goroutine at a time. Stop ends it, once the record that ends the run's
// pass (finished, held or interrupted) has come, or after wait: the run's
// last lines are not lost, and a run's end never waits longer on its
// progress. A record it misses (a slow reader) only loses a line.
func (o *Orchestrator) FollowSteps(runID func() string, fn func(api.StepEvent)) (stop func(wait time.Duration), err error) {
	var mu sync.Mutex
	decided := map[string]time.Time{} // by msg_id, else step
	ended := make(chan struct{})
	var endOnce sync.Once
	sub, err := o.nc.Subscribe(o.subjects.Prefix+".audit", func(m *nats.Msg) {
		var rec audit.Record
		if json.Unmarshal(m.Data, &rec) != nil {
			return
		}
		id := runID()
		if id == "" || rec.RunID != id {
			return
		}
		if rec.Kind == audit.KindRunFinished || rec.Kind == audit.KindRunInterrupted {
			endOnce.Do(func() { close(ended) })
			return
		}
		mu.Lock()
		ev, ok := stepEvent(&rec, decided)
		if ok {
			fn(ev)
		}
		mu.Unlock()
		if _, end := rec.Ends(); end {
			// The run's last result, which ends it too.
			endOnce.Do(func() { close(ended) })
		}
	})
	if err != nil {
		return nil, err
	}
	// A bounded buffer: a reader that falls behind drops lines, never
	// slows the bus.
	sub.SetPendingLimits(4096, 16<<20)
	return func(wait time.Duration) {
		select {
		case <-ended:
		case <-time.After(wait):
		}
		// The handler runs on one goroutine, in order: the end record
		// came after every step record, so fn is done with them.
		sub.Unsubscribe()
	}, nil
}

// stepEvent turns one audit record of a run into a finished step, when it
// says one finished; decided keeps when each call was decided.
func stepEvent(rec *audit.Record, decided map[string]time.Time) (api.StepEvent, bool) {
	key := rec.MsgID
	if key == "" {
		key = rec.Step
	}
	switch rec.Kind {
	case audit.KindDecision:
		if rec.Action == "deny" {
			return api.StepEvent{Step: rec.Step, Tool: rec.Tool, Status: "denied"}, true
		}
		if rec.Action != "approve" {
			// Allowed, by policy or by a person's answer: the call
			// is made from here.
			decided[key] = rec.Time
		}
	case audit.KindAnswer:
		if rec.Action == "deny" {
			// A person denied the held call: the step ends here.
			return api.StepEvent{Step: rec.Step, Tool: rec.Tool, Status: "denied"}, true
		}
	case audit.KindResult:
		ev := api.StepEvent{Step: rec.Step, Tool: rec.Tool, Status: rec.Status, Error: rec.Error}
		if t, ok := decided[key]; ok {
			ev.DurationMS = rec.Time.Sub(t).Milliseconds()
			delete(decided, key)
		}
		return ev, true
	}
	return api.StepEvent{}, false
}
