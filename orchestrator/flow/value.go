package flow

import (
	"slices"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/ifc/expr"
	"github.com/sluicehq/sluice/schemas"
)

// Value is an argument or output of a flow: a constant, a compiled
// template, or a map or list of values.
type Value struct {
	literal any
	tmpl    *expr.Template
	ptr     string // where the template is in the file
	fields  map[string]*Value
	items   []*Value
}

// Reads returns every value this one's expressions read.
func (v *Value) Reads() []expr.Path {
	var out []expr.Path
	v.walk(func(t *expr.Template) { out = append(out, t.Reads()...) })
	return out
}

func (v *Value) walk(f func(*expr.Template)) {
	switch {
	case v.tmpl != nil:
		f(v.tmpl)
	case v.fields != nil:
		for _, k := range sortedKeys(v.fields) {
			v.fields[k].walk(f)
		}
	case v.items != nil:
		for _, x := range v.items {
			x.walk(f)
		}
	}
}

// templates calls f with each template below v and where it is.
func (v *Value) templates(f func(t *expr.Template, ptr string)) {
	switch {
	case v.tmpl != nil:
		f(v.tmpl, v.ptr)
	case v.fields != nil:
		for _, k := range sortedKeys(v.fields) {
			v.fields[k].templates(f)
		}
	case v.items != nil:
		for _, x := range v.items {
			x.templates(f)
		}
	}
}

type read struct {
	path expr.Path
	ptr  string
}

// reads returns what each template below v reads, with where it is.
func (v *Value) reads() []read {
	var out []read
	switch {
	case v.tmpl != nil:
		for _, p := range v.tmpl.Reads() {
			out = append(out, read{p, v.ptr})
		}
	case v.fields != nil:
		for _, k := range sortedKeys(v.fields) {
			out = append(out, v.fields[k].reads()...)
		}
	case v.items != nil:
		for _, x := range v.items {
			out = append(out, x.reads()...)
		}
	}
	return out
}

// Template returns the value's template when it is one, for callers that
// follow a value's elements one by one.
func (v *Value) Template() (*expr.Template, bool) { return v.tmpl, v.tmpl != nil }

// Label is the join of the labels of everything the value reads; a
// constant from the flow file reads nothing and is trusted.
func (v *Value) Label(lookup func(expr.Path) ifc.Label) ifc.Label {
	var ls []ifc.Label
	v.walk(func(t *expr.Template) { ls = append(ls, t.Label(lookup)) })
	return ifc.Join(ls...)
}

// Eval computes the value.
func (v *Value) Eval(vars map[string]any) (any, error) {
	switch {
	case v.tmpl != nil:
		return v.tmpl.Eval(vars)
	case v.fields != nil:
		m := make(map[string]any, len(v.fields))
		for k, x := range v.fields {
			r, err := x.Eval(vars)
			if err != nil {
				return nil, err
			}
			m[k] = r
		}
		return m, nil
	case v.items != nil:
		s := make([]any, 0, len(v.items))
		for _, x := range v.items {
			r, err := x.Eval(vars)
			if err != nil {
				return nil, err
			}
			s = append(s, r)
		}
		return s, nil
	}
	return v.literal, nil
}

func sortedKeys(m map[string]*Value) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// schemaShape returns the property names and required names of an object
// schema, for argument checks at load time.
func schemaShape(s *schemas.Schema) (props, required []string) {
	return s.Shape()
}

// constant returns the value when nothing in it is computed.
func (v *Value) constant() (any, bool) {
	switch {
	case v.tmpl != nil:
		return nil, false
	case v.fields != nil:
		m := make(map[string]any, len(v.fields))
		for k, x := range v.fields {
			c, ok := x.constant()
			if !ok {
				return nil, false
			}
			m[k] = c
		}
		return m, true
	case v.items != nil:
		s := make([]any, 0, len(v.items))
		for _, x := range v.items {
			c, ok := x.constant()
			if !ok {
				return nil, false
			}
			s = append(s, c)
		}
		return s, true
	}
	return v.literal, true
}
