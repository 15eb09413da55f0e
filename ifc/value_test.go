package ifc

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// leq reports a ⊑ b: b is at least as restrictive as a (less or equal
// integrity, more secrecy, more sources).
func leq(a, b Label) bool { return Join(a, b).Equal(b) }

var (
	propSources = []string{"user", "web:a.example", "web:b.example", "tool:x.y", "email:m"}
	propSecrecy = []string{"pii", "payment", "calendar"}
	propSteps   = []string{"a", "b", "0", "1"}
)

func randLabel(r *rand.Rand) Label {
	integrity := Trusted
	if r.IntN(2) == 0 {
		integrity = Untrusted
	}
	var sec, src []string
	for _, s := range propSecrecy {
		if r.IntN(3) == 0 {
			sec = append(sec, s)
		}
	}
	for _, s := range propSources {
		if r.IntN(3) == 0 {
			src = append(src, s)
		}
	}
	return New(integrity, sec, src)
}

func randPath(r *rand.Rand, max int) []string {
	p := make([]string, r.IntN(max+1))
	for i := range p {
		p[i] = propSteps[r.IntN(len(propSteps))]
	}
	return p
}

func randFields(r *rand.Rand) Fields {
	f := Fields{Base: randLabel(r), Fields: map[string]Label{}}
	for range r.IntN(6) {
		if p := randPath(r, 3); len(p) > 0 {
			f.Fields[strings.Join(p, ".")] = randLabel(r)
		}
	}
	return f
}

// TestFieldsProperties checks, on random labelled values and paths, what
// the engine relies on when it labels what a step reads:
//   - Base ⊑ Shape(p) ⊑ At(p) ⊑ All(): reading never reveals less than the
//     base, nor more than the whole;
//   - reading a path reveals at least what reading any path below it
//     does, and at least the label of a field set at the path;
//   - the shape of a path below another is at least as restrictive;
//   - a value nested under a prefix reveals, read through it, at least what
//     it revealed on its own.
func TestFieldsProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		f := randFields(r)
		p := randPath(r, 3)
		at, shape, all := f.At(p), f.Shape(p), f.All()
		if !leq(f.Base, shape) || !leq(shape, at) || !leq(at, all) {
			t.Fatalf("case %d: want base ⊑ shape ⊑ at ⊑ all at %v\nfields %+v\nbase %s shape %s at %s all %s", i, p, f, f.Base, shape, at, all)
		}
		if l, ok := f.Fields[strings.Join(p, ".")]; ok && len(p) > 0 && !leq(l, at) {
			t.Fatalf("case %d: At(%v) = %s does not carry the field's own label %s", i, p, at, l)
		}
		child := append(append([]string(nil), p...), propSteps[r.IntN(len(propSteps))])
		if !leq(f.At(child), at) && len(p) > 0 {
			t.Fatalf("case %d: At(%v) = %s reveals more than At(%v) = %s", i, child, f.At(child), p, at)
		}
		if !leq(shape, f.Shape(child)) {
			t.Fatalf("case %d: Shape(%v) = %s is less than Shape(%v) = %s", i, child, f.Shape(child), p, shape)
		}
		inner := randFields(r)
		outer := randFields(r)
		prefix := propSteps[r.IntN(len(propSteps))] + "x"
		outer.Nest(prefix, inner)
		q := randPath(r, 2)
		if got, want := outer.At(append([]string{prefix}, q...)), inner.At(q); !leq(want, got) {
			t.Fatalf("case %d: nested under %s, At(%v) = %s, less than on its own: %s", i, prefix, q, got, want)
		}
		if !leq(inner.All(), outer.All()) {
			t.Fatalf("case %d: nesting lost part of the inner value's label", i)
		}
	}
}

// TestFieldsAtIsExact pins At, Shape and All on one value, so that a
// change that keeps the orderings but reads the wrong fields is caught.
func TestFieldsAtIsExact(t *testing.T) {
	web, mail := UntrustedFrom("web:a.example"), UntrustedFrom("email:m")
	f := Fields{Base: TrustedFrom("tool:x.y"), Fields: map[string]Label{"flights.0": web, "flights.0.price": mail, "flightsx": web}}
	cases := []struct {
		name string
		got  Label
		want Label
	}{
		{"At flights.0.price", f.At([]string{"flights", "0", "price"}), Join(f.Base, web, mail)},
		{"At flights.0", f.At([]string{"flights", "0"}), Join(f.Base, web, mail)},
		{"At flights (its elements below it)", f.At([]string{"flights"}), Join(f.Base, web, mail)},
		{"At flights.1 (a sibling)", f.At([]string{"flights", "1"}), f.Base},
		{"Shape flights (not its elements)", f.Shape([]string{"flights"}), f.Base},
		{"Shape flights.0.price", f.Shape([]string{"flights", "0", "price"}), Join(f.Base, web, mail)},
		{"At of nothing is All", f.At(nil), f.All()},
		{"All", f.All(), Join(f.Base, web, mail)},
	}
	for _, c := range cases {
		if !c.got.Equal(c.want) {
			t.Errorf("%s = %s, want %s", c.name, c.got, c.want)
		}
	}
}
