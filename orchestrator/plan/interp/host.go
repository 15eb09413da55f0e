package interp

import (
	"slices"
	"strings"

	"github.com/sluicehq/sluice/ifc"
	"go.starlark.net/starlark"
)

// module is a worker's tools: web in web.fetch(url=...).
type module struct {
	name  string
	tools map[string]*toolFn
}

var _ starlark.HasAttrs = (*module)(nil)

func (m *module) String() string        { return "<worker " + m.name + ">" }
func (m *module) Type() string          { return "worker" }
func (m *module) Freeze()               {}
func (m *module) Truth() starlark.Bool  { return true }
func (m *module) Hash() (uint32, error) { return starlark.String(m.name).Hash() }

func (m *module) Attr(name string) (starlark.Value, error) {
	if t, ok := m.tools[name]; ok {
		return t, nil
	}
	return nil, nil
}

func (m *module) AttrNames() []string {
	var out []string
	for n := range m.tools {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// toolFn calls a tool through the host.
type toolFn struct{ t Tool }

var _ starlark.Callable = (*toolFn)(nil)

func (f *toolFn) String() string        { return "<tool " + f.t.Name + ">" }
func (f *toolFn) Type() string          { return "tool" }
func (f *toolFn) Freeze()               {}
func (f *toolFn) Truth() starlark.Bool  { return true }
func (f *toolFn) Hash() (uint32, error) { return starlark.String(f.t.Name).Hash() }
func (f *toolFn) Name() string          { return f.t.Name }

func (f *toolFn) CallInternal(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	r := runOf(th)
	if err := r.tick(); err != nil {
		return nil, err
	}
	if len(args) > 0 {
		return nil, r.fail(bottom(), "%s takes keyword arguments only", f.t.Name)
	}
	c := Call{Tool: f.t.Name, Args: map[string]any{}, ArgLabels: map[string]ifc.Label{}}
	all := bottom()
	for _, kv := range kwargs {
		name := string(kv[0].(starlark.String))
		if f.t.Params != nil && !slices.Contains(f.t.Params, name) {
			return nil, r.fail(bottom(), "%s has no parameter %q; its parameters are: %s", f.t.Name, name, strings.Join(f.t.Params, ", "))
		}
		v, l, err := toJSON(kv[1])
		if err != nil {
			return nil, r.fail(l, "%s: argument %s: %v", f.t.Name, name, err)
		}
		c.Args[name], c.ArgLabels[name] = v, l
		all = join(all, l)
	}
	r.n++
	c.N, c.PC = r.n, r.pc
	r.clock.pause()
	out := r.host.Call(r.ctx, c)
	r.clock.start()
	return r.outcome(f.t.Name, out, all)
}

// outcome turns what became of a call or an inspection into the value the
// program gets, or into the error that ends it.
func (r *run) outcome(what string, o Outcome, args ifc.Label) (starlark.Value, error) {
	if o.Stop || o.Status == Held {
		return nil, errStopped
	}
	if o.Status != Completed {
		status := o.Status
		if status == "" {
			status = Failed
		}
		msg := o.Error
		if msg == "" {
			msg = status
		}
		return nil, r.fail(join(o.Label, args), "%s: %s: %s", what, status, msg)
	}
	v, err := r.newRecord(o.Output, o.Base, o.Fields)
	if err != nil {
		return nil, r.fail(join(o.Base, args), "%s: output: %v", what, err)
	}
	r.readLabel(labelOf(v))
	return v, nil
}

// inspect(value, question, schema) asks a quarantined model, which has no
// tools, a question about a value. The answer is labelled as the host
// says: with the value's label unless a policy endorses it.
func inspect(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	r := runOf(th)
	if err := r.tick(); err != nil {
		return nil, err
	}
	var value, question, schema starlark.Value = nil, nil, starlark.None
	if err := starlark.UnpackArgs("inspect", args, kwargs, "value", &value, "question", &question, "schema?", &schema); err != nil {
		return nil, r.fail(bottom(), "%v", err)
	}
	v, lv, err := toJSON(value)
	if err != nil {
		return nil, r.fail(lv, "inspect: value: %v", err)
	}
	q, lq, err := toJSON(question)
	qs, ok := q.(string)
	if err != nil || !ok {
		return nil, r.fail(lq, "inspect: the question must be a string, not %s", question.Type())
	}
	s, ls, err := toJSON(schema)
	sm, ok := s.(map[string]any)
	if err != nil || (s != nil && !ok) {
		return nil, r.fail(ls, "inspect: the schema must be a dict, not %s", schema.Type())
	}
	r.n++
	in := Inspection{N: r.n, Value: v, Label: join(lv, lq, ls), Question: qs, Schema: sm, PC: r.pc}
	r.clock.pause()
	out := r.host.Inspect(r.ctx, in)
	r.clock.start()
	return r.outcome("inspect", out, in.Label)
}

func modules(tools []Tool) starlark.StringDict {
	out := starlark.StringDict{}
	for w, ts := range toolTable(tools) {
		m := &module{name: w, tools: map[string]*toolFn{}}
		for n, t := range ts {
			m.tools[n] = &toolFn{t: t}
		}
		out[w] = m
	}
	return out
}
