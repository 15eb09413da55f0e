package schemas

import (
	"regexp"
	"slices"
)

// Structure returns the part of a JSON Schema document that says what
// shape a value has, and nothing its author wrote for a reader: it is what
// a model may be shown of a schema someone else wrote (an MCP server's),
// since every string in such a schema is text a prompt injection can hide
// in.
//
// Kept: type, properties, required, items, additionalProperties, the
// numeric, length and count bounds, uniqueItems, anyOf/oneOf/allOf, a
// format from a short list, and enum and const values that are short
// words. Property names that are not plain identifiers are left out (and
// from required); an enum with a value that is not a short word is left
// out whole. Everything else — description, title, examples, default,
// pattern, $comment, $ref, unknown keywords — is dropped. A value that is
// not a schema object gives an empty schema.
func Structure(doc any) any {
	m, ok := doc.(map[string]any)
	if !ok {
		if b, ok := doc.(bool); ok {
			return b
		}
		return map[string]any{}
	}
	out := map[string]any{}
	for k, v := range m {
		if keep := structureKey(k, v); keep != nil {
			out[k] = keep
		}
	}
	if req, ok := out["required"].([]any); ok {
		props, _ := out["properties"].(map[string]any)
		out["required"] = slices.DeleteFunc(slices.Clone(req), func(x any) bool {
			_, ok := props[x.(string)]
			return !ok
		})
	}
	return out
}

var (
	identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`)
	shortWord  = regexp.MustCompile(`^[A-Za-z0-9_.:/+-]{1,32}$`)
)

// structureFormats are the formats kept: each names a shape, none carries
// words of the author's.
var structureFormats = []string{"date", "date-time", "time", "duration", "email", "hostname", "ipv4", "ipv6", "uri", "uri-reference", "uuid"}

// structureKey is what Structure keeps of key k with value v, nil for
// nothing.
func structureKey(k string, v any) any {
	switch k {
	case "type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
		"minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "uniqueItems":
		return scalarOrTypes(v)
	case "format":
		if s, ok := v.(string); ok && slices.Contains(structureFormats, s) {
			return s
		}
	case "properties":
		return structureProperties(v)
	case "required":
		return structureRequired(v)
	case "items", "additionalProperties", "not":
		return Structure(v)
	case "anyOf", "oneOf", "allOf":
		return structureList(v)
	case "enum":
		return structureEnum(v)
	case "const":
		if words(v) {
			return v
		}
	}
	return nil
}

func scalarOrTypes(v any) any {
	switch x := v.(type) {
	case string:
		if shortWord.MatchString(x) {
			return x
		}
	case float64, int64, int, bool:
		return x
	case []any:
		out := []any{}
		for _, e := range x {
			if s, ok := e.(string); ok && shortWord.MatchString(s) {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func structureProperties(v any) any {
	props, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	out := map[string]any{}
	for name, p := range props {
		if identifier.MatchString(name) {
			out[name] = Structure(p)
		}
	}
	return out
}

func structureRequired(v any) any {
	req, ok := v.([]any)
	if !ok {
		return nil
	}
	out := []any{}
	for _, r := range req {
		if s, ok := r.(string); ok && identifier.MatchString(s) {
			out = append(out, s)
		}
	}
	return out
}

func structureList(v any) any {
	l, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]any, len(l))
	for i, e := range l {
		out[i] = Structure(e)
	}
	return out
}

func structureEnum(v any) any {
	l, ok := v.([]any)
	if !ok || len(l) > 64 {
		return nil
	}
	for _, e := range l {
		if !words(e) {
			return nil
		}
	}
	return l
}

// words says a value is a number, a boolean, null or a short word.
func words(v any) bool {
	switch x := v.(type) {
	case nil, bool, float64, int64, int:
		return true
	case string:
		return shortWord.MatchString(x)
	}
	return false
}
