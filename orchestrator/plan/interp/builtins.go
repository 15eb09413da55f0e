package interp

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/ifc"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// lifted are the universe builtins a plan gets through lift: their
// arguments unwrapped, their result labelled with the join of the labels
// of all their arguments.
var lifted = []string{"abs", "bool", "chr", "dict", "enumerate", "float", "int", "list", "ord",
	"range", "repr", "reversed", "str", "tuple", "type", "zip"}

// materialising are the builtins that make a container as long as their
// arguments: their size is checked before they run.
// any and all only run through theirs, but outside the step limit, so
// their length is bounded the same way.
var materialising = []string{"all", "any", "dict", "enumerate", "list", "reversed", "tuple", "zip"}

// deciding are the builtins whose result is a decision over all the
// elements: the program counter label rises by their labels.
var deciding = []string{"all", "any"}

// universeConstants are the universe names that are values, not builtins.
var universeConstants = []string{"None", "True", "False"}

// builtins are the predeclared functions of a plan, shadowing every
// universe builtin: a universe builtin would see labelled values as
// values of their own.
func builtins() map[string]builtinFn {
	out := map[string]builtinFn{
		"len": builtinLen, "sorted": builtinSorted, "min": builtinMinMax("min"), "max": builtinMinMax("max"),
		"getattr": builtinGetattr, "hasattr": builtinHasattr, "fail": builtinFail, "inspect": inspect,
	}
	for _, n := range lifted {
		out[n] = lift(n, false)
	}
	for _, n := range deciding {
		out[n] = lift(n, true)
	}
	for _, n := range unavailable {
		out[n] = refused(n)
	}
	return out
}

func isBuiltinName(name string) bool {
	if name == "inputs" || name == "inspect" || slices.Contains(universeConstants, name) {
		return true
	}
	_, ok := starlark.Universe[name]
	return ok
}

func refused(name string) builtinFn {
	return func(th *starlark.Thread, _ *starlark.Builtin, _ starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
		return nil, runOf(th).fail(bottom(), "%s is not available in plans", name)
	}
}

// lift wraps a universe builtin. With control, the program counter label
// rises by the arguments' labels too.
func lift(name string, control bool) builtinFn {
	orig := starlark.Universe[name].(*starlark.Builtin)
	sized := slices.Contains(materialising, name)
	return func(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		r, err := start(th)
		if err != nil {
			return nil, err
		}
		pargs, l, err := r.unwrapAll(args)
		if err != nil {
			return nil, err
		}
		pkw, lk, err := r.unwrapKwargs(kwargs)
		if err != nil {
			return nil, err
		}
		l = join(l, lk)
		if control {
			r.raise(l)
		}
		if sized {
			if err := r.charge(elemsSize(pargs), l); err != nil {
				return nil, err
			}
		}
		v, err := orig.CallInternal(th, pargs, pkw)
		if err != nil {
			return nil, r.failErr(err, l)
		}
		return r.done(v, l)
	}
}

// elemsSize bounds the bytes of a container made from these arguments.
func elemsSize(args starlark.Tuple) int64 {
	var n int64
	for _, a := range args {
		if s, ok := a.(starlark.Sequence); ok {
			n += int64(s.Len()) * 32
		}
	}
	return n
}

// builtinLen is len: the length of a record node is labelled with the
// node's label only.
func builtinLen(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	r, err := start(th)
	if err != nil {
		return nil, err
	}
	var x starlark.Value
	if err := starlark.UnpackPositionalArgs("len", args, kwargs, 1, &x); err != nil {
		return nil, r.failErr(err, r.read)
	}
	if rec, ok := x.(*record); ok {
		return r.wrap(starlark.MakeInt(rec.size()), rec.l), nil
	}
	v, l, err := r.unwrap(x)
	if err != nil {
		return nil, err
	}
	n := starlark.Len(v)
	if n < 0 {
		return nil, r.fail(l, "len: value of type %s has no len", v.Type())
	}
	return r.wrap(starlark.MakeInt(n), l), nil
}

