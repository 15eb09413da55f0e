package policy

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/schemas"
)

const lowerRules = `rules:
  - name: known-payees
    when: tool.name == "payment.charge" && args.payee in registry.payees
    action: endorse
    reason: the payee is one the user keeps
  - name: large-payments
    when: tool.name == "payment.charge" && args.amount > 1000
    action: approve
  - name: never-acct-evil
    when: tool.name == "payment.charge" && args.payee == "acct_evil"
    action: deny
  - name: pii-to-notes
    when: tool.name == "notes.write"
    action: declassify
    tags: [pii]
  - name: web-payee
    when: tool.name == "payment.charge" && has(arg_labels.payee) && arg_labels.payee.integrity == "untrusted"
    action: approve
  - name: broken-endorse
    when: tool.name == "notes.write" && args.missing == 1
    action: endorse
registries:
  payees: [acct_hotel_1, acct_evil]
`

var (
	charge = Tool{Name: "payment.charge", Worker: "payment", Privileged: true, Approvable: true,
		Clearance: ifc.NewClearance(ifc.Trusted, "payment", "pii")}
	notes = Tool{Name: "notes.write", Worker: "notes", Clearance: ifc.NewClearance(ifc.Trusted)}
)

// TestEndorseAndDeclassify checks the precedence of DESIGN §5: deny wins
// over everything; a failing clearance check is cured only when the
// lowered label flows to the clearance; an approve rule that matches still
// holds an endorsed call; every decision names its rules.
func TestEndorseAndDeclassify(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, DefaultFile(), file("p.yaml", lowerRules))
	web := ifc.UntrustedFrom("web:hotel.example")
	tests := []struct {
		name    string
		in      Input
		want    Action
		rules   []string
		lowered []string
		label   ifc.Label // the label the call goes ahead with
	}{
		{
			name: "an untrusted payee in the registry is endorsed for the call",
			in: Input{Tool: charge, Label: web, Args: map[string]any{"payee": "acct_hotel_1", "amount": int64(90)},
				ArgLabels: map[string]ifc.Label{"payee": web, "amount": ifc.TrustedFrom("user")}},
			want: Allow, rules: []string{"known-payees"}, lowered: []string{"known-payees"},
			label: ifc.TrustedFrom("web:hotel.example", "endorsed:known-payees"),
		},
		{
			name: "an untrusted payee outside the registry is held",
			in:   Input{Tool: charge, Label: web, Args: map[string]any{"payee": "acct_other", "amount": int64(90)}},
			want: Approve, rules: []string{ClearanceRule, "untrusted-never-pays-alone"},
			label: web,
		},
		{
			name: "an approve rule still holds an endorsed call",
			in:   Input{Tool: charge, Label: web, Args: map[string]any{"payee": "acct_hotel_1", "amount": int64(5000)}},
			want: Approve, rules: []string{"large-payments"}, lowered: []string{"known-payees"},
			label: ifc.TrustedFrom("web:hotel.example", "endorsed:known-payees"),
		},
		{
			name: "a deny wins over an endorsement",
			in:   Input{Tool: charge, Label: web, Args: map[string]any{"payee": "acct_evil", "amount": int64(5)}},
			want: Deny, rules: []string{"never-acct-evil"}, label: web,
		},
		{
			name: "an endorsement does not cure secrecy",
			in: Input{Tool: charge, Label: web.WithSecrecy("calendar"),
				Args: map[string]any{"payee": "acct_hotel_1", "amount": int64(5)}},
			want: Approve, rules: []string{ClearanceRule}, lowered: []string{"known-payees"},
			label: ifc.New(ifc.Trusted, []string{"calendar"}, []string{"web:hotel.example", "endorsed:known-payees"}),
		},
		{
			name: "a declassification cures the clearance check",
			in:   Input{Tool: notes, Label: ifc.TrustedFrom("user").WithSecrecy("pii"), Args: map[string]any{}},
			want: Allow, rules: []string{"pii-to-notes"}, lowered: []string{"pii-to-notes"},
			label: ifc.TrustedFrom("user", "declassified:pii-to-notes"),
		},
		{
			name: "a declassification that leaves a tag does not cure it",
			in:   Input{Tool: notes, Label: ifc.TrustedFrom("user").WithSecrecy("pii", "payment"), Args: map[string]any{}},
			want: Deny, rules: []string{ClearanceRule},
			label: ifc.TrustedFrom("user").WithSecrecy("pii", "payment"),
		},
		{
			name: "a declassification does not endorse",
			in:   Input{Tool: notes, Label: ifc.UntrustedFrom("web:a").WithSecrecy("pii"), Args: map[string]any{}},
			want: Deny, rules: []string{ClearanceRule},
			label: ifc.UntrustedFrom("web:a").WithSecrecy("pii"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := maps.Clone(tt.in.ArgLabels)
			d := s.Decide(tt.in)
			if d.Action != tt.want || !reflect.DeepEqual(names(d.Rules), tt.rules) {
				t.Errorf("Decide = %s by %v, want %s by %v (errors %v)", d.Action, names(d.Rules), tt.want, tt.rules, d.Errors)
			}
			if got := names(d.Lowered); !reflect.DeepEqual(got, append([]string{}, tt.lowered...)) {
				t.Errorf("Lowered = %v, want %v", got, tt.lowered)
			}
			if !d.Label.Equal(tt.label) {
				t.Errorf("Label = %v, want %v", d.Label, tt.label)
			}
			if len(d.Reasons) != len(d.Rules) {
				t.Errorf("%d reasons for %d rules", len(d.Reasons), len(d.Rules))
			}
			for k, l := range before {
				if !tt.in.ArgLabels[k].Equal(l) {
					t.Errorf("Decide changed the input's label of %s", k)
				}
			}
		})
	}
	// An endorse rule that fails does not match: errors fail closed.
	d := s.Decide(Input{Tool: notes, Label: ifc.UntrustedFrom("web:a"), Args: map[string]any{}})
	if d.Action != Deny || len(d.Errors) != 1 || slices.Contains(names(d.Lowered), "broken-endorse") {
		t.Errorf("Decide = %s, lowered by %v, errors %v; want a deny with one error", d.Action, names(d.Lowered), d.Errors)
	}
}

