package ifc

import (
	"slices"
	"testing"
)

// joinGathered is Join as the union of every label's tags and sources,
// sorted: what Join must give, whether it shares a label's or gathers.
func joinGathered(ls ...Label) Label {
	out := Label{integrity: Trusted}
	var sec, src []string
	for _, l := range ls {
		out.integrity = min(out.integrity, l.integrity)
		sec = append(sec, l.secrecy...)
		src = append(src, l.sources...)
	}
	slices.Sort(sec)
	slices.Sort(src)
	out.secrecy, out.sources = slices.Compact(sec), slices.Compact(src)
	if len(out.secrecy) == 0 {
		out.secrecy = nil
	}
	if len(out.sources) == 0 {
		out.sources = nil
	}
	return out
}

// Join of two and three labels, some holding the others' tags or sources
// and some not, is the union of them all.
func TestJoinIsTheUnion(t *testing.T) {
	t.Parallel()
	ls := labels(16)
	for _, a := range ls {
		for _, b := range ls {
			if got, want := Join(a, b), joinGathered(a, b); !got.Equal(want) {
				t.Errorf("Join(%v, %v) = %v, want %v", a, b, got, want)
			}
			for _, c := range ls {
				if got, want := Join(a, b, c), joinGathered(a, b, c); !got.Equal(want) {
					t.Errorf("Join(%v, %v, %v) = %v, want %v", a, b, c, got, want)
				}
			}
		}
	}
}

// A join that adds nothing to one label's secrecy and sources allocates
// nothing: it shares them. Joining the result changes neither label.
func TestJoinSharesACoveringLabel(t *testing.T) {
	big := New(Untrusted, []string{"payment", "pii"}, []string{SourceUser, WebSource("a.example")})
	small := New(Trusted, []string{"pii"}, []string{SourceUser})
	if n := testing.AllocsPerRun(100, func() { _ = Join(small, big, small) }); n != 0 {
		t.Errorf("Join of a label and one it covers: %v allocations, want 0", n)
	}
	j := Join(small, big)
	_ = j.WithSources(SourceFlow).WithSecrecy("calendar")
	if !j.Equal(big) || big.String() != "untrusted{payment,pii}<user,web:a.example>" || small.String() != "trusted{pii}<user>" {
		t.Errorf("after joining: %v, %v, %v", j, big, small)
	}
}

// BenchmarkJoin joins a call's label with its argument's, which reads
// the same value (covered: nothing new), and two labels from different
// sources (the bench's label_join).
func BenchmarkJoin(b *testing.B) {
	web := UntrustedFrom(WebSource("flights.example"))
	user := TrustedFrom(SourceUser)
	arg := New(Untrusted, []string{"pii"}, []string{SourceUser, WebSource("flights.example")})
	for _, c := range []struct {
		name string
		ls   []Label
	}{{"covered", []Label{TrustedFrom(), arg, arg}}, {"disjoint", []Label{web, user}}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = Join(c.ls...)
			}
		})
	}
}
