package expr

import "cel.dev/cel-go/common/types"

// JSONType returns the JSON Schema type of the template's value when the
// type checker knows it: "string", "integer", "number", "boolean", "array",
// "object" or "null"; "" when it cannot be known before the template runs
// (a value read from a step's output, for instance). A template with text
// around its expressions is always a string.
func (t *Template) JSONType() string {
	if !t.whole {
		return "string"
	}
	if len(t.parts) != 1 || t.parts[0].ast == nil {
		return ""
	}
	a := t.parts[0].ast
	switch a.GetType(a.Expr().ID()).Kind() {
	case types.StringKind:
		return "string"
	case types.IntKind, types.UintKind:
		return "integer"
	case types.DoubleKind:
		return "number"
	case types.BoolKind:
		return "boolean"
	case types.ListKind:
		return "array"
	case types.MapKind:
		return "object"
	case types.NullTypeKind:
		return "null"
	}
	return ""
}
