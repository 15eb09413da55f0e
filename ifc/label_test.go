package ifc

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// labels returns hand-picked labels and n random ones drawn from a small
// universe of tags and sources, so that unions and subsets happen often.
func labels(n int) []Label {
	out := []Label{
		{},
		TrustedFrom(),
		TrustedFrom(SourceUser),
		UntrustedFrom(WebSource("flights.example")),
		New(Trusted, []string{"pii"}, []string{SourceUser}),
		New(Untrusted, []string{"pii", "payment"}, []string{"email:bob@x.example", ToolSource("calendar.list")}),
	}
	tags := []string{"pii", "payment", "calendar"}
	sources := []string{SourceUser, SourceFlow, WebSource("a.example"), ToolSource("payment.charge")}
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(from []string) []string {
		var s []string
		for _, x := range from {
			if r.IntN(2) == 0 {
				s = append(s, x)
			}
		}
		return s
	}
	for range n {
		out = append(out, New(Integrity(r.IntN(2)), pick(tags), pick(sources)))
	}
	return out
}

func clearances() []Clearance {
	return []Clearance{
		{},
		NewClearance(Trusted),
		NewClearance(Untrusted),
		NewClearance(Trusted, "payment"),
		NewClearance(Untrusted, "pii", "calendar"),
		NewClearance(Trusted, "pii", "payment", "calendar"),
	}
}

func TestJoinLaws(t *testing.T) {
	t.Parallel()
	ls := labels(12)
	bottom := TrustedFrom()
	for _, a := range ls {
		if !Join(a, a).Equal(a) {
			t.Errorf("Join(%v, %v) = %v: not idempotent", a, a, Join(a, a))
		}
		if !Join(bottom, a).Equal(a) || !Join(a, bottom).Equal(a) || !Join(a).Equal(a) {
			t.Errorf("bottom is not the identity for %v", a)
		}
		for _, b := range ls {
			if !Join(a, b).Equal(Join(b, a)) {
				t.Errorf("Join(%v, %v) != Join(%v, %v): not commutative", a, b, b, a)
			}
			if !a.Join(b).Equal(Join(a, b)) {
				t.Errorf("a.Join(b) != Join(a, b) for %v, %v", a, b)
			}
			for _, c := range ls {
				if !Join(Join(a, b), c).Equal(Join(a, Join(b, c))) || !Join(a, b, c).Equal(Join(a, Join(b, c))) {
					t.Errorf("Join of %v, %v, %v is not associative", a, b, c)
				}
			}
		}
	}
	if !Join().Equal(bottom) {
		t.Errorf("Join() = %v, want the bottom %v", Join(), bottom)
	}
}

func TestJoinIsAnUpperBound(t *testing.T) {
	t.Parallel()
	ls := labels(12)
	for _, a := range ls {
		for _, b := range ls {
			j := Join(a, b)
			if j.Integrity() > a.Integrity() || j.Integrity() > b.Integrity() {
				t.Errorf("Join(%v, %v) = %v raised integrity", a, b, j)
			}
			for _, tag := range append(a.Secrecy(), b.Secrecy()...) {
				if !j.HasSecrecy(tag) {
					t.Errorf("Join(%v, %v) = %v lost secrecy %q", a, b, j, tag)
				}
			}
			for _, s := range append(a.Sources(), b.Sources()...) {
				if !slices.Contains(j.Sources(), s) {
					t.Errorf("Join(%v, %v) = %v lost source %q", a, b, j, s)
				}
			}
		}
	}
}

func TestFlowsToMonotone(t *testing.T) {
	t.Parallel()
	ls := labels(12)
	for _, a := range ls {
		for _, b := range ls {
			j := Join(a, b)
			for _, c := range clearances() {
				if j.FlowsTo(c) && (!a.FlowsTo(c) || !b.FlowsTo(c)) {
					t.Errorf("Join(%v, %v) flows to %v but a part does not", a, b, c)
				}
			}
		}
	}
}

func TestFlowsTo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		label Label
		c     Clearance
		want  bool
	}{
		{name: "bottom to the zero clearance", label: TrustedFrom(), c: Clearance{}, want: true},
		{name: "untrusted to an untrusted sink", label: UntrustedFrom("web:a"), c: NewClearance(Untrusted), want: true},
		{name: "untrusted to a trusted sink", label: UntrustedFrom("web:a"), c: NewClearance(Trusted), want: false},
		{name: "secret to a sink without it", label: TrustedFrom().WithSecrecy("pii"), c: NewClearance(Untrusted, "payment"), want: false},
		{name: "secret to a sink cleared for it", label: TrustedFrom().WithSecrecy("pii"), c: NewClearance(Trusted, "pii", "payment"), want: true},
		{name: "two secrets, one cleared", label: TrustedFrom().WithSecrecy("pii", "payment"), c: NewClearance(Trusted, "pii"), want: false},
		{name: "zero label is untrusted", label: Label{}, c: NewClearance(Trusted), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.label.FlowsTo(tt.c); got != tt.want {
				t.Errorf("%v.FlowsTo(%v) = %v, want %v", tt.label, tt.c, got, tt.want)
			}
		})
	}
}

func TestZeroLabelIsUntrusted(t *testing.T) {
	t.Parallel()
	var l Label
	if l.Integrity() != Untrusted {
		t.Errorf("zero Label integrity = %v, want untrusted", l.Integrity())
	}
	if !Join(l, TrustedFrom(SourceUser)).Equal(UntrustedFrom(SourceUser)) {
		t.Errorf("joining the zero Label does not make a label untrusted")
	}
}