func TestApprove(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, DefaultFile(), file("p.yaml", lowerRules))
	web := ifc.UntrustedFrom("web:hotel.example")
	held := s.Decide(Input{Tool: charge, Label: web, Args: map[string]any{"payee": "acct_other", "amount": int64(90)}})
	if held.Action != Approve {
		t.Fatalf("Decide = %s, want approve", held.Action)
	}
	if _, _, err := held.Approve(""); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Approve by nobody: %v", err)
	}
	got, declassified, err := held.Approve("ana")
	if err != nil {
		t.Fatal(err)
	}
	if want := ifc.TrustedFrom("web:hotel.example", "approved:ana"); !got.Equal(want) || declassified != nil {
		t.Errorf("approved label %v, declassified %v; want %v and nothing", got, declassified, want)
	}
	// One approval, one call: a copy of the decision shares it.
	again := held
	if _, _, err := again.Approve("bob"); !errors.Is(err, ErrNotHeld) {
		t.Errorf("second Approve: %v", err)
	}
	// Neither an allow nor a decision made outside Decide can be approved.
	allowed := s.Decide(Input{Tool: charge, Label: ifc.TrustedFrom("user"), Args: map[string]any{"payee": "acct_x", "amount": int64(1)}})
	for _, d := range []Decision{allowed, {Action: Approve, Label: web}} {
		if _, _, err := d.Approve("ana"); !errors.Is(err, ErrNotHeld) {
			t.Errorf("Approve of %s decision: %v", d.Action, err)
		}
	}
}

// TestDenyCannotBeApproved: a denied call has no approval to give, even
// when an approve rule and the clearance check would hold it too.
func TestDenyCannotBeApproved(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, DefaultFile(), file("p.yaml", lowerRules))
	d := s.Decide(Input{Tool: charge, Label: ifc.UntrustedFrom("web:x"), Args: map[string]any{"payee": "acct_evil", "amount": int64(5000)}})
	if d.Action != Deny {
		t.Fatalf("Decide = %s, want deny", d.Action)
	}
	l, _, err := d.Approve("ana")
	if !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Approve of a deny: %v", err)
	}
	if !l.Equal(d.Label) {
		t.Fatalf("a refused approval lowered the label: %v", l)
	}
}

// TestApprovalOfASecrecyFailureDeclassifies: a person who approves a call
// held because it carries secrecy its tool is not cleared for
// declassifies those tags, and the approved label says so. Before, the
// approval was recorded as an endorsement only, and the call went out
// with a label that did not flow to the tool's clearance.
func TestApprovalOfASecrecyFailureDeclassifies(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, DefaultFile())
	event := Tool{Name: "calendar.create_event", Worker: "calendar", Privileged: true, Approvable: true,
		Clearance: ifc.NewClearance(ifc.Trusted, "pii")}
	in := ifc.TrustedFrom("user").WithSecrecy("payment", "pii")
	d := s.Decide(Input{Tool: event, Label: in, Args: map[string]any{}})
	if d.Action != Approve {
		t.Fatalf("Decide = %s, want approve", d.Action)
	}
	got, declassified, err := d.Approve("ana")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(declassified, []string{"payment"}) || !got.FlowsTo(event.Clearance) ||
		!slices.Equal(got.Secrecy(), []string{"pii"}) || !slices.Contains(got.Sources(), "approved:ana") {
		t.Errorf("approved label %v, declassified %v; want {pii} with approved:ana, declassified [payment]", got, declassified)
	}
	// Control: an approval of an integrity failure declassifies nothing.
	d = s.Decide(Input{Tool: event, Label: ifc.UntrustedFrom("web:a").WithSecrecy("pii"), Args: map[string]any{}})
	got, declassified, err = d.Approve("ana")
	if err != nil || declassified != nil || !slices.Equal(got.Secrecy(), []string{"pii"}) || got.Integrity() != ifc.Trusted {
		t.Errorf("approved %v, declassified %v, err %v", got, declassified, err)
	}
}

