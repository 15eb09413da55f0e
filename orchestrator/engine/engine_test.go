package engine

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/ifc/expr"
	"github.com/sluicehq/sluice/ifc/policy"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/bus"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// The test worker "t" has a few tools whose behaviour each test sets.
// pay has typed arguments; the others take any object. spend and pay
// stand for the built-in payment.charge, which recognizes its idempotency
// key: they are idempotent, sent again after a try that may have reached
// them.
const manifest = `worker: t
run: builtin:t
tools:
  echo: {input_schema: any.json, output_label: {integrity: trusted}, clearance: {integrity: untrusted}}
  barrier: {input_schema: any.json, clearance: {integrity: untrusted}}
  split: {input_schema: any.json, clearance: {integrity: untrusted}}
  fail: {input_schema: any.json, clearance: {integrity: untrusted}}
  fetch: {input_schema: any.json, output_schema: fetch.json, clearance: {integrity: untrusted}}
  browse: {input_schema: any.json, output_schema: fetch.json, output_label: {integrity: untrusted}, clearance: {integrity: untrusted}}
  model: {input_schema: any.json, trusted_network: true, clearance: {integrity: untrusted}}
  spend: {input_schema: any.json, privileged: true, idempotent: true, approvable: true, clearance: {integrity: trusted}}
  pay: {input_schema: pay.json, privileged: true, idempotent: true, approvable: true, output_label: {integrity: trusted}, clearance: {integrity: trusted}}
limits: {timeout: 5s}
`

const paySchema = `{"type": "object",
 "properties": {"amount": {"type": "number"}, "payee": {"type": "string"}, "mode": {"type": "string"},
  "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}},
 "required": ["amount", "payee"], "additionalProperties": false}`

// fetchSchema is the output of t.fetch: a page's text and what it offers.
const fetchSchema = `{"type": "object",
 "properties": {"text": {"type": "string"}, "payee": {"type": "string"}, "quote": {"type": "string"}}}`

type harness struct {
	t      testing.TB
	engine *Engine
	env    *expr.Env
	cat    flow.Catalog
	log    *audit.Log
	bus    *bus.Bus
	calls  map[string]int
	mu     sync.Mutex
	close  func()
}

func newHarness(t testing.TB, rules string, handlers map[string]worker.Handler) *harness {
	t.Helper()
	return newHarnessIn(t, t.TempDir(), rules, handlers)
}

// newHarnessIn starts a bus whose state lives in dir, the test worker and
// an engine. h.close stops them; a later harness in the same dir sees
// what JetStream kept.
func newHarnessIn(t testing.TB, dir, rules string, handlers map[string]worker.Handler) *harness {
	t.Helper()
	return newHarnessWith(t, dir, rules, handlers)
}

