package flow

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/ifc/expr"
	"github.com/sluicehq/sluice/schemas"
)

// CodeUnknownField: an expression reads a field the declared shape of the
// value does not have.
const CodeUnknownField = "flow_unknown_field"

// maxDeclDepth bounds how deep into an output schema types are declared to
// the expression checker.
const maxDeclDepth = 8

// shape is what a flow knows of a step's output before the step runs: a
// JSON Schema in JSON form, with the document local references resolve in.
// A nil doc means nothing is known (a tool without an output schema).
type shape struct {
	doc  any
	root map[string]any
	// whose names the schema, for messages: "tool payment.charge",
	// "the output_schema of agent step plan".
	whose string
	// forEach is the step's id when it is a for_each step: its output is
	// a list of its calls' outputs.
	forEach string
}

// shapes returns the shape of each step's output, by step id, from the
// tools' output schemas and agents' output_schema; a for_each step's
// output is a list of its calls' outputs.
func (l *loader) shapes(steps []any) map[string]shape {
	out := map[string]shape{}
	for _, raw := range steps {
		m := raw.(map[string]any)
		id := m["id"].(string)
		if _, dup := out[id]; dup {
			continue
		}
		var sh shape
		if call, ok := m["call"].(string); ok {
			if spec, _, err := l.cat.Tool(call); err == nil && spec.Output != nil {
				doc, _ := spec.Output.Doc().(map[string]any)
				sh = shape{doc: doc, root: doc, whose: "the output schema of tool " + call}
			}
		} else if agent, ok := m["agent"].(map[string]any); ok {
			if doc, ok := agent["output_schema"].(map[string]any); ok {
				sh = shape{doc: doc, root: doc, whose: "the output_schema of agent step " + id}
			} else {
				sh = shape{doc: map[string]any{"type": "string"}, whose: "agent step " + id + ", which has no output_schema: its answer is a string"}
			}
		} else if plan, ok := m["plan"].(map[string]any); ok {
			if doc, ok := plan["output_schema"].(map[string]any); ok {
				sh = shape{doc: doc, root: doc, whose: "the output_schema of plan step " + id}
			}
		}
		if _, ok := m["for_each"]; ok && sh.doc != nil {
			sh.doc = map[string]any{"type": "array", "items": sh.doc}
			sh.forEach = id
		}
		out[id] = sh
	}
	return out
}

// declarations are the types the expression checker may assume: each
// input's, and those an output schema gives without doubt. A JSON number
// may arrive as an integer or not, so it is left dyn; so is anything with
// more than one type.
func declarations(inputs map[string]Input, shapes map[string]shape) map[string]expr.Type {
	out := map[string]expr.Type{}
	for name, in := range inputs {
		switch in.Type {
		case "string":
			out["inputs."+name] = expr.Type{Kind: expr.String}
		case "number":
			out["inputs."+name] = expr.Type{Kind: expr.Double}
		case "integer":
			out["inputs."+name] = expr.Type{Kind: expr.Int}
		case "boolean":
			out["inputs."+name] = expr.Type{Kind: expr.Bool}
		}
	}
	for id, sh := range shapes {
		if sh.doc != nil {
			declare(out, "steps."+id+".output", sh.doc, sh.root, 0)
		}
	}
	return out
}

func declare(out map[string]expr.Type, name string, node any, root map[string]any, depth int) {
	n := deref(node, root)
	if n == nil || depth > maxDeclDepth {
		return
	}
	switch t, _ := n["type"].(string); t {
	case "string":
		out[name] = expr.Type{Kind: expr.String}
	case "integer":
		out[name] = expr.Type{Kind: expr.Int}
	case "boolean":
		out[name] = expr.Type{Kind: expr.Bool}
	case "array":
		elem := expr.Dyn
		if items := deref(n["items"], root); items != nil {
			switch it, _ := items["type"].(string); it {
			case "string":
				elem = expr.String
			case "integer":
				elem = expr.Int
			case "boolean":
				elem = expr.Bool
			}
		}
		out[name] = expr.Type{Kind: expr.List, Elem: elem}
	case "object":
		out[name] = expr.Type{Kind: expr.Map}
		props, _ := n["properties"].(map[string]any)
		for k, p := range props {
			declare(out, name+"."+k, p, root, depth+1)
		}
	}
}

// deref returns the schema object at node, following local references
// ("#/$defs/x"); nil when it is not an object or cannot be followed.
func deref(node any, root map[string]any) map[string]any {
	for range 16 {
		n, ok := node.(map[string]any)
		if !ok {
			return nil
		}
		ref, ok := n["$ref"].(string)
		if !ok {
			return n
		}
		frag, ok := strings.CutPrefix(ref, "#")
		if !ok || root == nil {
			return nil
		}
		var cur any = root
		for _, tok := range strings.Split(strings.TrimPrefix(frag, "/"), "/") {
			if tok == "" {
				continue
			}
			tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
			m, ok := cur.(map[string]any)
			if !ok {
				return nil
			}
			cur = m[tok]
		}
		node = cur
	}
	return nil
}

