package expr

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"

	"github.com/sluicehq/sluice/ifc"
)

// Template is a compiled flow string. It is immutable and safe for
// concurrent use.
type Template struct {
	src   string
	parts []part
	whole bool   // exactly one ${…} and nothing else
	reads []Path // sorted, unique
	refs  []Ref  // in source order
}

// part is a literal run of text or one compiled expression.
type part struct {
	lit    string // unescaped text, when prg is nil
	start  int    // byte offset of the expression text in the source
	text   string // the expression text between "${" and "}"
	ast    *ast.AST
	prg    cel.Program
	isExpr bool
	// path, for an expression that only selects fields from a variable
	// (inputs.text, steps.a.output.text), is the variable and the fields:
	// see plainValue.
	path []string
}

// Compile compiles a flow string. On failure the error is an [ErrorList]
// holding every problem found, each with its byte offset in s.
func (e *Env) Compile(s string) (*Template, error) {
	segs, splitErr := split(s)
	t := &Template{src: s}
	var errs ErrorList
	for _, sg := range segs {
		if !sg.isExpr {
			t.parts = append(t.parts, part{lit: sg.lit})
			continue
		}
		p, perrs := e.compileExpr(s, sg)
		if len(perrs) > 0 {
			errs = append(errs, perrs...)
			continue
		}
		t.parts = append(t.parts, p)
		ps, refs := reads(p.ast)
		t.reads = append(t.reads, ps...)
		for _, r := range refs {
			offs := make([]int, len(r.Offsets))
			for i, o := range r.Offsets {
				offs[i] = p.start + runeOffset(p.text, o)
			}
			t.refs = append(t.refs, Ref{Path: r.Path, Offsets: offs})
		}
	}
	if splitErr != nil {
		errs = append(errs, splitErr)
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *Error) int { return a.Offset - b.Offset })
		return nil, errs
	}
	t.whole = len(segs) == 1 && segs[0].isExpr && segs[0].open == 0 && segs[0].end == len(s)-1
	t.reads = sortPaths(t.reads)
	return t, nil
}

func (e *Env) compileExpr(s string, sg segment) (part, ErrorList) {
	text := s[sg.start:sg.end]
	src := common.NewStringSource(text, "expression")
	parsed, iss := e.cel.ParseSource(src)
	if iss != nil && iss.Err() != nil {
		return part{}, celErrors(text, sg.start, CodeSyntax, iss)
	}
	checked, iss := e.cel.Check(parsed)
	if iss != nil && iss.Err() != nil {
		return part{}, celErrors(text, sg.start, CodeType, iss)
	}
	if e.typed != nil {
		if errs := e.typeCheck(text, sg.start); len(errs) > 0 {
			return part{}, errs
		}
	}
	prg, err := e.cel.Program(checked,
		cel.EvalOptions(cel.OptOptimize),
		cel.CostLimit(MaxCost),
	)
	if err != nil {
		return part{}, ErrorList{{Offset: sg.start, Code: CodeType, Message: "prepare expression: " + err.Error()}}
	}
	native := checked.NativeRep()
	return part{start: sg.start, text: text, ast: native, prg: prg, isExpr: true, path: plainPath(native.Expr())}, nil
}

// plainPath returns the variable and the fields an expression selects
// when it does nothing else (inputs.text), or nil.
func plainPath(e ast.Expr) []string {
	switch e.Kind() {
	case ast.IdentKind:
		return []string{e.AsIdent()}
	case ast.SelectKind:
		sel := e.AsSelect()
		if sel.IsTestOnly() {
			return nil
		}
		p := plainPath(sel.Operand())
		if p == nil {
			return nil
		}
		return append(p, sel.FieldName())
	}
	return nil
}

