package interp

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/ifc"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

type builtinFn = func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)

// helpers are the functions the rewritten program calls; see compile.go.
func helpers() map[string]builtinFn {
	return map[string]builtinFn{
		hBin: opBinary, hUn: opUnary, hAnd: opAnd, hOr: opOr, hTruth: opTruth, hIter: opIter,
		hIndex: opIndex, hSlice: opSlice, hList: opList, hTuple: opTuple, hDict: opDict,
		hMade: opMade, hAttr: opAttr,
	}
}

// start is what every helper does first: find the run and check the time.
func start(th *starlark.Thread) (*run, error) {
	r := runOf(th)
	return r, r.tick()
}

// done freezes a result, counts its bytes and labels it.
func (r *run) done(v starlark.Value, l ifc.Label) (starlark.Value, error) {
	v.Freeze()
	if err := r.charge(sizeOf(v), l); err != nil {
		return nil, err
	}
	return r.wrap(v, l), nil
}

func opBinary(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	r, err := start(th)
	if err != nil {
		return nil, err
	}
	op := token(args[0])
	x, lx, err := r.unwrap(args[1])
	if err != nil {
		return nil, err
	}
	y, ly, err := r.unwrap(args[2])
	if err != nil {
		return nil, err
	}
	l := join(lx, ly)
	if err := r.charge(binarySize(op, x, y), l); err != nil {
		return nil, err
	}
	var v starlark.Value
	switch op {
	case syntax.EQL, syntax.NEQ, syntax.LT, syntax.LE, syntax.GT, syntax.GE:
		var ok bool
		ok, err = starlark.Compare(op, x, y)
		v = starlark.Bool(ok)
	default:
		v, err = starlark.Binary(op, x, y)
	}
	if err != nil {
		return nil, r.failErr(err, l)
	}
	return r.done(v, l)
}

func token(v starlark.Value) syntax.Token {
	i, _ := starlark.AsInt32(v)
	return syntax.Token(i)
}

// binarySize bounds the bytes the result of x op y will hold, before it
// is made: concatenation, repetition, formatting and big integers.
func binarySize(op syntax.Token, x, y starlark.Value) int64 {
	switch op {
	case syntax.PLUS:
		return seqBytes(x) + seqBytes(y)
	case syntax.STAR:
		return repeatBytes(x, y) + repeatBytes(y, x)
	case syntax.PERCENT:
		if s, ok := x.(starlark.String); ok {
			return int64(len(s)) + int64(strings.Count(string(s), "%"))*(reprSize(y, 0)+8)
		}
	case syntax.LTLT:
		if n, err := starlark.AsInt32(y); err == nil && n > 0 {
			return intBytes(bitLen(x) + n)
		}
	}
	return 0
}

// reprSize bounds the length of a value's text, without making it.
func reprSize(v starlark.Value, depth int) int64 {
	switch x := v.(type) {
	case starlark.String:
		return int64(len(x))*6 + 2
	case starlark.Int:
		return int64(bitLen(x))/3 + 2
	case *starlark.Dict:
		var n int64
		for _, kv := range x.Items() {
			n += reprSize(kv[0], depth+1) + reprSize(kv[1], depth+1) + 4
		}
		return n + 2
	case starlark.Sequence:
		return seqRepr(x, depth)
	}
	return int64(len(v.String()))
}

func seqRepr(x starlark.Sequence, depth int) int64 {
	if depth > 8 || x.Type() == "range" {
		return int64(x.Len()) * 24
	}
	it := x.Iterate()
	defer it.Done()
	var n int64
	var e starlark.Value
	for it.Next(&e) {
		n += reprSize(e, depth+1) + 2
	}
	return n + 2
}

// maxIntBits bounds the integers a plan makes: JSON carries no integer
// beyond 64 bits, and multiplying huge ones takes time no limit stops.
const maxIntBits = 1 << 16

// seqBytes is the size of a string, list or tuple.
func seqBytes(v starlark.Value) int64 {
	switch x := v.(type) {
	case starlark.String:
		return int64(len(x))
	case *starlark.List, starlark.Tuple:
		return int64(x.(starlark.Sequence).Len()) * 16
	case starlark.Int:
		return int64(bitLen(x)) / 8
	}
	return 0
}

// intBytes is the size of an integer of bits bits; past maxIntBits it is
// more than any memory limit, so that making it fails.
func intBytes(bits int) int64 {
	if bits > maxIntBits {
		return math.MaxInt64 / 2
	}
	return int64(bits) / 8
}

