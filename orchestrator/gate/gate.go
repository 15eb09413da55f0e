// Package gate is the only path from a run to a worker. Every call a flow
// step or an agent makes passes it in one order, which a reviewer can read
// top to bottom in [Gate.Pass]: the call's context label (computed by the
// engine from what its arguments read) is decided by the run's policy set;
// the decision is recorded; a held call waits for a person (the run
// answers, [Run.Hold]); the policy's caps are reserved; every record the
// run wrote is stored; then the call is delivered over the bus, sent again
// on failover or retry with one idempotency key, and what comes back is
// checked for secrets and labeled: the join of the delivered label, the
// tool's declared output label and every host the worker reached through
// the egress broker, with the worker's per-field labels only ever adding
// to that. The outcome is typed ([Outcome]) and the step result filled in.
//
// The engine schedules runs and computes labels of arguments; the gate
// owns nothing of a run but what it is given through [Run].
package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/ifc/policy"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/orchestrator/internal/echo"
	"github.com/sluicehq/sluice/orchestrator/internal/fault"
	"github.com/sluicehq/sluice/orchestrator/internal/telemetry"
	"github.com/sluicehq/sluice/schemas"
)

// Step statuses the gate sets (schemas.Status…).
const (
	StatusCompleted = schemas.StatusCompleted
	StatusDenied    = schemas.StatusDenied
	StatusHeld      = schemas.StatusHeld
	StatusFailed    = schemas.StatusFailed
)

// StepResult is what the gate fills in about a call (schemas.StepResult).
type StepResult = schemas.StepResult

// Config of a gate.
type Config struct {
	Conn     *nats.Conn
	Subjects schemas.Subjects
	// Deployment names the caps bucket (schemas.StoreName); "" for the
	// default deployment.
	Deployment string
	Manifests  map[string]*capabilities.Manifest
	Log        *slog.Logger
	// Replicas of the caps bucket: 1 on one server, 3 on a cluster.
	Replicas int
	// Delivered, when set, is told of every call the gate lets through,
	// as it is delivered; it must not block.
	Delivered func(Delivery)
	// Secrets finds the configured secrets in every form it knows. Every
	// worker's reply is checked with it before it is labeled: a reply that
	// holds one fails its call, and the audit log records a violation that
	// names the secret, never its value. Nil checks nothing.
	Secrets *echo.Matcher
	// Fault, when set, reports that the state directory cannot be
	// written: a change of a per-day budget fails at once with that cause.
	Fault *fault.Store
	// Now is the clock of per-day caps; nil is time.Now.
	Now func() time.Time
	// Models names, by worker, the model the deployment's configuration
	// gives it; a call that spent tokens at a model API is traced with it
	// (gen_ai.request.model). It comes from the configuration, never from
	// a worker's reply, which could carry anything into a trace.
	Models map[string]string
	// Orchestrator, when several share the deployment, is this one's id:
	// every call delivered names it (schemas.HeaderOrchestrator), so that
	// its egress broker answers the call's requests.
	Orchestrator string
}

// Delivery is a call the gate let through: what the noninterference test
// compares between runs, and what a tracer records.
type Delivery struct {
	RunID, Step, Tool string
	Args              map[string]any
	// Label is the call's context label as decided; Delivered the label
	// it went with (lower when a rule or a person endorsed it).
	Label, Delivered ifc.Label
	// ApprovedBy names the person who approved the call, if one did.
	ApprovedBy string
}

// Run is what the gate needs of the run a call belongs to.
type Run interface {
	// ID and Flow name the run in decisions and records.
	ID() string
	Flow() string
	// Policy is the set that decides every call of the run.
	Policy() *policy.Set
	// Usage is what the run has used of its per-run caps.
	Usage() *Usage
	// Publish hands an audit record to the log; Stored waits for it.
	Publish(audit.Record) error
	// Stored returns once every write the run handed on so far (its
	// records, its state) is stored, or the first error.
	Stored(ctx context.Context) error
	// Sending records durably, before a try of the call idem is sent,
	// that it is being sent under token (the try's message id), and
	// returns the token of an earlier try that was recorded so: one that
	// may have taken effect.
	Sending(ctx context.Context, idem, token string) (earlier string, err error)
	// Hold holds the call for a person, and returns who approved it and
	// true once it may go ahead. Otherwise it leaves res with status
	// held (no answer yet), denied (a person refused) or failed.
	Hold(ctx context.Context, s *flow.Step, res *StepResult, args map[string]any, idem string) (who string, ok bool)
}

// Call is one call to gate: the step (or the agent's tool call, as a
// step) and its evaluated arguments, as a map and as the JSON body the
// worker receives, and its idempotency key.
type Call struct {
	Step *flow.Step
	Args map[string]any
	Body []byte
	Idem string
}

