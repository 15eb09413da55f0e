package policy

import (
	"slices"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
)

// A rule is about some tools when its when expression is a conjunction
// (a && b && …) one of whose terms names them:
//
//	tool.name == "payment.charge"
//	tool.name in ["payment.charge", "email.send"]
//	tool.worker == "payment"          (every tool of the worker, when the catalog is known)
//
// Such a rule can match no other tool, whatever the rest of it says: CEL's
// && is false when one term is false, even if another fails. So Decide
// evaluates it only for those tools, and args is typed for each of them.
// A rule with no such term (or with one only inside || or !) is about any
// tool and keeps args dynamic.

// flagTest is a term of a rule's conjunction that reads one flag of the
// tool: tool.privileged, !tool.egress, tool.approvable == false. A rule
// with such a term can match only tools whose flag has that value.
type flagTest struct {
	flag string // privileged, approvable or egress
	want bool
}

// flagTests returns the flag terms of a rule's top-level conjunction.
func flagTests(a *ast.AST) []flagTest {
	var out []flagTest
	for _, term := range conjuncts(a.Expr()) {
		want := true
		e := term
		if e.Kind() == ast.CallKind && e.AsCall().FunctionName() == operators.LogicalNot && len(e.AsCall().Args()) == 1 {
			want, e = false, e.AsCall().Args()[0]
		}
		if e.Kind() == ast.CallKind && e.AsCall().FunctionName() == operators.Equals && len(e.AsCall().Args()) == 2 {
			args := e.AsCall().Args()
			for _, pair := range [][2]ast.Expr{{args[0], args[1]}, {args[1], args[0]}} {
				if pair[1].Kind() != ast.LiteralKind {
					continue
				}
				if b, ok := pair[1].AsLiteral().(types.Bool); ok {
					e, want = pair[0], want == bool(b)
					break
				}
			}
		}
		if e.Kind() != ast.SelectKind {
			continue
		}
		sel := e.AsSelect()
		if sel.IsTestOnly() || sel.Operand().Kind() != ast.IdentKind || sel.Operand().AsIdent() != varTool {
			continue
		}
		switch f := sel.FieldName(); f {
		case "privileged", "approvable", "egress":
			out = append(out, flagTest{flag: f, want: want})
		}
	}
	return out
}

// canMatch reports whether a tool with these flags can satisfy tests.
func canMatch(tests []flagTest, t Tool) bool {
	for _, ft := range tests {
		var v bool
		switch ft.flag {
		case "privileged":
			v = t.Privileged
		case "approvable":
			v = t.Approvable
		case "egress":
			v = t.Egress
		}
		if v != ft.want {
			return false
		}
	}
	return true
}

// nameTest is one comparison of tool.name or tool.worker with literal
// strings, found in a rule.
type nameTest struct {
	field string   // "name" or "worker"
	names []string // the literals
	ids   []int64  // the syntax node of each literal, for its position
}

// targets returns the tools a rule is about, sorted, and ok = false when
// the rule may match any tool. With workers unknown (tools nil), a
// tool.worker term does not narrow.
func targets(a *ast.AST, tools Tools) (names []string, ok bool) {
	var set []string
	narrowed := false
	for _, term := range conjuncts(a.Expr()) {
		t, isTest := asNameTest(term)
		if !isTest {
			continue
		}
		var these []string
		switch t.field {
		case "name":
			these = slices.Clone(t.names)
		case "worker":
			if tools == nil {
				continue
			}
			for _, w := range t.names {
				these = append(these, tools.workerTools(w)...)
			}
		}
		slices.Sort(these)
		these = slices.Compact(these)
		if !narrowed {
			set, narrowed = these, true
			continue
		}
		set = slices.DeleteFunc(set, func(n string) bool { return !slices.Contains(these, n) })
	}
	return set, narrowed
}

// conjuncts returns the terms of a chain of &&.
func conjuncts(e ast.Expr) []ast.Expr {
	if e.Kind() == ast.CallKind && e.AsCall().FunctionName() == operators.LogicalAnd && len(e.AsCall().Args()) == 2 {
		return append(conjuncts(e.AsCall().Args()[0]), conjuncts(e.AsCall().Args()[1])...)
	}
	return []ast.Expr{e}
}

