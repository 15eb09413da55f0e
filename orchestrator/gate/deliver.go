package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/internal/jsonvalue"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/orchestrator/internal/telemetry"
	"github.com/sluicehq/sluice/schemas"
)

// SecretSecrecy is the secrecy tag of what a call returns when its
// arguments carry a {{secret:NAME}} placeholder and the broker filled a
// secret into its request.
const SecretSecrecy = "secret"

var secretPlaceholder = regexp.MustCompile(`\{\{secret:[A-Za-z0-9_.-]+\}\}`)

// call delivers the call to the worker with label, trying again up to the
// step's retries when a try fails in a way that another may not (every try
// carries the same idempotency key, so a side effect happens once), and
// labels the output: the join of output (the context label as it came,
// with the sources of any lowering), the output label of the tool's
// manifest, and every host it reached.
// noEffect reports, for a call that failed, that it is known not to have
// happened: every try was refused by the worker or reached no worker.
func (p *pass) call(ctx context.Context, s *flow.Step, body []byte, res *StepResult, label, output ifc.Label, idem string, log callLog) (v *Value, noEffect bool) {
	m := p.g.cfg.Manifests[s.Worker]
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
		t := p.withoutSecrets(s, msgID, p.try(ctx, s, m, body, label, msgID, idem, timeout))
		out, labels, err, retry := t.out, t.labels, t.err, t.retry
		noEffect = noEffect && t.noEffect
		p.spent(ctx, s, res, t.usage)
		base := outputLabel(s, body, output, t)
		labels = p.workerSources(s, msgID, labels)
		p.forgedLabels(s, msgID, base, labels)
		if aerr := p.recordTry(s, res, msgID, base, t.usage, err); aerr != nil && err == nil {
			// A try that cannot be recorded does not count.
			err, retry = aerr, false
		}
		if err == nil {
			return completed(res, out, base, labels), false
		}
		switch afterFailure(ctx, s, t.failover, retry, try, failovers, noEffect) {
		case sendAgain:
			failovers++
			log.log(slog.LevelWarn, "worker exited during the call; sending it again", "attempt", try+1)
			continue
		case mayHaveTakenEffect:
			res.Status, res.Error = StatusFailed, notAgain(s.Call, err.Error())
			log.log(slog.LevelWarn, "step failed", "err", res.Error, "attempts", res.Attempts)
			return nil, false
		case fail:
			res.Status, res.Error = StatusFailed, err.Error()
			log.log(slog.LevelWarn, "step failed", "err", res.Error, "attempts", res.Attempts)
			return nil, noEffect
		}
		log.log(slog.LevelWarn, "try failed; trying again", "err", err.Error(), "attempt", try+1)
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, 2*time.Second)
		case <-ctx.Done():
		}
	}
}

// What follows a try that failed.
const (
	fail               = iota // the step fails with the try's error
	sendAgain                 // at once: the worker exited during the call
	retryAfterBackoff         // within the step's retries
	mayHaveTakenEffect        // the step fails: see notAgain
)

// afterFailure decides what follows a try that failed: a call whose worker
// exited during it is sent again at once, up to maxFailovers times; one
// whose failure another try may fix (retry), again after a backoff, up to
// the step's retries. A call sent at most once (AtMostOnce) whose tries
// may have reached its tool (noEffect is false) is not sent again.
func afterFailure(ctx context.Context, s *flow.Step, failover, retry bool, try, failovers int, noEffect bool) int {
	next := fail
	switch {
	case ctx.Err() != nil:
		return fail
	case failover && failovers < maxFailovers:
		next = sendAgain
	case retry && try-failovers < s.Retries:
		next = retryAfterBackoff
	default:
		return fail
	}
	if !noEffect && AtMostOnce(s.Spec) {
		return mayHaveTakenEffect
	}
	return next
}