// repeatBytes is the size of x repeated n times (x * n), saturated.
func repeatBytes(x, n starlark.Value) int64 {
	k, ok := n.(starlark.Int)
	if !ok {
		return 0
	}
	if _, isInt := x.(starlark.Int); isInt {
		return intBytes(bitLen(x) + bitLen(k))
	}
	c, ok := k.Int64()
	if !ok || c <= 0 {
		return 0
	}
	f := float64(seqBytes(x)) * float64(c)
	if f > math.MaxInt64/2 {
		return math.MaxInt64 / 2
	}
	return int64(f)
}

func opUnary(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	r, err := start(th)
	if err != nil {
		return nil, err
	}
	op := token(args[0])
	x, l, err := r.unwrap(args[1])
	if err != nil {
		return nil, err
	}
	if op == syntax.NOT {
		return r.wrap(!x.Truth(), l), nil
	}
	v, err := starlark.Unary(op, x)
	if err != nil {
		return nil, r.failErr(err, l)
	}
	return r.done(v, l)
}

// truth is the truth of a value; the program counter label rises by the
// label it depends on: a record's length is labelled by its node's label.
func (r *run) truth(v starlark.Value) (bool, error) {
	switch x := v.(type) {
	case *record:
		r.raise(x.l)
		return x.size() > 0, nil
	case *labeled:
		r.raise(x.l)
		return bool(x.v.Truth()), nil
	}
	return bool(v.Truth()), nil
}

func opTruth(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	r, err := start(th)
	if err != nil {
		return nil, err
	}
	t, err := r.truth(args[0])
	return starlark.Bool(t), err
}

// opAnd is x and y: y is evaluated only when x is true, so the program
// counter label rises by x's label.
func opAnd(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	return shortCircuit(th, args, false)
}

func opOr(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	return shortCircuit(th, args, true)
}

func shortCircuit(th *starlark.Thread, args starlark.Tuple, stopOn bool) (starlark.Value, error) {
	r, err := start(th)
	if err != nil {
		return nil, err
	}
	t, err := r.truth(args[0])
	if err != nil || t == stopOn {
		return args[0], err
	}
	return starlark.Call(th, args[1], nil, nil)
}

// opIter is what a for loop or a comprehension runs over: how many times
// it runs depends on the label of the container, so the program counter
// label rises by it.
func opIter(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	r, err := start(th)
	if err != nil {
		return nil, err
	}
	switch x := args[0].(type) {
	case *record:
		r.raise(x.l)
		return x, nil
	case *labeled:
		r.raise(x.l)
		if _, ok := x.v.(starlark.Iterable); !ok {
			return nil, r.fail(x.l, "for loop: %s value is not iterable", x.v.Type())
		}
		return x, nil
	}
	if _, ok := args[0].(starlark.Iterable); !ok {
		return nil, r.fail(bottom(), "for loop: %s value is not iterable", args[0].Type())
	}
	return args[0], nil
}

// opIndex is x[k]: the key selects, so the program counter label rises by
// its label, and the element is labelled with both.
func opIndex(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	r, err := start(th)
	if err != nil {
		return nil, err
	}
	k, lk, err := r.unwrap(args[1])
	if err != nil {
		return nil, err
	}
	r.raise(lk)
	if rec, ok := args[0].(*record); ok {
		v, err := rec.index(k, lk)
		if err != nil {
			return nil, r.failErr(err, join(rec.l, lk))
		}
		return v, nil
	}
	x, lx, err := r.unwrap(args[0])
	if err != nil {
		return nil, err
	}
	l := join(lx, lk)
	v, err := indexPlain(x, k)
	if err != nil {
		return nil, r.failErr(err, l)
	}
	return r.wrap(v, l), nil
}

func indexPlain(x, k starlark.Value) (starlark.Value, error) {
	switch x := x.(type) {
	case starlark.Mapping:
		v, found, err := x.Get(k)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("key %v not in %s", k, x.Type())
		}
		return v, nil
	case starlark.Indexable:
		i, err := starlark.AsInt32(k)
		if err != nil {
			return nil, fmt.Errorf("%s index: %v", x.Type(), err)
		}
		n := x.Len()
		if i < 0 {
			i += n
		}
		if i < 0 || i >= n {
			return nil, fmt.Errorf("%s index %d out of range [0:%d]", x.Type(), i, n)
		}
		return x.Index(i), nil
	}
	return nil, fmt.Errorf("unhandled index operation %s[%s]", x.Type(), k.Type())
}

