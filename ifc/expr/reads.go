package expr

import (
	"slices"
	"strconv"
	"strings"

	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
)

// Path is a value an expression reads: ["inputs", "budget"],
// ["steps", "pick", "output", "price"]. The first element is one of
// inputs, steps, item or index. A path names the value and everything below
// it: ["steps"] reads every step's output.
type Path []string

// String joins the elements with ".": "steps.pick.output.price". Keys that
// contain a dot make the text ambiguous; compare Paths, not strings.
func (p Path) String() string { return strings.Join(p, ".") }

// isRoot reports whether name is a variable a path can start from. index
// is one of them so that the caller sees the dependency; see
// [Template.Label].
func isRoot(name string) bool {
	switch name {
	case varInputs, varSteps, varItem, varIndex:
		return true
	}
	return false
}

// Ref is one place an expression reads a value: the path, and where each
// of its elements is written.
type Ref struct {
	Path Path
	// Offsets[i] is the byte offset in the template's source where
	// Path[i] is written: the name of a variable or field, or the key of
	// an index.
	Offsets []int
}

// reads walks a checked syntax tree and returns every path it reads, and
// each place it is read, with offsets relative to the expression's text.
func reads(a *ast.AST) ([]Path, []Ref) {
	w := &walker{bound: map[string]int{}, si: a.SourceInfo()}
	w.expr(a.Expr())
	return w.paths, w.refs
}

// walker collects paths. bound counts, per name, the comprehension
// variables in scope that shadow a root of that name.
type walker struct {
	bound map[string]int
	paths []Path
	si    *ast.SourceInfo
	refs  []Ref
}

// offset returns where the node starts in the expression's text.
func (w *walker) offset(e ast.Expr) int {
	if w.si == nil {
		return 0
	}
	r, ok := w.si.GetOffsetRange(e.ID())
	if !ok {
		return 0
	}
	return int(r.Start)
}

func (w *walker) isRoot(name string) bool {
	return isRoot(name) && w.bound[name] == 0
}

func (w *walker) expr(e ast.Expr) {
	if e == nil {
		return
	}
	if p, dynamic, ok := w.chain(e); ok {
		w.paths = append(w.paths, p.path)
		w.refs = append(w.refs, Ref{Path: p.path, Offsets: p.offs})
		for _, d := range dynamic {
			w.expr(d)
		}
		return
	}
	switch e.Kind() {
	case ast.SelectKind:
		w.expr(e.AsSelect().Operand())
	case ast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() {
			w.expr(c.Target())
		}
		for _, arg := range c.Args() {
			w.expr(arg)
		}
	case ast.ListKind:
		for _, el := range e.AsList().Elements() {
			w.expr(el)
		}
	case ast.MapKind:
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			w.expr(me.Key())
			w.expr(me.Value())
		}
	case ast.StructKind:
		for _, en := range e.AsStruct().Fields() {
			w.expr(en.AsStructField().Value())
		}
	case ast.ComprehensionKind:
		c := e.AsComprehension()
		// The range and the initial accumulator are outside the loop's
		// scope; what the loop iterates over is read.
		w.expr(c.IterRange())
		w.expr(c.AccuInit())
		vars := []string{c.IterVar(), c.AccuVar()}
		if c.HasIterVar2() {
			vars = append(vars, c.IterVar2())
		}
		for _, v := range vars {
			w.bound[v]++
		}
		w.expr(c.LoopCondition())
		w.expr(c.LoopStep())
		w.expr(c.Result())
		for _, v := range vars {
			w.bound[v]--
		}
	}
	// Identifiers that are not roots (comprehension variables) and
	// literals read nothing.
}

// chainResult is the static path of a select or index chain.
type chainResult struct {
	path    Path
	offs    []int // where each element of path is written
	stopped bool  // a computed key or index ended the static part
}

// chain reports whether e is a chain of selects and indexes rooted at a
// root variable. It returns the longest static path and the expressions of
// the computed keys, which are read too.
func (w *walker) chain(e ast.Expr) (chainResult, []ast.Expr, bool) {
	switch e.Kind() {
	case ast.IdentKind:
		name := e.AsIdent()
		if !w.isRoot(name) {
			return chainResult{}, nil, false
		}
		return chainResult{path: Path{name}, offs: []int{w.offset(e)}}, nil, true
	case ast.SelectKind:
		s := e.AsSelect()
		r, dyn, ok := w.chain(s.Operand())
		if !ok {
			return chainResult{}, nil, false
		}
		if !r.stopped {
			r.path = append(slices.Clip(r.path), s.FieldName())
			// The node of a selection is at its dot.
			r.offs = append(slices.Clip(r.offs), w.offset(e)+1)
		}
		return r, dyn, true
	case ast.CallKind:
		c := e.AsCall()
		if c.FunctionName() != operators.Index || c.IsMemberFunction() || len(c.Args()) != 2 {
			return chainResult{}, nil, false
		}
		r, dyn, ok := w.chain(c.Args()[0])
		if !ok {
			return chainResult{}, nil, false
		}
		if r.stopped {
			return r, append(dyn, c.Args()[1]), true
		}
		if key, ok := constPathKey(c.Args()[1]); ok {
			r.path = append(slices.Clip(r.path), key)
			r.offs = append(slices.Clip(r.offs), w.offset(c.Args()[1]))
			return r, dyn, true
		}
		// A computed key: the path ends here, and the key expression is
		// read.
		r.stopped = true
		return r, append(dyn, c.Args()[1]), true
	}
	return chainResult{}, nil, false
}

// constIndexKey returns k for an index expression x["k"] with a constant
// string key.
func constIndexKey(e ast.Expr) (string, bool) {
	if e.Kind() != ast.CallKind {
		return "", false
	}
	c := e.AsCall()
	if c.FunctionName() != operators.Index || len(c.Args()) != 2 {
		return "", false
	}
	k := c.Args()[1]
	if k.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := k.AsLiteral().(types.String)
	return string(s), ok
}

// constPathKey returns the path element of a constant key: a string key
// as it is, an integer (a list index) in decimal, the way a worker names a
// list element in its field labels ("messages.0"). Element i of a list
// read this way carries the labels of the list, of element i and of what
// lies below it, and not those of the other elements: which element sits
// at i is decided by whoever built the list, whose label the list carries.
func constPathKey(k ast.Expr) (string, bool) {
	if k.Kind() != ast.LiteralKind {
		return "", false
	}
	switch v := k.AsLiteral().(type) {
	case types.String:
		return string(v), true
	case types.Int:
		return strconv.FormatInt(int64(v), 10), true
	case types.Uint:
		return strconv.FormatUint(uint64(v), 10), true
	}
	return "", false
}

// sortPaths sorts and deduplicates paths.
func sortPaths(ps []Path) []Path {
	slices.SortFunc(ps, func(a, b Path) int { return slices.Compare(a, b) })
	return slices.CompactFunc(ps, func(a, b Path) bool { return slices.Equal(a, b) })
}
