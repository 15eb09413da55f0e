package interp

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.starlark.net/syntax"
)

// Names of the helpers the rewritten program calls. They start with '$',
// which no Starlark identifier can, so a program can neither name nor
// rebind them.
const (
	hBin   = "$bin"   // $bin(op, x, y): every binary operator and comparison
	hUn    = "$un"    // $un(op, x): -x, +x, ~x, not x
	hAnd   = "$and"   // $and(x, lambda: y)
	hOr    = "$or"    // $or(x, lambda: y)
	hTruth = "$truth" // $truth(x): a condition; raises the program counter label
	hIter  = "$iter"  // $iter(x): what a loop runs over; raises the program counter label
	hIndex = "$index" // $index(x, k)
	hSlice = "$slice" // $slice(x, lo, hi, step)
	hList  = "$list"  // $list(a, b, ...): a list literal
	hTuple = "$tuple" // $tuple(a, b, ...)
	hDict  = "$dict"  // $dict(k1, v1, k2, v2, ...)
	hMade  = "$made"  // $made(comprehension): one labelled container
	hAttr  = "$attr"  // $attr(x, "name")
)

// mutators are the methods that change a list or a dict in place.
var mutators = []string{"append", "clear", "extend", "insert", "pop", "remove", "setdefault", "update"}

// unavailable are the universe names a plan may not use.
var unavailable = []string{"bytes", "dir", "hash", "print", "set"}

// fileOptions is the Starlark dialect of plans: top-level if and for and
// reassignment of globals, no while, no recursion, no sets.
func fileOptions() *syntax.FileOptions {
	return &syntax.FileOptions{TopLevelControl: true, GlobalReassign: true}
}

// problem is one compile error.
type problem struct {
	pos syntax.Position
	msg string
}

// checker finds what a plan may not do, and rewrites the syntax tree so
// that every operation on values goes through a helper that labels it.
type checker struct {
	file     string
	tools    map[string]map[string]Tool // worker → tool name → tool
	bound    map[string]bool            // names the program binds
	problems []problem
}

func (c *checker) errorf(pos syntax.Position, format string, args ...any) {
	c.problems = append(c.problems, problem{pos, fmt.Sprintf(format, args...)})
}

// compileError lists the problems found, sorted by position, at most 20.
type compileError struct {
	file     string
	problems []problem
}

