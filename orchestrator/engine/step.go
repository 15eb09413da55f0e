package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/ifc/expr"
	"github.com/sluicehq/sluice/ifc/policy"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/schemas"
)

// scope is what one call of a step sees: the expression variables, how to
// label what they read, and the call's idempotency key.
type scope struct {
	vars   map[string]any
	lookup func(expr.Path) ifc.Label
	idem   string
	index  *int
}

func (r *run) step(ctx context.Context, s *flow.Step) *StepResult {
	res := &StepResult{ID: s.ID, Tool: s.Call}
	for _, d := range s.Deps {
		r.mu.Lock()
		dep := r.results[d]
		r.mu.Unlock()
		if dep == nil || dep.Status != StatusCompleted {
			res.Status = StatusSkipped
			res.Error = fmt.Sprintf("step %s did not complete", d)
			return res
		}
	}
	vars := r.vars()
	// A branch on a value taints everything the branch does.
	ifLabel := ifc.TrustedFrom()
	if s.If != nil {
		ifLabel = s.If.Label(r.lookup)
		v, err := s.If.Eval(vars)
		if err != nil {
			res.Status, res.Error = StatusFailed, fmt.Sprintf("if: %v", err)
			return res
		}
		b, ok := v.(bool)
		if !ok {
			res.Status, res.Error = StatusFailed, fmt.Sprintf("if: want true or false, got %s", kind(v))
			return res
		}
		if !b {
			res.Status, res.Label, res.Error = StatusSkipped, ifLabel, "its if condition is false"
			return res
		}
	}
	if s.ForEach != nil {
		return r.forEach(ctx, s, vars, ifLabel)
	}
	sc := scope{vars: vars, lookup: r.lookup, idem: r.id + "/" + s.ID}
	var out *StepResult
	var v *value
	if s.Agent != nil {
		var ok bool
		if out, v, ok = r.restore(ctx, s, sc.idem); !ok {
			if out, v = r.agent(ctx, s, sc, ifLabel); v != nil {
				r.save(ctx, s, sc.idem, out, v, nil)
			}
		}
	} else {
		out, v = r.invoke(ctx, s, sc, ifLabel)
	}
	if v != nil {
		r.mu.Lock()
		r.values[s.ID] = v
		r.mu.Unlock()
	}
	return out
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case int64, float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "a map"
	}
	return fmt.Sprintf("%T", v)
}

// forEach makes the step's call once per element of its list, at most
// s.Concurrency at once. Each element keeps its own label where the list
// is a value read as a whole (`${steps.inbox.output.messages}`): element i
// carries the label of that element, not of the whole list.
func (r *run) forEach(ctx context.Context, s *flow.Step, vars map[string]any, ifLabel ifc.Label) *StepResult {
	res := &StepResult{ID: s.ID, Tool: s.Call, Status: StatusCompleted}
	listLabel := s.ForEach.Label(r.lookup).Join(ifLabel)
	res.Label = listLabel
	v, err := s.ForEach.Eval(vars)
	if err != nil {
		res.Status, res.Error = StatusFailed, fmt.Sprintf("for_each: %v", err)
		return res
	}
	list, ok := v.([]any)
	if !ok {
		res.Status, res.Error = StatusFailed, fmt.Sprintf("for_each: want a list, got %s", kind(v))
		return res
	}
	var path expr.Path
	if t, ok := s.ForEach.Template(); ok {
		path, _ = t.Path()
	}
	itemLabel := func(i int, rest []string) ifc.Label {
		if path == nil {
			return listLabel
		}
		return r.lookup(slices.Concat(path, expr.Path{strconv.Itoa(i)}, rest)).Join(ifLabel)
	}
	// index says where an element is: it carries the label of the list's
	// shape (which elements exist), not of the elements' contents.
	indexLabel := listLabel
	if path != nil {
		indexLabel = r.shape(path).Join(ifLabel)
	}
	results := make([]StepResult, len(list))
	values := make([]*value, len(list))
	sem := make(chan struct{}, max(s.Concurrency, 1))
	var wg sync.WaitGroup
	for i, item := range list {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			iv := maps.Clone(vars)
			iv["item"], iv["index"] = item, int64(i)
			sc := scope{vars: iv, idem: r.id + "/" + s.ID + "/" + strconv.Itoa(i), index: &i,
				lookup: func(p expr.Path) ifc.Label {
					switch p[0] {
					case "item":
						return itemLabel(i, p[1:])
					case "index":
						return indexLabel
					}
					return r.lookup(p)
				}}
			// Call i happens because element i exists: whoever wrote
			// the element decided the call, whatever its arguments read
			// (a stranger's mail adds a call to a loop over the inbox).
			out, val := r.invoke(ctx, s, sc, ifLabel.Join(itemLabel(i, nil)))
			results[i], values[i] = *out, val
		}()
	}
	wg.Wait()
	res.Items = results
	for _, it := range results {
		res.Status = worse(res.Status, it.Status)
		res.Label = res.Label.Join(it.Label)
	}
	if res.Status != StatusCompleted {
		return res
	}
	// The list's shape was decided by the for_each value; each element by
	// its own call.
	labels := ifc.Fields{Base: listLabel}
	items := make([]any, len(values))
	for i, v := range values {
		items[i] = v.out
		labels.Nest(strconv.Itoa(i), v.labels())
	}
	out := &value{out: items, base: labels.Base, fields: labels.Fields}
	if out.fields == nil {
		out.fields = map[string]ifc.Label{}
	}
	all := out.all()
	res.OutputLabel = &all
	r.mu.Lock()
	r.values[s.ID] = out
	r.mu.Unlock()
	return res
}