func TestLabelJSONRoundTrip(t *testing.T) {
	t.Parallel()
	for _, l := range labels(20) {
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		var back Label
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if !back.Equal(l) {
			t.Errorf("round trip of %v gave %v", l, back)
		}
		again, _ := json.Marshal(back)
		if string(again) != string(b) {
			t.Errorf("encoding is not canonical: %s then %s", b, again)
		}
	}
	// Canonical: sets sorted and deduplicated, both always present.
	l := New(Untrusted, []string{"pii", "calendar", "pii"}, nil)
	b, _ := json.Marshal(l)
	if want := `{"integrity":"untrusted","secrecy":["calendar","pii"],"sources":[]}`; string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
}

func TestLabelUnmarshalErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		json string
	}{
		{name: "missing integrity", json: `{"secrecy":["pii"],"sources":["user"]}`},
		{name: "empty object", json: `{}`},
		{name: "bad integrity", json: `{"integrity":"mostly"}`},
		{name: "integrity of the wrong type", json: `{"integrity":1}`},
		{name: "not an object", json: `"trusted"`},
		{name: "secrecy of the wrong type", json: `{"integrity":"trusted","secrecy":"pii"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var l Label
			if err := json.Unmarshal([]byte(tt.json), &l); err == nil {
				t.Errorf("Unmarshal(%s) = %v, want an error", tt.json, l)
			}
		})
	}
}

func TestClearanceJSON(t *testing.T) {
	t.Parallel()
	var c Clearance
	if err := json.Unmarshal([]byte(`{"secrecy":["pii"]}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.Integrity() != Trusted || !slices.Equal(c.Secrecy(), []string{"pii"}) {
		t.Errorf("Unmarshal = %+v, want trusted {pii}: a missing integrity means trusted", c)
	}
	b, _ := json.Marshal(NewClearance(Untrusted))
	if want := `{"integrity":"untrusted","secrecy":[]}`; string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
}

func TestLabelIsImmutable(t *testing.T) {
	t.Parallel()
	l := New(Trusted, []string{"pii"}, []string{"user"})
	l.Secrecy()[0] = "changed"
	l.Sources()[0] = "changed"
	if !l.HasSecrecy("pii") || l.Sources()[0] != "user" {
		t.Errorf("a returned slice changed the label: %v", l)
	}
	in := []string{"b", "a"}
	l = New(Trusted, in, nil)
	in[0] = "z"
	if l.HasSecrecy("z") {
		t.Errorf("New keeps the caller's slice: %v", l)
	}
}

// FuzzLabelJSON checks that decoding any JSON either fails or gives a
// label whose encoding decodes to the same label and encodes to the same
// bytes.
func FuzzLabelJSON(f *testing.F) {
	for _, l := range labels(0) {
		b, _ := json.Marshal(l)
		f.Add(b)
	}
	f.Add([]byte(`{"secrecy":["pii"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var l Label
		if err := json.Unmarshal(b, &l); err != nil {
			return
		}
		enc, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		var back Label
		if err := json.Unmarshal(enc, &back); err != nil || !back.Equal(l) {
			t.Fatalf("%s decodes to %v, re-encoded %s decodes to %v (%v)", b, l, enc, back, err)
		}
		if again, _ := json.Marshal(back); string(again) != string(enc) {
			t.Fatalf("encoding not stable: %s then %s", enc, again)
		}
		if strings.Contains(string(enc), "null") {
			t.Fatalf("encoding %s has a null set", enc)
		}
	})
}

// TestUnknownIntegrityIsUntrusted: New, NewClearance and the zero
// Clearance take the strictest reading of what they are given. An
// integrity other than the two (Integrity(7)) once counted as above
// trusted in FlowsTo, and the zero Clearance admitted untrusted values.
func TestUnknownIntegrityIsUntrusted(t *testing.T) {
	t.Parallel()
	trustedSink := NewClearance(Trusted)
	for _, in := range []Integrity{2, 7, 255} {
		l := New(in, nil, []string{"web:a"})
		if l.FlowsTo(trustedSink) || l.Integrity() != Untrusted {
			t.Errorf("New(Integrity(%d)) = %v flows to a trusted sink; want untrusted", in, l)
		}
		if c := NewClearance(in); UntrustedFrom("web:a").FlowsTo(c) || c.Integrity() != Trusted {
			t.Errorf("NewClearance(Integrity(%d)) admits untrusted values", in)
		}
	}
	// Controls: the two integrities mean what they say.
	if !New(Trusted, nil, nil).FlowsTo(trustedSink) || New(Untrusted, nil, nil).FlowsTo(trustedSink) {
		t.Error("New(Trusted) or New(Untrusted) misread")
	}
	if !UntrustedFrom("web:a").FlowsTo(NewClearance(Untrusted)) {
		t.Error("NewClearance(Untrusted) refuses untrusted values")
	}
}

// TestZeroClearanceIsStrictest: a Clearance nobody filled in admits only
// trusted values with no secrecy.
func TestZeroClearanceIsStrictest(t *testing.T) {
	t.Parallel()
	var zero Clearance
	if UntrustedFrom("web:a").FlowsTo(zero) {
		t.Error("the zero Clearance admits an untrusted value")
	}
	if TrustedFrom().WithSecrecy("pii").FlowsTo(zero) {
		t.Error("the zero Clearance admits a secret")
	}
	if zero.Integrity() != Trusted || !zero.Equal(NewClearance(Trusted)) {
		t.Errorf("zero Clearance = %v, want trusted{}", zero.Integrity())
	}
	// Control: a trusted value with no secrecy flows to it.
	if !TrustedFrom("user").FlowsTo(zero) {
		t.Error("the zero Clearance refuses a trusted value")
	}
}