// checkFields checks every path v's expressions read against what the flow
// declares: a flow input has no fields, and a step's output has only what
// its schema gives it. A field is an error only where the schema says it
// cannot be there: an object schema that allows additional properties, a
// schema with several types, or a tool without an output schema lets any
// field through, to be found (or not) at run time.
func (l *loader) checkFields(v *Value, p *Plan) {
	v.templates(func(t *expr.Template, ptr string) {
		for _, r := range t.Refs() {
			path := r.Path
			switch {
			case path[0] == "inputs" && len(path) >= 3:
				in, ok := p.Inputs[path[1]]
				if !ok {
					continue
				}
				l.ds.Add(l.doc.File, l.posAt(ptr, t.Source(), r.Offsets[2]), CodeUnknownField,
					"inputs.%s is %s (declared at line %d); it has no field %q", path[1], article(in.Type), in.Pos.Line, path[2])
			case path[0] == "steps" && len(path) >= 4 && path[2] == "output":
				sh, ok := l.outShapes[path[1]]
				if !ok || sh.doc == nil {
					continue
				}
				if i, msg := follow(sh, path[:3], path[3:]); msg != "" {
					l.ds.Add(l.doc.File, l.posAt(ptr, t.Source(), r.Offsets[3+i]), CodeUnknownField, "%s", msg)
				}
			}
		}
	})
}

// follow walks path down the shape and returns the index of the first
// element the shape rules out, with why; msg is "" when the path may be
// there.
func follow(sh shape, prefix, path []string) (int, string) {
	node := sh.doc
	for i, el := range path {
		n := deref(node, sh.root)
		if n == nil {
			return 0, ""
		}
		at := expr.Path(append(slices.Clone(prefix), path[:i]...)).String()
		next, msg := sh.child(n, at, el, i)
		if msg != "" {
			return i, msg
		}
		if next == nil {
			return 0, ""
		}
		node = next
	}
	return 0, ""
}

// child returns the schema of element el (the i-th of the path followed)
// of the value at, whose schema is n: the schema to follow on, or nil when
// the shape lets any element through there, or msg saying why el cannot be
// there.
func (sh shape) child(n map[string]any, at, el string, i int) (next any, msg string) {
	t, _ := n["type"].(string)
	switch t {
	case "object":
		return sh.field(n, at, el)
	case "array":
		return sh.element(n, at, el, i)
	case "string", "number", "integer", "boolean", "null":
		return nil, fmt.Sprintf("%s is %s (%s); it has no field %q", at, article(t), sh.whose, el)
	}
	return nil, ""
}

// field returns the schema of field el of the object at, whose schema is
// n: its property, or the schema of additional properties; nil when any
// field may be there; or msg naming the fields there are.
func (sh shape) field(n map[string]any, at, el string) (next any, msg string) {
	props, _ := n["properties"].(map[string]any)
	if p, ok := props[el]; ok {
		return p, ""
	}
	if _, ok := n["patternProperties"]; ok {
		return nil, ""
	}
	switch ap := n["additionalProperties"].(type) {
	case bool:
		if ap {
			return nil, ""
		}
	case map[string]any:
		return ap, ""
	default:
		return nil, ""
	}
	names := slices.Sorted(maps.Keys(props))
	msg = fmt.Sprintf("%s has no field %q: %s gives %s", at, el, sh.whose, strings.Join(names, ", "))
	if len(names) == 0 {
		msg = fmt.Sprintf("%s has no field %q: %s gives no fields", at, el, sh.whose)
	}
	if s := schemas.Suggest(el, names); s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	}
	return nil, msg
}

// element returns the schema of element el (the i-th of the path
// followed) of the list at, whose schema is n: its items' schema, nil when
// it has none, or msg when el is a field name rather than an index.
func (sh shape) element(n map[string]any, at, el string, i int) (next any, msg string) {
	if _, err := strconv.ParseUint(el, 10, 64); err != nil {
		if i == 0 && sh.forEach != "" {
			return nil, fmt.Sprintf("%s is a list: step %s calls its tool once per element of for_each; read one call's output, e.g. %s[0].%s", at, sh.forEach, at, el)
		}
		return nil, fmt.Sprintf("%s is a list (%s); it has no field %q: read an element, e.g. %s[0].%s", at, sh.whose, el, at, el)
	}
	return n["items"], ""
}

// posAt returns the file position of byte offset off in the string s at
// ptr, in every scalar style (schemas.ScalarMap).
func (l *loader) posAt(ptr, s string, off int) schemas.Pos {
	return schemas.NewScalarMap(l.doc, ptr, s).AtOffset(s, off)
}