// invoke labels and evaluates one call's arguments, asks the policy gate,
// waits for a person if the call is held, and makes the call.
func (r *run) invoke(ctx context.Context, s *flow.Step, sc scope, ifLabel ifc.Label) (*StepResult, *value) {
	if res, v, ok := r.restore(ctx, s, sc.idem); ok {
		return res, v
	}
	res := &StepResult{ID: s.ID, Tool: s.Call, ArgLabels: map[string]ifc.Label{}, Index: sc.index}
	args := map[string]any{}
	labels := []ifc.Label{ifLabel}
	for _, name := range s.ArgNames {
		v := s.With[name]
		l := v.Label(sc.lookup)
		res.ArgLabels[name] = l
		labels = append(labels, l)
		x, err := v.Eval(sc.vars)
		if err != nil {
			res.Status, res.Error = StatusFailed, fmt.Sprintf("argument %s: %v", name, err)
			return res, nil
		}
		args[name] = x
	}
	res.Label = ifc.Join(labels...)
	body, err := json.Marshal(args)
	if err != nil {
		res.Status, res.Error = StatusFailed, fmt.Sprintf("arguments: %v", err)
		return res, nil
	}
	if err := s.Spec.Input.ValidateValue(args); err != nil {
		res.Status, res.Error = StatusFailed, fmt.Sprintf("arguments of %s: %v", s.Call, err)
		return res, nil
	}
	v := r.gate(ctx, s, res, args, body, sc.idem)
	if v != nil {
		r.save(ctx, s, sc.idem, res, v, args)
	}
	return res, v
}

// gate asks the policy gate about a call whose arguments are labeled in
// res, records the decision, holds the call for a person when the policy
// says so, enforces the caps and makes the call. It fills in res and
// returns the output of a completed call.
func (r *run) gate(ctx context.Context, s *flow.Step, res *StepResult, args map[string]any, body []byte, idem string) *value {
	log := r.e.log.With("run_id", r.id, "step", s.ID, "tool", s.Call)
	// The policy gate: nothing is delivered before this decision is
	// recorded.
	d, ok := r.decide(s, res, args)
	if !ok {
		return nil
	}
	log.Info("decision", "decision", res.Decision, "rule", strings.Join(res.Rules, ","), "label", res.Label.String())
	// The label the call goes ahead with: the context label, lowered for
	// this call by the endorse and declassify rules that matched, or by
	// the person who approves it.
	delivered := d.Label
	approvedBy := ""
	switch d.Action {
	case policy.Deny:
		res.Status = StatusDenied
		return nil
	case policy.Approve:
		if delivered, approvedBy, ok = r.approved(ctx, s, res, args, idem, d); !ok {
			return nil
		}
	}
	if !delivered.Equal(res.Label) {
		res.DeliveredLabel = &delivered
	}
	// Caps hold for every call delivered, endorsed and approved ones too.
	held, ok := r.reserve(ctx, s, res, args, delivered, log)
	if !ok {
		return nil
	}
	// Nothing is delivered before the decision on it, and every record
	// of the run before it, is stored.
	if err := r.acks.wait(ctx); err != nil {
		r.e.caps.release(context.WithoutCancel(ctx), r, held)
		res.Status, res.Error = StatusFailed, err.Error()
		return nil
	}
	if f := r.e.cfg.Delivered; f != nil {
		f(Delivery{RunID: r.id, Step: s.ID, Tool: s.Call, Args: args, Label: res.Label, Delivered: delivered, ApprovedBy: approvedBy})
	}
	// A lowering is for this call's arguments only: the output keeps the
	// context label as it came, and records who lowered the call.
	output := res.Label.WithSources(delivered.Sources()...)
	v, noEffect := r.call(ctx, s, body, res, delivered, output, idem, log)
	if v == nil && noEffect {
		r.e.caps.release(context.WithoutCancel(ctx), r, held)
	}
	return v
}

