package ifc

import (
	"errors"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/ifc/internal/lower"
)

func TestEndorse(t *testing.T) {
	t.Parallel()
	l := New(Untrusted, []string{"pii"}, []string{"web:a.example"})
	got, err := Endorse(l, lower.EndorsedBy("known-payees"))
	if err != nil {
		t.Fatal(err)
	}
	want := New(Trusted, []string{"pii"}, []string{"endorsed:known-payees", "web:a.example"})
	if !got.Equal(want) {
		t.Errorf("Endorse = %v, want %v", got, want)
	}
	if !l.Equal(New(Untrusted, []string{"pii"}, []string{"web:a.example"})) {
		t.Errorf("Endorse changed its input: %v", l)
	}
	got, err = Endorse(l, lower.ApprovedBy("ana"))
	if err != nil || !slices.Contains(got.Sources(), "approved:ana") || got.Integrity() != Trusted {
		t.Errorf("Endorse by approval = %v, %v", got, err)
	}
	// Twice by one rule records it once.
	twice, _ := Endorse(want, lower.EndorsedBy("known-payees"))
	if !twice.Equal(want) {
		t.Errorf("endorsed twice: %v", twice)
	}
}

func TestDeclassify(t *testing.T) {
	t.Parallel()
	l := New(Untrusted, []string{"calendar", "payment", "pii"}, []string{"user"})
	got, err := Declassify(l, lower.DeclassifiedBy("notes", []string{"pii", "calendar", "absent"}))
	if err != nil {
		t.Fatal(err)
	}
	want := New(Untrusted, []string{"payment"}, []string{"declassified:notes", "user"})
	if !got.Equal(want) {
		t.Errorf("Declassify = %v, want %v", got, want)
	}
	all, _ := Declassify(l, lower.DeclassifiedBy("all", []string{"pii", "calendar", "payment"}))
	if len(all.Secrecy()) != 0 || !all.FlowsTo(NewClearance(Untrusted)) {
		t.Errorf("Declassify of every tag = %v", all)
	}
}

// TestLoweringNeedsAReason: the zero Reason, and a reason of the other
// kind, lower nothing.
func TestLoweringNeedsAReason(t *testing.T) {
	t.Parallel()
	l := New(Untrusted, []string{"pii"}, []string{"web:a.example"})
	for name, try := range map[string]func() (Label, error){
		"endorse with no reason":          func() (Label, error) { return Endorse(l, Reason{}) },
		"declassify with no reason":       func() (Label, error) { return Declassify(l, Reason{}) },
		"endorse with a declassification": func() (Label, error) { return Endorse(l, lower.DeclassifiedBy("r", []string{"pii"})) },
		"declassify with an endorsement":  func() (Label, error) { return Declassify(l, lower.EndorsedBy("r")) },
		"declassify with an approval":     func() (Label, error) { return Declassify(l, lower.ApprovedBy("ana")) },
		"endorse by nobody":               func() (Label, error) { return Endorse(l, lower.ApprovedBy(" ")) },
		"endorse by an unnamed rule":      func() (Label, error) { return Endorse(l, lower.EndorsedBy("")) },
		"declassify of no tag":            func() (Label, error) { return Declassify(l, lower.DeclassifiedBy("r", nil)) },
	} {
		got, err := try()
		if !errors.Is(err, ErrReason) || !got.Equal(l) {
			t.Errorf("%s: %v, %v", name, got, err)
		}
	}
}

func TestClearanceEqual(t *testing.T) {
	t.Parallel()
	cs := clearances()
	for _, a := range cs {
		for _, b := range cs {
			same := a.Integrity() == b.Integrity() && slices.Equal(a.Secrecy(), b.Secrecy())
			if a.Equal(b) != same {
				t.Errorf("%v.Equal(%v) = %v", a, b, a.Equal(b))
			}
		}
	}
}
