package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/runstore"
	"github.com/sluicehq/sluice/worker"
)

// A one-step run writes two audit records: its start rides on the
// decision on its call, its end on the call's result. Nothing is lost for
// it: when the call is delivered, the run is in the store, to be resumed
// after a crash, and the log holds the decision that starts it; the
// trace reads the run, planned and completed, from the two records.
func TestARunsStartAndEndRideOnItsCall(t *testing.T) {
	var h *harness
	type seen struct {
		run      *runstore.RunRecord
		decision *audit.Record
	}
	at := make(chan seen, 1)
	h = newHarness(t, "", map[string]worker.Handler{
		"echo": func(ctx context.Context, c *worker.Call) (any, error) {
			var s seen
			if st, err := h.engine.store(ctx); err == nil {
				s.run, _ = st.GetRun(ctx, c.Run)
			}
			for _, rec := range records(t, h, c.Run) {
				if rec.Kind == audit.KindDecision {
					s.decision = &rec
				}
			}
			at <- s
			return json.RawMessage(c.Args), nil
		},
	})
	r := h.run("name: one\ninputs: {v: {type: string}}\nsteps:\n  - {id: a, call: t.echo, with: {v: \"${inputs.v}\"}}\n", map[string]any{"v": "x"}, Options{})
	if r.Status != StatusCompleted {
		t.Fatalf("run %s: %+v", r.Status, r.Steps)
	}
	s := <-at
	if s.run == nil || s.run.Status != runstore.Running || string(s.run.Inputs) != `{"v":"x"}` {
		t.Errorf("the run's record when its call was delivered: %+v; want it running, with its inputs", s.run)
	}
	if s.decision == nil || !s.decision.Starts() || len(s.decision.Steps) != 1 || s.decision.Steps[0].ID != "a" {
		t.Errorf("the decision stored when the call was delivered: %+v; want it to start the run and list its step", s.decision)
	}

	recs := records(t, h, r.RunID)
	var kinds []string
	for _, rec := range recs {
		kinds = append(kinds, rec.Kind)
	}
	if !slices.Equal(kinds, []string{audit.KindDecision, audit.KindResult}) {
		t.Fatalf("records of the run: %v; want a decision and a result", kinds)
	}
	if !recs[0].StartsRun || recs[0].Flow != "one" || recs[0].EndsRun != "" {
		t.Errorf("decision %+v: want it to start the run", recs[0])
	}
	if !ends(recs[1], StatusCompleted) || recs[1].Status != StatusCompleted || recs[1].StartsRun {
		t.Errorf("result %+v: want it to end the run, completed", recs[1])
	}

	st, err := h.engine.store(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetRun(context.Background(), r.RunID); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("the finished run is still in the store (%v)", err)
	}

	var export []byte
	for _, rec := range recs {
		b, _ := json.Marshal(rec)
		export = append(append(export, b...), '\n')
	}
	runs, err := audit.ReadRuns(bytes.NewReader(export))
	if err != nil || len(runs) != 1 {
		t.Fatalf("trace: %v, %v", runs, err)
	}
	tr := runs[0]
	if tr.Status != StatusCompleted || tr.Finished == nil || !tr.Planned || len(tr.Steps) != 1 ||
		tr.Steps[0].Status != StatusCompleted || tr.Steps[0].Decision != "allow" || tr.Steps[0].Calls != 1 {
		t.Errorf("trace of the run: %+v", tr)
	}
}

// A run whose last step fails, or that has more than one, keeps a record
// for what does not ride on a call: a failed run ends with run_finished,
// and every record waits for the run's start.
func TestAFailedRunEndsOnARecordOfItsOwn(t *testing.T) {
	h := newHarness(t, "", map[string]worker.Handler{
		"fail": func(context.Context, *worker.Call) (any, error) { return nil, errors.New("boom") },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := h.engine.Run(ctx, h.plan(`name: two
steps:
  - {id: a, call: t.echo, with: {v: 1}}
  - {id: b, call: t.fail, with: {v: "${steps.a.output.v}"}}
`), nil, Options{})
	if err != nil || r.Status != StatusFailed {
		t.Fatalf("run: %+v, %v; want failed", r, err)
	}
	var kinds []string
	for _, rec := range records(t, h, r.RunID) {
		k := rec.Kind + ":" + rec.Step
		if rec.Starts() {
			k += "+start"
		}
		if s, end := rec.Ends(); end {
			k += "+end:" + s
		}
		kinds = append(kinds, k)
	}
	want := []string{"decision:a+start", "result:a", "decision:b", "result:b", "run_finished:+end:failed"}
	if !slices.Equal(kinds, want) {
		t.Errorf("records of the run: %v; want %v", kinds, want)
	}
}