// decide asks the policy about the call and records the decision; ok is
// false when the record could not be made (the step then failed).
func (r *run) decide(s *flow.Step, res *StepResult, args map[string]any) (policy.Decision, bool) {
	d := r.policy.Decide(policy.Input{
		Tool: policy.Tool{Name: s.Call, Worker: s.Worker, Privileged: s.Spec.Privileged,
			Approvable: s.Spec.Approvable, Egress: s.Spec.Egress, Clearance: s.Spec.Clearance},
		Label: res.Label, ArgLabels: res.ArgLabels, Args: args,
		Run: policy.Run{ID: r.id, Flow: r.plan.Name, Step: s.ID},
	})
	res.Decision = string(d.Action)
	refs, reasons := decisionRules(d)
	for _, rule := range refs {
		res.Rules = append(res.Rules, rule.Name)
	}
	res.Reasons = reasons
	res.MsgID = audit.NewID()
	rec := audit.Record{Kind: audit.KindDecision, RunID: r.id, Flow: r.plan.Name, Step: s.ID, Tool: s.Call,
		MsgID: res.MsgID, Label: &res.Label, ArgLabels: res.ArgLabels, Action: res.Decision,
		Rules: ruleRefs(refs), Reasons: reasons}
	if len(d.Errors) > 0 {
		rec.Error = strings.Join(d.Errors, "; ")
	}
	// Stored before the call is delivered: r.acks.wait in gate.
	if err := r.publish(rec); err != nil {
		res.Status, res.Error = StatusFailed, err.Error()
		return d, false
	}
	return d, true
}

// approved holds the call for a person and, once one approves it, records
// the call allowed with the label the approval lowered it to, and who
// approved it; ok is false while it is held, or when it was denied or
// failed.
func (r *run) approved(ctx context.Context, s *flow.Step, res *StepResult, args map[string]any, idem string, d policy.Decision) (delivered ifc.Label, who string, ok bool) {
	res.Status = StatusHeld
	res.Args = args
	who, ok = r.hold(ctx, s, res, args, idem)
	if !ok {
		return delivered, "", false
	}
	res.Args, res.Lookalikes = nil, nil
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
	rec := audit.Record{Kind: audit.KindDecision, RunID: r.id, Flow: r.plan.Name, Step: s.ID, Tool: s.Call,
		MsgID: res.MsgID, Label: &delivered, Action: string(policy.Allow),
		Rules: []string{"approval:" + res.ApprovalID}, Reasons: []string{reason}}
	if err := r.publish(rec); err != nil {
		res.Status, res.Error = StatusFailed, err.Error()
		return delivered, "", false
	}
	return delivered, who, true
}

