package interp

import (
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"

	"github.com/sluicehq/sluice/ifc"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// A value of a running plan is one of three kinds:
//
//   - plain: a Starlark value whose label is the bottom (trusted, no
//     secrecy, no sources). A container the program makes holds only plain
//     values, so its label is the label of all it holds.
//   - *labeled: a plain value and its label.
//   - *record: a node of a tool's output or of an input, with a label per
//     path as the engine keeps them; see record.

// bottomLabel is the label of a plain value. Labels are immutable values.
var bottomLabel = ifc.TrustedFrom()

// bottom is the label of a plain value.
func bottom() ifc.Label { return bottomLabel }

func isBottom(l ifc.Label) bool { return l.Equal(bottomLabel) }

// join is ifc.Join, without making a new label when one of the labels
// already is the join: the bottom, or two equal labels.
func join(ls ...ifc.Label) ifc.Label {
	out := bottom()
	for i, l := range ls {
		switch {
		case isBottom(l) || l.Equal(out):
		case isBottom(out):
			out = l
		default:
			return ifc.Join(append([]ifc.Label{out}, ls[i:]...)...)
		}
	}
	return out
}

// labeled is a plain value with a label other than the bottom.
type labeled struct {
	v starlark.Value
	l ifc.Label
	r *run
}

var (
	_ starlark.Iterable   = (*labeled)(nil)
	_ starlark.Sequence   = (*labeled)(nil)
	_ starlark.Comparable = (*labeled)(nil)
	_ starlark.HasAttrs   = (*labeled)(nil)
)

func (x *labeled) String() string { return x.v.String() }
func (x *labeled) Type() string   { return x.v.Type() }
func (x *labeled) Freeze()        { x.v.Freeze() }

// Truth, Hash, Len, Iterate and CompareSameType are reached only where
// Starlark takes a value's truth, hash, length or order on its own (the
// rewritten program uses the helpers): each raises the program counter
// label by the value's, so a path the helpers miss cannot drop a label.
func (x *labeled) Truth() starlark.Bool { x.r.raise(x.l); return x.v.Truth() }

func (x *labeled) Hash() (uint32, error) { x.r.raise(x.l); return x.v.Hash() }

func (x *labeled) Len() int { x.r.raise(x.l); return starlark.Len(x.v) }

func (x *labeled) Iterate() starlark.Iterator {
	x.r.raise(x.l)
	it := starlark.Iterate(x.v)
	if it == nil {
		return &labeledIter{r: x.r}
	}
	return &labeledIter{it: it, l: x.l, r: x.r}
}

func (x *labeled) CompareSameType(op syntax.Token, y starlark.Value, depth int) (bool, error) {
	o := y.(*labeled)
	x.r.raise(x.l)
	x.r.raise(o.l)
	return starlark.CompareDepth(op, x.v, o.v, depth)
}

func (x *labeled) Attr(name string) (starlark.Value, error) { return x.r.attr(x, name) }

func (x *labeled) AttrNames() []string {
	if a, ok := x.v.(starlark.HasAttrs); ok {
		return a.AttrNames()
	}
	return nil
}

// labeledIter yields the elements of a labelled container, each labelled
// with the container's label.
type labeledIter struct {
	it starlark.Iterator
	l  ifc.Label
	r  *run
}

func (i *labeledIter) Next(p *starlark.Value) bool {
	if i.it == nil {
		return false
	}
	var v starlark.Value
	if !i.it.Next(&v) {
		return false
	}
	*p = i.r.wrap(v, i.l)
	return true
}

func (i *labeledIter) Done() {
	if i.it != nil {
		i.it.Done()
	}
}

// wrap labels a plain value; with the bottom it stays plain.
func (r *run) wrap(v starlark.Value, l ifc.Label) starlark.Value {
	if x, ok := v.(*labeled); ok {
		v, l = x.v, join(x.l, l)
	}
	if isBottom(l) {
		return v
	}
	return &labeled{v: v, l: l, r: r}
}

// unwrap returns a value's plain form and its whole label. A record
// becomes one plain value labelled with every label below it.
func (r *run) unwrap(v starlark.Value) (starlark.Value, ifc.Label, error) {
	switch x := v.(type) {
	case *labeled:
		return x.v, x.l, nil
	case *record:
		return r.flatten(x)
	}
	return v, bottom(), nil
}

// labelOf is a value's whole label.
func labelOf(v starlark.Value) ifc.Label {
	switch x := v.(type) {
	case *labeled:
		return x.l
	case *record:
		return x.deep()
	}
	return bottom()
}

// --- JSON shapes ---------------------------------------------------------

// fromJSON makes a frozen plain Starlark value of a JSON-shaped one. Maps
// become dicts in the order of their sorted keys, integral numbers ints.
func fromJSON(v any) (starlark.Value, error) {
	switch x := v.(type) {
	case nil:
		return starlark.None, nil
	case bool:
		return starlark.Bool(x), nil
	case string:
		return starlark.String(x), nil
	case []any:
		l := make([]starlark.Value, len(x))
		for i, e := range x {
			sv, err := fromJSON(e)
			if err != nil {
				return nil, err
			}
			l[i] = sv
		}
		out := starlark.NewList(l)
		out.Freeze()
		return out, nil
	case map[string]any:
		return dictFromJSON(x)
	}
	return numberFromJSON(v)
}

func dictFromJSON(m map[string]any) (starlark.Value, error) {
	d := starlark.NewDict(len(m))
	for _, k := range sortedKeys(m) {
		sv, err := fromJSON(m[k])
		if err != nil {
			return nil, err
		}
		if err := d.SetKey(starlark.String(k), sv); err != nil {
			return nil, err
		}
	}
	d.Freeze()
	return d, nil
}

func numberFromJSON(v any) (starlark.Value, error) {
	switch x := v.(type) {
	case int:
		return starlark.MakeInt(x), nil
	case int64:
		return starlark.MakeInt64(x), nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return starlark.MakeInt64(int64(x)), nil
		}
		return starlark.Float(x), nil
	case interface{ String() string }: // json.Number
		s := x.String()
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return starlark.MakeInt64(i), nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("not a number: %q", s)
		}
		return starlark.Float(f), nil
	}
	return nil, fmt.Errorf("a value of Go type %T is not JSON-shaped", v)
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// toJSON turns a value into its JSON shape, with its whole label.
func toJSON(v starlark.Value) (any, ifc.Label, error) {
	switch x := v.(type) {
	case *labeled:
		out, _, err := toJSON(x.v)
		return out, x.l, err
	case *record:
		out, err := normJSON(x.v)
		return out, x.deep(), err
	}
	out, err := plainJSON(v, 0)
	return out, bottom(), err
}

