package flow

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// followSchema is an output schema with one property for each way a
// schema can rule a field in or out.
const followSchema = `{
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "a": {"type": "object", "additionalProperties": false, "properties": {"x": {"type": "string"}, "xs": {"type": "array"}}},
    "list": {"type": "array", "items": {"type": "object", "additionalProperties": false, "properties": {"y": {"type": "integer"}}}},
    "noitems": {"type": "array"},
    "open": {"type": "object", "additionalProperties": true, "properties": {"o": {"type": "string"}}},
    "loose": {"type": "object", "properties": {"o": {"type": "string"}}},
    "pat": {"type": "object", "patternProperties": {"^p": {"type": "string"}}, "additionalProperties": false},
    "addl": {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": false, "properties": {"z": {"type": "boolean"}}}},
    "closed": {"type": "object", "additionalProperties": false},
    "ref": {"$ref": "#/$defs/r"},
    "bad": {"$ref": "#/$defs/missing"},
    "anyt": {"description": "no type"},
    "several": {"type": ["object", "null"]},
    "n": {"type": "number"},
    "nul": {"type": "null"}
  },
  "$defs": {"r": {"type": "object", "additionalProperties": false, "properties": {"k": {"type": "string"}, "kind": {"type": "string"}}}}
}`

// follow finds the first element of a path an output schema rules out,
// and says why, for each way a schema can rule a field in or out; where
// the schema lets a field through, the path is not refused.
func TestFollow(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal([]byte(followSchema), &doc); err != nil {
		t.Fatal(err)
	}
	sh := shape{doc: doc, root: doc, whose: "tool t.x"}
	each := shape{doc: map[string]any{"type": "array", "items": doc}, root: doc, whose: "tool t.x", forEach: "s"}
	prefix := []string{"steps", "s", "output"}
	for _, tc := range []struct {
		sh   shape
		path string
		want string // "i: message", or "" when the path may be there
	}{
		{sh, "a.x", ""},
		{sh, "a.xx", `1: steps.s.output.a has no field "xx": tool t.x gives x, xs (did you mean x?)`},
		{sh, "a.x.y", `2: steps.s.output.a.x is a string (tool t.x); it has no field "y"`},
		{sh, "a.xs.0.q", ""},
		{sh, "b", `0: steps.s.output has no field "b": tool t.x gives a, addl, anyt, bad, closed, list, loose, n, noitems, nul, open, pat, ref, several (did you mean a?)`},
		{sh, "list", ""},
		{sh, "list.y", `1: steps.s.output.list is a list (tool t.x); it has no field "y": read an element, e.g. steps.s.output.list[0].y`},
		{sh, "list.0.y", ""},
		{sh, "list.0.w", `2: steps.s.output.list.0 has no field "w": tool t.x gives y (did you mean y?)`},
		{sh, "list.0.y.v", `3: steps.s.output.list.0.y is an integer (tool t.x); it has no field "v"`},
		{sh, "noitems.0.v", ""},
		{sh, "open.anything.else", ""},
		{sh, "loose.anything", ""},
		{sh, "pat.q", ""},
		{sh, "addl.k.z", ""},
		{sh, "addl.k.w", `2: steps.s.output.addl.k has no field "w": tool t.x gives z (did you mean z?)`},
		{sh, "closed.f", `1: steps.s.output.closed has no field "f": tool t.x gives no fields`},
		{sh, "ref.k", ""},
		{sh, "ref.kin", `1: steps.s.output.ref has no field "kin": tool t.x gives k, kind (did you mean kind?)`},
		{sh, "bad.x", ""},
		{sh, "anyt.x", ""},
		{sh, "several.x", ""},
		{sh, "n.x", `1: steps.s.output.n is a number (tool t.x); it has no field "x"`},
		{sh, "nul.x", `1: steps.s.output.nul is null (tool t.x); it has no field "x"`},
		{each, "a", `0: steps.s.output is a list: step s calls its tool once per element of for_each; read one call's output, e.g. steps.s.output[0].a`},
		{each, "0.a.x", ""},
		{each, "0.a.x.y", `3: steps.s.output.0.a.x is a string (tool t.x); it has no field "y"`},
		{shape{whose: "tool t.y"}, "a", ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			got := ""
			if i, msg := follow(tc.sh, prefix, strings.Split(tc.path, ".")); msg != "" {
				got = fmt.Sprintf("%d: %s", i, msg)
			}
			if got != tc.want {
				t.Errorf("follow %s:\ngot  %s\nwant %s", tc.path, got, tc.want)
			}
		})
	}
}