// reserve takes the call's share of the policy's caps; a call over a cap
// is denied, and the denial recorded. ok is false when the call may not
// go ahead.
func (r *run) reserve(ctx context.Context, s *flow.Step, res *StepResult, args map[string]any, delivered ifc.Label, log *slog.Logger) (*reservation, bool) {
	held, err := r.e.caps.reserve(ctx, r, s.Call, args)
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
	rec := audit.Record{Kind: audit.KindDecision, RunID: r.id, Flow: r.plan.Name, Step: s.ID, Tool: s.Call,
		MsgID: res.MsgID, Label: &delivered, Action: string(policy.Deny),
		Rules: []string{over.cap.Ref.String()}, Reasons: []string{over.reason}}
	if err := r.publish(rec); err != nil {
		res.Status, res.Error = StatusFailed, err.Error()
	}
	log.Info("decision", "decision", "deny", "rule", over.cap.Ref.Name)
	return nil, false
}

// SecretSecrecy is the secrecy tag of what a call returns when its
// arguments carry a {{secret:NAME}} placeholder and the broker filled a
// secret into its request.
const SecretSecrecy = "secret"

var secretPlaceholder = regexp.MustCompile(`\{\{secret:[A-Za-z0-9_.-]+\}\}`)

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

// call delivers the call to the worker with label, trying again up to the
// step's retries when a try fails in a way that another may not (every try
// carries the same idempotency key, so a side effect happens once), and
// labels the output: the join of output (the context label as it came,
// with the sources of any lowering), the output label of the tool's
// manifest, and every host it reached.
// noEffect reports, for a call that failed, that it is known not to have
// happened: every try was refused by the worker or reached no worker.
func (r *run) call(ctx context.Context, s *flow.Step, body []byte, res *StepResult, label, output ifc.Label, idem string, log *slog.Logger) (v *value, noEffect bool) {
	m := r.e.cfg.Manifests[s.Worker]
	timeout := callTimeout(s, m)
	backoff := 100 * time.Millisecond
	noEffect = true
	failovers := 0
	for try := 0; ; try++ {
		msgID := res.MsgID
		if try > 0 {
			msgID = audit.NewID()
		}
		res.Attempts = try + 1
		t := r.withoutSecrets(s, msgID, r.try(ctx, s, m, body, label, msgID, idem, timeout))
		out, labels, err, retry := t.out, t.labels, t.err, t.retry
		noEffect = noEffect && t.noEffect
		base := outputLabel(s, body, output, t)
		labels = r.workerSources(s, msgID, labels)
		r.forgedLabels(s, msgID, base, labels)
		if aerr := r.recordTry(s, res, msgID, base, err); aerr != nil && err == nil {
			// A try that cannot be recorded does not count.
			err, retry = aerr, false
		}
		if err == nil {
			return completed(res, out, base, labels), false
		}
		if t.failover && failovers < maxFailovers && ctx.Err() == nil {
			failovers++
			log.Warn("worker exited during the call; sending it again", "attempt", try+1)
			continue
		}
		if !retry || try-failovers >= s.Retries || ctx.Err() != nil {
			res.Status, res.Error = StatusFailed, err.Error()
			log.Warn("step failed", "err", res.Error, "attempts", res.Attempts)
			return nil, noEffect
		}
		log.Warn("try failed; trying again", "err", err.Error(), "attempt", try+1)
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, 2*time.Second)
		case <-ctx.Done():
		}
	}
}

// callTimeout bounds each try of the call: the step's timeout, else the
// tool's limit and two seconds for the bus.
func callTimeout(s *flow.Step, m *capabilities.Manifest) time.Duration {
	if s.Timeout != 0 {
		return s.Timeout
	}
	return m.Limits.Timeout + 2*time.Second
}

// withoutSecrets discards a reply that holds a secret (an echo the broker
// could not see, decoded by the worker): it is never labeled or shown,
// the try fails, and the attempt is recorded as a violation.
func (r *run) withoutSecrets(s *flow.Step, msgID string, t tryResult) tryResult {
	names := r.e.secretsIn(t)
	if len(names) == 0 {
		return t
	}
	r.secretViolation(s, msgID, names)
	return tryResult{err: fmt.Errorf("%s: the reply of worker %s held secret %s; it was discarded", s.Call, s.Worker, strings.Join(names, ", "))}
}