// Outcome is what became of a call at the gate.
type Outcome int

const (
	// Failed: the call was not delivered, or delivered with no answer
	// that can be used; StepResult.Error says why.
	Failed Outcome = iota
	// Completed: the worker answered; the output comes with it.
	Completed
	// Denied by a rule, a cap or a person.
	Denied
	// Held for a person who has not answered yet.
	Held
)

func (o Outcome) String() string {
	switch o {
	case Completed:
		return StatusCompleted
	case Denied:
		return StatusDenied
	case Held:
		return StatusHeld
	}
	return StatusFailed
}

// stopped is the outcome of a call that a step of the gate stopped, from
// the status that step gave it.
func stopped(res *StepResult) Outcome {
	switch res.Status {
	case StatusDenied:
		return Denied
	case StatusHeld:
		return Held
	}
	return Failed
}

// Value is the output of a completed call with its labels: the label of
// the whole, and the worker's labels of fields below it (dotted paths),
// each joined with the whole when read (ifc.Fields).
type Value struct {
	Out    any
	Base   ifc.Label
	Fields map[string]ifc.Label
}

// Labels is the label arithmetic of the value (ifc.Fields).
func (v *Value) Labels() ifc.Fields { return ifc.Fields{Base: v.Base, Fields: v.Fields} }

// Gate passes calls to workers. It is safe for concurrent use.
type Gate struct {
	cfg  Config
	log  *slog.Logger
	caps *caps

	mu       sync.Mutex
	inflight map[string]*inflight // msg id -> call in flight
}

// New returns a gate.
func New(cfg Config) *Gate {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	g := &Gate{cfg: cfg, log: log, inflight: map[string]*inflight{}}
	g.caps = &caps{g: g, now: now}
	return g
}

// pass is one call going through the gate.
type pass struct {
	g   *Gate
	run Run
}

// Pass takes a call through the gate — decision, record, hold, caps,
// storage, delivery, labels — and fills in res, whose Label and
// ArgLabels the caller has set to the call's context label and the
// labels of its arguments. It returns the outcome and, for a completed
// call, its output.
//
// The call is a span of the run's trace, and counted in the metrics
// (orchestrator/internal/telemetry).
func (g *Gate) Pass(ctx context.Context, run Run, c Call, res *StepResult) (Outcome, *Value) {
	p := &pass{g: g, run: run}
	start := time.Now()
	// The run and the step are the span's parents: it names only what is
	// its own (the fewer attributes, the less a span costs a call).
	ctx, span := telemetry.Start(ctx, "call "+c.Step.Call)
	o, v := p.gate(ctx, c.Step, res, c.Args, c.Body, c.Idem)
	if span.IsRecording() {
		telemetry.End(span, o.String(), telemetry.AttrTool.String(c.Step.Call), telemetry.AttrWorker.String(c.Step.Worker),
			telemetry.AttrDecision.String(res.Decision), telemetry.AttrRules.StringSlice(res.Rules),
			telemetry.AttrLabel.String(res.Label.String()), telemetry.AttrMsgID.String(res.MsgID), telemetry.AttrAttempts.Int(res.Attempts))
	} else {
		span.End()
	}
	telemetry.Call(c.Step.Call, o.String(), time.Since(start))
	return o, v
}