func plainJSON(v starlark.Value, depth int) (any, error) {
	if depth > 100 {
		return nil, fmt.Errorf("a value nested more than 100 deep")
	}
	switch x := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case starlark.Bool:
		return bool(x), nil
	case starlark.String:
		return string(x), nil
	case starlark.Int:
		if i, ok := x.Int64(); ok {
			return i, nil
		}
		return nil, fmt.Errorf("integer %s is too large for JSON", x.BigInt().String())
	case starlark.Float:
		return float64(x), nil
	case *labeled:
		return plainJSON(x.v, depth)
	case *record:
		return normJSON(x.v)
	}
	return containerJSON(v, depth)
}

func containerJSON(v starlark.Value, depth int) (any, error) {
	if d, ok := v.(*starlark.Dict); ok {
		return dictJSON(d, depth)
	}
	if _, ok := v.(starlark.Sequence); !ok {
		return nil, fmt.Errorf("a value of type %s has no JSON form", v.Type())
	}
	it := starlark.Iterate(v)
	defer it.Done()
	out := []any{}
	var e starlark.Value
	for it.Next(&e) {
		j, err := plainJSON(e, depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

func dictJSON(d *starlark.Dict, depth int) (any, error) {
	out := map[string]any{}
	for _, kv := range d.Items() {
		k, ok := kv[0].(starlark.String)
		if !ok {
			return nil, fmt.Errorf("a dict key of type %s is not a string", kv[0].Type())
		}
		j, err := plainJSON(kv[1], depth+1)
		if err != nil {
			return nil, err
		}
		out[string(k)] = j
	}
	return out, nil
}

// normJSON copies a JSON-shaped value with its numbers as a program sees
// them: integral numbers int64, others float64.
func normJSON(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool, string:
		return x, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := normJSON(e)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			n, err := normJSON(e)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	}
	sv, err := numberFromJSON(v)
	if err != nil {
		return nil, err
	}
	return plainJSON(sv, 0)
}

// sizeOf estimates the bytes a new value holds beyond its elements.
func sizeOf(v starlark.Value) int64 {
	if v.Type() == "range" {
		return 32
	}
	switch x := v.(type) {
	case starlark.String:
		return int64(len(x)) + 16
	case starlark.Int:
		if _, ok := x.Int64(); ok {
			return 8
		}
		return int64(x.BigInt().BitLen()/8) + 16
	case *starlark.Dict:
		return int64(x.Len())*48 + 48
	case starlark.Sequence:
		return int64(x.Len())*16 + 32
	}
	return 16
}

// bitLen is the size in bits of an int.
func bitLen(v starlark.Value) int {
	x, ok := v.(starlark.Int)
	if !ok {
		return 0
	}
	if _, ok := x.Int64(); ok {
		return 64
	}
	return new(big.Int).Set(x.BigInt()).BitLen()
}

// quote renders a string for an error message.
func quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strconv.Quote(s)
}
