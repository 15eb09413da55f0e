package audit

import (
	"encoding/json"
	"io"
	"sort"
	"time"

	"github.com/sluicehq/sluice/ifc"
)

// Run is what the audit log says of one run.
type Run struct {
	ID       string     `json:"run_id"`
	Flow     string     `json:"flow"`
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished,omitempty"`
	// Status is the run's final status, or "running" when the log has no
	// end for it (still running, or stopped by a crash).
	Status string `json:"status"`
	// Planned: the log lists the flow's steps and what each depends on
	// (StepTrace.Deps); logs from before it did have only the steps that
	// were decided.
	// Resume, for a run that has not finished, says when it goes on
	// (on_start, on_request, on_answer); StoppedAt are the steps an
	// interrupted run stopped at. Both come from the run store, not the
	// log (sluice runs fills them in).
	Resume    string      `json:"resume,omitempty"`
	StoppedAt []string    `json:"stopped_at,omitempty"`
	Planned   bool        `json:"planned,omitempty"`
	Steps     []StepTrace `json:"steps,omitempty"`
}

// StepTrace is one step of a run: the decision on its call and its result.
type StepTrace struct {
	ID   string `json:"id"`
	Tool string `json:"tool"`
	// Deps are the steps whose output this one reads.
	Deps      []string             `json:"deps,omitempty"`
	Label     *ifc.Label           `json:"label,omitempty"`
	ArgLabels map[string]ifc.Label `json:"arg_labels,omitempty"`
	Decision  string               `json:"decision,omitempty"`
	Rules     []string             `json:"rules,omitempty"`
	Reasons   []string             `json:"reasons,omitempty"`
	// Answer is a person's answer to a held call, when there was one.
	Answer string `json:"answer,omitempty"`
	// Status is completed or failed once the call returned, held or denied
	// when it was not delivered.
	Status      string     `json:"status"`
	OutputLabel *ifc.Label `json:"output_label,omitempty"`
	Error       string     `json:"error,omitempty"`
	// Calls is how many results its calls returned: tries, or the
	// elements of a for_each step. (In JSON "results", not "calls": in
	// sluice run --json, calls are an agent step's tool calls.)
	Calls int `json:"results"`
}

// ReadRuns reads an export (JSON lines) and returns its runs, newest first.
func ReadRuns(r io.Reader) ([]*Run, error) {
	dec := json.NewDecoder(r)
	byID := map[string]*Run{}
	var order []*Run
	for {
		var rec Record
		if err := dec.Decode(&rec); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		if rec.RunID == "" {
			continue
		}
		run := byID[rec.RunID]
		if run == nil {
			run = &Run{ID: rec.RunID, Flow: rec.Flow, Started: rec.Time, Status: "running"}
			byID[rec.RunID] = run
			order = append(order, run)
		}
		run.apply(&rec)
	}
	sort.SliceStable(order, func(i, j int) bool { return order[i].Started.After(order[j].Started) })
	return order, nil
}

// apply adds to the run what one of its records says.
func (run *Run) apply(rec *Record) {
	switch rec.Kind {
	case KindRunStarted:
		run.plan(rec)
	case KindRunFinished:
		t := rec.Time
		run.Finished, run.Status = &t, rec.Status
	case KindRunResumed:
		run.Finished, run.Status = nil, "running"
	case KindRunInterrupted:
		run.Status = "interrupted"
		// The steps it stopped at: a call held, in flight, or not
		// yet decided. A later pass records them again.
		for _, ps := range rec.Steps {
			step(run, ps.ID, ps.Tool).Status = "interrupted"
		}
	case KindAnswer:
		step(run, rec.Step, rec.Tool).answer(rec)
	case KindDecision:
		step(run, rec.Step, rec.Tool).decide(rec)
	case KindResult:
		s := step(run, rec.Step, rec.Tool)
		s.Calls++
		s.Status, s.OutputLabel, s.Error = rec.Status, rec.Label, rec.Error
	}
}

// plan lists the flow's steps, with what each depends on, from the record
// of the run's start, when the record has them and no step is known yet.
func (run *Run) plan(rec *Record) {
	if len(rec.Steps) == 0 || len(run.Steps) > 0 {
		return
	}
	run.Planned = true
	for _, ps := range rec.Steps {
		step(run, ps.ID, ps.Tool).Deps = ps.Deps
	}
}

// decide records the decision on the step's call; a decision made by a
// person's answer to a held call (rule "approval:…") is recorded as the
// answer.
func (s *StepTrace) decide(rec *Record) {
	if len(rec.Rules) == 1 && len(rec.Rules[0]) > 9 && rec.Rules[0][:9] == "approval:" {
		s.answer(rec)
		return
	}
	s.Label, s.ArgLabels, s.Decision, s.Rules, s.Reasons = rec.Label, rec.ArgLabels, rec.Action, rec.Rules, rec.Reasons
	switch rec.Action {
	case "deny":
		s.Status = "denied"
	case "approve":
		s.Status = "held"
	default:
		s.Status = "decided"
	}
}

// answer records a person's answer to the step's held call; a call denied
// is not delivered.
func (s *StepTrace) answer(rec *Record) {
	s.Answer = rec.Action + ": " + firstOr(rec.Reasons, "")
	if rec.Action == "deny" {
		s.Status = "denied"
	}
}

func step(run *Run, id, tool string) *StepTrace {
	for i := range run.Steps {
		if run.Steps[i].ID == id {
			return &run.Steps[i]
		}
	}
	run.Steps = append(run.Steps, StepTrace{ID: id, Tool: tool})
	return &run.Steps[len(run.Steps)-1]
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}