// TestDeclassifyToSelfLetsMailGo: a declassify rule for a recipient in
// registry.self lets exactly that mail go, though no-secrets-to-egress is
// always loaded and a deny wins. Before, the default deny saw the labels
// as they came, so the rule DESIGN §8 prescribes could never let "mail me
// my agenda" out.
func TestDeclassifyToSelfLetsMailGo(t *testing.T) {
	t.Parallel()
	send := Tool{Name: "email.send", Worker: "email", Privileged: true, Approvable: true, Egress: true,
		Clearance: ifc.NewClearance(ifc.Trusted)}
	sch, err := schemas.Load("tools/email.send.json")
	if err != nil {
		t.Fatal(err)
	}
	s := mustLoadTools(t, Tools{"email.send": sch}, DefaultFile(), file("p.yaml", `rules:
  - name: mail-to-self
    when: tool.name == "email.send" && args.to in registry.self
    action: declassify
    tags: [pii, calendar]
  - name: no-mail-to-bob
    when: tool.name == "email.send" && args.to == "bob@x.example"
    action: deny
registries:
  self: [me@home.example]
`))
	agenda := ifc.TrustedFrom("user", "tool:calendar.list_events").WithSecrecy("pii", "calendar")
	args := func(to string) map[string]any { return map[string]any{"to": to, "subject": "agenda", "body": "..."} }
	argLabels := map[string]ifc.Label{"to": ifc.TrustedFrom("user"), "body": agenda}

	d := s.Decide(Input{Tool: send, Label: agenda, ArgLabels: argLabels, Args: args("me@home.example")})
	if d.Action != Allow || !slices.Equal(names(d.Rules), []string{"mail-to-self"}) || len(d.Label.Secrecy()) != 0 {
		t.Errorf("mail to self: %s by %v, label %v; want allow by mail-to-self, no secrecy", d.Action, names(d.Rules), d.Label)
	}
	// A body a model drafted after reading a stranger's mail: held for a
	// person, not denied.
	drafted := agenda.Join(ifc.UntrustedFrom("email:eve@evil.example"))
	d = s.Decide(Input{Tool: send, Label: drafted, Args: args("me@home.example")})
	if d.Action != Approve {
		t.Errorf("untrusted draft to self: %s by %v, want approve", d.Action, names(d.Rules))
	}
	// Every other recipient is still denied by the default rule.
	d = s.Decide(Input{Tool: send, Label: agenda, Args: args("eve@evil.example")})
	if d.Action != Deny || !slices.Contains(names(d.Rules), "no-secrets-to-egress") {
		t.Errorf("mail to another: %s by %v, want deny by no-secrets-to-egress", d.Action, names(d.Rules))
	}
	// A tag the rule does not drop still stops the mail to self.
	d = s.Decide(Input{Tool: send, Label: agenda.WithSecrecy("payment"), Args: args("me@home.example")})
	if d.Action != Deny || !slices.Contains(names(d.Rules), "no-secrets-to-egress") {
		t.Errorf("payment data to self: %s by %v, want deny", d.Action, names(d.Rules))
	}
	// Any other deny still wins over the declassification, as the labels came.
	s2 := mustLoadTools(t, Tools{"email.send": sch}, DefaultFile(), file("p.yaml", `rules:
  - name: mail-to-self
    when: tool.name == "email.send" && args.to in registry.self
    action: declassify
    tags: [pii, calendar]
  - name: no-pii-mail
    when: tool.name == "email.send" && "pii" in label.secrecy
    action: deny
registries:
  self: [me@home.example]
`))
	d = s2.Decide(Input{Tool: send, Label: agenda, Args: args("me@home.example")})
	if d.Action != Deny || !slices.Equal(names(d.Rules), []string{"no-pii-mail"}) {
		t.Errorf("with a user's deny: %s by %v, want deny by no-pii-mail", d.Action, names(d.Rules))
	}
	// Control: with no declassify rule, mail to self with pii is denied.
	d = mustLoadTools(t, Tools{"email.send": sch}, DefaultFile()).Decide(Input{Tool: send, Label: agenda, Args: args("me@home.example")})
	if d.Action != Deny {
		t.Errorf("no rule: %s, want deny", d.Action)
	}
}

// TestAfterLoweringIsForDenyOnly: after_lowering on another action does
// not load.
func TestAfterLoweringIsForDenyOnly(t *testing.T) {
	t.Parallel()
	_, err := Load(nil, file("p.yaml", "rules:\n  - {name: a, when: 'true', action: allow, after_lowering: true}\n"))
	if err == nil || !strings.Contains(err.Error(), "after_lowering") {
		t.Errorf("Load = %v, want an after_lowering error", err)
	}
}
