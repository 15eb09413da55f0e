package llm

import (
	"encoding/json"
	"slices"

	"github.com/sluicehq/sluice/worker"
)

// objectSchema returns the schema an API is given for a structured
// answer, whose root both APIs want to be an object: schema itself when it
// describes an object, else an object whose one property, value, holds it
// (wrapped is then true, and unwrap takes the value out of the answer).
func objectSchema(schema json.RawMessage) (root json.RawMessage, wrapped bool) {
	var doc map[string]any
	_ = json.Unmarshal(schema, &doc)
	if doc["type"] == "object" {
		return schema, false
	}
	root, _ = json.Marshal(map[string]any{"type": "object", "properties": map[string]any{"value": doc},
		"required": []string{"value"}, "additionalProperties": false})
	return root, true
}

// unwrap returns the answer to the caller's schema from an answer to the
// schema objectSchema returned.
func unwrap(a json.RawMessage, wrapped bool) (json.RawMessage, error) {
	if !wrapped {
		return a, nil
	}
	var v struct {
		Value json.RawMessage `json:"value"`
	}
	if json.Unmarshal(a, &v) != nil || len(v.Value) == 0 {
		return nil, worker.Failed("the model's answer has no value")
	}
	return v.Value, nil
}

// strictable reports whether OpenAI's strict mode takes a schema as it
// is: every object in it closed (additionalProperties: false) with all its
// properties required. Strict mode refuses any other schema with a 400,
// so such a schema is sent without it (the answer is checked against the
// schema either way).
func strictable(schema json.RawMessage) bool {
	var doc any
	if json.Unmarshal(schema, &doc) != nil {
		return false
	}
	return strictNode(doc)
}

func strictNode(v any) bool {
	s, ok := v.(map[string]any)
	if !ok {
		return true // true, false, or no schema at all
	}
	props, hasProps := s["properties"].(map[string]any)
	if s["type"] == "object" || hasProps {
		if s["additionalProperties"] != false {
			return false
		}
		var required []string
		for _, r := range asAnyList(s["required"]) {
			if name, ok := r.(string); ok {
				required = append(required, name)
			}
		}
		for name := range props {
			if !slices.Contains(required, name) {
				return false
			}
		}
	}
	var sub []any
	for _, k := range []string{"properties", "$defs", "definitions"} {
		if m, ok := s[k].(map[string]any); ok {
			for _, x := range m {
				sub = append(sub, x)
			}
		}
	}
	for _, k := range []string{"anyOf", "allOf", "oneOf", "prefixItems"} {
		sub = append(sub, asAnyList(s[k])...)
	}
	sub = append(sub, s["items"], s["not"])
	for _, x := range sub {
		if !strictNode(x) {
			return false
		}
	}
	return true
}

func asAnyList(v any) []any {
	l, _ := v.([]any)
	return l
}