// plainValue is the value of a plain path (plainPath) without running
// CEL, when CEL would give that value unchanged: every step of the path is
// a key of a map[string]any, and the value is a string (of at most
// MaxValueSize bytes), a bool or an int64. ok is false for anything else
// (a missing key, a list, a map, a number of another type, null), which
// CEL evaluates, with its conversions and its errors.
func plainValue(vars map[string]any, path []string) (v any, ok bool) {
	var cur any = vars
	for _, k := range path {
		m, isMap := cur.(map[string]any)
		if !isMap {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	switch x := cur.(type) {
	case string:
		if int64(len(x))+1 > MaxValueSize {
			return nil, false
		}
		return x, true
	case bool, int64:
		return x, true
	}
	return nil, false
}

// celErrors turns CEL's issues into errors positioned in the template.
func celErrors(text string, start int, code string, iss *cel.Issues) ErrorList {
	var out ErrorList
	for _, ce := range iss.Errors() {
		off := start + byteOffset(text, ce.Location.Line(), ce.Location.Column())
		out = append(out, &Error{Offset: off, Code: code, Message: ce.Message})
	}
	return out
}

// byteOffset converts CEL's 1-based line and 0-based column (in code
// points) to a byte offset in text, clamped to the text.
func byteOffset(text string, line, col int) int {
	if line < 1 {
		return 0
	}
	off := 0
	for l := 1; l < line; l++ {
		i := strings.IndexByte(text[off:], '\n')
		if i < 0 {
			return len(text)
		}
		off += i + 1
	}
	for c := 0; c < col && off < len(text); c++ {
		if text[off] == '\n' {
			break
		}
		_, n := utf8.DecodeRuneInString(text[off:])
		off += n
	}
	return off
}

// runeOffset converts an offset in code points, as CEL counts them, to a
// byte offset in text, clamped to the text.
func runeOffset(text string, n int) int {
	off := 0
	for i := 0; i < n && off < len(text); i++ {
		_, size := utf8.DecodeRuneInString(text[off:])
		off += size
	}
	return off
}

// IsLiteral reports whether the template holds no expression: its value is
// its text, with "$${" unescaped.
func (t *Template) IsLiteral() bool {
	for _, p := range t.parts {
		if p.isExpr {
			return false
		}
	}
	return true
}

// Source returns the string the template was compiled from.
func (t *Template) Source() string { return t.src }

// Reads returns every value the template's expressions read, deduplicated
// and sorted. A literal reads nothing. Each path starts with inputs, steps,
// item or index.
func (t *Template) Reads() []Path {
	out := make([]Path, len(t.reads))
	for i, p := range t.reads {
		out[i] = slices.Clone(p)
	}
	return out
}

// Refs returns each place the template's expressions read a value, with
// where each element of the path is written, in source order. Unlike
// Reads, a path read twice is listed twice.
func (t *Template) Refs() []Ref {
	out := make([]Ref, len(t.refs))
	for i, r := range t.refs {
		out[i] = Ref{Path: slices.Clone(r.Path), Offsets: slices.Clone(r.Offsets)}
	}
	return out
}

// Label returns the join of lookup(p) for every p in Reads: the label of
// the template's value. A template that reads nothing is labeled
// ifc.TrustedFrom(), the bottom.
//
// lookup must be conservative the same way Reads is: for a path that names
// a container it returns the join of the container and everything below it;
// for a path below a labeled value it returns that value's label. lookup of
// ["index"] is the caller's choice; index ranges over the for_each list, so
// the label of that list is the safe answer.
func (t *Template) Label(lookup func(Path) ifc.Label) ifc.Label {
	labels := make([]ifc.Label, 0, len(t.reads))
	for _, p := range t.reads {
		labels = append(labels, lookup(p))
	}
	return ifc.Join(labels...)
}

// Eval evaluates the template. vars holds "inputs" (map[string]any),
// "steps" (map[string]any{"<id>": map[string]any{"output": …}}) and, in
// for_each steps, "item" and "index".
//
// The result is a JSON-compatible Go value: map[string]any, []any, string,
// int64, float64, bool or nil. A literal gives its text; a template that is
// one ${…} gives the expression's value; any other gives a string with each
// value interpolated: strings as they are, other values in compact JSON (12,
// 12.5, true, null, [1,"a"], {"k":1}).
//
// Bytes become base64 strings, timestamps RFC 3339 strings and durations
// strings such as "1.5s", as in the protobuf JSON mapping. A uint above the
// int64 range, a NaN or an infinity is an error: JSON cannot carry them.
//
// An error is an *Error with code [CodeEval]; its message names the
// expression and the kind of failure, never the data.
func (t *Template) Eval(vars map[string]any) (any, error) {
	if vars == nil {
		vars = map[string]any{}
	}
	if t.whole {
		return t.evalPart(t.parts[0], vars)
	}
	var b strings.Builder
	for _, p := range t.parts {
		if !p.isExpr {
			b.WriteString(p.lit)
			continue
		}
		v, err := t.evalPart(p, vars)
		if err != nil {
			return nil, err
		}
		if err := interpolate(&b, v); err != nil {
			return nil, p.evalError(0, err.Error())
		}
	}
	return b.String(), nil
}

func (t *Template) evalPart(p part, vars map[string]any) (any, error) {
	if p.path != nil {
		if v, ok := plainValue(vars, p.path); ok {
			return v, nil
		}
	}
	return p.evalCEL(vars)
}

// evalCEL evaluates p with CEL.
func (p part) evalCEL(vars map[string]any) (any, error) {
	out, _, err := p.prg.Eval(vars)
	if err != nil {
		var node int64
		var ce *types.Err
		if errors.As(err, &ce) {
			node = ce.NodeID()
		}
		msg, node := p.runtimeMessage(node, err.Error())
		return nil, p.evalError(node, msg)
	}
	v, err := toJSON(out)
	if err != nil {
		return nil, p.evalError(0, err.Error())
	}
	return v, nil
}

// evalError builds a run-time error for p, positioned at the syntax node
// that failed when CEL names one, else at the start of the expression.
func (p part) evalError(node int64, msg string) *Error {
	off := p.start
	if node != 0 {
		if loc := p.ast.SourceInfo().GetStartLocation(node); loc.Line() >= 1 {
			off = p.start + byteOffset(p.text, loc.Line(), loc.Column())
		}
	}
	return &Error{Offset: off, Code: CodeEval, Message: fmt.Sprintf("evaluate ${%s}: %s", p.text, msg)}
}

// runtimeMessage reduces CEL's message to its kind, and returns the syntax
// node to point at. CEL puts values in some of its messages (a computed
// key, a string that failed to convert), so only the kinds below are kept
// and any other message is replaced by a generic one.
func (p part) runtimeMessage(node int64, msg string) (string, int64) {
	kinds := []string{
		"no such key",
		"no such attribute",
		"no such overload",
		"division by zero",
		"modulus by zero",
		"unsigned integer overflow",
		"integer overflow",
		"duration overflow",
		"timestamp overflow",
		"index out of range",
		"index out of bounds",
		"type conversion error",
		"invalid substring range",
	}
	if strings.Contains(msg, "cost limit exceeded") {
		return fmt.Sprintf("cost limit of %d exceeded", MaxCost), node
	}
	if strings.HasPrefix(msg, errTooLarge.Error()) {
		return errTooLarge.Error(), node
	}
	for _, kind := range kinds {
		if !strings.HasPrefix(msg, kind) {
			continue
		}
		if kind == "no such key" {
			missing := strings.TrimPrefix(msg, "no such key: ")
			if at, ok := staticQualifier(p.ast, node, missing); ok {
				return fmt.Sprintf("no such key %q", missing), at
			}
		}
		return kind, node
	}
	return "evaluation failed", node
}

// staticQualifier finds the select or index chain at node and, when every
// key in it is written in the expression, returns the node of the one
// named key. With a computed key in the chain the missing key may be data,
// and it is not named.
func staticQualifier(a *ast.AST, node int64, key string) (int64, bool) {
	if node == 0 {
		return 0, false
	}
	var top ast.Expr
	ast.PreOrderVisit(a.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if top == nil && e.ID() == node {
			top = e
		}
	}))
	var at int64
	found := false
	for e := top; e != nil; {
		switch e.Kind() {
		case ast.SelectKind:
			if e.AsSelect().FieldName() == key {
				at, found = e.ID(), true
			}
			e = e.AsSelect().Operand()
		case ast.CallKind:
			k, ok := constIndexKey(e)
			if !ok {
				return 0, false
			}
			if k == key {
				at, found = e.ID(), true
			}
			e = e.AsCall().Args()[0]
		case ast.IdentKind:
			return at, found
		default:
			return 0, false
		}
	}
	return 0, false
}
