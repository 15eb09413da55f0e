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
	// Started is the time of the step's first record; Duration runs from
	// it to the last (in milliseconds; 0 when the step has one record).
	Started    *time.Time `json:"started,omitempty"`
	DurationMS int64      `json:"duration_ms,omitempty"`
	// Inner are the calls the step made, in order: one for a plain step,
	// one per element of a for_each, and for an agent each turn of its
	// model and each tool call it made, held and denied ones included.
	Inner []CallTrace `json:"inner_calls,omitempty"`
	// Program is the latest program a plan step's planner wrote.
	Program string `json:"program,omitempty"`
}

// CallTrace is one call a step made: the decision on it, a person's
// answer, and its result, with the time from the decision to the last of
// them.
type CallTrace struct {
	Tool       string     `json:"tool"`
	MsgID      string     `json:"msg_id,omitempty"`
	Label      *ifc.Label `json:"label,omitempty"`
	Decision   string     `json:"decision,omitempty"`
	Rules      []string   `json:"rules,omitempty"`
	Answer     string     `json:"answer,omitempty"`
	Status     string     `json:"status"`
	Error      string     `json:"error,omitempty"`
	Started    time.Time  `json:"started"`
	DurationMS int64      `json:"duration_ms"`
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
	if rec.Kind != KindRunStarted && rec.Starts() {
		// A decision that starts its run lists the flow's steps.
		run.plan(rec)
	}
	if status, end := rec.Ends(); end && rec.Kind != KindRunFinished {
		// A result that ends its run.
		defer func() {
			t := rec.Time
			run.Finished, run.Status = &t, status
		}()
	}
	if !run.applyRun(rec) {
		run.applyStep(rec)
	}
}

// applyRun adds what a record about the run as a whole says, and reports
// whether it was one.
func (run *Run) applyRun(rec *Record) bool {
	switch rec.Kind {
	case KindRunStarted:
		run.plan(rec)
	case KindRunFinished:
		t := rec.Time
		run.Finished, run.Status = &t, rec.Status
		// The steps that did not run: skipped ones.
		for _, ps := range rec.Steps {
			if ps.Status != "" {
				step(run, ps.ID, ps.Tool).Status = ps.Status
			}
		}
	case KindRunResumed:
		run.Finished, run.Status = nil, "running"
	case KindRunInterrupted:
		run.Status = "interrupted"
		// The steps it stopped at: a call held, in flight, or not
		// yet decided. A later pass records them again.
		for _, ps := range rec.Steps {
			step(run, ps.ID, ps.Tool).Status = "interrupted"
		}
	default:
		return false
	}
	return true
}

// applyStep adds what a record about one step says.
func (run *Run) applyStep(rec *Record) {
	switch rec.Kind {
	case KindAnswer:
		s := step(run, rec.Step, rec.Tool)
		s.at(rec.Time)
		s.answer(rec)
	case KindDecision:
		s := step(run, rec.Step, rec.Tool)
		s.at(rec.Time)
		s.decide(rec)
	case KindProgram:
		step(run, rec.Step, rec.Tool).Program = rec.Program
	case KindResult:
		s := step(run, rec.Step, rec.Tool)
		s.at(rec.Time)
		s.Calls++
		s.Status, s.OutputLabel, s.Error = rec.Status, rec.Label, rec.Error
		if c := s.call(rec.MsgID, rec.Tool); c != nil {
			c.Status, c.Error = rec.Status, rec.Error
			c.end(rec.Time)
		}
	}
}

// at notes a record of the step at t: the step's start and duration.
func (s *StepTrace) at(t time.Time) {
	if s.Started == nil {
		s.Started = &t
		return
	}
	s.DurationMS = max(s.DurationMS, t.Sub(*s.Started).Milliseconds())
}

// call finds the step's call msgID, else its last call of tool (a try
// after the first has an id of its own).
func (s *StepTrace) call(msgID, tool string) *CallTrace {
	for i := len(s.Inner) - 1; i >= 0; i-- {
		if msgID != "" && s.Inner[i].MsgID == msgID {
			return &s.Inner[i]
		}
	}
	for i := len(s.Inner) - 1; i >= 0; i-- {
		if s.Inner[i].Tool == tool {
			return &s.Inner[i]
		}
	}
	return nil
}

func (c *CallTrace) end(t time.Time) {
	c.DurationMS = max(c.DurationMS, t.Sub(c.Started).Milliseconds())
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
	status := "decided"
	switch rec.Action {
	case "deny":
		status = "denied"
	case "approve":
		status = "held"
	}
	s.Status = status
	// A second decision on the same call (a cap that denies it after the
	// rules allowed it) changes that call; any other is a call of its own.
	if c := s.call(rec.MsgID, ""); c != nil && rec.MsgID != "" {
		c.Decision, c.Rules, c.Status = rec.Action, rec.Rules, status
		c.end(rec.Time)
		return
	}
	s.Inner = append(s.Inner, CallTrace{Tool: rec.Tool, MsgID: rec.MsgID, Label: rec.Label, Decision: rec.Action,
		Rules: rec.Rules, Status: status, Started: rec.Time})
}

// answer records a person's answer to the step's held call; a call denied
// is not delivered.
func (s *StepTrace) answer(rec *Record) {
	s.Answer = rec.Action + ": " + firstOr(rec.Reasons, "")
	if rec.Action == "deny" {
		s.Status = "denied"
	}
	// The held call it answers: the step's last call of that tool.
	if c := s.call("", rec.Tool); c != nil {
		c.Answer = s.Answer
		if rec.Action == "deny" {
			c.Status = "denied"
		}
		c.end(rec.Time)
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