// recordTry records what a try returned, labeled base: an error message
// is output too (it may carry what the worker read), so it is labeled as
// an output would be. It returns the audit log's failure.
func (r *run) recordTry(s *flow.Step, res *StepResult, msgID string, base ifc.Label, err error) error {
	status, msg := StatusCompleted, ""
	if err != nil {
		status, msg = StatusFailed, err.Error()
		res.ErrorLabel = &base
	}
	rec := audit.Record{Kind: audit.KindResult, RunID: r.id, Flow: r.plan.Name, Step: s.ID, Tool: s.Call,
		MsgID: msgID, Label: &base, Status: status, Error: msg}
	return r.publish(rec)
}

// completed is the value of a completed call: its output, the label of the
// whole and the worker's per-field labels.
func completed(res *StepResult, out any, base ifc.Label, labels map[string]ifc.Label) *value {
	res.Status = StatusCompleted
	v := &value{out: out, base: base, fields: maps.Clone(labels)}
	if v.fields == nil {
		v.fields = map[string]ifc.Label{}
	}
	all := v.all()
	res.OutputLabel = &all
	return v
}

// outputLabel is the label of what a try of the call returned, before
// the worker's per-field labels: the call's output label joined with the
// tool's declared one, untrusted and from each host the worker reached
// through the egress broker (a model API's host is only named), and
// secret when the broker filled a secret into the request.
func outputLabel(s *flow.Step, body []byte, output ifc.Label, t tryResult) ifc.Label {
	base := ifc.Join(output, s.Spec.OutputLabel)
	for _, h := range t.hosts {
		if s.Spec.TrustedNetwork {
			// A model API computes on what it was sent: its answer keeps
			// the call's label, and names the host.
			base = base.WithSources(ifc.APISource(h))
			continue
		}
		// Whatever came over the network was written by whoever controls
		// that host.
		base = base.Join(ifc.UntrustedFrom(ifc.WebSource(h)))
	}
	if t.filled && secretPlaceholder.Match(body) {
		// The call's arguments asked for a secret and the broker filled
		// it in: what came back was fetched with it (an account's page,
		// an API's answer to the key's owner).
		base = base.WithSecrecy(SecretSecrecy)
	}
	return base
}

// workerSources returns the per-field labels of a worker's reply with
// every source that only the orchestrator gives (user, flow, approved:…,
// endorsed:…, declassified:…, tool:…, api:…, worker:…) put under
// the worker's name: "user" from the calendar worker is
// "worker:calendar:user", so that nothing a worker says can look as if
// the user, the flow or a person's approval decided it. Each such claim
// is recorded as a violation (op: label).
func (r *run) workerSources(s *flow.Step, msgID string, labels map[string]ifc.Label) map[string]ifc.Label {
	var out map[string]ifc.Label
	for _, f := range slices.Sorted(maps.Keys(labels)) {
		l := labels[f]
		srcs := l.Sources()
		changed := false
		for i, src := range srcs {
			if !ifc.ReservedSource(src) {
				continue
			}
			srcs[i], changed = ifc.WorkerSource(s.Worker, src), true
			field := f
			if field == "" {
				field = "the whole output"
			}
			rec := audit.Record{Kind: audit.KindViolation, RunID: r.id, Flow: r.plan.Name, Step: s.ID, Tool: s.Call,
				MsgID: msgID, User: "worker:" + s.Worker, Op: "label",
				Subject: fmt.Sprintf("%s: %s claimed a source only the orchestrator gives; labeled %s", s.Call, field, srcs[i])}
			if err := r.publish(rec); err != nil {
				r.e.log.Error("audit append failed", "err", err)
			}
			r.e.log.Warn("a worker claimed a source it cannot give", "worker", s.Worker, "tool", s.Call, "field", field)
		}
		if !changed {
			continue
		}
		if out == nil {
			out = maps.Clone(labels)
		}
		out[f] = ifc.New(l.Integrity(), l.Secrecy(), srcs)
	}
	if out == nil {
		return labels
	}
	return out
}

