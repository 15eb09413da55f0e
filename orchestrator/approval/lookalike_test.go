package approval

import (
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
		{"unlike anything", "payment.charge", map[string]any{"payee": "acct_attacker"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Lookalikes(tt.tool, tt.args, registries, earlier)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("lookalikes (-want +got):\n%s", diff)
			}
		})
	}
}