// opSlice is x[lo:hi:step].
func opSlice(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	r, err := start(th)
	if err != nil {
		return nil, err
	}
	vs, l, err := r.unwrapAll(args)
	if err != nil {
		return nil, err
	}
	v, err := slice(vs[0], vs[1], vs[2], vs[3])
	if err != nil {
		return nil, r.failErr(err, l)
	}
	return r.done(v, l)
}

// slice is Starlark's slice operation.
func slice(x, lo, hi, step starlark.Value) (starlark.Value, error) {
	s, ok := x.(starlark.Sliceable)
	if !ok {
		return nil, fmt.Errorf("invalid slice operand %s", x.Type())
	}
	n := s.Len()
	st := 1
	if step != starlark.None {
		var err error
		if st, err = starlark.AsInt32(step); err != nil {
			return nil, fmt.Errorf("invalid slice step: %v", err)
		}
		if st == 0 {
			return nil, fmt.Errorf("zero is not a valid slice step")
		}
	}
	var lo0, hi0 int
	if st > 0 {
		lo0, hi0 = 0, n
	} else {
		lo0, hi0 = n-1, -1
	}
	a, err := sliceIndex(lo, n, lo0, st)
	if err != nil {
		return nil, err
	}
	b, err := sliceIndex(hi, n, hi0, st)
	if err != nil {
		return nil, err
	}
	if (st > 0 && b < a) || (st < 0 && b > a) {
		b = a
	}
	return s.Slice(a, b, st), nil
}

// sliceIndex clamps one bound of a slice, as Python does.
func sliceIndex(v starlark.Value, n, def, step int) (int, error) {
	if v == starlark.None {
		return def, nil
	}
	i, err := starlark.AsInt32(v)
	if err != nil {
		return 0, fmt.Errorf("invalid start index: %v", err)
	}
	if i < 0 {
		i += n
	}
	lowest, highest := 0, n
	if step < 0 {
		lowest, highest = -1, n-1
	}
	return min(max(i, lowest), highest), nil
}

// unwrapAll unwraps values and joins their labels.
func (r *run) unwrapAll(vs starlark.Tuple) (starlark.Tuple, ifc.Label, error) {
	out := make(starlark.Tuple, len(vs))
	l := bottom()
	for i, v := range vs {
		pv, pl, err := r.unwrap(v)
		if err != nil {
			return nil, l, err
		}
		out[i] = pv
		l = join(l, pl)
	}
	return out, l, nil
}

// opList is a list literal: one list of plain values labelled with the
// join of its elements' labels.
func opList(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	r, err := start(th)
	if err != nil {
		return nil, err
	}
	vs, l, err := r.unwrapAll(args)
	if err != nil {
		return nil, err
	}
	return r.done(starlark.NewList(vs), l)
}

func opTuple(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	r, err := start(th)
	if err != nil {
		return nil, err
	}
	vs, l, err := r.unwrapAll(args)
	if err != nil {
		return nil, err
	}
	return r.done(vs, l)
}

func opDict(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	r, err := start(th)
	if err != nil {
		return nil, err
	}
	vs, l, err := r.unwrapAll(args)
	if err != nil {
		return nil, err
	}
	d := starlark.NewDict(len(vs) / 2)
	for i := 0; i+1 < len(vs); i += 2 {
		if _, found, _ := d.Get(vs[i]); found {
			return nil, r.fail(l, "duplicate key: %v", vs[i])
		}
		if err := d.SetKey(vs[i], vs[i+1]); err != nil {
			return nil, r.failErr(err, l)
		}
	}
	return r.done(d, l)
}

// opMade turns what a comprehension made into one container of plain
// values labelled with the join of what it holds.
func opMade(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	r, err := start(th)
	if err != nil {
		return nil, err
	}
	switch x := args[0].(type) {
	case *starlark.List:
		vs, l, err := r.unwrapAll(listElems(x))
		if err != nil {
			return nil, err
		}
		return r.done(starlark.NewList(vs), l)
	case *starlark.Dict:
		return r.plainDict(x)
	}
	return nil, r.fail(r.read, "comprehension made a %s", args[0].Type())
}

func listElems(x *starlark.List) starlark.Tuple {
	out := make(starlark.Tuple, x.Len())
	for i := range out {
		out[i] = x.Index(i)
	}
	return out
}