func (e *compileError) Error() string {
	var b strings.Builder
	for i, p := range e.problems {
		if i == 20 {
			fmt.Fprintf(&b, "\n%s: and %d more", e.file, len(e.problems)-20)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s:%d:%d: %s", e.file, p.pos.Line, p.pos.Col, p.msg)
	}
	return b.String()
}

func toolTable(tools []Tool) map[string]map[string]Tool {
	out := map[string]map[string]Tool{}
	for _, t := range tools {
		w, name, ok := strings.Cut(t.Name, ".")
		if !ok {
			continue
		}
		if out[w] == nil {
			out[w] = map[string]Tool{}
		}
		out[w][name] = t
	}
	return out
}

func (c *checker) toolNames() string {
	var names []string
	for w, ts := range c.tools {
		for n := range ts {
			names = append(names, w+"."+n)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// collectBound records every name the program binds anywhere.
func (c *checker) collectBound(f *syntax.File) {
	c.bound = map[string]bool{}
	addAll := func(n syntax.Node) {
		if n == nil {
			return
		}
		syntax.Walk(n, func(n syntax.Node) bool {
			if id, ok := n.(*syntax.Ident); ok {
				c.bound[id.Name] = true
			}
			return true
		})
	}
	syntax.Walk(f, func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.AssignStmt:
			addAll(n.LHS)
		case *syntax.ForStmt:
			addAll(n.Vars)
		case *syntax.ForClause:
			addAll(n.Vars)
		case *syntax.DefStmt:
			c.bound[n.Name.Name] = true
			c.params(n.Params, addAll)
		case *syntax.LambdaExpr:
			c.params(n.Params, addAll)
		}
		return true
	})
}

func (c *checker) params(ps []syntax.Expr, add func(syntax.Node)) {
	for _, p := range ps {
		if b, ok := p.(*syntax.BinaryExpr); ok {
			add(b.X)
			continue
		}
		add(p)
	}
}

// --- statements ---------------------------------------------------------

func (c *checker) stmts(ss []syntax.Stmt) {
	for _, s := range ss {
		c.stmt(s)
	}
}

func (c *checker) stmt(s syntax.Stmt) {
	switch s := s.(type) {
	case *syntax.AssignStmt:
		c.assign(s)
	case *syntax.ExprStmt:
		s.X = c.expr(s.X)
	case *syntax.IfStmt:
		s.Cond = c.call(hTruth, s.If, c.expr(s.Cond))
		c.stmts(s.True)
		c.stmts(s.False)
	case *syntax.ForStmt:
		c.target(s.Vars, "a for loop's variables")
		s.X = c.call(hIter, s.For, c.expr(s.X))
		c.stmts(s.Body)
	case *syntax.WhileStmt:
		c.errorf(s.While, "while loops are not allowed in plans; loop with for over a list or a range")
	case *syntax.DefStmt:
		c.paramList(s.Params)
		c.stmts(s.Body)
	case *syntax.ReturnStmt:
		if s.Result != nil {
			s.Result = c.expr(s.Result)
		}
	case *syntax.LoadStmt:
		c.errorf(s.Load, "load is not allowed in plans: a plan is one file")
	case *syntax.BranchStmt:
	}
}

// assign checks an assignment and rewrites x op= y as x = x op y.
func (c *checker) assign(s *syntax.AssignStmt) {
	s.RHS = c.expr(s.RHS)
	if s.Op == syntax.EQ {
		c.target(s.LHS, "an assignment")
		return
	}
	id, ok := s.LHS.(*syntax.Ident)
	if !ok {
		c.errorf(s.OpPos, "%s on %s would change a container after it is made; assign a new value to a name instead, e.g. xs = xs + [x] or d = dict(d, k=v)", s.Op, describe(s.LHS))
		return
	}
	op := s.Op - syntax.PLUS_EQ + syntax.PLUS
	old := &syntax.Ident{NamePos: id.NamePos, Name: id.Name}
	s.RHS = c.call(hBin, s.OpPos, intLit(int64(op), s.OpPos), old, s.RHS)
	s.Op = syntax.EQ
}

func describe(e syntax.Expr) string {
	switch e.(type) {
	case *syntax.IndexExpr:
		return "an element"
	case *syntax.DotExpr:
		return "an attribute"
	}
	return "this target"
}

// target refuses assignment to an element or an attribute: the
// containers of a plan do not change after they are made.
func (c *checker) target(e syntax.Expr, what string) {
	switch e := e.(type) {
	case *syntax.IndexExpr:
		c.errorf(e.Lbrack, "%s to an element would change a container after it is made; build a new one instead: xs = xs[:i] + [v] + xs[i+1:], d = dict(d, k=v) or d = d | {k: v}", what)
	case *syntax.DotExpr:
		c.errorf(e.Dot, "%s to an attribute is not allowed in plans", what)
	case *syntax.ParenExpr:
		c.target(e.X, what)
	case *syntax.TupleExpr:
		for _, x := range e.List {
			c.target(x, what)
		}
	case *syntax.ListExpr:
		for _, x := range e.List {
			c.target(x, what)
		}
	}
}

// paramList refuses *args and **kwargs and rewrites defaults.
func (c *checker) paramList(ps []syntax.Expr) {
	for _, p := range ps {
		switch p := p.(type) {
		case *syntax.UnaryExpr:
			if p.X != nil {
				c.errorf(p.OpPos, "%s%s parameters are not allowed in plans; name each parameter", p.Op, p.X.(*syntax.Ident).Name)
			}
		case *syntax.BinaryExpr:
			p.Y = c.expr(p.Y)
		}
	}
}

// --- expressions --------------------------------------------------------

func (c *checker) exprs(es []syntax.Expr) []syntax.Expr {
	out := make([]syntax.Expr, len(es))
	for i, e := range es {
		out[i] = c.expr(e)
	}
	return out
}

func (c *checker) expr(e syntax.Expr) syntax.Expr {
	switch e := e.(type) {
	case *syntax.Ident:
		if slices.Contains(unavailable, e.Name) && !c.bound[e.Name] {
			c.errorf(e.NamePos, "%s is not available in plans", e.Name)
		}
		return e
	case *syntax.Literal:
		return e
	case *syntax.ParenExpr:
		e.X = c.expr(e.X)
		return e
	case *syntax.BinaryExpr:
		return c.binary(e)
	case *syntax.UnaryExpr:
		return c.call(hUn, e.OpPos, intLit(int64(e.Op), e.OpPos), c.expr(e.X))
	case *syntax.CondExpr:
		e.Cond = c.call(hTruth, e.If, c.expr(e.Cond))
		e.True, e.False = c.expr(e.True), c.expr(e.False)
		return e
	case *syntax.CallExpr:
		return c.callExpr(e)
	case *syntax.LambdaExpr:
		c.paramList(e.Params)
		e.Body = c.expr(e.Body)
		return e
	}
	return c.access(e)
}

// access rewrites selections and the literals that make containers.
func (c *checker) access(e syntax.Expr) syntax.Expr {
	switch e := e.(type) {
	case *syntax.IndexExpr:
		return c.call(hIndex, e.Lbrack, c.expr(e.X), c.expr(e.Y))
	case *syntax.SliceExpr:
		return c.call(hSlice, e.Lbrack, c.expr(e.X), c.optional(e.Lo, e.Lbrack), c.optional(e.Hi, e.Lbrack), c.optional(e.Step, e.Lbrack))
	case *syntax.DotExpr:
		return c.call(hAttr, e.Dot, c.expr(e.X), strLit(e.Name.Name, e.Name.NamePos))
	case *syntax.ListExpr:
		return c.call(hList, e.Lbrack, c.exprs(e.List)...)
	case *syntax.TupleExpr:
		return c.call(hTuple, syntax.Start(e), c.exprs(e.List)...)
	case *syntax.DictExpr:
		var kv []syntax.Expr
		for _, x := range e.List {
			d := x.(*syntax.DictEntry)
			kv = append(kv, c.expr(d.Key), c.expr(d.Value))
		}
		return c.call(hDict, e.Lbrace, kv...)
	case *syntax.Comprehension:
		return c.comprehension(e)
	}
	c.errorf(syntax.Start(e), "this expression is not allowed in plans")
	return e
}

func (c *checker) optional(e syntax.Expr, pos syntax.Position) syntax.Expr {
	if e == nil {
		return &syntax.Ident{NamePos: pos, Name: "None"}
	}
	return c.expr(e)
}

func (c *checker) binary(e *syntax.BinaryExpr) syntax.Expr {
	x, y := c.expr(e.X), c.expr(e.Y)
	switch e.Op {
	case syntax.AND, syntax.OR:
		name := hAnd
		if e.Op == syntax.OR {
			name = hOr
		}
		return c.call(name, e.OpPos, x, &syntax.LambdaExpr{Lambda: e.OpPos, Body: y})
	}
	return c.call(hBin, e.OpPos, intLit(int64(e.Op), e.OpPos), x, y)
}

func (c *checker) comprehension(e *syntax.Comprehension) syntax.Expr {
	for _, cl := range e.Clauses {
		switch cl := cl.(type) {
		case *syntax.ForClause:
			c.target(cl.Vars, "a comprehension's variables")
			cl.X = c.call(hIter, cl.For, c.expr(cl.X))
		case *syntax.IfClause:
			cl.Cond = c.call(hTruth, cl.If, c.expr(cl.Cond))
		}
	}
	if d, ok := e.Body.(*syntax.DictEntry); ok {
		d.Key, d.Value = c.expr(d.Key), c.expr(d.Value)
	} else {
		e.Body = c.expr(e.Body)
	}
	return c.call(hMade, e.Lbrack, e)
}

// callExpr checks tool calls and refuses the methods that change a
// container.
func (c *checker) callExpr(e *syntax.CallExpr) syntax.Expr {
	if d, ok := e.Fn.(*syntax.DotExpr); ok {
		if id, ok := d.X.(*syntax.Ident); ok && !c.bound[id.Name] && c.isWorker(id.Name) {
			c.toolCall(e, id.Name, d.Name.Name)
		} else if slices.Contains(mutators, d.Name.Name) {
			c.errorf(d.Name.NamePos, ".%s would change a container after it is made; make a new one instead: xs = xs + [x], a comprehension, d = dict(d, k=v) or d = d | {k: v}", d.Name.Name)
		}
	}
	e.Fn = c.expr(e.Fn)
	for i, a := range e.Args {
		switch a := a.(type) {
		case *syntax.BinaryExpr:
			if a.Op == syntax.EQ {
				a.Y = c.expr(a.Y)
				continue
			}
		case *syntax.UnaryExpr:
			if a.Op == syntax.STAR || a.Op == syntax.STARSTAR {
				a.X = c.expr(a.X)
				continue
			}
		}
		e.Args[i] = c.expr(a)
	}
	return e
}

// isWorker reports whether name.attr is meant as a tool: name is a
// worker, or name is bound nowhere and is no builtin (an unknown worker).
func (c *checker) isWorker(name string) bool {
	if _, ok := c.tools[name]; ok {
		return true
	}
	return !isBuiltinName(name)
}

func (c *checker) toolCall(e *syntax.CallExpr, worker, name string) {
	pos := e.Fn.(*syntax.DotExpr).Name.NamePos
	ts, ok := c.tools[worker]
	if !ok {
		c.errorf(syntax.Start(e.Fn), "unknown tool %q; the tools are: %s", worker+"."+name, c.toolNames())
		return
	}
	t, ok := ts[name]
	if !ok {
		c.errorf(pos, "unknown tool %q; the tools are: %s", worker+"."+name, c.toolNames())
		return
	}
	for _, a := range e.Args {
		b, ok := a.(*syntax.BinaryExpr)
		if !ok || b.Op != syntax.EQ {
			c.errorf(syntax.Start(a), "%s takes keyword arguments only, as %s(%s=...)", t.Name, t.Name, firstParam(t))
			continue
		}
		k := b.X.(*syntax.Ident)
		if t.Params != nil && !slices.Contains(t.Params, k.Name) {
			c.errorf(k.NamePos, "%s has no parameter %q; its parameters are: %s", t.Name, k.Name, strings.Join(t.Params, ", "))
		}
	}
}

func firstParam(t Tool) string {
	if len(t.Params) > 0 {
		return t.Params[0]
	}
	return "name"
}

// --- building nodes -----------------------------------------------------

func (c *checker) call(name string, pos syntax.Position, args ...syntax.Expr) *syntax.CallExpr {
	return &syntax.CallExpr{Fn: &syntax.Ident{NamePos: pos, Name: name}, Lparen: pos, Args: args, Rparen: pos}
}

func intLit(v int64, pos syntax.Position) *syntax.Literal {
	return &syntax.Literal{Token: syntax.INT, TokenPos: pos, Raw: fmt.Sprint(v), Value: v}
}

func strLit(s string, pos syntax.Position) *syntax.Literal {
	return &syntax.Literal{Token: syntax.STRING, TokenPos: pos, Raw: fmt.Sprintf("%q", s), Value: s}
}