// nameTests finds every comparison of tool.name or tool.worker with
// literals anywhere in a rule, so that a misspelled tool is reported
// wherever it is written. Inside a comprehension whose variable is named
// tool, tool is that variable, not the tool.
func nameTests(a *ast.AST) []nameTest {
	var out []nameTest
	var walk func(e ast.Expr)
	walk = func(e ast.Expr) {
		if e == nil {
			return
		}
		if t, ok := asNameTest(e); ok {
			out = append(out, t)
		}
		switch e.Kind() {
		case ast.CallKind:
			c := e.AsCall()
			if c.IsMemberFunction() {
				walk(c.Target())
			}
			for _, x := range c.Args() {
				walk(x)
			}
		case ast.SelectKind:
			walk(e.AsSelect().Operand())
		case ast.ListKind:
			for _, x := range e.AsList().Elements() {
				walk(x)
			}
		case ast.MapKind:
			for _, en := range e.AsMap().Entries() {
				walk(en.AsMapEntry().Key())
				walk(en.AsMapEntry().Value())
			}
		case ast.StructKind:
			for _, f := range e.AsStruct().Fields() {
				walk(f.AsStructField().Value())
			}
		case ast.ComprehensionKind:
			c := e.AsComprehension()
			walk(c.IterRange())
			walk(c.AccuInit())
			shadows := c.IterVar() == varTool || c.AccuVar() == varTool || c.HasIterVar2() && c.IterVar2() == varTool
			if !shadows {
				walk(c.LoopCondition())
				walk(c.LoopStep())
				walk(c.Result())
			}
		}
	}
	walk(a.Expr())
	return out
}

// asNameTest recognizes tool.F == "x", "x" == tool.F and
// tool.F in ["x", "y"], for F name or worker.
func asNameTest(e ast.Expr) (nameTest, bool) {
	if e.Kind() != ast.CallKind {
		return nameTest{}, false
	}
	c := e.AsCall()
	args := c.Args()
	if len(args) != 2 || c.IsMemberFunction() {
		return nameTest{}, false
	}
	switch c.FunctionName() {
	case operators.Equals:
		for _, pair := range [][2]ast.Expr{{args[0], args[1]}, {args[1], args[0]}} {
			field, ok := toolField(pair[0])
			if !ok {
				continue
			}
			if s, ok := stringLit(pair[1]); ok {
				return nameTest{field: field, names: []string{s}, ids: []int64{pair[1].ID()}}, true
			}
		}
	case operators.In:
		field, ok := toolField(args[0])
		if !ok || args[1].Kind() != ast.ListKind {
			return nameTest{}, false
		}
		t := nameTest{field: field}
		for _, el := range args[1].AsList().Elements() {
			s, ok := stringLit(el)
			if !ok {
				return nameTest{}, false
			}
			t.names = append(t.names, s)
			t.ids = append(t.ids, el.ID())
		}
		return t, true
	}
	return nameTest{}, false
}

// toolField recognizes tool.name and tool.worker (not has(tool.name)).
func toolField(e ast.Expr) (string, bool) {
	if e.Kind() != ast.SelectKind {
		return "", false
	}
	s := e.AsSelect()
	if s.IsTestOnly() || s.Operand().Kind() != ast.IdentKind || s.Operand().AsIdent() != varTool {
		return "", false
	}
	switch s.FieldName() {
	case "name", "worker":
		return s.FieldName(), true
	}
	return "", false
}

func stringLit(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// targetFolder specializes a rule for one tool it is about: the terms of
// its conjunction that test for that tool (tool.name == "x.y", tool.name
// in […], tool.worker == "x") are true for every call it is evaluated
// on, so they become true, and constant folding then drops them. The
// program for tool T is used only for T's calls.
type targetFolder struct{ tool, worker string }

func (f targetFolder) Optimize(ctx *cel.OptimizerContext, a *ast.AST) *ast.AST {
	for _, term := range conjuncts(a.Expr()) {
		t, ok := asNameTest(term)
		if !ok {
			continue
		}
		want := f.tool
		if t.field == "worker" {
			want = f.worker
		}
		if slices.Contains(t.names, want) {
			ctx.UpdateExpr(term, ctx.NewLiteral(types.True))
		}
	}
	return a
}