func (r *run) plainDict(x *starlark.Dict) (starlark.Value, error) {
	l := bottom()
	d := starlark.NewDict(x.Len())
	for _, kv := range x.Items() {
		pair, pl, err := r.unwrapAll(kv)
		if err != nil {
			return nil, err
		}
		l = join(l, pl)
		if err := d.SetKey(pair[0], pair[1]); err != nil {
			return nil, r.failErr(err, l)
		}
	}
	return r.done(d, l)
}

func opAttr(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	r, err := start(th)
	if err != nil {
		return nil, err
	}
	return r.attr(args[0], string(args[1].(starlark.String)))
}

// attr is x.name: a tool of a worker, a method of a record node, or a
// method of a plain value, bound so that its result is labelled with the
// join of its receiver's and its arguments' labels.
func (r *run) attr(x starlark.Value, name string) (starlark.Value, error) {
	switch v := x.(type) {
	case *module:
		if t, _ := v.Attr(name); t != nil {
			return t, nil
		}
		return nil, r.fail(bottom(), "worker %s has no tool %q; it has: %s", v.name, name, strings.Join(v.AttrNames(), ", "))
	case *record:
		if m := v.method(name); m != nil {
			return m, nil
		}
	}
	if slices.Contains(mutators, name) {
		return nil, r.fail(labelOf(x), ".%s would change a container after it is made; make a new one instead", name)
	}
	xv, l, err := r.unwrap(x)
	if err != nil {
		return nil, err
	}
	ha, ok := xv.(starlark.HasAttrs)
	if !ok {
		return nil, r.fail(l, "%s has no .%s field or method", xv.Type(), name)
	}
	a, err := ha.Attr(name)
	if err != nil || a == nil {
		return nil, r.fail(l, "%s has no .%s field or method", xv.Type(), name)
	}
	if b, ok := a.(*starlark.Builtin); ok {
		return &method{b: b, recv: xv, l: l}, nil
	}
	return r.wrap(a, l), nil
}

// method is a method of a plain value, bound to it.
type method struct {
	b    *starlark.Builtin
	recv starlark.Value
	l    ifc.Label
}

func (m *method) String() string        { return m.b.String() }
func (m *method) Type() string          { return m.b.Type() }
func (m *method) Freeze()               {}
func (m *method) Truth() starlark.Bool  { return true }
func (m *method) Hash() (uint32, error) { return m.b.Hash() }
func (m *method) Name() string          { return m.b.Name() }

func (m *method) CallInternal(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
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
	l = join(l, lk, m.l)
	if err := r.charge(methodSize(m.b.Name(), m.recv, pargs), l); err != nil {
		return nil, err
	}
	v, err := m.b.CallInternal(th, pargs, pkw)
	if err != nil {
		return nil, r.failErr(err, l)
	}
	return r.done(v, l)
}

func (r *run) unwrapKwargs(kwargs []starlark.Tuple) ([]starlark.Tuple, ifc.Label, error) {
	out := make([]starlark.Tuple, len(kwargs))
	l := bottom()
	for i, kv := range kwargs {
		v, vl, err := r.unwrap(kv[1])
		if err != nil {
			return nil, l, err
		}
		out[i] = starlark.Tuple{kv[0], v}
		l = join(l, vl)
	}
	return out, l, nil
}

// methodSize bounds the bytes a string method makes, before it runs.
func methodSize(name string, recv starlark.Value, args starlark.Tuple) int64 {
	s, ok := recv.(starlark.String)
	if !ok {
		return 0
	}
	switch name {
	case "join":
		if len(args) == 1 {
			return joinSize(len(s), args[0])
		}
	case "replace":
		if len(args) >= 2 {
			old, _ := starlark.AsString(args[0])
			new, _ := starlark.AsString(args[1])
			return int64(len(s)) + int64(strings.Count(string(s), old)+1)*int64(len(new))
		}
	case "format":
		var most int64
		for _, a := range args {
			most = max(most, reprSize(a, 0))
		}
		return int64(len(s)) + int64(strings.Count(string(s), "{"))*(most+8)
	}
	return 0
}

func joinSize(sep int, v starlark.Value) int64 {
	it := starlark.Iterate(v)
	if it == nil {
		return 0
	}
	defer it.Done()
	var n int64
	var e starlark.Value
	for it.Next(&e) {
		if s, ok := e.(starlark.String); ok {
			n += int64(len(s))
		}
		n += int64(sep)
	}
	return n
}