func (p *pass) gate(ctx context.Context, s *flow.Step, res *StepResult, args map[string]any, body []byte, idem string) (Outcome, *Value) {
	log := callLog{l: p.g.log, run: p.run.ID(), step: s.ID, tool: s.Call}
	// The policy gate: nothing is delivered before this decision is
	// recorded. Its span names the decision and the rules; the label is
	// the call's, on the parent span.
	_, dspan := telemetry.Start(ctx, "policy.decide")
	d, ok := p.decide(s, res, args)
	if dspan.IsRecording() {
		telemetry.Finish(dspan, telemetry.AttrDecision.String(res.Decision), telemetry.AttrRules.StringSlice(res.Rules))
	} else {
		dspan.End()
	}
	if !ok {
		return Failed, nil
	}
	if log.enabled(slog.LevelInfo) {
		log.log(slog.LevelInfo, "decision", "decision", res.Decision, "rule", strings.Join(res.Rules, ","), "label", res.Label.String())
	}
	// The label the call goes ahead with: the context label, lowered for
	// this call by the endorse and declassify rules that matched, or by
	// the person who approves it.
	delivered := d.Label
	approvedBy := ""
	switch d.Action {
	case policy.Deny:
		res.Status = StatusDenied
		return Denied, nil
	case policy.Approve:
		if delivered, approvedBy, ok = p.approved(ctx, s, res, args, idem, d); !ok {
			return stopped(res), nil
		}
	}
	if !delivered.Equal(res.Label) {
		res.DeliveredLabel = &delivered
	}
	// Caps hold for every call delivered, endorsed and approved ones too.
	held, ok := p.reserve(ctx, s, res, args, delivered, log)
	if !ok {
		return stopped(res), nil
	}
	// A call that is not idempotent goes out at most once, across
	// passes and processes.
	if !p.once(ctx, s, res, idem) {
		p.g.caps.release(context.WithoutCancel(ctx), p.run, held)
		return Failed, nil
	}
	// Nothing is delivered before the decision on it, and every record
	// of the run before it, is stored.
	if err := p.run.Stored(ctx); err != nil {
		p.g.caps.release(context.WithoutCancel(ctx), p.run, held)
		res.Status, res.Error = StatusFailed, err.Error()
		return Failed, nil
	}
	if f := p.g.cfg.Delivered; f != nil {
		f(Delivery{RunID: p.run.ID(), Step: s.ID, Tool: s.Call, Args: args, Label: res.Label, Delivered: delivered, ApprovedBy: approvedBy})
	}
	// A lowering is for this call's arguments only: the output keeps the
	// context label as it came, and records who lowered the call.
	output := res.Label.WithSources(delivered.Sources()...)
	v, noEffect := p.call(ctx, s, body, res, delivered, output, idem, log)
	if v == nil {
		if noEffect {
			p.g.caps.release(context.WithoutCancel(ctx), p.run, held)
		}
		return Failed, nil
	}
	return Completed, v
}

// AtMostOnce says whether calls of tool t are sent at most once per
// idempotency key: a privileged tool (its effects matter) that does not
// say it is idempotent (capabilities.Tool.Idempotent) — a third-party
// MCP or WASM tool, which cannot tell a call sent again from a new one.
func AtMostOnce(t *capabilities.Tool) bool { return t.Privileged && !t.Idempotent }

// once records, for a call of a tool that is sent at most once, that it
// is being sent, before it is; ok is false (the step failed, saying why)
// when an earlier try of it was recorded — a try in an earlier pass or
// process, which may have taken effect — or when the record could not
// be made.
func (p *pass) once(ctx context.Context, s *flow.Step, res *StepResult, idem string) bool {
	if !AtMostOnce(s.Spec) {
		return true
	}
	earlier, err := p.run.Sending(ctx, idem, res.MsgID)
	switch {
	case err != nil:
		res.Status, res.Error = StatusFailed, err.Error()
		return false
	case earlier != "":
		// Recorded as the result of the call, which was not sent.
		err = errors.New(notAgain(s.Call, "it was sent before (message "+earlier+") and its answer was not recorded"))
		if rerr := p.recordTry(s, res, res.MsgID, res.Label, nil, err); rerr != nil {
			err = rerr
		}
		res.Status, res.Error = StatusFailed, err.Error()
		return false
	}
	return true
}

// notAgain is the error of a call of a tool that is sent at most once
// whose earlier try may have taken effect.
func notAgain(tool, why string) string {
	return fmt.Sprintf("%s may have taken effect: %s; it is not sent again, because its manifest does not say it is idempotent (idempotent: true). "+
		"Check whether it took effect before running the flow again", tool, why)
}

// decide asks the policy about the call and records the decision; ok is
// false when the record could not be made (the step then failed).
func (p *pass) decide(s *flow.Step, res *StepResult, args map[string]any) (policy.Decision, bool) {
	d := p.run.Policy().Decide(policy.Input{
		Tool: policy.Tool{Name: s.Call, Worker: s.Worker, Privileged: s.Spec.Privileged,
			Approvable: s.Spec.Approvable, Egress: s.Spec.Egress, Clearance: s.Spec.Clearance},
		Label: res.Label, ArgLabels: res.ArgLabels, Args: args,
		Run: policy.Run{ID: p.run.ID(), Flow: p.run.Flow(), Step: s.ID},
	})
	res.Decision = string(d.Action)
	refs, reasons := decisionRules(d)
	for _, rule := range refs {
		res.Rules = append(res.Rules, rule.Name)
	}
	res.Reasons = reasons
	res.MsgID = audit.NewID()
	rec := audit.Record{Kind: audit.KindDecision, RunID: p.run.ID(), Flow: p.run.Flow(), Step: s.ID, Tool: s.Call,
		MsgID: res.MsgID, Label: &res.Label, ArgLabels: res.ArgLabels, Action: res.Decision,
		Rules: ruleRefs(refs), Reasons: reasons}
	if len(d.Errors) > 0 {
		rec.Error = strings.Join(d.Errors, "; ")
	}
	// Stored before the call is delivered: r.acks.wait in gate.
	if err := p.run.Publish(rec); err != nil {
		res.Status, res.Error = StatusFailed, err.Error()
		return d, false
	}
	return d, true
}