// elements is the plain elements of an iterable, and its label.
func (r *run) elements(x starlark.Value) ([]starlark.Value, ifc.Label, error) {
	v, l, err := r.unwrap(x)
	if err != nil {
		return nil, l, err
	}
	it := starlark.Iterate(v)
	if it == nil {
		return nil, l, r.fail(l, "got %s, want iterable", v.Type())
	}
	defer it.Done()
	if s, ok := v.(starlark.Sequence); ok {
		if err := r.charge(int64(s.Len())*16, l); err != nil {
			return nil, l, err
		}
	}
	var out []starlark.Value
	var e starlark.Value
	for it.Next(&e) {
		out = append(out, e)
	}
	return out, l, nil
}

// keyed are the elements of sorted, min or max with their keys (plain),
// and the join of the labels of the elements and of the keys. A key
// function gets each element with the container's label.
func (r *run) keyed(th *starlark.Thread, elems []starlark.Value, l ifc.Label, key starlark.Value) ([]starlark.Value, ifc.Label, error) {
	if key == starlark.None {
		return elems, l, nil
	}
	// The key function runs once per element, as a loop's body does: what
	// it does (a call) depends on the container's length.
	r.raise(l)
	keys := make([]starlark.Value, len(elems))
	for i, e := range elems {
		k, err := starlark.Call(th, key, starlark.Tuple{r.wrap(e, l)}, nil)
		if err != nil {
			return nil, l, r.failErr(err, l)
		}
		kv, lk, err := r.unwrap(k)
		if err != nil {
			return nil, l, err
		}
		keys[i], l = kv, join(l, lk)
	}
	return keys, l, nil
}

// builtinSorted is sorted(iterable, key=None, reverse=False). The order
// depends on every element and key, so the program counter label rises by
// their labels, and the result is labelled with them.
func builtinSorted(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	r, err := start(th)
	if err != nil {
		return nil, err
	}
	var it, key, reverse starlark.Value = nil, starlark.None, starlark.False
	if err := starlark.UnpackArgs("sorted", args, kwargs, "iterable", &it, "key?", &key, "reverse?", &reverse); err != nil {
		return nil, r.fail(r.read, "%v", err)
	}
	elems, l, err := r.elements(it)
	if err != nil {
		return nil, err
	}
	keys, l, err := r.keyed(th, elems, l, key)
	if err != nil {
		return nil, err
	}
	rev, lr, err := r.unwrap(reverse)
	if err != nil {
		return nil, err
	}
	l = join(l, lr)
	r.raise(l)
	idx := make([]int, len(elems))
	for i := range idx {
		idx[i] = i
	}
	op := syntax.LT
	if rev.Truth() {
		op = syntax.GT
	}
	var cmpErr error
	sort.SliceStable(idx, func(i, j int) bool {
		less, err := starlark.Compare(op, keys[idx[i]], keys[idx[j]])
		if err != nil && cmpErr == nil {
			cmpErr = err
		}
		return less
	})
	if cmpErr != nil {
		return nil, r.failErr(cmpErr, l)
	}
	out := make([]starlark.Value, len(idx))
	for i, k := range idx {
		out[i] = elems[k]
	}
	return r.done(starlark.NewList(out), l)
}

