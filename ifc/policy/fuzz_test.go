package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/schemas"
)

// FuzzLoad loads any file as a policy: no panic, every diagnostic inside
// the file, and a loaded Set decides. Seeds live in testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	f.Add(DefaultFile().Src)
	f.Add(readFile(f, "testdata/policy.yaml").Src)
	in := Input{
		Tool:      Tool{Name: "payment.charge", Worker: "payment", Privileged: true, Approvable: true, Clearance: ifc.NewClearance(ifc.Trusted, "payment")},
		Label:     ifc.UntrustedFrom("web:x.example"),
		ArgLabels: map[string]ifc.Label{"amount": ifc.TrustedFrom("user")},
		Args:      map[string]any{"amount": int64(12), "payee": "acct_hotel_1", "items": []any{"a", int64(1)}},
		Run:       Run{ID: "r", Flow: "f", Step: "s"},
	}
	tools := builtinTools(f)
	f.Fuzz(func(t *testing.T, src []byte) {
		s, err := Load(tools, File{Name: "fuzz.yaml", Src: src})
		if err != nil {
			ds, ok := err.(schemas.Diagnostics)
			if !ok || len(ds) == 0 {
				t.Fatalf("error %T is not a non-empty schemas.Diagnostics: %v", err, err)
			}
			lines := schemas.SplitLines(string(src))
			for _, d := range ds {
				if d.File != "fuzz.yaml" || d.Code == "" {
					t.Fatalf("diagnostic %+v", d)
				}
				if d.Line < 1 || d.Line > len(lines) {
					t.Fatalf("line of %v outside the file (%d lines)", d, len(lines))
				}
				if n := utf8.RuneCountInString(lines[d.Line-1]); d.Col < 1 || d.Col > n+1 {
					t.Fatalf("column of %v outside line %d (%d characters)", d, d.Line, n)
				}
			}
			return
		}
		d := s.Decide(in)
		checkDecision(t, in, d)
	})
}

// checkDecision asserts what holds of every decision: an action of the
// three, a reason per rule, an allowed call's label flowing to the tool's
// clearance, lowering only by named rules and never on a deny, and an
// approval only of a hold, once.
func checkDecision(t *testing.T, in Input, d Decision) {
	t.Helper()
	switch d.Action {
	case Allow, Deny, Approve:
	default:
		t.Fatalf("Decide gave action %q", d.Action)
	}
	if len(d.Rules) != len(d.Reasons) {
		t.Fatalf("%d rules, %d reasons", len(d.Rules), len(d.Reasons))
	}
	if d.Action == Allow && !d.Label.FlowsTo(in.Tool.Clearance) {
		t.Fatalf("allowed with label %v, which does not flow to %v", d.Label, in.Tool.Clearance)
	}
	if d.Action == Deny && (len(d.Lowered) > 0 || !d.Label.Equal(in.Label)) {
		t.Fatalf("a deny lowered the label: %v by %v", d.Label, d.Lowered)
	}
	if len(d.Lowered) == 0 && !d.Label.Equal(in.Label) {
		t.Fatalf("label %v changed from %v with no rule", d.Label, in.Label)
	}
	for _, src := range d.Label.Sources() {
		if name, ok := strings.CutPrefix(src, "endorsed:"); ok && !slices.ContainsFunc(d.Lowered, func(r RuleRef) bool { return r.Name == name }) {
			t.Fatalf("source %s without the rule in Lowered %v", src, d.Lowered)
		}
	}
	approved, _, err := d.Approve("fuzz")
	if (err == nil) != (d.Action == Approve) {
		t.Fatalf("Approve of a %s decision: %v", d.Action, err)
	}
	if err == nil && (approved.Integrity() != ifc.Trusted || !approved.FlowsTo(in.Tool.Clearance)) {
		t.Fatalf("approved label %v does not flow to %v", approved, in.Tool.Clearance)
	}
	if _, _, err := d.Approve("fuzz"); err == nil {
		t.Fatal("a decision was approved twice")
	}
}

// FuzzLoadCases loads any file as decision cases: no panic, every
// diagnostic inside the file, and every case's decision checks out
// against the default policy. Seeds live in testdata/fuzz/FuzzLoadCases.
func FuzzLoadCases(f *testing.F) {
	f.Add(readFile(f, "testdata/cases.yaml").Src)
	s := mustLoad(f, DefaultFile(), readFile(f, "testdata/policy.yaml"))
	f.Fuzz(func(t *testing.T, src []byte) {
		cases, err := LoadCases(File{Name: "fuzz.yaml", Src: src})
		if err != nil {
			ds, ok := err.(schemas.Diagnostics)
			if !ok || len(ds) == 0 {
				t.Fatalf("error %T is not a non-empty schemas.Diagnostics: %v", err, err)
			}
			lines := schemas.SplitLines(string(src))
			for _, d := range ds {
				if d.Line < 1 || d.Line > len(lines) {
					t.Fatalf("line of %v outside the file (%d lines)", d, len(lines))
				}
			}
			return
		}
		for _, c := range cases {
			d := s.Decide(c.Input)
			checkDecision(t, c.Input, d)
			if err := c.Check(d); err != nil {
				var f *CaseFailure
				if !errors.As(err, &f) || f.Diff() == "" {
					t.Fatalf("Check: %v", err)
				}
			}
		}
	})
}