// approved holds the call for a person and, once one approves it, records
// the call allowed with the label the approval lowered it to, and who
// approved it; ok is false while it is held, or when it was denied or
// failed.
func (p *pass) approved(ctx context.Context, s *flow.Step, res *StepResult, args map[string]any, idem string, d policy.Decision) (delivered ifc.Label, who string, ok bool) {
	res.Status = StatusHeld
	res.Args = args
	_, span := telemetry.Start(ctx, "approval.wait")
	who, ok = p.run.Hold(ctx, s, res, args, idem)
	span.SetAttributes(telemetry.AttrApproval.String(res.ApprovalID))
	waited := res.Status // held (no answer yet), denied or failed
	if ok {
		span.SetAttributes(telemetry.AttrApprover.String(who))
		waited = "approved"
	}
	telemetry.End(span, waited)
	if !ok {
		return delivered, "", false
	}
	res.Args, res.Lookalikes, res.Why = nil, nil, nil
	delivered, declassified, err := d.Approve(who)
	if err != nil {
		res.Status, res.Error = StatusFailed, fmt.Sprintf("approval: %v", err)
		return delivered, "", false
	}
	reason := "approved by " + who + "; endorses this call"
	if len(declassified) > 0 {
		// A person who lets a call through that its tool is not cleared
		// for declassifies what it carries: say so.
		reason += " and declassifies " + strings.Join(declassified, ",") + " for it"
	}
	rec := audit.Record{Kind: audit.KindDecision, RunID: p.run.ID(), Flow: p.run.Flow(), Step: s.ID, Tool: s.Call,
		MsgID: res.MsgID, Label: &delivered, Action: string(policy.Allow),
		Rules: []string{"approval:" + res.ApprovalID}, Reasons: []string{reason}}
	if err := p.run.Publish(rec); err != nil {
		res.Status, res.Error = StatusFailed, err.Error()
		return delivered, "", false
	}
	return delivered, who, true
}

// reserve takes the call's share of the policy's caps; a call over a cap
// is denied, and the denial recorded. ok is false when the call may not
// go ahead.
func (p *pass) reserve(ctx context.Context, s *flow.Step, res *StepResult, args map[string]any, delivered ifc.Label, log callLog) (*reservation, bool) {
	held, err := p.g.caps.reserve(ctx, p.run, s.Call, args)
	if err == nil {
		return held, true
	}
	var over *errOverCap
	if !errors.As(err, &over) {
		res.Status, res.Error = StatusFailed, err.Error()
		return nil, false
	}
	res.Status, res.Decision = StatusDenied, string(policy.Deny)
	res.Rules, res.Reasons = []string{over.cap.Ref.Name}, []string{over.reason}
	rec := audit.Record{Kind: audit.KindDecision, RunID: p.run.ID(), Flow: p.run.Flow(), Step: s.ID, Tool: s.Call,
		MsgID: res.MsgID, Label: &delivered, Action: string(policy.Deny),
		Rules: []string{over.cap.Ref.String()}, Reasons: []string{over.reason}}
	if err := p.run.Publish(rec); err != nil {
		res.Status, res.Error = StatusFailed, err.Error()
	}
	log.log(slog.LevelInfo, "decision", "decision", "deny", "rule", over.cap.Ref.Name)
	return nil, false
}

// callLog is the log of one call: the gate's logger, with the call's run,
// step and tool added only when a line is written. A logger's With copies
// its arguments whether or not anything is logged, and a call is logged at
// no level most of the time.
type callLog struct {
	l               *slog.Logger
	run, step, tool string
}

// enabled reports whether a line at level would be written.
func (c callLog) enabled(level slog.Level) bool { return c.l.Enabled(context.Background(), level) }

// log writes a line at level, after the call's run_id, step and tool, as
// the logger's Info and Warn write it.
func (c callLog) log(level slog.Level, msg string, args ...any) {
	if !c.enabled(level) {
		return
	}
	c.l.With("run_id", c.run, "step", c.step, "tool", c.tool).Log(context.Background(), level, msg, args...)
}

// decisionRules lists the rules behind a decision for the step result and
// the audit record: its rules, and for a held call, the endorse and
// declassify rules that lowered its labels.
func decisionRules(d policy.Decision) ([]policy.RuleRef, []string) {
	refs, reasons := slices.Clone(d.Rules), slices.Clone(d.Reasons)
	if d.Action != policy.Approve {
		return refs, reasons
	}
	for _, l := range d.Lowered {
		refs = append(refs, l)
		reasons = append(reasons, "lowered this call's labels; the call is still held")
	}
	return refs, reasons
}

func ruleRefs(rs []policy.RuleRef) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}
