package expr

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/sluicehq/sluice/ifc"
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
		"${'x' + inputs.n}",
		"${steps.pay.output['charge_id'] + string(inputs.n * 2.0)} ${inputs.n == 1}",
	} {
		f.Add(s)
	}
	env, err := NewEnv()
	if err != nil {
		f.Fatal(err)
	}
	typed, err := env.WithTypes(map[string]Type{"inputs.n": {Kind: Double}, "steps.pay.output": {Kind: Map},
		"steps.pay.output.charge_id": {Kind: String}, "steps.pay.output.tags": {Kind: List, Elem: String}})
	if err != nil {
		f.Fatal(err)
	}
	v := vars()
	f.Fuzz(func(t *testing.T, s string) {
		// The typed check adds errors, never a panic or an error
		// outside the string.
		if _, err := typed.Compile(s); err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("typed: error %v is not a non-empty ErrorList", err)
			}
			for _, e := range list {
				if e.Offset < 0 || e.Offset >= len(s) {
					t.Fatalf("typed: offset %d outside [0, %d): %v", e.Offset, len(s), e)
				}
			}
		}
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
		for _, r := range tp.Refs() {
			if len(r.Offsets) != len(r.Path) || !slices.ContainsFunc(tp.Reads(), func(p Path) bool { return slices.Equal(p, r.Path) }) {
				t.Fatalf("ref %v is not one of Reads() %v", r, tp.Reads())
			}
			for _, o := range r.Offsets {
				if o < 0 || o >= len(s) {
					t.Fatalf("ref %v: offset %d outside [0, %d)", r, o, len(s))
				}
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

// FuzzLabel checks label derivation on any string that compiles: the
// value of a template depends only on the values its Reads name (change
// any other leaf of the variables and the result stays the same, so no
// read escapes the label), and its Label is the join of exactly those
// paths' labels (a path is untrusted in the lookup iff it is related to a
// read). Seeds live in testdata/fuzz/FuzzLabel.
func FuzzLabel(f *testing.F) {
	for _, s := range []string{
		"${steps.pick.output.price * 2.0}",
		"${steps.pick.output.flight + ' ' + inputs.destination}",
		"${inputs.flag ? steps.pick.output.payee : 'none'}",
		"${steps.pick.output.extra.meal}",
		"${size(steps.pick.output.seats) > 1}",
		"${steps.pick.output.seats.exists(s, s > inputs.budget)}",
		"${inputs[steps.pay.output.status]}",
		"${has(steps.pick.output.extra.bags)}",
	} {
		f.Add(s)
	}
	env, err := NewEnv()
	if err != nil {
		f.Fatal(err)
	}
	base := vars()
	leaves := leafPaths(base, nil)
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := env.Compile(s)
		if err != nil {
			return
		}
		reads := tp.Reads()
		related := func(p Path) bool {
			for _, r := range reads {
				n := min(len(r), len(p))
				if slices.Equal(r[:n], p[:n]) {
					return true
				}
			}
			return false
		}
		want, werr := tp.Eval(base)
		for _, leaf := range leaves {
			if related(leaf) {
				continue
			}
			got, gerr := tp.Eval(mutate(base, leaf).(map[string]any))
			if (werr == nil) != (gerr == nil) || werr == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("%q reads %v, yet changing %v changes its value: %v (%v) then %v (%v)", s, reads, leaf, want, werr, got, gerr)
			}
		}
		// Label: each leaf in turn is the only untrusted value.
		for _, leaf := range leaves {
			l := tp.Label(func(p Path) ifc.Label {
				n := min(len(p), len(leaf))
				if slices.Equal(p[:n], leaf[:n]) {
					return ifc.UntrustedFrom("x")
				}
				return ifc.TrustedFrom("user")
			})
			if untrusted := l.Integrity() == ifc.Untrusted; untrusted != related(leaf) {
				t.Fatalf("%q reads %v: label %v with only %v untrusted", s, reads, l, leaf)
			}
		}
	})
}

// leafPaths lists the path of every leaf value under v.
func leafPaths(v any, at Path) []Path {
	switch x := v.(type) {
	case map[string]any:
		var out []Path
		for _, k := range slices.Sorted(maps.Keys(x)) {
			out = append(out, leafPaths(x[k], append(slices.Clip(at), k))...)
		}
		return out
	case []any:
		var out []Path
		for i, e := range x {
			out = append(out, leafPaths(e, append(slices.Clip(at), strconv.Itoa(i)))...)
		}
		return out
	}
	return []Path{at}
}

// mutate returns a deep copy of v with the leaf at p changed to another
// value of the same type and size, so that costs and shapes stay equal.
func mutate(v any, p Path) any {
	if len(p) == 0 {
		switch x := v.(type) {
		case string:
			r := []byte(x)
			for i := range r {
				if r[i] == 'z' {
					r[i] = 'y'
				} else {
					r[i] = 'z'
				}
			}
			return string(r)
		case int64:
			return x + 1
		case float64:
			return x + 1
		case bool:
			return !x
		case nil:
			return false
		}
		return v
	}
	switch x := v.(type) {
	case map[string]any:
		out := maps.Clone(x)
		out[p[0]] = mutate(x[p[0]], p[1:])
		return out
	case []any:
		out := slices.Clone(x)
		i, _ := strconv.Atoi(p[0])
		out[i] = mutate(x[i], p[1:])
		return out
	}
	return v
}
