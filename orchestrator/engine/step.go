package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/ifc/expr"
	"github.com/sluicehq/sluice/ifc/policy"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/orchestrator/gate"
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
	if s.Agent != nil || s.Plan != nil {
		var ok bool
		if out, v, ok = r.restore(ctx, s, sc.idem); !ok {
			run := r.agent
			if s.Plan != nil {
				run = r.planStep
			}
			if out, v = run(ctx, s, sc, ifLabel); v != nil {
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
		x, err := v.Eval(sc.vars)
		if err != nil {
			res.Status, res.Error = StatusFailed, fmt.Sprintf("argument %s: %v", name, err)
			return res, nil
		}
		args[name] = x
		// A value a person endorsed for this tool in this run is trusted.
		l := r.endorsedLabel(sc.idem, s.Call, x, v.Label(sc.lookup))
		res.ArgLabels[name] = l
		labels = append(labels, l)
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

// gate takes a call whose arguments are labeled in res through the
// policy gate (gate.Gate.Pass), and returns the output of a completed
// call.
func (r *run) gate(ctx context.Context, s *flow.Step, res *StepResult, args map[string]any, body []byte, idem string) *value {
	_, v := r.e.gate.Pass(ctx, gateRun{r}, gate.Call{Step: s, Args: args, Body: body, Idem: idem}, res)
	if v == nil {
		return nil
	}
	return &value{out: v.Out, base: v.Base, fields: v.Fields}
}

// gateRun is the run as the gate sees it (gate.Run).
type gateRun struct{ r *run }

func (g gateRun) ID() string          { return g.r.id }
func (g gateRun) Flow() string        { return g.r.plan.Name }
func (g gateRun) Policy() *policy.Set { return g.r.policy }
func (g gateRun) Usage() *gate.Usage  { return &g.r.usage }

// Publish and Stored check the run's lease (lease.go): a record is handed
// to the log, and a call delivered once its records are stored, only by
// the orchestrator driving the run.
func (g gateRun) Publish(rec audit.Record) error {
	if err := g.r.e.checkLease(g.r.id); err != nil {
		return err
	}
	return g.r.publish(rec)
}

func (g gateRun) Stored(ctx context.Context) error {
	if err := g.r.stored(ctx); err != nil {
		return err
	}
	return g.r.e.checkLease(g.r.id)
}

// Sending records a try of a call sent at most once before it is sent
// (runstore.Store.Sending), under the run's lease like its records.
func (g gateRun) Sending(ctx context.Context, idem, token string) (string, error) {
	if err := g.r.e.checkLease(g.r.id); err != nil {
		return "", err
	}
	st, err := g.r.e.store(ctx)
	if err != nil {
		return "", err
	}
	earlier, err := st.Sending(ctx, idem, token)
	if err == nil && earlier == "" {
		g.r.wrote(idem)
	}
	return earlier, err
}

func (g gateRun) Hold(ctx context.Context, s *flow.Step, res *StepResult, args map[string]any, idem string) (string, bool) {
	return g.r.hold(ctx, s, res, args, idem)
}
