package expr

import (
	"slices"
	"testing"
)

func TestTemplatePath(t *testing.T) {
	env, err := NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		src  string
		want Path
		ok   bool
	}{
		{"${steps.a.output.items}", Path{"steps", "a", "output", "items"}, true},
		{"${ steps['a'].output }", Path{"steps", "a", "output"}, true},
		{"${inputs.list}", Path{"inputs", "list"}, true},
		{"${steps.a.output.items[0]}", Path{"steps", "a", "output", "items", "0"}, true},
		{"${steps.a.output.items[inputs.i]}", nil, false},
		{"${steps.a.output.items.filter(x, x > 1)}", nil, false},
		{"x ${steps.a.output.items}", nil, false},
		{"literal", nil, false},
	} {
		tmpl, err := env.Compile(tc.src)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := tmpl.Path()
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("Path(%q) = %v, %v; want %v, %v", tc.src, got, ok, tc.want, tc.ok)
		}
	}
}
