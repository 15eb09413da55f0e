package approval

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/schemas"
)

func TestLookalikes(t *testing.T) {
	t.Parallel()
	registries := map[string][]string{"payees": {"acct_hotel_1"}, "contacts": {"bob@x.example"}}
	earlier := []Approval{
		{Tool: "payment.charge", Status: Used, Args: map[string]any{"payee": "acct_taxi_7"}},
		{Tool: "payment.charge", Status: Denied, Args: map[string]any{"payee": "acct_bar_2"}},
		{Tool: "email.send", Status: Approved, Args: map[string]any{"to": "eve@y.example"}},
		{Tool: "payment.charge", Status: Approved, Args: map[string]any{"payee": "acct_taxi_7", "memo": []any{"r\u0435nt", "rent"}}},
	}
	tests := []struct {
		name string
		tool string
		args map[string]any
		want []schemas.Lookalike
	}{
		{"Cyrillic a in a registry payee", "payment.charge", map[string]any{"payee": "\u0430cct_hotel_1", "amount": 5},
			[]schemas.Lookalike{{Arg: "payee", Value: "\u0430cct_hotel_1", Like: "acct_hotel_1", Where: "registry payees"}}},
		{"the entry itself", "payment.charge", map[string]any{"payee": "acct_hotel_1"}, nil},
		{"zero width in a contact, in a list", "calendar.create_event", map[string]any{"attendees": []any{"me@home.example", "bob@x.exa\u200bmple"}},
			[]schemas.Lookalike{{Arg: "attendees[1]", Value: "bob@x.exa\u200bmple", Like: "bob@x.example", Where: "registry contacts"}}},
		{"an approved payee", "payment.charge", map[string]any{"payee": "acct_tax\u0456_7"},
			[]schemas.Lookalike{{Arg: "payee", Value: "acct_tax\u0456_7", Like: "acct_taxi_7", Where: "approved before (payment.charge payee)"}}},
		{"a denied payee is not trusted", "payment.charge", map[string]any{"payee": "acct_b\u0430r_2"}, nil},
		{"another tool's approval", "payment.charge", map[string]any{"payee": "eve@y.ex\u0430mple"}, nil},
		{"two lookalikes of one value, each once", "payment.charge", map[string]any{"memo": "r\u0435\u200bnt"},
			[]schemas.Lookalike{{Arg: "memo", Value: "r\u0435\u200bnt", Like: "rent", Where: "approved before (payment.charge memo)"},
				{Arg: "memo", Value: "r\u0435\u200bnt", Like: "r\u0435nt", Where: "approved before (payment.charge memo)"}}},
		{"an approved lookalike is not one of itself", "payment.charge", map[string]any{"memo": "r\u0435nt"},
			[]schemas.Lookalike{{Arg: "memo", Value: "r\u0435nt", Like: "rent", Where: "approved before (payment.charge memo)"}}},
		{"unlike anything", "payment.charge", map[string]any{"payee": "acct_attacker"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Lookalikes(tt.tool, tt.args, registries, approvedByTool(earlier)[tt.tool])
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("lookalikes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestApprovedValuesKeepsEachValueOnce: the values approved calls are
// compared with grow with the distinct values, not with the approvals, and
// a string too long to be compared is not kept.
func TestApprovedValuesKeepsEachValueOnce(t *testing.T) {
	t.Parallel()
	var a ApprovedValues
	for range 1000 {
		a.Add(map[string]any{"payee": "acct_hotel_1", "amount": 120})
		a.Add(map[string]any{"payee": "acct_taxi_7", "to": []any{"bob@x.example", strings.Repeat("x", maxLookalike+1)}})
	}
	if a.Len() != 3 {
		t.Fatalf("%d values kept, want 3 (acct_hotel_1, acct_taxi_7, bob@x.example)", a.Len())
	}
	if got := a.Values("payee"); !slices.Equal(got, []string{"acct_hotel_1", "acct_taxi_7"}) {
		t.Fatalf("payee values %q", got)
	}
	if got := a.Values("to"); !slices.Equal(got, []string{"bob@x.example"}) {
		t.Fatalf("to values %q", got)
	}
}

// BenchmarkLookalikes is the check a new held call makes, with n values
// approved before for its argument.
func BenchmarkLookalikes(b *testing.B) {
	registries := map[string][]string{"payees": {"acct_hotel_1", "acct_taxi_7"}}
	for _, n := range []int{10, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			var a ApprovedValues
			for i := range n {
				a.Add(map[string]any{"payee": "acct_" + strconv.Itoa(i)})
			}
			args := map[string]any{"payee": "\u0430cct_hotel_1", "amount": 120}
			b.ReportAllocs()
			for b.Loop() {
				if got := Lookalikes("payment.charge", args, registries, &a); len(got) != 1 {
					b.Fatalf("%v", got)
				}
			}
		})
	}
}

// approvedByTool gathers, by tool, the values of the calls among all a
// person approved (approved, or approved and used).
func approvedByTool(all []Approval) map[string]*ApprovedValues {
	out := map[string]*ApprovedValues{}
	for _, x := range all {
		if x.Status != Approved && x.Status != Used {
			continue
		}
		if out[x.Tool] == nil {
			out[x.Tool] = &ApprovedValues{}
		}
		out[x.Tool].Add(x.Args)
	}
	return out
}
