package interp

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/ifc"
	"go.starlark.net/starlark"
)

// record is one node (a dict or a list) of a tool's output or of the
// inputs, with a label per path as the engine keeps a step's output: Base
// for the whole and Fields for paths below it ("items.0.name"). Reading a
// node's element gives a record again, or a labelled leaf, with the labels
// on its path joined: Base and each Fields entry from the root down to it.
// A record is never changed.
type record struct {
	root *recRoot
	v    any    // map[string]any or []any
	path string // "" at the root
	l    ifc.Label
	// canon says no key's label was joined on the way to this node.
	canon bool
	// flat is the node made a plain value, once it has been.
	flat starlark.Value
}

type recRoot struct {
	fields map[string]ifc.Label
	paths  []string // the keys of fields, sorted
	r      *run
	// memo holds the label of each path reached from the root with no
	// key label joined on the way: the same every time.
	memo map[string]ifc.Label
}

var (
	_ starlark.Iterable = (*record)(nil)
	_ starlark.Sequence = (*record)(nil)
	_ starlark.HasAttrs = (*record)(nil)
)

// newRecord makes the value a program gets for a JSON-shaped value with
// per-path labels.
func (r *run) newRecord(v any, base ifc.Label, fields map[string]ifc.Label) (starlark.Value, error) {
	root := &recRoot{fields: fields, r: r, memo: map[string]ifc.Label{}}
	for p := range fields {
		root.paths = append(root.paths, p)
	}
	slices.Sort(root.paths)
	out, err := root.node(v, "", join(base, root.label("")))
	if rc, ok := out.(*record); ok {
		rc.canon = true
	}
	return out, err
}

func (root *recRoot) node(v any, path string, l ifc.Label) (starlark.Value, error) {
	switch v.(type) {
	case map[string]any, []any:
		return &record{root: root, v: v, path: path, l: l}, nil
	}
	sv, err := fromJSON(v)
	if err != nil {
		return nil, err
	}
	l = join(l, root.below(path))
	root.r.readLabel(l)
	return root.r.wrap(sv, l), nil
}

// below joins the labels of the paths under path.
func (root *recRoot) below(path string) ifc.Label {
	ps := root.paths
	if path != "" {
		prefix := path + "."
		i, _ := slices.BinarySearch(ps, prefix)
		j := i
		for j < len(ps) && strings.HasPrefix(ps[j], prefix) {
			j++
		}
		ps = ps[i:j]
	}
	out := bottom()
	for _, p := range ps {
		out = join(out, root.fields[p])
	}
	return out
}

// label is the label at exactly path, the bottom when it has none.
func (root *recRoot) label(path string) ifc.Label {
	if l, ok := root.fields[path]; ok {
		return l
	}
	return bottom()
}

func subPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// deep is the label of everything in the node.
func (x *record) deep() ifc.Label { return join(x.l, x.root.below(x.path)) }

// child is the element at key k of a dict node, or at index i of a list
// node, with extra (the label of the key) joined to its label.
func (x *record) child(k string, v any, extra ifc.Label) (starlark.Value, error) {
	p := subPath(x.path, k)
	canon := x.canon && isBottom(extra)
	l, ok := x.root.memo[p]
	if !canon || !ok {
		l = join(x.l, x.root.label(p), extra)
		if canon {
			x.root.memo[p] = l
		}
	}
	x.root.r.readLabel(l)
	c, err := x.root.node(v, p, l)
	if rc, ok := c.(*record); ok {
		rc.canon = canon
	}
	return c, err
}

// index selects an element by a plain key.
func (x *record) index(k starlark.Value, extra ifc.Label) (starlark.Value, error) {
	switch v := x.v.(type) {
	case map[string]any:
		s, ok := k.(starlark.String)
		if !ok {
			return nil, fmt.Errorf("a dict of a tool's output has string keys, not %s", k.Type())
		}
		e, ok := v[string(s)]
		if !ok {
			return nil, fmt.Errorf("key %s not in dict", quote(string(s)))
		}
		return x.child(string(s), e, extra)
	case []any:
		i, err := starlark.AsInt32(k)
		if err != nil {
			return nil, fmt.Errorf("list index: %v", err)
		}
		if i < 0 {
			i += len(v)
		}
		if i < 0 || i >= len(v) {
			return nil, fmt.Errorf("index %d out of range: length %d", i, len(v))
		}
		return x.child(strconv.Itoa(i), v[i], extra)
	}
	return nil, fmt.Errorf("record: not a container")
}

func (x *record) String() string {
	sv, err := fromJSON(x.v)
	if err != nil {
		return "?"
	}
	return sv.String()
}

func (x *record) Type() string {
	if _, ok := x.v.([]any); ok {
		return "list"
	}
	return "dict"
}

func (x *record) Freeze() {}

func (x *record) size() int {
	switch v := x.v.(type) {
	case map[string]any:
		return len(v)
	case []any:
		return len(v)
	}
	return 0
}

