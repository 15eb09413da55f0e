package policy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/ifc"
)

// benchRules writes n rules the way a deployment has them: the default
// policy's two, then one rule in five about any tool and the others each
// about one of the tools, spread over the catalog.
func benchRules(n int) File {
	tools := []string{"payment.charge", "web.fetch", "llm.complete", "llm.extract", "payment.balance"}
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range n - 2 {
		switch {
		case i%5 == 4:
			fmt.Fprintf(&b, "  - name: any-%d\n    when: tool.egress && from_source(label, \"web:site%d.example\")\n    action: deny\n", i, i)
		default:
			t := tools[i%len(tools)]
			fmt.Fprintf(&b, "  - name: r-%d\n    when: tool.name == %q && label.integrity == \"untrusted\" && size(label.sources) > %d\n    action: %s\n",
				i, t, i, []string{"approve", "allow", "deny", "approve"}[i%4])
		}
	}
	b.WriteString("  - name: known-payees\n    when: tool.name == \"payment.charge\" && args.payee in registry.payees && args.amount <= 100\n    action: endorse\n")
	b.WriteString("registries:\n  payees: [acct_hotel_1, acct_tap_air, acct_airline_2]\n")
	return File{Name: "bench.yaml", Src: []byte(b.String())}
}

// BenchmarkDecide decides one payment with 1, 20 and 100 rules loaded
// (the default policy counts two of them; with 1, only its first). The
// target is under 2 µs at 20 rules.
func BenchmarkDecide(b *testing.B) {
	in := Input{
		Tool:  charge,
		Label: ifc.UntrustedFrom("user", "web:flights.example"),
		ArgLabels: map[string]ifc.Label{
			"amount": ifc.TrustedFrom("user"),
			"payee":  ifc.UntrustedFrom("web:flights.example"),
		},
		Args: map[string]any{"amount": int64(90), "payee": "acct_tap_air", "currency": "EUR"},
		Run:  Run{ID: "01J", Flow: "book", Step: "pay"},
	}
	for _, n := range []int{1, 20, 100} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			var s *Set
			if n == 1 {
				s = mustLoadTools(b, builtinTools(b), file("one.yaml", `rules:
  - name: untrusted-never-pays-alone
    when: tool.privileged && label.integrity == "untrusted"
    action: approve
`))
			} else {
				s = mustLoadTools(b, builtinTools(b), DefaultFile(), benchRules(n-1))
			}
			if got := len(s.Rules()); got != n {
				b.Fatalf("%d rules loaded, want %d", got, n)
			}
			b.ReportAllocs()
			for b.Loop() {
				d := s.Decide(in)
				if len(d.Errors) > 0 {
					b.Fatal(d.Errors)
				}
			}
		})
	}
}

// BenchmarkDecideAnyTool is the worst case: every rule is about any tool,
// so every rule runs on every call.
func BenchmarkDecideAnyTool(b *testing.B) {
	in := Input{Tool: charge, Label: ifc.UntrustedFrom("user", "web:flights.example"),
		Args: map[string]any{"amount": int64(90), "payee": "acct_tap_air"}}
	for _, n := range []int{20, 100} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			var src strings.Builder
			src.WriteString("rules:\n")
			for i := range n {
				fmt.Fprintf(&src, "  - name: r-%d\n    when: label.integrity == \"untrusted\" && size(label.sources) > %d\n    action: approve\n", i, i+2)
			}
			s := mustLoadTools(b, builtinTools(b), file("any.yaml", src.String()))
			b.ReportAllocs()
			for b.Loop() {
				s.Decide(in)
			}
		})
	}
}
