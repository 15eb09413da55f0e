package expr

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common"
)

// Kind is what the type checker may assume about a value a flow declares.
type Kind int

// Kinds of declared values. Dyn is the default: nothing is assumed.
const (
	Dyn Kind = iota
	String
	Int
	Double
	Bool
	Map  // an object: map(string, dyn)
	List // a list; its elements' kind is given apart
)

// Type is the declared type of one value: its kind and, for a list, the
// kind of its elements.
type Type struct {
	Kind Kind
	Elem Kind
}

func (k Kind) cel() *cel.Type {
	switch k {
	case String:
		return cel.StringType
	case Int:
		return cel.IntType
	case Double:
		return cel.DoubleType
	case Bool:
		return cel.BoolType
	case Map:
		return cel.MapType(cel.StringType, cel.DynType)
	case List:
		return cel.ListType(cel.DynType)
	}
	return cel.DynType
}

func (t Type) cel() *cel.Type {
	if t.Kind == List {
		return cel.ListType(t.Elem.cel())
	}
	return t.Kind.cel()
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reserved are CEL's reserved words: a path through one of them cannot be
// written as a field selection, so it is not declared.
var reserved = map[string]bool{
	"as": true, "break": true, "const": true, "continue": true, "else": true, "false": true,
	"for": true, "function": true, "if": true, "import": true, "in": true, "let": true,
	"loop": true, "package": true, "namespace": true, "null": true, "return": true,
	"true": true, "var": true, "void": true, "while": true,
}

// WithTypes returns an Env whose Compile also type-checks every expression
// against the declared types of the values it reads: decls maps a path
// written with dots ("inputs.n", "steps.pay.output.charge_id") to its type.
// A value read through a declared path has that type; every other value is
// dyn, as in the Env it extends. An expression that cannot type-check, such
// as 'x' + inputs.n with inputs.n a number, is an error of code [CodeType].
//
// The declarations serve the check only: the compiled programs are those
// of e, so a value at run time is what it is, and evaluation is unchanged.
// What CEL does at run time without an error is accepted: comparisons
// between numbers of different kinds (n < 2, n in [1, 2]), equality
// between any two values (n == 1, s == null) and conditionals whose
// branches differ in type. So is a field of a declared
// scalar or list: the caller, which knows the shapes it declared, checks
// every path read (see [Template.Refs]) and says what the value has.
func (e *Env) WithTypes(decls map[string]Type) (*Env, error) {
	var opts []cel.EnvOption
	for _, name := range slices.Sorted(maps.Keys(decls)) {
		ok := true
		for _, seg := range strings.Split(name, ".") {
			if !identRE.MatchString(seg) || reserved[seg] {
				ok = false
			}
		}
		if !ok || !strings.Contains(name, ".") {
			continue
		}
		opts = append(opts, cel.Variable(name, decls[name].cel()))
	}
	opts = append(opts, cel.CrossTypeNumericComparisons(true))
	typed, err := e.cel.Extend(opts...)
	if err != nil {
		return nil, fmt.Errorf("declare flow types: %w", err)
	}
	return &Env{cel: e.cel, typed: typed}, nil
}

// typeCheck checks one expression with the declared types and returns the
// problems that would fail at run time.
func (e *Env) typeCheck(text string, start int) ErrorList {
	parsed, iss := e.typed.ParseSource(common.NewStringSource(text, "expression"))
	if iss != nil && iss.Err() != nil {
		return nil // reported by the untyped compile
	}
	_, iss = e.typed.Check(parsed)
	if iss == nil || iss.Err() == nil {
		return nil
	}
	var out ErrorList
	for _, ce := range iss.Errors() {
		msg, keep := explain(ce.Message)
		if !keep {
			continue
		}
		out = append(out, &Error{Offset: start + byteOffset(text, ce.Location.Line(), ce.Location.Column()), Code: CodeType, Message: msg})
	}
	return out
}

var overloadRE = regexp.MustCompile(`^found no matching overload for '([^']+)' applied to '\((.*)\)'$`)

var operatorNames = map[string]string{
	"_+_": "+", "_-_": "-", "_*_": "*", "_/_": "/", "_%_": "%",
	"_<_": "<", "_<=_": "<=", "_>_": ">", "_>=_": ">=", "_==_": "==", "_!=_": "!=",
	"_&&_": "&&", "_||_": "||", "!_": "!", "-_": "unary -", "_?_:_": "?:", "_[_]": "[…]", "@in": "in",
}

var comparisons = map[string]bool{"_<_": true, "_<=_": true, "_>_": true, "_>=_": true}

// explain turns the checker's message into one a flow's author reads
// without knowing CEL's internals. keep is false for what is not an error
// at run time: a comparison of numbers of different kinds, an equality
// (values of different types are not equal), a conditional whose branches
// differ in type.
func explain(msg string) (string, bool) {
	if strings.HasSuffix(msg, "does not support field selection") {
		// A field of a declared scalar or list: the caller checks the
		// paths read against the shapes it declared, and names what
		// they hold.
		return "", false
	}
	m := overloadRE.FindStringSubmatch(msg)
	if m == nil {
		return msg, true
	}
	fn, args := m[1], splitTypes(m[2])
	switch {
	case fn == "_==_" || fn == "_!=_":
		// Equality is defined between any two values at run time:
		// values of different types are simply not equal.
		return "", false
	case fn == "_?_:_" && (args[0] == "bool" || args[0] == "dyn"):
		// Branches of different types: the value is of either.
		return "", false
	case comparisons[fn] && allNumeric(args):
		return "", false
	case fn == "@in" && len(args) == 2 && allNumeric(args[:1]) && allNumeric(elemTypes(args[1])):
		return "", false
	}
	name, isOp := operatorNames[fn]
	var kinds []string
	for _, a := range args {
		kinds = append(kinds, describe(a))
	}
	what := "function " + fn
	if isOp {
		what = "operator " + name
	}
	hint := ""
	if slices.Contains(args, "string") && len(args) == 2 {
		hint = "; CEL converts nothing by itself: convert the other side first, e.g. string(…)"
	} else if allNumeric(args) {
		hint = "; CEL converts nothing by itself: convert one side, e.g. double(…) or int(…), or write 1.0 for a number"
	}
	return fmt.Sprintf("%s cannot take %s (no matching overload for %s applied to (%s))%s", what, strings.Join(kinds, " and "), fn, m[2], hint), true
}

// splitTypes splits "map(string, dyn), int" at its top-level commas.
func splitTypes(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

// elemTypes returns the element type of "list(T)" and the key type of
// "map(K, V)".
func elemTypes(t string) []string {
	if inner, ok := strings.CutPrefix(t, "list("); ok {
		return []string{strings.TrimSuffix(inner, ")")}
	}
	if inner, ok := strings.CutPrefix(t, "map("); ok {
		return splitTypes(strings.TrimSuffix(inner, ")"))[:1]
	}
	return nil
}

func allNumeric(args []string) bool {
	for _, a := range args {
		if a != "int" && a != "uint" && a != "double" {
			return false
		}
	}
	return len(args) > 0
}

func describe(celType string) string {
	switch {
	case celType == "string":
		return "a string"
	case celType == "int":
		return "an integer (int)"
	case celType == "uint":
		return "an unsigned integer (uint)"
	case celType == "double":
		return "a number (double)"
	case celType == "bool":
		return "a boolean"
	case celType == "null_type":
		return "null"
	case strings.HasPrefix(celType, "list("):
		return "a list"
	case strings.HasPrefix(celType, "map("):
		return "a map"
	}
	return celType
}