// forgedLabels records, as a violation, each label a worker's reply gives
// a field that claims the field trusted when what the call read or reached
// is not. Nothing is lowered by it — a field's label is always joined with
// the output's — but a worker that tries is worth a line in the log.
func (r *run) forgedLabels(s *flow.Step, msgID string, base ifc.Label, labels map[string]ifc.Label) {
	if base.Integrity() == ifc.Trusted {
		return
	}
	for _, f := range slices.Sorted(maps.Keys(labels)) {
		if labels[f].Integrity() != ifc.Trusted {
			continue
		}
		field := f
		if field == "" {
			field = "the whole output"
		}
		rec := audit.Record{Kind: audit.KindViolation, RunID: r.id, Flow: r.plan.Name, Step: s.ID, Tool: s.Call,
			MsgID: msgID, User: "worker:" + s.Worker, Op: "label",
			Subject: fmt.Sprintf("%s: %s claimed trusted; labeled %s", s.Call, field, base.Integrity())}
		if err := r.publish(rec); err != nil {
			r.e.log.Error("audit append failed", "err", err)
		}
		r.e.log.Warn("a worker claimed a label it cannot give", "worker", s.Worker, "tool", s.Call, "field", field)
	}
}

// secretViolation records that a worker's reply held secrets, by name.
func (r *run) secretViolation(s *flow.Step, msgID string, names []string) {
	rec := audit.Record{Kind: audit.KindViolation, RunID: r.id, Flow: r.plan.Name, Step: s.ID, Tool: s.Call,
		MsgID: msgID, User: "worker:" + s.Worker, Op: "secret",
		Subject: fmt.Sprintf("%s: the reply held secret %s", s.Call, strings.Join(names, ", "))}
	if err := r.publish(rec); err != nil {
		r.e.log.Error("audit append failed", "err", err)
	}
	r.e.log.Warn("a worker's reply held a secret; the call failed", "worker", s.Worker, "tool", s.Call, "secrets", names)
}

// tryResult is the outcome of one try. noEffect says the call is known
// not to have happened: no worker received it, or the worker answered
// with an error.
type tryResult struct {
	out      any
	labels   map[string]ifc.Label
	hosts    []string
	filled   bool // the broker filled a secret into a request of the call
	err      error
	retry    bool
	noEffect bool
	// failover: the worker exited during the call; it goes again whatever
	// the step's retries, up to maxFailovers times.
	failover bool
}

// try sends one call and decodes the reply. retry says whether another try
// may succeed.
func (r *run) try(ctx context.Context, s *flow.Step, m *capabilities.Manifest, body []byte, label ifc.Label,
	msgID, idem string, timeout time.Duration) (res tryResult) {
	e := r.e
	ctx, cancelCause := context.WithCancelCause(ctx)
	defer cancelCause(nil)
	f := &inflight{worker: s.Worker, cancel: cancelCause}
	e.mu.Lock()
	e.inflight[msgID] = f
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.inflight, msgID)
		e.mu.Unlock()
		f.mu.Lock()
		res.hosts = slices.Clone(f.hosts)
		res.filled = f.filled
		f.mu.Unlock()
	}()
	msg := nats.NewMsg(e.cfg.Subjects.Tool(s.Worker, strings.TrimPrefix(s.Call, s.Worker+".")))
	msg.Data = body
	msg.Header.Set(schemas.HeaderRun, r.id)
	msg.Header.Set(schemas.HeaderStep, s.ID)
	msg.Header.Set(schemas.HeaderMsg, msgID)
	msg.Header.Set(schemas.HeaderIdempotencyKey, idem)
	if lb, err := json.Marshal(label); err == nil {
		msg.Header.Set(schemas.HeaderLabel, string(lb))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var reply *nats.Msg
	var err error
	backoff := 20 * time.Millisecond
	for {
		reply, err = e.cfg.Conn.RequestMsgWithContext(ctx, msg)
		if !errors.Is(err, nats.ErrNoResponders) {
			break
		}
		// The worker is starting or restarting: try again until the deadline.
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, 500*time.Millisecond)
			continue
		case <-ctx.Done():
		}
		return tryResult{err: fmt.Errorf("%s: worker %s is not running", s.Call, s.Worker), retry: true, noEffect: true}
	}
	if err != nil {
		if errors.Is(context.Cause(ctx), errWorkerExited) {
			return tryResult{err: fmt.Errorf("%s: worker %s exited during the call", s.Call, s.Worker), retry: true, failover: true}
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return tryResult{err: fmt.Errorf("%s timed out after %s", s.Call, timeout), retry: true}
		}
		return tryResult{err: fmt.Errorf("%s: %w", s.Call, err), retry: true}
	}
	return decodeReply(reply, s)
}