func (x *record) Truth() starlark.Bool { x.root.r.raise(x.l); return x.size() > 0 }

func (x *record) Hash() (uint32, error) {
	return 0, fmt.Errorf("unhashable type: %s", x.Type())
}

func (x *record) Len() int { x.root.r.raise(x.l); return x.size() }

// Iterate yields a dict's keys, labelled with the dict's label, or a
// list's elements.
func (x *record) Iterate() starlark.Iterator {
	x.root.r.raise(x.l)
	return &recordIter{x: x, keys: x.keys()}
}

func (x *record) keys() []string {
	m, ok := x.v.(map[string]any)
	if !ok {
		return nil
	}
	return sortedKeys(m)
}

type recordIter struct {
	x    *record
	keys []string
	i    int
}

func (it *recordIter) Next(p *starlark.Value) bool {
	x := it.x
	switch v := x.v.(type) {
	case map[string]any:
		if it.i >= len(it.keys) {
			return false
		}
		*p = x.root.r.wrap(starlark.String(it.keys[it.i]), x.l)
	case []any:
		if it.i >= len(v) {
			return false
		}
		c, err := x.child(strconv.Itoa(it.i), v[it.i], bottom())
		if err != nil {
			return false
		}
		*p = c
	}
	it.i++
	return true
}

func (it *recordIter) Done() {}

func (x *record) Attr(name string) (starlark.Value, error) { return x.root.r.attr(x, name) }

func (x *record) AttrNames() []string {
	if _, ok := x.v.(map[string]any); ok {
		return []string{"get", "items", "keys", "values"}
	}
	return nil
}

// method is a dict method of a record node: get, keys, values, items keep
// the labels per path.
func (x *record) method(name string) starlark.Value {
	if _, ok := x.v.(map[string]any); !ok {
		return nil
	}
	switch name {
	case "get":
		return starlark.NewBuiltin("get", x.get)
	case "keys", "values", "items":
		return starlark.NewBuiltin(name, func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			if err := starlark.UnpackPositionalArgs(name, args, kw, 0); err != nil {
				return nil, err
			}
			return x.listing(name)
		})
	}
	return nil
}

func (x *record) get(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
	var k, d starlark.Value = nil, starlark.None
	if err := starlark.UnpackPositionalArgs("get", args, kw, 1, &k, &d); err != nil {
		return nil, err
	}
	r := x.root.r
	kv, lk, err := r.unwrap(k)
	if err != nil {
		return nil, err
	}
	s, ok := kv.(starlark.String)
	m := x.v.(map[string]any)
	if e, found := m[string(s)]; ok && found {
		return x.child(string(s), e, lk)
	}
	dv, ld, err := r.unwrap(d)
	if err != nil {
		return nil, err
	}
	return r.wrap(dv, join(x.l, lk, ld)), nil
}

// listing is keys(), values() or items() of a dict node: a new record
// whose base is the node's label and whose elements keep the labels of
// their paths.
func (x *record) listing(name string) (starlark.Value, error) {
	m := x.v.(map[string]any)
	keys := x.keys()
	out := make([]any, len(keys))
	fields := map[string]ifc.Label{}
	for i, k := range keys {
		at := strconv.Itoa(i)
		switch name {
		case "keys":
			out[i] = k
			continue
		case "values":
			out[i] = m[k]
		case "items":
			out[i] = []any{k, m[k]}
			at += ".1"
		}
		x.remap(subPath(x.path, k), at, fields)
	}
	if err := x.root.r.charge(int64(len(out))*48, x.l); err != nil {
		return nil, err
	}
	return x.root.r.newRecord(out, x.l, fields)
}

// remap copies the labels at from and below it to the same paths under to.
func (x *record) remap(from, to string, fields map[string]ifc.Label) {
	for _, p := range x.root.paths {
		switch {
		case p == from:
			fields[to] = x.root.fields[p]
		case strings.HasPrefix(p, from+"."):
			fields[to+p[len(from):]] = x.root.fields[p]
		}
	}
}

// flatten is a record turned into a plain value: labelled with every
// label below it.
func (r *run) flatten(x *record) (starlark.Value, ifc.Label, error) {
	l := x.deep()
	r.readLabel(l)
	if x.flat != nil {
		return x.flat, l, nil
	}
	sv, err := fromJSON(x.v)
	if err != nil {
		return nil, l, err
	}
	if err := r.charge(deepSize(sv, 0), l); err != nil {
		return nil, l, err
	}
	x.flat = sv
	return sv, l, nil
}

// deepSize estimates the bytes of a value made from JSON.
func deepSize(v starlark.Value, depth int) int64 {
	n := sizeOf(v)
	if depth > 100 {
		return n
	}
	switch x := v.(type) {
	case *starlark.Dict:
		for _, kv := range x.Items() {
			n += sizeOf(kv[0]) + deepSize(kv[1], depth+1)
		}
	case *starlark.List:
		for i := range x.Len() {
			n += deepSize(x.Index(i), depth+1)
		}
	}
	return n
}
