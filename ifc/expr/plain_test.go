package expr

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Only an expression that selects fields from a variable, and nothing
// else, is a plain path.
func TestPlainPathRecognized(t *testing.T) {
	env, err := NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string][]string{
		"${inputs.text}":              {"inputs", "text"},
		"${steps.a.output.text}":      {"steps", "a", "output", "text"},
		"${item}":                     {"item"},
		"${index}":                    {"index"},
		"${item.name}":                {"item", "name"},
		"${inputs['text']}":           nil,
		"${inputs.text + 'x'}":        nil,
		"${has(inputs.text)}":         nil,
		"${size(inputs.text)}":        nil,
		"${steps.a.output.list[0]}":   nil,
		"${inputs.n > 1}":             nil,
		"${[inputs.text][0]}":         nil,
		"${inputs.text.lowerAscii()}": nil,
	} {
		tpl, err := env.Compile(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if got := tpl.parts[0].path; !slices.Equal(got, want) {
			t.Errorf("%s: plain path %q, want %q", src, got, want)
		}
	}
}

// A plain path evaluates to what CEL gives for it, value or error, in
// every shape of value it may read.
func TestPlainPathEvaluatesAsCEL(t *testing.T) {
	env, err := NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("x", MaxValueSize)
	vars := map[string]any{
		"inputs": map[string]any{
			"text": "hello", "empty": "", "n": int64(7), "i": 7, "u": uint64(7), "f": 1.5, "whole": 2.0,
			"yes": true, "nothing": nil, "list": []any{"a", int64(1)}, "map": map[string]any{"k": "v"},
			"typed": map[string]string{"k": "v"}, "huge": huge, "bytes": []byte("hi"), "bad": "\xff\xfe",
		},
		"steps": map[string]any{"a": map[string]any{"output": map[string]any{
			"text": "from a", "nested": map[string]any{"deep": map[string]any{"text": "deep", "n": int64(-3)}},
			"list": []any{map[string]any{"text": "in a list"}},
		}}},
		"item":  "an item",
		"index": int64(2),
	}
	paths := []string{
		"inputs.text", "inputs.empty", "inputs.n", "inputs.i", "inputs.u", "inputs.f", "inputs.whole", "inputs.yes",
		"inputs.nothing", "inputs.list", "inputs.map", "inputs.map.k", "inputs.map.missing", "inputs.typed", "inputs.typed.k",
		"inputs.huge", "inputs.bytes", "inputs.bad", "inputs.missing", "inputs.text.more", "inputs.list.a",
		"steps.a.output.text", "steps.a.output.nested.deep.text", "steps.a.output.nested.deep.n", "steps.a.output.list.text",
		"steps.b.output.text", "steps.a.missing", "item", "index", "inputs",
	}
	plain := 0
	for _, path := range paths {
		for _, src := range []string{"${" + path + "}", "say ${" + path + "}"} {
			tpl, err := env.Compile(src)
			if err != nil {
				t.Fatalf("%s: %v", src, err)
			}
			p := tpl.parts[len(tpl.parts)-1]
			if p.path == nil {
				t.Fatalf("%s: not a plain path", src)
			}
			if _, ok := plainValue(vars, p.path); ok {
				plain++
			}
			got, gotErr := tpl.Eval(vars)
			want, wantErr := celEval(tpl, vars)
			if !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil) ||
				(gotErr != nil && gotErr.Error() != wantErr.Error()) {
				t.Errorf("%s: %#v, %v; CEL gives %#v, %v", src, short(got), gotErr, short(want), wantErr)
			}
		}
	}
	// Read without CEL, in both templates: inputs' text, empty, n, yes,
	// map.k and bad; steps' text, deep text and n; item and index.
	if plain != 2*11 {
		t.Errorf("%d paths read without CEL, want %d", plain, 2*11)
	}
}

// celEval is Template.Eval with every expression evaluated by CEL.
func celEval(t *Template, vars map[string]any) (any, error) {
	if t.whole {
		return t.parts[0].evalCEL(vars)
	}
	var b strings.Builder
	for _, p := range t.parts {
		if !p.isExpr {
			b.WriteString(p.lit)
			continue
		}
		v, err := p.evalCEL(vars)
		if err != nil {
			return nil, err
		}
		if err := interpolate(&b, v); err != nil {
			return nil, p.evalError(0, err.Error())
		}
	}
	return b.String(), nil
}

func short(v any) any {
	if s, ok := v.(string); ok && len(s) > 40 {
		return s[:40] + "…"
	}
	return v
}

// BenchmarkEvalPath evaluates ${inputs.text}, the argument of the hop of
// make bench, with a 256-byte text.
func BenchmarkEvalPath(b *testing.B) {
	env, err := NewEnv()
	if err != nil {
		b.Fatal(err)
	}
	tpl, err := env.Compile("${inputs.text}")
	if err != nil {
		b.Fatal(err)
	}
	vars := map[string]any{"inputs": map[string]any{"text": strings.Repeat("a", 256)}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tpl.Eval(vars); err != nil {
			b.Fatal(err)
		}
	}
}
