package flow

import (
	"encoding/json"
	"testing"

	"github.com/sluicehq/sluice/ifc"
)

// A flow as a tool: its input schema requires the inputs without a
// default and refuses others; its output label is known from the
// manifests of the tools it calls, before it runs — untrusted as soon as
// one step reads the web, trusted when every tool's output is.
func TestPlanTool(t *testing.T) {
	const pay = `name: pay
inputs:
  payee: {type: string}
  amount: {type: number}
  memo: {type: string, default: ""}
steps:
  - {id: pay, call: payment.charge, with: {amount: "${inputs.amount}", currency: EUR, payee: "${inputs.payee}", memo: "${inputs.memo}"}}
outputs:
  charge: "${steps.pay.output.charge_id}"
`
	const read = `name: read
inputs:
  url: {type: string}
steps:
  - {id: fetch, call: web.fetch, with: {url: "${inputs.url}"}}
outputs:
  title: "${steps.fetch.output.title}"
`
	for _, c := range []struct {
		src       string
		integrity ifc.Integrity
	}{{pay, ifc.Trusted}, {read, ifc.Untrusted}} {
		p, err := load(t, c.src)
		if err != nil {
			t.Fatal(err)
		}
		tool, err := p.Tool()
		if err != nil {
			t.Fatal(err)
		}
		if tool.Name != p.Name || tool.OutputLabel.Integrity() != c.integrity {
			t.Errorf("flow %s: tool %s, output label %v; want integrity %v", p.Name, tool.Name, tool.OutputLabel, c.integrity)
		}
		props, _ := tool.Output.Shape()
		if len(props) != len(p.OutputNames) {
			t.Errorf("flow %s: output fields %v; want %v", p.Name, props, p.OutputNames)
		}
	}
	p, _ := load(t, pay)
	tool, _ := p.Tool()
	doc, _ := json.Marshal(tool.Input.Doc())
	for _, args := range []struct {
		v    map[string]any
		fits bool
	}{
		{map[string]any{"payee": "acct_shop", "amount": 20.0}, true},
		{map[string]any{"payee": "acct_shop", "amount": 20.0, "memo": "x"}, true},
		{map[string]any{"payee": "acct_shop"}, false},
		{map[string]any{"payee": "acct_shop", "amount": "20"}, false},
		{map[string]any{"payee": "acct_shop", "amount": 20.0, "other": 1.0}, false},
	} {
		if ms := tool.Input.Mismatches(args.v); (len(ms) == 0) != args.fits {
			t.Errorf("input schema %s on %v: mismatches %v; want fits=%v", doc, args.v, ms, args.fits)
		}
	}
}
