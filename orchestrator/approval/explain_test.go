package approval

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/ifc"
)

// Each kind of hold is said in plain words that name what failed and
// every source of it; no lattice notation reaches the person.
func TestExplain(t *testing.T) {
	page := ifc.UntrustedFrom("web:127.0.0.1:8088", "tool:web.fetch")
	user := ifc.TrustedFrom(ifc.SourceUser)
	pay := ifc.NewClearance(ifc.Trusted, "payment", "pii")
	mail := ifc.NewClearance(ifc.Trusted)
	for _, c := range []struct {
		name      string
		tool      string
		clearance ifc.Clearance
		label     ifc.Label
		args      map[string]ifc.Label
		rules     []string
		reasons   []string
		want      []string
	}{
		{name: "two arguments from a page", tool: "payment.charge", clearance: pay,
			label: page.Join(user), args: map[string]ifc.Label{"payee": page, "amount": page, "currency": user},
			rules: []string{"clearance"}, reasons: []string{"context label untrusted{} does not flow to clearance trusted{payment,pii}"},
			want: []string{"amount and payee came from the web page 127.0.0.1:8088, which Sluice does not trust to decide payment.charge"}},
		{name: "an if: on a page, every argument trusted", tool: "payment.charge", clearance: pay,
			label: page.Join(user), args: map[string]ifc.Label{"payee": user, "amount": user},
			rules: []string{"clearance"}, reasons: []string{"x"},
			want: []string{"whether to make this call was decided by the web page 127.0.0.1:8088 (an if: condition, or what an agent had read), which Sluice does not trust to decide payment.charge"}},
		{name: "an agent's context", tool: "payment.charge", clearance: pay,
			label: page, args: map[string]ifc.Label{"payee": page, "amount": page, "currency": page},
			rules: []string{"clearance"}, reasons: []string{"x"},
			want: []string{"every argument of this call carries what was read before it was proposed — the web page 127.0.0.1:8088 — (an agent's context, or an if: condition), which Sluice does not trust to decide payment.charge"}},
		{name: "secrecy", tool: "email.send", clearance: mail,
			label: ifc.New(ifc.Trusted, []string{"pii"}, []string{"file:contacts.csv"}),
			args:  map[string]ifc.Label{"to": ifc.New(ifc.Trusted, []string{"pii"}, []string{"file:contacts.csv"}), "subject": user},
			rules: []string{"clearance"}, reasons: []string{"x"},
			want: []string{"to carries pii data (the file contacts.csv), which email.send may not receive"}},
		{name: "a rule on trusted data", tool: "payment.charge", clearance: pay,
			label: user, args: map[string]ifc.Label{"amount": user},
			rules: []string{"big-payments"}, reasons: []string{"payments over 500 EUR need a person"},
			want: []string{"the policy's rule big-payments: payments over 500 EUR need a person"}},
		{name: "a rule without a reason", tool: "payment.charge", clearance: pay,
			label: user, args: map[string]ifc.Label{"amount": user}, rules: []string{"r"}, reasons: []string{""},
			want: []string{"the policy's rule r holds payment.charge calls like this one for a person"}},
	} {
		got := Explain(c.tool, c.clearance, c.label, c.args, c.rules, c.reasons)
		if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
		for _, g := range got {
			if strings.Contains(g, "{") || strings.Contains(g, "flow to clearance") {
				t.Errorf("%s: lattice words reach the person: %q", c.name, g)
			}
		}
	}
}