// builtinMinMax is min or max, of an iterable or of several arguments,
// with key. Like sorted, it raises the program counter label.
func builtinMinMax(name string) builtinFn {
	op := syntax.LT
	if name == "max" {
		op = syntax.GT
	}
	return func(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		r, err := start(th)
		if err != nil {
			return nil, err
		}
		var key starlark.Value = starlark.None
		if err := starlark.UnpackArgs(name, nil, kwargs, "key?", &key); err != nil {
			return nil, r.fail(r.read, "%v", err)
		}
		elems, l, err := r.minMaxElems(name, args)
		if err != nil {
			return nil, err
		}
		keys, l, err := r.keyed(th, elems, l, key)
		if err != nil {
			return nil, err
		}
		r.raise(l)
		best := 0
		for i := 1; i < len(keys); i++ {
			better, err := starlark.Compare(op, keys[i], keys[best])
			if err != nil {
				return nil, r.failErr(fmt.Errorf("%s: %v", name, err), l)
			}
			if better {
				best = i
			}
		}
		return r.wrap(elems[best], l), nil
	}
}

func (r *run) minMaxElems(name string, args starlark.Tuple) ([]starlark.Value, ifc.Label, error) {
	var elems []starlark.Value
	var l ifc.Label
	var err error
	switch len(args) {
	case 0:
		return nil, bottom(), r.fail(bottom(), "%s requires at least one positional argument", name)
	case 1:
		elems, l, err = r.elements(args[0])
	default:
		var t starlark.Tuple
		t, l, err = r.unwrapAll(args)
		elems = t
	}
	if err == nil && len(elems) == 0 {
		r.raise(l)
		err = r.fail(l, "%s: argument is an empty sequence", name)
	}
	return elems, l, err
}

// builtinGetattr is getattr(x, name[, default]). The name selects, so
// the program counter label rises by its label.
func builtinGetattr(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	r, err := start(th)
	if err != nil {
		return nil, err
	}
	var x, name, def starlark.Value
	if err := starlark.UnpackPositionalArgs("getattr", args, kwargs, 2, &x, &name, &def); err != nil {
		return nil, r.fail(r.read, "%v", err)
	}
	nv, ln, err := r.unwrap(name)
	if err != nil {
		return nil, err
	}
	r.raise(ln)
	s, ok := nv.(starlark.String)
	if !ok {
		return nil, r.fail(ln, "getattr: got %s, want string", nv.Type())
	}
	v, err := r.attr(x, string(s))
	if err != nil && def != nil {
		r.raise(labelOf(x))
		return def, nil
	}
	return v, err
}

// builtinHasattr is hasattr(x, name): labelled with both.
func builtinHasattr(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	r, err := start(th)
	if err != nil {
		return nil, err
	}
	var x, name starlark.Value
	if err := starlark.UnpackPositionalArgs("hasattr", args, kwargs, 2, &x, &name); err != nil {
		return nil, r.fail(r.read, "%v", err)
	}
	nv, l, err := r.unwrap(name)
	if err != nil {
		return nil, err
	}
	s, ok := nv.(starlark.String)
	if !ok {
		return nil, r.fail(l, "hasattr: got %s, want string", nv.Type())
	}
	var names []string
	switch v := x.(type) {
	case *record:
		names, l = v.AttrNames(), join(l, v.l)
	case starlark.HasAttrs:
		names, l = v.AttrNames(), join(l, labelOf(x))
	}
	return r.wrap(starlark.Bool(slices.Contains(names, string(s)) && !slices.Contains(mutators, string(s))), l), nil
}

// builtinFail is fail(*args, sep=" "): an error whose text, and so whose
// label, is that of its arguments.
func builtinFail(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	r := runOf(th)
	pargs, l, err := r.unwrapAll(args)
	if err != nil {
		return nil, err
	}
	sep := " "
	pkw, lk, err := r.unwrapKwargs(kwargs)
	if err != nil {
		return nil, err
	}
	for _, kv := range pkw {
		if s, ok := kv[1].(starlark.String); ok && kv[0] == starlark.String("sep") {
			sep = string(s)
		}
	}
	parts := make([]string, len(pargs))
	for i, a := range pargs {
		if s, ok := a.(starlark.String); ok {
			parts[i] = string(s)
		} else {
			parts[i] = a.String()
		}
	}
	return nil, r.fail(join(l, lk), "fail: %s", strings.Join(parts, sep))
}
