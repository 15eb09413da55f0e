package expr

import (
	"errors"
	"slices"
	"testing"
)

// FuzzCompile checks the splitter, the compiler and the reads walker on
// any string: no panic, every error offset inside the string, and every
// path read rooted at a flow variable. Seeds live in
// testdata/fuzz/FuzzCompile.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		"",
		"${steps.pick.output.price}",
		"Flight ${steps.pick.output.flight} for ${inputs.budget}",
		"$${escaped} ${'}'}",
	} {
		f.Add(s)
	}
	env, err := NewEnv()
	if err != nil {
		f.Fatal(err)
	}
	v := vars()
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := env.Compile(s)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %v is not a non-empty ErrorList", err)
			}
			for _, e := range list {
				if e.Offset < 0 || e.Offset >= len(s) {
					t.Fatalf("offset %d outside [0, %d): %v", e.Offset, len(s), e)
				}
				switch e.Code {
				case CodeSyntax, CodeUnterminated, CodeType:
				default:
					t.Fatalf("unexpected code %q", e.Code)
				}
			}
			return
		}
		if tp.Source() != s {
			t.Fatalf("Source() = %q, want %q", tp.Source(), s)
		}
		for _, p := range tp.Reads() {
			if len(p) == 0 || !isRoot(p[0]) {
				t.Fatalf("path %q does not start at a flow variable", p)
			}
		}
		if tp.IsLiteral() && len(tp.Reads()) != 0 {
			t.Fatalf("a literal reads %v", tp.Reads())
		}
		if p, ok := tp.Path(); ok && (len(tp.Reads()) != 1 || !slices.Equal(tp.Reads()[0], p)) {
			t.Fatalf("Path() = %v but Reads() = %v", p, tp.Reads())
		}
		if _, err := tp.Eval(v); err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeEval || e.Offset < 0 || e.Offset >= len(s) {
				t.Fatalf("Eval error %v is not a positioned %s", err, CodeEval)
			}
		}
	})
}