// spent adds what a try spent at a model API to the call's result and to
// the token budgets of the caps on its tool.
func (p *pass) spent(ctx context.Context, s *flow.Step, res *StepResult, u *schemas.Usage) {
	if u == nil {
		return
	}
	if res.Usage == nil {
		res.Usage = &schemas.Usage{}
	}
	res.Usage.InputTokens += u.InputTokens
	res.Usage.OutputTokens += u.OutputTokens
	p.g.caps.spend(context.WithoutCancel(ctx), p.run, s.Call, u)
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
func (p *pass) withoutSecrets(s *flow.Step, msgID string, t tryResult) tryResult {
	names := p.g.secretsIn(t)
	if len(names) == 0 {
		return t
	}
	p.secretViolation(s, msgID, names)
	return tryResult{err: fmt.Errorf("%s: the reply of worker %s held secret %s; it was discarded", s.Call, s.Worker, strings.Join(names, ", ")),
		usage: t.usage}
}

// recordTry records what a try returned, labeled base: an error message
// is output too (it may carry what the worker read), so it is labeled as
// an output would be. It returns the audit log's failure.
func (p *pass) recordTry(s *flow.Step, res *StepResult, msgID string, base ifc.Label, usage *schemas.Usage, err error) error {
	status, msg := StatusCompleted, ""
	if err != nil {
		status, msg = StatusFailed, err.Error()
		res.ErrorLabel = &base
	}
	rec := audit.Record{Kind: audit.KindResult, RunID: p.run.ID(), Flow: p.run.Flow(), Step: s.ID, Tool: s.Call,
		MsgID: msgID, Label: &base, Status: status, Error: msg, Usage: usage}
	return p.run.Publish(rec)
}

// completed is the value of a completed call: its output, the label of the
// whole and the worker's per-field labels.
func completed(res *StepResult, out any, base ifc.Label, labels map[string]ifc.Label) *Value {
	res.Status = StatusCompleted
	v := &Value{Out: out, Base: base, Fields: maps.Clone(labels)}
	if v.Fields == nil {
		v.Fields = map[string]ifc.Label{}
	}
	// A label a worker gives the empty path is the whole output's (an MCP
	// server's _meta.ifc claim, a page): it joins the base, so that every
	// field read from the output carries it. Kept as a field, it would be
	// counted in the whole but in no path read below it.
	if whole, ok := v.Fields[""]; ok {
		v.Base = v.Base.Join(whole)
		delete(v.Fields, "")
	}
	all := v.Labels().All()
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
func (p *pass) workerSources(s *flow.Step, msgID string, labels map[string]ifc.Label) map[string]ifc.Label {
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
			rec := audit.Record{Kind: audit.KindViolation, RunID: p.run.ID(), Flow: p.run.Flow(), Step: s.ID, Tool: s.Call,
				MsgID: msgID, User: "worker:" + s.Worker, Op: "label",
				Subject: fmt.Sprintf("%s: %s claimed a source only the orchestrator gives; labeled %s", s.Call, field, srcs[i])}
			if err := p.run.Publish(rec); err != nil {
				p.g.log.Error("audit append failed", "err", err)
			}
			p.g.log.Warn("a worker claimed a source it cannot give", "worker", s.Worker, "tool", s.Call, "field", field)
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
func (p *pass) forgedLabels(s *flow.Step, msgID string, base ifc.Label, labels map[string]ifc.Label) {
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
		rec := audit.Record{Kind: audit.KindViolation, RunID: p.run.ID(), Flow: p.run.Flow(), Step: s.ID, Tool: s.Call,
			MsgID: msgID, User: "worker:" + s.Worker, Op: "label",
			Subject: fmt.Sprintf("%s: %s claimed trusted; labeled %s", s.Call, field, base.Integrity())}
		if err := p.run.Publish(rec); err != nil {
			p.g.log.Error("audit append failed", "err", err)
		}
		p.g.log.Warn("a worker claimed a label it cannot give", "worker", s.Worker, "tool", s.Call, "field", field)
	}
}

// secretViolation records that a worker's reply held secrets, by name.
func (p *pass) secretViolation(s *flow.Step, msgID string, names []string) {
	rec := audit.Record{Kind: audit.KindViolation, RunID: p.run.ID(), Flow: p.run.Flow(), Step: s.ID, Tool: s.Call,
		MsgID: msgID, User: "worker:" + s.Worker, Op: "secret",
		Subject: fmt.Sprintf("%s: the reply held secret %s", s.Call, strings.Join(names, ", "))}
	if err := p.run.Publish(rec); err != nil {
		p.g.log.Error("audit append failed", "err", err)
	}
	p.g.log.Warn("a worker's reply held a secret; the call failed", "worker", s.Worker, "tool", s.Call, "secrets", names)
}

// tryResult is the outcome of one try. noEffect says the call is known
// not to have happened: no worker received it, or the worker answered
// with an error.
type tryResult struct {
	out      any
	labels   map[string]ifc.Label
	hosts    []string
	filled   bool // the broker filled a secret into a request of the call
	usage    *schemas.Usage
	err      error
	retry    bool
	noEffect bool
	// failover: the worker exited during the call; it goes again whatever
	// the step's retries, up to maxFailovers times.
	failover bool
}

// try sends one call and decodes the reply. retry says whether another try
// may succeed.
func (p *pass) try(ctx context.Context, s *flow.Step, m *capabilities.Manifest, body []byte, label ifc.Label,
	msgID, idem string, timeout time.Duration) (res tryResult) {
	g := p.g
	ctx, span := telemetry.Tracer().Start(ctx, "deliver "+s.Call, trace.WithSpanKind(trace.SpanKindClient))
	defer func() {
		status := StatusCompleted
		if res.err != nil {
			status = StatusFailed
		}
		switch model := g.cfg.Models[s.Worker]; {
		case !span.IsRecording() || res.usage == nil:
			telemetry.End(span, status, telemetry.AttrMsgID.String(msgID))
		// A model API was called: the GenAI conventions' attributes.
		case model == "":
			telemetry.End(span, status, telemetry.AttrMsgID.String(msgID), telemetry.GenAIOperation.String("chat"),
				telemetry.GenAIInputTokens.Int64(res.usage.InputTokens), telemetry.GenAIOutputTokens.Int64(res.usage.OutputTokens))
		default:
			telemetry.End(span, status, telemetry.AttrMsgID.String(msgID), telemetry.GenAIOperation.String("chat"),
				telemetry.GenAIInputTokens.Int64(res.usage.InputTokens), telemetry.GenAIOutputTokens.Int64(res.usage.OutputTokens),
				telemetry.GenAIModel.String(model))
		}
	}()
	ctx, cancelCause := context.WithCancelCause(ctx)
	defer cancelCause(nil)
	f := &inflight{worker: s.Worker, cancel: cancelCause, span: span.SpanContext()}
	g.mu.Lock()
	g.inflight[msgID] = f
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.inflight, msgID)
		g.mu.Unlock()
		f.mu.Lock()
		res.hosts = slices.Clone(f.hosts)
		res.filled = f.filled
		f.mu.Unlock()
	}()
	msg := g.request(s, p.run.ID(), msgID, idem, label, body)
	// W3C trace context: a worker's own spans join the run's trace.
	telemetry.Propagator.Inject(ctx, telemetry.HeaderCarrier(msg.Header))
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var reply *nats.Msg
	var err error
	backoff := 20 * time.Millisecond
	for {
		reply, err = g.cfg.Conn.RequestMsgWithContext(ctx, msg)
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

// inflight is a call delivered and not yet answered.
type inflight struct {
	worker string
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	hosts  []string
	filled bool // the broker filled a secret into one of its requests
	// span is the delivery's span, the parent of its egress requests'.
	span trace.SpanContext
}

// SpanContext is the span of call msgID in flight, for the egress broker
// to make its requests' spans children of it; invalid when there is no
// such call or tracing is off.
func (g *Gate) SpanContext(msgID string) trace.SpanContext {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.inflight[msgID]; ok {
		return f.span
	}
	return trace.SpanContext{}
}

// errWorkerExited ends a call whose worker process exited: it gets no
// answer, and goes again — to another replica, or to the restarted one —
// with the same idempotency key.
var errWorkerExited = errors.New("worker exited during the call")

// maxFailovers bounds how many times one call goes again because its
// worker exited, besides the step's retries.
const maxFailovers = 3

// WorkerExited is the supervisor's hook: a process of worker exited, so
// the calls in flight to it get no answer. Each goes again at once with
// its idempotency key; with several replicas the calls of the others go
// again too, as the bus does not say which replica has a call, and their
// workers answer a repeated key with the first answer.
func (g *Gate) WorkerExited(worker string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, f := range g.inflight {
		if f.worker == worker {
			f.cancel(errWorkerExited)
		}
	}
}

// Track records that the call msgID of worker reached hostport. It is the
// egress broker's hook; it returns false when worker has no such call in
// flight.
func (g *Gate) Track(worker, msgID, hostport string) bool {
	g.mu.Lock()
	f, ok := g.inflight[msgID]
	g.mu.Unlock()
	if !ok || f.worker != worker {
		return false
	}
	f.mu.Lock()
	if !slices.Contains(f.hosts, hostport) {
		f.hosts = append(f.hosts, hostport)
	}
	f.mu.Unlock()
	return true
}

// Filled is told by the egress broker that it filled a secret into a
// request of worker serving call msgID.
func (g *Gate) Filled(worker, msgID string) {
	g.mu.Lock()
	f, ok := g.inflight[msgID]
	g.mu.Unlock()
	if !ok || f.worker != worker {
		return
	}
	f.mu.Lock()
	f.filled = true
	f.mu.Unlock()
}

// toolRequest is a tool call's message and its headers' values, made in
// one allocation: every call sends one.
type toolRequest struct {
	msg    nats.Msg
	values [6]string
}

// request is the message of a try of the call: its arguments, and in its
// headers the run, the step, the try's message id, the call's idempotency
// key, the orchestrator when it has an id, and the label the call is
// delivered with.
func (g *Gate) request(s *flow.Step, run, msgID, idem string, label ifc.Label, body []byte) *nats.Msg {
	r := &toolRequest{values: [6]string{run, s.ID, msgID, idem, string(label.AppendJSON(nil)), g.cfg.Orchestrator}}
	h := make(nats.Header, 8)
	for i, k := range [...]string{schemas.HeaderRun, schemas.HeaderStep, schemas.HeaderMsg, schemas.HeaderIdempotencyKey, schemas.HeaderLabel} {
		h[k] = r.values[i : i+1 : i+1]
	}
	if g.cfg.Orchestrator != "" {
		h[schemas.HeaderOrchestrator] = r.values[5:6:6]
	}
	r.msg = nats.Msg{Subject: g.cfg.Subjects.Tool(s.Worker, strings.TrimPrefix(s.Call, s.Worker+".")), Header: h, Data: body}
	return &r.msg
}

// decodeReply decodes a worker's reply into a try's result: its output
// and labels, or its error, whether another try may succeed, and whether
// the worker refused the call (then it did not happen).
func decodeReply(reply *nats.Msg, s *flow.Step) tryResult {
	var rep schemas.Reply
	if err := json.Unmarshal(reply.Data, &rep); err != nil {
		return tryResult{err: fmt.Errorf("%s: malformed reply from worker %s", s.Call, s.Worker)}
	}
	if rep.Error != nil {
		err := fmt.Errorf("%s: %s", s.Call, rep.Error.Error())
		switch rep.Error.Code {
		case schemas.CodeFailed:
			return tryResult{err: err, retry: true, noEffect: true, usage: rep.Usage}
		case schemas.CodeInternal:
			// The worker broke mid-call: what it did is not known.
			return tryResult{err: err, retry: true, usage: rep.Usage}
		}
		return tryResult{err: err, noEffect: true, usage: rep.Usage}
	}
	out, err := jsonvalue.Decode(rep.Output)
	if err != nil {
		return tryResult{err: fmt.Errorf("%s: malformed output from worker %s", s.Call, s.Worker), usage: rep.Usage}
	}
	if s.Spec.Output != nil {
		if err := s.Spec.Output.ValidateValue(out); err != nil {
			return tryResult{err: fmt.Errorf("%s: output does not match the tool's output schema: %v", s.Call, err), usage: rep.Usage}
		}
	}
	return tryResult{out: out, labels: rep.Labels, usage: rep.Usage}
}

// secretsIn returns the names of the configured secrets that a reply
// holds, in any string of its output (keys included) or its error.
func (g *Gate) secretsIn(t tryResult) []string {
	m := g.cfg.Secrets
	if m == nil {
		return nil
	}
	var found []string
	add := func(s string) {
		for _, n := range m.Find(s) {
			if !slices.Contains(found, n) {
				found = append(found, n)
			}
		}
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			add(x)
		case []any:
			for _, y := range x {
				walk(y)
			}
		case map[string]any:
			for k, y := range x {
				add(k)
				walk(y)
			}
		}
	}
	walk(t.out)
	if t.err != nil {
		add(t.err.Error())
	}
	slices.Sort(found)
	return found
}
