package approval

import (
	"slices"
	"testing"
)

// ByStep keeps the order in which steps first appear and puts each
// step's elements in element order.
func TestByStep(t *testing.T) {
	i := func(n int) *int { return &n }
	list := []Approval{
		{ID: "b2", RunID: "R", Step: "b", Index: i(2)},
		{ID: "a", RunID: "R", Step: "a"},
		{ID: "b0", RunID: "R", Step: "b", Index: i(0)},
		{ID: "o", RunID: "S", Step: "b"},
		{ID: "b1", RunID: "R", Step: "b", Index: i(1)},
	}
	var got []string
	for _, g := range ByStep(list) {
		ids := ""
		for _, a := range g {
			ids += a.ID + " "
		}
		got = append(got, ids)
	}
	if want := []string{"b0 b1 b2 ", "a ", "o "}; !slices.Equal(got, want) {
		t.Fatalf("ByStep: %q, want %q", got, want)
	}
}
