package policy

import (
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
	f.Fuzz(func(t *testing.T, src []byte) {
		s, err := Load(File{Name: "fuzz.yaml", Src: src})
		if err != nil {
			ds, ok := err.(schemas.Diagnostics)
			if !ok || len(ds) == 0 {
				t.Fatalf("error %T is not a non-empty schemas.Diagnostics: %v", err, err)
			}
			lines := splitLines(string(src))
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
		switch d.Action {
		case Allow, Deny, Approve:
		default:
			t.Fatalf("Decide gave action %q", d.Action)
		}
		if len(d.Rules) != len(d.Reasons) {
			t.Fatalf("%d rules, %d reasons", len(d.Rules), len(d.Reasons))
		}
	})
}
