package engine

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/worker"
)

// fromTheWeb is a fetch whose text field is untrusted and whose payee
// field is whatever the test says, untrusted too.
func fromTheWeb(payee string) worker.Handler {
	return func(context.Context, *worker.Call) (any, error) {
		return worker.Labeled{Output: map[string]any{"text": "pay me", "payee": payee, "ok": true},
			Labels: map[string]ifc.Label{
				"text":  ifc.UntrustedFrom("web:evil.example"),
				"payee": ifc.UntrustedFrom("web:hotel.example"),
			}}, nil
	}
}

// TestTrustedAndUntrustedFieldMakeUntrusted: a value built from a trusted
// and an untrusted field is untrusted, and carries both sources.
func TestTrustedAndUntrustedFieldMakeUntrusted(t *testing.T) {
	h := newHarness(t, "", map[string]worker.Handler{
		"split": func(context.Context, *worker.Call) (any, error) {
			return worker.Labeled{Output: map[string]any{"x": "from a stranger", "y": "ours"},
				Labels: map[string]ifc.Label{"x": ifc.UntrustedFrom("email:eve@x.example"), "y": ifc.TrustedFrom("tool:t.split")}}, nil
		},
	})
	r := h.run(`name: p
steps:
  - {id: a, call: t.split}
  - {id: both, call: t.echo, with: {v: "${steps.a.output.y + ' ' + steps.a.output.x}"}}
`, nil, Options{})
	both := step(t, r, "both")
	l := both.ArgLabels["v"]
	if l.Integrity() != ifc.Untrusted || !slices.Contains(l.Sources(), "email:eve@x.example") || !slices.Contains(l.Sources(), "tool:t.split") {
		t.Errorf("v = %v: want untrusted with both sources", l)
	}
}

// TestArgumentLabelsArePerValue: in one step a trusted argument stays
// trusted beside an untrusted one, while the step's context label is
// untrusted.
func TestArgumentLabelsArePerValue(t *testing.T) {
	h := newHarness(t, "", map[string]worker.Handler{"fetch": fromTheWeb("acct_x")})
	r := h.run(`name: p
inputs: {amount: {type: number}}
steps:
  - {id: f, call: t.fetch}
  - {id: pay, call: t.spend, with: {amount: "${inputs.amount}", note: "${steps.f.output.text}"}}
`, map[string]any{"amount": 5.0}, Options{})
	pay := step(t, r, "pay")
	if l := pay.ArgLabels["amount"]; l.Integrity() != ifc.Trusted || !slices.Equal(l.Sources(), []string{ifc.SourceUser}) {
		t.Errorf("amount = %v, want trusted from the user only", l)
	}
	if l := pay.ArgLabels["note"]; l.Integrity() != ifc.Untrusted {
		t.Errorf("note = %v, want untrusted", l)
	}
	if pay.Label.Integrity() != ifc.Untrusted || pay.Status != StatusHeld {
		t.Errorf("context label %v, status %s: want untrusted and held", pay.Label, pay.Status)
	}
	// The policy saw both: the decision record has each argument's label.
	recs, err := h.log.Records(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if rec.Kind == audit.KindDecision && rec.Step == "pay" {
			if rec.ArgLabels["amount"].Integrity() != ifc.Trusted || rec.ArgLabels["note"].Integrity() != ifc.Untrusted {
				t.Errorf("decision record arg labels %v", rec.ArgLabels)
			}
		}
	}
}

// TestIfTaintsTrustedArguments: a branch on untrusted data taints a call
// whose arguments are all trusted: its context label is untrusted, and a
// privileged call is held.
func TestIfTaintsTrustedArguments(t *testing.T) {
	h := newHarness(t, "", map[string]worker.Handler{"fetch": fromTheWeb("acct_x")})
	r := h.run(`name: p
inputs: {amount: {type: number}}
steps:
  - {id: f, call: t.fetch}
  - {id: pay, call: t.spend, if: "${steps.f.output.text == 'pay me'}", with: {amount: "${inputs.amount}", memo: trip}}
`, map[string]any{"amount": 5.0}, Options{})
	pay := step(t, r, "pay")
	for name, l := range pay.ArgLabels {
		if l.Integrity() != ifc.Trusted {
			t.Errorf("argument %s = %v, want trusted", name, l)
		}
	}
	if pay.Label.Integrity() != ifc.Untrusted || pay.Status != StatusHeld || !slices.Contains(pay.Rules, "untrusted-never-pays-alone") {
		t.Errorf("pay: label %v status %s rules %v; want untrusted, held by untrusted-never-pays-alone", pay.Label, pay.Status, pay.Rules)
	}
	if h.called("spend") != 0 {
		t.Error("the tainted call was delivered")
	}
}

