package flow

import (
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/ifc/expr"
	"github.com/sluicehq/sluice/schemas"
)

func catalog(t testing.TB) Catalog {
	t.Helper()
	c := Catalog{}
	for _, name := range []string{"web", "payment", "llm"} {
		m, err := capabilities.Load("builtin:" + name)
		if err != nil {
			t.Fatal(err)
		}
		c[name] = m
	}
	return c
}

func load(t *testing.T, src string) (*Plan, error) {
	t.Helper()
	env, err := expr.NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	return Load("f.yaml", []byte(src), catalog(t), env)
}

const good = `name: trip
inputs:
  dest: {type: string}
  budget: {type: number, default: 300}
steps:
  - id: offers
    call: web.fetch
    with: {url: "${'http://127.0.0.1:8088/?to=' + inputs.dest}"}
  - id: pick
    call: llm.extract
    with:
      text: "${steps.offers.output.text}"
      instruction: Pick one.
      schema: {type: object}
  - id: pay
    call: payment.charge
    with: {amount: "${steps.pick.output.price}", currency: EUR, payee: "${steps.pick.output.payee}"}
outputs:
  charge: "${steps.pay.output.charge_id}"
`

func TestLoadGood(t *testing.T) {
	p, err := load(t, good)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "trip" || len(p.Steps) != 3 {
		t.Fatalf("plan %+v", p)
	}
	deps := map[string][]string{}
	for _, s := range p.Steps {
		deps[s.ID] = s.Deps
	}
	if len(deps["offers"]) != 0 || !slices.Equal(deps["pick"], []string{"offers"}) || !slices.Equal(deps["pay"], []string{"pick"}) {
		t.Fatalf("deps %v", deps)
	}
	if !slices.Equal(p.Steps[2].ArgNames, []string{"amount", "currency", "payee"}) {
		t.Errorf("arg order %v", p.Steps[2].ArgNames)
	}
	// A constant reads nothing and is trusted; an argument reading a step's
	// output carries that output's label.
	pay := p.Steps[2]
	lookup := func(path expr.Path) ifc.Label {
		if path[0] == "steps" {
			return ifc.UntrustedFrom(ifc.WebSource("x"))
		}
		return InputLabel()
	}
	if l := pay.With["currency"].Label(lookup); l.Integrity() != ifc.Trusted {
		t.Errorf("constant labeled %v", l)
	}
	if l := pay.With["payee"].Label(lookup); l.Integrity() != ifc.Untrusted {
		t.Errorf("payee labeled %v", l)
	}
	in, err := p.BindInputs(map[string]string{"dest": "Lisbon"})
	if err != nil || in["dest"] != "Lisbon" || in["budget"] != float64(300) {
		t.Fatalf("inputs %v %v", in, err)
	}
	if _, err := p.BindInputs(map[string]string{"budget": "x", "nope": "1"}); err == nil ||
		!strings.Contains(err.Error(), `no input "nope"`) || !strings.Contains(err.Error(), "want a number") || !strings.Contains(err.Error(), "dest (string) is required") {
		t.Fatalf("bad inputs: %v", err)
	}
}

type want struct {
	code      string
	line, col int
}

