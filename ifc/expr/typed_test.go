package expr

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func typedEnv(t *testing.T) *Env {
	t.Helper()
	env, err := newEnv(t).WithTypes(map[string]Type{
		"inputs.n":                   {Kind: Double},
		"inputs.count":               {Kind: Int},
		"inputs.who":                 {Kind: String},
		"steps.pay.output":           {Kind: Map},
		"steps.pay.output.charge_id": {Kind: String},
		"steps.pay.output.ok":        {Kind: Bool},
		"steps.inbox.output.tags":    {Kind: List, Elem: String},
		"steps.in-valid.output":      {Kind: String}, // not an identifier: not declared
	})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestTypedCheckFails(t *testing.T) {
	t.Parallel()
	env := typedEnv(t)
	for _, tc := range []struct {
		src    string
		offset int
		want   string
	}{
		{"${'x' + inputs.n}", 6, "operator + cannot take a string and a number (double)"},
		{"${'x' + inputs.n}", 6, "convert the other side first, e.g. string(…)"},
		{"${inputs.n + 1}", 11, "operator + cannot take a number (double) and an integer (int)"},
		{"${inputs.count * 1.5}", 15, "operator * cannot take an integer (int) and a number (double)"},
		{"Paid ${steps.pay.output.charge_id - 1}", 34, "operator - cannot take a string and an integer (int)"},
		{"${!steps.pay.output.charge_id}", 2, "operator ! cannot take a string"},
		{"${size(inputs.n)}", 6, "function size cannot take a number (double)"},
		{"${inputs.count ? 1 : 2}", 15, "operator ?: cannot take an integer (int)"},
		{"${inputs.who < 1}", 13, "operator < cannot take a string and an integer (int)"},
		{"${inputs.who in [1, 2]}", 13, "operator in cannot take a string and a list"},
		{"${inputs.count + 1u}", 15, "operator + cannot take an integer (int) and an unsigned integer (uint)"},
		{"${string(steps.pay.output)}", 8, "function string cannot take a map (no matching overload for string applied to (map(string, dyn)))"},
		{"${steps.inbox.output.tags[0] + 1}", 29, "operator + cannot take a string and an integer (int)"},
	} {
		_, err := env.Compile(tc.src)
		var list ErrorList
		if !errors.As(err, &list) || len(list) != 1 {
			t.Errorf("%s: want one error, got %v", tc.src, err)
			continue
		}
		if e := list[0]; e.Code != CodeType || e.Offset != tc.offset || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: got %s at %d: %s; want %s at %d containing %q", tc.src, e.Code, e.Offset, e.Message, CodeType, tc.offset, tc.want)
		}
	}
}

func TestTypedCheckPasses(t *testing.T) {
	t.Parallel()
	env := typedEnv(t)
	for _, src := range []string{
		"${'x' + string(inputs.n)}",
		"${inputs.n > 1}",  // compared across kinds at run time
		"${inputs.n == 1}", // likewise
		"${inputs.count in [1, 2.0]}",
		"${inputs.n * 2.0}",
		"${'to ' + inputs.who}",
		"${steps.pay.output.charge_id + '!'}",
		"${steps.pay.output.other + 1}", // not declared: dyn
		"${steps.other.output.x + 1}",
		"${steps.inbox.output.tags.exists(t, t == 'a')}",
		"${has(inputs.who)}",
		"${inputs.n > 0 ? inputs.n : 0}",
		"${inputs.count == 2 ? inputs.who : 1}",
		"${inputs.n in [1, 2]}",
		"${inputs.who == null || inputs.n != null}",
		"${inputs.who == 1}",
		// A loop variable that shadows a root is not the declared input.
		"${[{'n': 1}].map(inputs, inputs.n + 1)}",
		"${inputs.who.x}", // left to the caller, which knows the shapes

	} {
		if _, err := env.Compile(src); err != nil {
			t.Errorf("%s: %v", src, err)
		}
	}
	// The same mistakes pass an Env with no declarations: the check is
	// what finds them.
	if _, err := newEnv(t).Compile("${'x' + inputs.n}"); err != nil {
		t.Errorf("untyped: %v", err)
	}
}

// The declarations serve the check only: evaluation sees the values as
// they are.
func TestTypedEvalUnchanged(t *testing.T) {
	t.Parallel()
	tmpl, err := typedEnv(t).Compile("${steps.pay.output.charge_id + ':' + string(inputs.n * 2.0)}")
	if err != nil {
		t.Fatal(err)
	}
	got, err := tmpl.Eval(map[string]any{
		"inputs": map[string]any{"n": 1.5},
		"steps":  map[string]any{"pay": map[string]any{"output": map[string]any{"charge_id": "ch_1"}}},
	})
	if err != nil || got != "ch_1:3" {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestRefsOffsets(t *testing.T) {
	t.Parallel()
	src := "x ${'é' + steps.pay.output['a'].chargeid} ${inputs.n}"
	tmpl, err := newEnv(t).Compile(src)
	if err != nil {
		t.Fatal(err)
	}
	refs := tmpl.Refs()
	if len(refs) != 2 {
		t.Fatalf("refs %v", refs)
	}
	for _, r := range refs {
		for i, el := range r.Path {
			at := src[r.Offsets[i]:]
			if el == "a" {
				el = "'a'"
			}
			if !strings.HasPrefix(at, el) {
				t.Errorf("%v: element %q at %d reads %q", r.Path, r.Path[i], r.Offsets[i], at)
			}
		}
	}
	if !slices.Equal(refs[0].Path, Path{"steps", "pay", "output", "a", "chargeid"}) {
		t.Errorf("path %v", refs[0].Path)
	}
}