const registryRules = `rules:
  - name: known-payees
    when: >-
      tool.name == "t.pay" && args.payee in registry.payees &&
      arg_labels.amount.integrity == "trusted"
    action: endorse
    reason: the payee is one the user keeps
registries:
  payees: [acct_hotel_1]
`

const payFromTheWeb = `name: p
inputs: {amount: {type: number}}
steps:
  - {id: f, call: t.fetch}
  - {id: pay, call: t.pay, with: {amount: "${inputs.amount}", payee: "${steps.f.output.payee}"}}
  - {id: after, call: t.echo, with: {v: "${steps.pay.output}"}}
  - {id: other, call: t.echo, with: {v: "${steps.f.output.payee}"}}
`

// TestRegistryEndorsesPayee: an untrusted payee that equals a registry
// entry is endorsed for that call by a rule, and the call goes through
// with the endorsed label; one not in the registry is held.
func TestRegistryEndorsesPayee(t *testing.T) {
	t.Run("in the registry", func(t *testing.T) {
		h := newHarness(t, registryRules, map[string]worker.Handler{"fetch": fromTheWeb("acct_hotel_1")})
		r := h.run(payFromTheWeb, map[string]any{"amount": 90.0}, Options{})
		pay := step(t, r, "pay")
		if pay.Status != StatusCompleted || h.called("pay") != 1 || !slices.Equal(pay.Rules, []string{"known-payees"}) {
			t.Fatalf("pay: status %s rules %v, %d calls", pay.Status, pay.Rules, h.called("pay"))
		}
		if pay.Label.Integrity() != ifc.Untrusted {
			t.Errorf("context label %v: the computed label must stay untrusted", pay.Label)
		}
		d := pay.DeliveredLabel
		if d == nil || d.Integrity() != ifc.Trusted || !slices.Contains(d.Sources(), "endorsed:known-payees") {
			t.Fatalf("delivered label %v: want trusted, endorsed:known-payees", d)
		}
		// The endorsement is for the call's arguments: the output keeps
		// the context label as it came, and records the rule.
		if o := pay.OutputLabel; o.Integrity() != ifc.Untrusted || !slices.Contains(o.Sources(), "endorsed:known-payees") {
			t.Errorf("output label %v", o)
		}
		// Nothing else in the run changed: the payee read directly from
		// the page is still untrusted.
		if l := step(t, r, "other").Label; l.Integrity() != ifc.Untrusted || slices.Contains(l.Sources(), "endorsed:known-payees") {
			t.Errorf("other: %v", l)
		}
		// The decision record names the rule that endorsed.
		recs, err := h.log.Records(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, rec := range recs {
			if rec.Kind == audit.KindDecision && rec.Step == "pay" && rec.Action == "allow" &&
				len(rec.Rules) == 1 && strings.HasPrefix(rec.Rules[0], "known-payees (test.yaml:2:5)") {
				found = true
			}
			if rec.Kind == audit.KindResult && rec.Step == "pay" && !slices.Contains(rec.Label.Sources(), "endorsed:known-payees") {
				t.Errorf("result record label %v", rec.Label)
			}
		}
		if !found {
			t.Error("no decision record names known-payees")
		}
	})
	t.Run("not in the registry", func(t *testing.T) {
		h := newHarness(t, registryRules, map[string]worker.Handler{"fetch": fromTheWeb("acct_attacker")})
		r := h.run(payFromTheWeb, map[string]any{"amount": 90.0}, Options{})
		pay := step(t, r, "pay")
		if pay.Status != StatusHeld || h.called("pay") != 0 || pay.DeliveredLabel != nil {
			t.Fatalf("pay: status %s, %d calls, delivered %v", pay.Status, h.called("pay"), pay.DeliveredLabel)
		}
		if !slices.Contains(pay.Rules, "clearance") || !slices.Contains(pay.Rules, "untrusted-never-pays-alone") {
			t.Errorf("rules %v", pay.Rules)
		}
	})
}

// TestApprovalEndorsesOneCall: an approved held call is delivered with
// its context label endorsed by approved:<who>; its output records the
// approval but keeps the context label as it came (the person approved
// the arguments, not what the call returns); nothing else in the run
// changes.
func TestApprovalEndorsesOneCall(t *testing.T) {
	h := newHarness(t, "", map[string]worker.Handler{"fetch": fromTheWeb("acct_other")})
	opts := Options{Wait: true}
	opts.OnHeld = func(s StepResult) {
		go func() {
			if err := h.engine.Decide(context.Background(), s.ApprovalID, Answer{Approved: true, Who: "ana"}); err != nil {
				t.Error(err)
			}
		}()
	}
	r := h.run(payFromTheWeb, map[string]any{"amount": 90.0}, opts)
	pay := step(t, r, "pay")
	if pay.Status != StatusCompleted || h.called("pay") != 1 {
		t.Fatalf("pay: %s, %d calls", pay.Status, h.called("pay"))
	}
	d := pay.DeliveredLabel
	if d == nil || d.Integrity() != ifc.Trusted || !slices.Contains(d.Sources(), "approved:ana") {
		t.Fatalf("delivered label %v", d)
	}
	if !slices.Contains(pay.OutputLabel.Sources(), "approved:ana") || pay.OutputLabel.Integrity() != ifc.Untrusted {
		t.Errorf("output label %v", pay.OutputLabel)
	}
	if l := step(t, r, "after").Label; l.Integrity() != ifc.Untrusted || !slices.Contains(l.Sources(), "approved:ana") {
		t.Errorf("after reads the approved call's output: %v", l)
	}
	if l := step(t, r, "other").Label; l.Integrity() != ifc.Untrusted || slices.Contains(l.Sources(), "approved:ana") {
		t.Errorf("other: %v: the approval leaked beyond its call", l)
	}
	recs, err := h.log.Records(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	approved := false
	for _, rec := range recs {
		if rec.Kind == audit.KindDecision && rec.Step == "pay" && rec.Action == "allow" && rec.Label != nil &&
			slices.Contains(rec.Label.Sources(), "approved:ana") && strings.HasPrefix(rec.Rules[0], "approval:") {
			approved = true
		}
	}
	if !approved {
		t.Error("no audit record of the approval with the endorsed label")
	}
}

// TestDenyCannotBeApprovedInTheEngine: a denied call is never held, so
// no person is asked and no approval can let it through.
func TestDenyCannotBeApprovedInTheEngine(t *testing.T) {
	h := newHarness(t, "rules:\n  - {name: no-pay, when: 'tool.name == \"t.pay\"', action: deny}\n  - {name: hold-pay, when: 'tool.name == \"t.pay\"', action: approve}\n",
		map[string]worker.Handler{"fetch": fromTheWeb("acct_x")})
	held := 0
	opts := Options{Wait: true, OnHeld: func(s StepResult) {
		held++
		go h.engine.Decide(context.Background(), s.ApprovalID, Answer{Approved: true, Who: "ana"})
	}}
	r := h.run(payFromTheWeb, map[string]any{"amount": 1.0}, opts)
	pay := step(t, r, "pay")
	if pay.Status != StatusDenied || held != 0 || h.called("pay") != 0 || pay.ApprovalID != "" {
		t.Fatalf("pay: %s, asked %d times, %d calls", pay.Status, held, h.called("pay"))
	}
	if !slices.Equal(pay.Rules, []string{"no-pay"}) {
		t.Errorf("rules %v", pay.Rules)
	}
}

// TestListElementLabels: a constant index reads one element of a list,
// with that element's label, not the others'.
func TestListElementLabels(t *testing.T) {
	h := newHarness(t, "", map[string]worker.Handler{
		"split": func(context.Context, *worker.Call) (any, error) {
			return worker.Labeled{Output: map[string]any{"msgs": []any{
				map[string]any{"from": "me", "subject": "dentist"},
				map[string]any{"from": "eve", "subject": "pay acct_attacker"},
			}}, Labels: map[string]ifc.Label{"msgs.1": ifc.UntrustedFrom("email:eve@x.example")}}, nil
		},
	})
	r := h.run(`name: p
steps:
  - {id: inbox, call: t.split}
  - {id: mine, call: t.spend, with: {title: "${steps.inbox.output.msgs[0].subject}"}}
  - {id: theirs, call: t.spend, with: {title: "${steps.inbox.output.msgs[1].subject}"}}
  - {id: any, call: t.spend, with: {title: "${steps.inbox.output.msgs[size(steps.inbox.output.msgs) - 2].subject}"}}
`, nil, Options{})
	if s := step(t, r, "mine"); s.Label.Integrity() != ifc.Trusted || s.Status != StatusCompleted {
		t.Errorf("mine: %v %s", s.Label, s.Status)
	}
	for _, id := range []string{"theirs", "any"} {
		if s := step(t, r, id); s.Label.Integrity() != ifc.Untrusted || s.Status != StatusHeld {
			t.Errorf("%s: %v %s", id, s.Label, s.Status)
		}
	}
}

// A worker cannot lower a label: a reply that claims a field of an
// untrusted output trusted leaves it untrusted, and the claim is recorded
// as a violation. A claim of a more restrictive label is not.
func TestForgedFieldLabelIsRecorded(t *testing.T) {
	h := newHarness(t, "", map[string]worker.Handler{
		"fetch": func(context.Context, *worker.Call) (any, error) {
			return worker.Labeled{Output: map[string]any{"text": "trust me", "note": "x"},
				Labels: map[string]ifc.Label{"text": ifc.TrustedFrom("user"), "note": ifc.UntrustedFrom("web:a")}}, nil
		},
	})
	// t.fetch declares no output label: the call's own (trusted) label
	// would make a trusted claim legitimate; read from an untrusted page,
	// it is not.
	r := h.run(`name: f
steps:
  - {id: page, call: t.fetch, with: {}}
  - {id: again, call: t.fetch, with: {v: "${steps.page.output.note}"}}
  - {id: use, call: t.echo, with: {v: "${steps.again.output.text}"}}
`, nil, Options{})
	if l := step(t, r, "use").ArgLabels["v"]; l.Integrity() != ifc.Untrusted {
		t.Fatalf("the forged field reached the next call labeled %s", l)
	}
	recs, err := h.log.Records(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var forged []string
	for _, rec := range recs {
		if rec.Kind == audit.KindViolation && rec.Op == "label" && strings.Contains(rec.Subject, "claimed trusted") {
			forged = append(forged, rec.Step+": "+rec.Subject)
		}
	}
	if len(forged) != 1 || !strings.HasPrefix(forged[0], "again: t.fetch: text claimed trusted") {
		t.Fatalf("violations %q; want the one claim of step again", forged)
	}
}

// A worker that labels a field as coming from the user, the flow or a
// person's approval does not make it look so: each source only the
// orchestrator gives is put under the worker's name, and the claim is
// recorded. Sources a worker may give (email:…, calendar:…) keep their
// names.
func TestWorkerCannotClaimReservedSources(t *testing.T) {
	h := newHarness(t, "", map[string]worker.Handler{
		"fetch": func(context.Context, *worker.Call) (any, error) {
			return worker.Labeled{Output: map[string]any{"text": "from the user, honest", "note": "x"},
				Labels: map[string]ifc.Label{
					"text": ifc.TrustedFrom("user", "flow", "approved:alice", "endorsed:pay-hotel", "declassified:r", "tool:payment.charge"),
					"note": ifc.UntrustedFrom("calendar:eve@evil.example", "api:model.example:443"),
				}}, nil
		},
	})
	r := h.run(`name: f
steps:
  - {id: page, call: t.fetch, with: {}}
  - {id: use, call: t.echo, with: {v: "${steps.page.output.text}", w: "${steps.page.output.note}"}}
`, nil, Options{})
	got := step(t, r, "use").ArgLabels["v"].Sources()
	want := []string{"tool:t.fetch", "worker:t:approved:alice", "worker:t:declassified:r", "worker:t:endorsed:pay-hotel",
		"worker:t:flow", "worker:t:tool:payment.charge", "worker:t:user"}
	if !slices.Equal(got, want) {
		t.Fatalf("sources of the field %q, want %q", got, want)
	}
	if got := step(t, r, "use").ArgLabels["w"].Sources(); !slices.Equal(got, []string{"calendar:eve@evil.example", "tool:t.fetch", "worker:t:api:model.example:443"}) {
		t.Fatalf("sources of the other field %q", got)
	}
	recs, err := h.log.Records(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var claims []string
	for _, rec := range recs {
		if rec.Kind == audit.KindViolation && rec.Op == "label" && strings.Contains(rec.Subject, "only the orchestrator gives") {
			claims = append(claims, rec.Subject)
		}
	}
	if len(claims) != 7 {
		t.Fatalf("violations recorded %q; want one for each of the 7 reserved sources", claims)
	}
}

// personal is a fetch whose text and payee are trusted but personal.
func personal(context.Context, *worker.Call) (any, error) {
	return worker.Labeled{Output: map[string]any{"text": "my notes", "payee": "acct_hotel_1"},
		Labels: map[string]ifc.Label{
			"text":  ifc.UntrustedFrom("web:evil.example").WithSecrecy("pii"),
			"payee": ifc.TrustedFrom("user").WithSecrecy("pii"),
		}}, nil
}

// TestLoweringIsForTheArgumentsOnly: an endorse or declassify rule lowers
// the labels of one call's arguments; what the call returns keeps the
// context label as it came (with the rules recorded in its sources).
// Before, the output carried the lowered label, so a rule that let a
// model see personal data also made the model's answer lose the tag.
func TestLoweringIsForTheArgumentsOnly(t *testing.T) {
	const rules = `rules:
  - {name: echo-sees-pii, when: 'tool.name == "t.echo"', action: declassify, tags: [pii]}
  - {name: echo-endorsed, when: 'tool.name == "t.echo"', action: endorse}
`
	h := newHarness(t, rules, map[string]worker.Handler{"fetch": personal})
	r := h.run(`name: p
steps:
  - {id: f, call: t.fetch}
  - {id: m, call: t.echo, with: {v: "${steps.f.output.text}"}}
`, nil, Options{})
	m := step(t, r, "m")
	if m.Status != StatusCompleted {
		t.Fatalf("m: %s %s", m.Status, m.Error)
	}
	// Control: the call itself was delivered lowered.
	if d := m.DeliveredLabel; d == nil || d.HasSecrecy("pii") || d.Integrity() != ifc.Trusted {
		t.Fatalf("delivered label %v: want trusted, without pii", d)
	}
	out := m.OutputLabel
	if out == nil || !out.HasSecrecy("pii") || out.Integrity() != ifc.Untrusted {
		t.Errorf("output label %v: want untrusted{pii}, as the call's context came", out)
	}
	if out != nil && (!slices.Contains(out.Sources(), "declassified:echo-sees-pii") || !slices.Contains(out.Sources(), "endorsed:echo-endorsed")) {
		t.Errorf("output label %v does not record the rules that lowered the call", out)
	}
}

// TestApprovalOfASecrecyFailureIsRecorded: a person who approves a call
// held because it carries a tag its tool is not cleared for declassifies
// that tag for the call, and the audit record says so. Before, it was
// recorded as an endorsement only, and the call was delivered with a
// label that did not flow to its clearance.
func TestApprovalOfASecrecyFailureIsRecorded(t *testing.T) {
	h := newHarness(t, "", map[string]worker.Handler{"fetch": personal})
	opts := Options{Wait: true, OnHeld: func(s StepResult) {
		go func() {
			if err := h.engine.Decide(context.Background(), s.ApprovalID, Answer{Approved: true, Who: "ana"}); err != nil {
				t.Error(err)
			}
		}()
	}}
	r := h.run(`name: p
steps:
  - {id: f, call: t.fetch}
  - {id: pay, call: t.pay, with: {amount: 1, payee: "${steps.f.output.payee}"}}
`, nil, opts)
	pay := step(t, r, "pay")
	if pay.Status != StatusCompleted || !slices.Contains(pay.Rules, "clearance") {
		t.Fatalf("pay: %s, rules %v", pay.Status, pay.Rules)
	}
	recs, err := h.log.Records(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rec := range recs {
		if rec.Kind != audit.KindDecision || rec.Step != "pay" || rec.Action != "allow" {
			continue
		}
		found = true
		if rec.Label == nil || rec.Label.HasSecrecy("pii") || !slices.Contains(rec.Label.Sources(), "approved:ana") {
			t.Errorf("approval record label %v: want pii declassified by approved:ana", rec.Label)
		}
		if len(rec.Reasons) != 1 || !strings.Contains(rec.Reasons[0], "declassifies pii") {
			t.Errorf("approval record reasons %q: want the declassification named", rec.Reasons)
		}
	}
	if !found {
		t.Fatal("no audit record of the approval")
	}
	// The output keeps what the call's context carried.
	if pay.OutputLabel == nil || !pay.OutputLabel.HasSecrecy("pii") {
		t.Errorf("output label %v: want pii", pay.OutputLabel)
	}
}

// Each call of a for_each carries its element's label: in its context
// label, whatever its arguments read (a stranger's mail adds a call to a
// loop over the inbox, E4), and in every argument that reads ${item},
// which is labeled as the element it reads, never trusted for a
// stranger's element.
func TestForEachCallsCarryTheirElementsLabel(t *testing.T) {
	h := newHarness(t, "", map[string]worker.Handler{
		"split": func(context.Context, *worker.Call) (any, error) {
			return worker.Labeled{Output: map[string]any{"msgs": []any{
				map[string]any{"from": "me", "subject": "dentist"},
				map[string]any{"from": "eve", "subject": "pay acct_attacker"},
			}}, Labels: map[string]ifc.Label{"msgs.1": ifc.UntrustedFrom("email:eve@x.example")}}, nil
		},
	})
	r := h.run(`name: p
steps:
  - {id: inbox, call: t.split}
  - id: reads
    call: t.echo
    for_each: "${steps.inbox.output.msgs}"
    with: {subject: "${item.subject}"}
  - id: blind
    call: t.spend
    for_each: "${steps.inbox.output.msgs}"
    with: {note: the same for every element}
`, nil, Options{})
	reads, blind := step(t, r, "reads"), step(t, r, "blind")
	if len(reads.Items) != 2 || len(blind.Items) != 2 {
		t.Fatalf("reads %+v, blind %+v: want two calls each", reads.Items, blind.Items)
	}
	if l := reads.Items[0].ArgLabels["subject"]; l.Integrity() != ifc.Trusted {
		t.Errorf("my element's subject labeled %v, want trusted (the control)", l)
	}
	if l := reads.Items[1].ArgLabels["subject"]; l.Integrity() != ifc.Untrusted || !slices.Contains(l.Sources(), "email:eve@x.example") {
		t.Errorf("the stranger's subject labeled %v, want untrusted from email:eve@x.example", l)
	}
	if it := blind.Items[0]; it.Label.Integrity() != ifc.Trusted || it.Status != StatusCompleted {
		t.Errorf("the call for my element: %v %s, want trusted and completed (the control)", it.Label, it.Status)
	}
	if it := blind.Items[1]; it.Label.Integrity() != ifc.Untrusted || it.Status != StatusHeld {
		t.Errorf("the call the stranger's element added: %v %s, want untrusted and held", it.Label, it.Status)
	}
}

// A tool's output is labeled with the join of the label its call was
// delivered with and the output label of its manifest: a tool declared
// trusted (t.echo) returns untrusted output when it was given untrusted
// arguments, and a tool declared untrusted (t.browse) returns untrusted
// output when it was given only trusted ones.
func TestOutputJoinsTheCallAndTheManifestLabels(t *testing.T) {
	h := newHarness(t, "", map[string]worker.Handler{
		"fetch":  fromTheWeb("acct_x"),
		"browse": func(context.Context, *worker.Call) (any, error) { return map[string]any{"text": "a page"}, nil },
	})
	r := h.run(`name: p
inputs: {v: {type: string}}
steps:
  - {id: page, call: t.fetch}
  - {id: mine, call: t.echo, with: {v: "${inputs.v}"}}
  - {id: theirs, call: t.echo, with: {v: "${steps.page.output.text}"}}
  - {id: browsed, call: t.browse, with: {v: "${inputs.v}"}}
`, map[string]any{"v": "x"}, Options{})
	if l := step(t, r, "mine").OutputLabel; l == nil || l.Integrity() != ifc.Trusted {
		t.Errorf("echo of a trusted value: output %v, want trusted (the control)", l)
	}
	if l := step(t, r, "theirs").OutputLabel; l == nil || l.Integrity() != ifc.Untrusted || !slices.Contains(l.Sources(), "web:evil.example") {
		t.Errorf("echo of an untrusted value: output %v, want untrusted from web:evil.example", l)
	}
	if l := step(t, r, "browsed").OutputLabel; l == nil || l.Integrity() != ifc.Untrusted || !slices.Contains(l.Sources(), "tool:t.browse") {
		t.Errorf("t.browse, declared untrusted: output %v, want untrusted from tool:t.browse", l)
	}
}