// messages holds, per case of TestLoadErrors, what the diagnostics must
// say: the thing named, what was expected, and a hint where there is one.
var messages = map[string][]string{
	"unknown tool":                         {`unknown tool "payment.refund"; worker "payment" has: balance, charge`},
	"unknown worker":                       {`no worker "mail" is configured (workers: llm, payment, web)`},
	"unknown step reference":               {`no step "b" (steps are: a)`},
	"unknown input":                        {`no input "u"`},
	"duplicate step":                       {`duplicate step id "a" (first at line 3)`},
	"cycle":                                {"steps form a cycle: a -> b -> a"},
	"self reference":                       {"step a reads its own output"},
	"unknown argument and missing one":     {`tool web.fetch needs argument "url"`, `tool web.fetch has no argument "uri" (arguments: url)`},
	"expression syntax":                    {"Syntax error"},
	"unknown key":                          {`missing one of the keys "call", "agent"`, `unknown key "cal" (did you mean "call"?)`},
	"item outside for_each":                {"item is available only in the arguments of a for_each step"},
	"item in if":                           {"item is available only in the arguments of a for_each step"},
	"concurrency without for_each":         {"concurrency applies only to a for_each step"},
	"bad timeout":                          {`timeout "2h": want a duration from 1ms to 1h`},
	"constant argument against the schema": {"argument amount of payment.charge: exclusiveMinimum", "argument currency of payment.charge: 'euro' does not match pattern"},
	"mistyped input":                       {"inputs.s.type: value must be one of"},
	"mistyped input default":               {`input n: default: want a number, got "many"`},
	"expression of the wrong type":         {"argument amount of payment.charge takes a number; this expression gives a string"},
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []want
	}{
		{"unknown tool", "name: f\nsteps:\n  - id: a\n    call: payment.refund\n",
			[]want{{CodeUnknownTool, 4, 11}}},
		{"unknown worker", "name: f\nsteps:\n  - id: a\n    call: mail.send\n",
			[]want{{CodeUnknownTool, 4, 11}}},
		{"unknown step reference", "name: f\nsteps:\n  - id: a\n    call: web.fetch\n    with: {url: \"${steps.b.output.url}\"}\n",
			[]want{{CodeUnknownRef, 5, 18}}},
		{"unknown input", "name: f\nsteps:\n  - id: a\n    call: web.fetch\n    with: {url: \"${inputs.u}\"}\n",
			[]want{{CodeUnknownRef, 5, 18}}},
		{"duplicate step", "name: f\nsteps:\n  - id: a\n    call: payment.balance\n  - id: a\n    call: payment.balance\n",
			[]want{{CodeDuplicateStep, 5, 9}}},
		{"cycle", "name: f\nsteps:\n  - id: a\n    call: web.fetch\n    with: {url: \"${steps.b.output.url}\"}\n  - id: b\n    call: web.fetch\n    with: {url: \"${steps.a.output.url}\"}\n",
			[]want{{CodeCycle, 3, 5}}},
		{"self reference", "name: f\nsteps:\n  - id: a\n    call: web.fetch\n    with: {url: \"${steps.a.output.url}\"}\n",
			[]want{{CodeCycle, 5, 18}}},
		{"unknown argument and missing one", "name: f\nsteps:\n  - id: a\n    call: web.fetch\n    with: {uri: x}\n",
			[]want{{CodeBadArgs, 4, 11}, {CodeBadArgs, 5, 12}}},
		{"expression syntax", "name: f\nsteps:\n  - id: a\n    call: web.fetch\n    with: {url: \"http://x/${inputs.a +}\"}\ninputs:\n  a: {type: string}\n",
			[]want{{CodeExpr, 5, 39}}},
		{"unknown key", "name: f\nsteps:\n  - id: a\n    cal: web.fetch\n",
			[]want{{schemas.CodeSchemaMissing, 3, 5}, {schemas.CodeSchemaUnknown, 4, 5}}},
		{"item outside for_each", "name: f\nsteps:\n  - id: a\n    call: web.fetch\n    with: {url: \"${item}\"}\n",
			[]want{{CodeUnknownRef, 5, 18}}},
		{"item in if", "name: f\nsteps:\n  - id: a\n    call: web.fetch\n    for_each: \"${[1]}\"\n    if: \"${item == 1}\"\n    with: {url: x}\n",
			[]want{{CodeUnknownRef, 6, 10}}},
		{"concurrency without for_each", "name: f\nsteps:\n  - id: a\n    call: payment.balance\n    concurrency: 2\n",
			[]want{{CodeBadStep, 5, 5}}},
		{"bad timeout", "name: f\nsteps:\n  - id: a\n    call: payment.balance\n    timeout: 2h\n",
			[]want{{CodeBadStep, 5, 14}}},
		{"timeout syntax", "name: f\nsteps:\n  - id: a\n    call: payment.balance\n    timeout: soon\n",
			[]want{{schemas.CodeSchemaMismatch, 5, 14}}},
		{"constant argument against the schema", "name: f\nsteps:\n  - id: a\n    call: payment.charge\n    with: {amount: -5, currency: euro, payee: p}\n",
			[]want{{CodeBadArgs, 5, 20}, {CodeBadArgs, 5, 34}}},
		{"expression of the wrong type", "name: f\nsteps:\n  - id: a\n    call: payment.charge\n    with: {amount: \"${'12'}\", currency: EUR, payee: p}\n",
			[]want{{CodeBadArgs, 5, 21}}},
		{"mistyped input", "name: f\ninputs:\n  n: {type: number, default: many}\n  s: {type: text}\nsteps:\n  - {id: a, call: payment.balance}\n",
			[]want{{schemas.CodeSchemaMismatch, 4, 13}}},
		{"mistyped input default", "name: f\ninputs:\n  n: {type: number, default: many}\nsteps:\n  - {id: a, call: payment.balance}\n",
			[]want{{CodeBadInput, 3, 30}}},
		{"every error in one pass", "name: f\nsteps:\n  - id: a\n    call: nope.x\n  - id: b\n    call: web.fetch\n    with: {url: \"${steps.zz.output}\"}\n",
			[]want{{CodeUnknownTool, 4, 11}, {CodeUnknownRef, 7, 18}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.src)
			ds, ok := schemas.AsDiagnostics(err)
			if !ok {
				t.Fatalf("want diagnostics, got %v", err)
			}
			var got []want
			for _, d := range ds {
				got = append(got, want{d.Code, d.Line, d.Col})
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got  %v\nwant %v\n%v", got, tc.want, ds)
			}
			for _, m := range messages[tc.name] {
				if !strings.Contains(ds.Error(), m) {
					t.Errorf("diagnostics lack %q:\n%v", m, ds)
				}
			}
		})
	}
}