// newHarnessWith also serves the extra workers given, each with its
// manifest and handlers.
func newHarnessWith(t testing.TB, dir, rules string, handlers map[string]worker.Handler, extra ...*worker.Service) *harness {
	t.Helper()
	for name, src := range map[string]string{"any.json": `{"type":"object"}`, "pay.json": paySchema, "fetch.json": fetchSchema} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m, err := capabilities.Parse("t.yaml", []byte(manifest), os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.Start(bus.Config{StoreDir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	var stops []func()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			for i := len(stops) - 1; i >= 0; i-- {
				stops[i]()
			}
		})
	}
	t.Cleanup(stop)
	stops = append(stops, b.Shutdown)
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	stops = append(stops, nc.Close)
	ctx := context.Background()
	log, err := audit.Open(ctx, nc, "sluice")
	if err != nil {
		t.Fatal(err)
	}
	files := []policy.File{policy.DefaultFile()}
	if rules != "" {
		files = append(files, policy.File{Name: "test.yaml", Src: []byte(rules)})
	}
	tools := policy.Tools{}
	for _, tool := range m.Tools {
		tools[tool.Name] = tool.Input
	}
	for _, svc := range extra {
		for _, tool := range svc.Manifest.Tools {
			tools[tool.Name] = tool.Input
		}
	}
	set, err := policy.Load(tools, files...)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, log: log, bus: b, calls: map[string]int{}, cat: flow.Catalog{"t": m}, close: stop}
	manifests := map[string]*capabilities.Manifest{"t": m}
	for _, svc := range extra {
		h.cat[svc.Manifest.Worker], manifests[svc.Manifest.Worker] = svc.Manifest, svc.Manifest
		enc, err := b.Connect()
		if err != nil {
			t.Fatal(err)
		}
		sctx, scancel := context.WithCancel(ctx)
		sdone := make(chan struct{})
		go func() { defer close(sdone); svc.Serve(sctx, enc) }()
		stops = append(stops, func() { scancel(); <-sdone; enc.Close() })
		for _, name := range svc.Manifest.ToolNames() {
			for !b.HasInterest(schemas.Subjects{}.Tool(svc.Manifest.Worker, name)) {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	all := map[string]worker.Handler{}
	for _, name := range m.ToolNames() {
		f := handlers[name]
		if f == nil {
			f = func(_ context.Context, c *worker.Call) (any, error) { return json.RawMessage(c.Args), nil }
		}
		all[name] = func(ctx context.Context, c *worker.Call) (any, error) {
			h.mu.Lock()
			h.calls[name]++
			h.mu.Unlock()
			return f(ctx, c)
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	svc := &worker.Service{Manifest: m, Handlers: all, Subjects: schemas.Subjects{}}
	wnc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	go func() { defer close(done); svc.Serve(wctx, wnc) }()
	stops = append(stops, func() { cancel(); <-done; wnc.Close() })
	for !b.HasInterest(schemas.Subjects{}.Tool("t", "echo")) {
		time.Sleep(5 * time.Millisecond)
	}
	h.engine = New(Config{Conn: nc, Subjects: schemas.Subjects{}, Policy: set, Audit: log, Manifests: manifests,
		LoadFlow: func(file string, src []byte) (*flow.Plan, error) { return flow.Load(file, src, h.cat, h.env) }})
	stops = append(stops, h.engine.Close)
	if h.env, err = expr.NewEnv(); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) called(tool string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[tool]
}

func (h *harness) plan(src string) *flow.Plan {
	h.t.Helper()
	p, err := flow.Load("f.yaml", []byte(src), h.cat, h.env)
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

func (h *harness) run(src string, inputs map[string]any, opts Options) *Result {
	h.t.Helper()
	p := h.plan(src)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := h.engine.Run(ctx, p, inputs, opts)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

func step(t *testing.T, r *Result, id string) StepResult {
	t.Helper()
	for _, s := range r.Steps {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no step %s", id)
	return StepResult{}
}

// Steps with no dependency between them run at the same time: each call to
// barrier waits until both have arrived, so run one after the other they
// would both time out.
func TestIndependentStepsRunInParallel(t *testing.T) {
	arrived := make(chan struct{}, 2)
	release := make(chan struct{})
	var once sync.Once
	h := newHarness(t, "", map[string]worker.Handler{
		"barrier": func(ctx context.Context, c *worker.Call) (any, error) {
			arrived <- struct{}{}
			if len(arrived) == 2 {
				once.Do(func() { close(release) })
			}
			select {
			case <-release:
				return map[string]any{"ok": true}, nil
			case <-ctx.Done():
				return nil, errors.New("the other step never arrived")
			}
		},
	})
	r := h.run(`name: p
steps:
  - {id: a, call: t.barrier, with: {n: 1}}
  - {id: b, call: t.barrier, with: {n: 2}}
  - {id: c, call: t.echo, with: {a: "${steps.a.output.ok}", b: "${steps.b.output.ok}"}}
`, nil, Options{})
	if r.Status != StatusCompleted {
		t.Fatalf("run %s: %+v", r.Status, r.Steps)
	}
}

// Labels are tracked per field: a worker may label one field untrusted,
// and only what reads that field carries it.
func TestFieldLabels(t *testing.T) {
	h := newHarness(t, "", map[string]worker.Handler{
		"split": func(context.Context, *worker.Call) (any, error) {
			return worker.Labeled{Output: map[string]any{"x": "from a stranger", "y": "ours"},
				Labels: map[string]ifc.Label{"x": ifc.UntrustedFrom("email:eve@x.example")}}, nil
		},
	})
	r := h.run(`name: p
inputs: {n: {type: integer}}
steps:
  - {id: a, call: t.split}
  - {id: onlyy, call: t.echo, with: {v: "${steps.a.output.y}", n: "${inputs.n + 1}"}}
  - {id: onlyx, call: t.echo, with: {v: "${size(steps.a.output.x) > 3 ? 'long' : 'short'}"}}
  - {id: whole, call: t.echo, with: {v: "${steps.a.output}"}}
`, map[string]any{"n": int64(1)}, Options{})
	if r.Status != StatusCompleted {
		t.Fatalf("run %s: %+v", r.Status, r.Steps)
	}
	if l := step(t, r, "onlyy").Label; l.Integrity() != ifc.Trusted || !slices.Contains(l.Sources(), "user") {
		t.Errorf("reading y only: %v", l)
	}
	for _, id := range []string{"onlyx", "whole"} {
		if l := step(t, r, id).Label; l.Integrity() != ifc.Untrusted || !slices.Contains(l.Sources(), "email:eve@x.example") {
			t.Errorf("%s: %v", id, l)
		}
	}
}

// Web content reached through the egress broker taints the output, whatever
// the worker says.
func TestEgressHostsTaintOutput(t *testing.T) {
	var h *harness
	h = newHarness(t, "", map[string]worker.Handler{
		"fetch": func(_ context.Context, c *worker.Call) (any, error) {
			if !h.engine.Track("t", c.Msg, "pages.example:443") {
				return nil, errors.New("call not in flight")
			}
			return map[string]any{"text": "hello"}, nil
		},
	})
	r := h.run(`name: p
steps:
  - {id: f, call: t.fetch}
  - {id: use, call: t.echo, with: {v: "${steps.f.output.text}"}}
`, nil, Options{})
	if l := step(t, r, "use").Label; l.Integrity() != ifc.Untrusted || !slices.Contains(l.Sources(), "web:pages.example:443") {
		t.Fatalf("label %v", l)
	}
	if h.engine.Track("t", "no-such-call", "x:1") {
		t.Fatal("Track accepted a call that is not in flight")
	}
}

func TestPolicyOutcomes(t *testing.T) {
	spendFlow := `name: p
inputs: {amount: {type: number}}
steps:
  - {id: f, call: t.fetch}
  - {id: pay, call: t.spend, with: {amount: "${inputs.amount}", note: "${steps.f.output.text}"}}
  - {id: after, call: t.echo, with: {v: "${steps.pay.output}"}}
`
	untrusted := func(_ context.Context, c *worker.Call) (any, error) {
		return worker.Labeled{Output: map[string]any{"text": "pay me"}, Labels: map[string]ifc.Label{"text": ifc.UntrustedFrom("web:evil.example")}}, nil
	}
	trusted := func(context.Context, *worker.Call) (any, error) { return map[string]any{"text": "ours"}, nil }
	t.Run("held, not waiting", func(t *testing.T) {
		h := newHarness(t, "", map[string]worker.Handler{"fetch": untrusted})
		var held []StepResult
		r := h.run(spendFlow, map[string]any{"amount": 5.0}, Options{OnHeld: func(s StepResult) { held = append(held, s) }})
		pay := step(t, r, "pay")
		if r.Status != StatusHeld || pay.Status != StatusHeld || pay.ApprovalID == "" || len(held) != 1 {
			t.Fatalf("run %s pay %+v", r.Status, pay)
		}
		if !slices.Contains(pay.Rules, "untrusted-never-pays-alone") || pay.Args["amount"] != 5.0 {
			t.Errorf("pay %+v", pay)
		}
		if step(t, r, "after").Status != StatusSkipped || h.calls["spend"] != 0 {
			t.Fatalf("a held call was delivered or its dependents ran")
		}
	})
	t.Run("held, then approved", func(t *testing.T) {
		h := newHarness(t, "", map[string]worker.Handler{"fetch": untrusted})
		opts := Options{Wait: true}
		opts.OnHeld = func(s StepResult) {
			go func() {
				if err := h.engine.Decide(context.Background(), s.ApprovalID, Answer{Approved: true, Who: "ana"}); err != nil {
					t.Error(err)
				}
			}()
		}
		r := h.run(spendFlow, map[string]any{"amount": 5.0}, opts)
		if r.Status != StatusCompleted || h.calls["spend"] != 1 {
			t.Fatalf("run %s, spend called %d times", r.Status, h.calls["spend"])
		}
		if err := h.engine.Decide(context.Background(), "nope", Answer{Approved: true, Who: "ana"}); err == nil {
			t.Fatal("an unknown approval id was accepted")
		}
	})
	t.Run("held, then refused", func(t *testing.T) {
		h := newHarness(t, "", map[string]worker.Handler{"fetch": untrusted})
		opts := Options{Wait: true}
		opts.OnHeld = func(s StepResult) {
			go h.engine.Decide(context.Background(), s.ApprovalID, Answer{Approved: false, Who: "ana"})
		}
		r := h.run(spendFlow, map[string]any{"amount": 5.0}, opts)
		if r.Status != StatusDenied || h.calls["spend"] != 0 {
			t.Fatalf("run %s, spend called %d times", r.Status, h.calls["spend"])
		}
	})
	t.Run("denied by rule beats everything", func(t *testing.T) {
		h := newHarness(t, "rules:\n  - name: no-big-spend\n    when: tool.name == 't.spend' && args.amount > 100.0\n    action: deny\n", map[string]worker.Handler{"fetch": trusted})
		r := h.run(spendFlow, map[string]any{"amount": 500.0}, Options{Wait: true})
		pay := step(t, r, "pay")
		if r.Status != StatusDenied || pay.Decision != "deny" || !slices.Contains(pay.Rules, "no-big-spend") || h.calls["spend"] != 0 {
			t.Fatalf("run %s pay %+v", r.Status, pay)
		}
	})
	t.Run("trusted arguments pass", func(t *testing.T) {
		h := newHarness(t, "", map[string]worker.Handler{"fetch": trusted})
		r := h.run(spendFlow, map[string]any{"amount": 5.0}, Options{})
		if r.Status != StatusCompleted || h.calls["spend"] != 1 {
			t.Fatalf("run %s: %+v", r.Status, r.Steps)
		}
	})
}

func TestFailuresAndAudit(t *testing.T) {
	h := newHarness(t, "", map[string]worker.Handler{
		"fail": func(context.Context, *worker.Call) (any, error) { return nil, worker.Failed("the backend is down") },
	})
	r := h.run(`name: p
steps:
  - {id: a, call: t.fail}
  - {id: b, call: t.echo, with: {v: "${steps.a.output}"}}
  - {id: c, call: t.echo, with: {v: 1}}
outputs: {v: "${steps.c.output.v}"}
`, nil, Options{})
	if r.Status != StatusFailed || !strings.Contains(step(t, r, "a").Error, "tool_failed: the backend is down") {
		t.Fatalf("run %s a %+v", r.Status, step(t, r, "a"))
	}
	if step(t, r, "b").Status != StatusSkipped || step(t, r, "c").Status != StatusCompleted {
		t.Fatalf("steps %+v", r.Steps)
	}
	recs, err := h.log.Records(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	var starts, ends []int
	for _, rec := range recs {
		if rec.RunID == r.RunID {
			kinds = append(kinds, rec.Kind+":"+rec.Step)
			if rec.Starts() {
				starts = append(starts, len(kinds))
			}
			if _, end := rec.Ends(); end {
				ends = append(ends, len(kinds))
			}
		}
	}
	for _, want := range []string{"decision:a", "result:a", "decision:c", "result:c", "run_finished:"} {
		if !slices.Contains(kinds, want) {
			t.Errorf("audit lacks %s: %v", want, kinds)
		}
	}
	// The run's start rides on its first record, a decision; a failed
	// run ends with a record of its own.
	if !slices.Equal(starts, []int{1}) || !strings.HasPrefix(kinds[0], "decision:") || !slices.Equal(ends, []int{len(kinds)}) {
		t.Errorf("records %v: the start at %v, the end at %v; want the first a decision that starts the run, the last its end", kinds, starts, ends)
	}
	if slices.Contains(kinds, "decision:b") {
		t.Error("a skipped step was decided")
	}
}

// A step's if condition gates it and taints what it does.
func TestIf(t *testing.T) {
	h := newHarness(t, "", map[string]worker.Handler{
		"split": func(context.Context, *worker.Call) (any, error) {
			return worker.Labeled{Output: map[string]any{"go": true, "stay": false},
				Labels: map[string]ifc.Label{"go": ifc.UntrustedFrom("web:a.example")}}, nil
		},
	})
	r := h.run(`name: p
steps:
  - {id: a, call: t.split}
  - {id: yes, call: t.echo, if: "${steps.a.output.go}", with: {v: 1}}
  - {id: no, call: t.echo, if: "${steps.a.output.stay}", with: {v: 2}}
  - {id: after, call: t.echo, with: {v: "${steps.no.output.v}"}}
  - {id: bad, call: t.echo, if: "${'text'}"}
`, nil, Options{})
	yes := step(t, r, "yes")
	if yes.Status != StatusCompleted || yes.Label.Integrity() != ifc.Untrusted || yes.OutputLabel.Integrity() != ifc.Untrusted {
		t.Errorf("yes: %+v", yes)
	}
	if no := step(t, r, "no"); no.Status != StatusSkipped || !strings.Contains(no.Error, "condition is false") {
		t.Errorf("no: %+v", no)
	}
	if after := step(t, r, "after"); after.Status != StatusSkipped {
		t.Errorf("after: %+v", after)
	}
	if bad := step(t, r, "bad"); bad.Status != StatusFailed || !strings.Contains(bad.Error, "want true or false, got a string") {
		t.Errorf("bad: %+v", bad)
	}
	if h.calls["echo"] != 1 {
		t.Errorf("echo called %d times", h.calls["echo"])
	}
}

// for_each makes one call per element, at most concurrency at once, each
// element with its own label and idempotency key.
func TestForEach(t *testing.T) {
	var mu sync.Mutex
	running, peak := 0, 0
	keys := map[string]bool{}
	h := newHarness(t, "", map[string]worker.Handler{
		"split": func(context.Context, *worker.Call) (any, error) {
			msgs := []any{}
			labels := map[string]ifc.Label{}
			for i, from := range []string{"me", "eve", "me", "bob", "me"} {
				msgs = append(msgs, map[string]any{"from": from, "n": i})
				if from != "me" {
					labels["msgs."+strconv.Itoa(i)] = ifc.UntrustedFrom("email:" + from)
				}
			}
			return worker.Labeled{Output: map[string]any{"msgs": msgs}, Labels: labels}, nil
		},
		"echo": func(ctx context.Context, c *worker.Call) (any, error) {
			mu.Lock()
			running++
			peak = max(peak, running)
			keys[c.IdempotencyKey] = true
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
			mu.Lock()
			running--
			mu.Unlock()
			return json.RawMessage(c.Args), nil
		},
	})
	r := h.run(`name: p
steps:
  - {id: inbox, call: t.split}
  - id: each
    call: t.echo
    for_each: "${steps.inbox.output.msgs}"
    concurrency: 2
    with: {from: "${item.from}", i: "${index}"}
  - {id: second, call: t.spend, with: {from: "${steps.each.output[1].from}"}}
  - {id: first, call: t.spend, with: {n: "${steps.each.output[0].i}"}}
`, nil, Options{})
	each := step(t, r, "each")
	if each.Status != StatusCompleted || len(each.Items) != 5 {
		t.Fatalf("each: %+v", each)
	}
	for i, it := range each.Items {
		want := ifc.Trusted
		if i == 1 || i == 3 {
			want = ifc.Untrusted
		}
		if it.Label.Integrity() != want || it.Index == nil || *it.Index != i {
			t.Errorf("item %d: label %v index %v", i, it.Label, it.Index)
		}
	}
	if peak != 2 {
		t.Errorf("at most %d calls ran at once, want 2", peak)
	}
	if len(keys) != 5 {
		t.Errorf("idempotency keys %v: want one per element", keys)
	}
	// The for_each output's list carries the label of the for_each list,
	// which has untrusted elements: reading any element, trusted or not,
	// is untrusted. The list as a whole carries the labels of all its
	// elements.
	if step(t, r, "second").Status != StatusHeld || step(t, r, "first").Status != StatusHeld {
		t.Errorf("steps reading elements of a list with untrusted elements were not held: %+v", r.Steps)
	}
	if each.OutputLabel.Integrity() != ifc.Untrusted {
		t.Errorf("each output %v", each.OutputLabel)
	}
}

// A try that fails in a way another may not is tried again with the same
// idempotency key; a bad argument is not.
func TestRetries(t *testing.T) {
	var mu sync.Mutex
	tries := map[string][]string{}
	h := newHarness(t, "", map[string]worker.Handler{
		"fail": func(ctx context.Context, c *worker.Call) (any, error) {
			var a struct {
				Mode string `json:"mode"`
			}
			c.Decode(&a)
			mu.Lock()
			tries[a.Mode] = append(tries[a.Mode], c.IdempotencyKey)
			n := len(tries[a.Mode])
			mu.Unlock()
			switch {
			case strings.HasPrefix(a.Mode, "flaky") && n < 3:
				return nil, worker.Failed("busy")
			case a.Mode == "slow" && n < 2:
				<-ctx.Done()
				return nil, ctx.Err()
			case a.Mode == "bad":
				return nil, worker.BadArguments("no")
			}
			return map[string]any{"ok": true}, nil
		},
	})
	r := h.run(`name: p
steps:
  - {id: flaky, call: t.fail, with: {mode: flaky}, retries: 3}
  - {id: slow, call: t.fail, with: {mode: slow}, retries: 1, timeout: 300ms}
  - {id: bad, call: t.fail, with: {mode: bad}, retries: 3}
  - {id: noretry, call: t.fail, with: {mode: flaky-once}}
`, nil, Options{})
	if s := step(t, r, "flaky"); s.Status != StatusCompleted || s.Attempts != 3 {
		t.Errorf("flaky: %+v", s)
	}
	if s := step(t, r, "slow"); s.Status != StatusCompleted || s.Attempts != 2 {
		t.Errorf("slow: %+v", s)
	}
	if s := step(t, r, "bad"); s.Status != StatusFailed || s.Attempts != 1 {
		t.Errorf("bad: %+v", s)
	}
	if s := step(t, r, "noretry"); s.Status != StatusFailed || s.Attempts != 1 || !strings.Contains(s.Error, "busy") {
		t.Errorf("noretry: %+v", s)
	}
	mu.Lock()
	defer mu.Unlock()
	for mode, keys := range tries {
		for _, k := range keys {
			if k != keys[0] {
				t.Errorf("%s: idempotency keys differ across tries: %v", mode, keys)
			}
		}
	}
}

// A tool whose network is trusted to compute (a model API) keeps the call's
// label for what it read over the network, and names the host.
func TestTrustedNetworkKeepsTheLabel(t *testing.T) {
	var h *harness
	h = newHarness(t, "", map[string]worker.Handler{
		"model": func(_ context.Context, c *worker.Call) (any, error) {
			if !h.engine.Track("t", c.Msg, "api.model.example:443") {
				return nil, errors.New("call not in flight")
			}
			return map[string]any{"text": "an answer"}, nil
		},
	})
	r := h.run(`name: p
steps:
  - {id: m, call: t.model, with: {prompt: hi}}
  - {id: use, call: t.echo, with: {v: "${steps.m.output.text}"}}
`, nil, Options{})
	l := step(t, r, "use").Label
	if l.Integrity() != ifc.Trusted || !slices.Contains(l.Sources(), "api:api.model.example:443") {
		t.Fatalf("label %v", l)
	}
}
