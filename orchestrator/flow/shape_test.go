package flow

import (
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/schemas"
)

// shapeCases are flows that read what their tools, agents and inputs
// declare they lack, or that combine values of types that cannot go
// together. Each fails at load, at the place it is written. They seed
// FuzzLoad too.
var shapeCases = []struct {
	name string
	src  string
	want []want
	msgs []string
}{
	{"misspelled output field",
		"name: f\nsteps:\n  - id: pay\n    call: payment.charge\n    with: {amount: 1, currency: EUR, payee: p}\noutputs:\n  charge: \"${steps.pay.output.chargeid}\"\n",
		[]want{{CodeUnknownField, 7, 31}},
		[]string{`steps.pay.output has no field "chargeid": the output schema of tool payment.charge gives charge_id, status (did you mean charge_id?)`}},
	{"misspelled field read before the step that gives it",
		"name: f\nsteps:\n  - id: fetch\n    call: web.fetch\n    with: {url: \"${'http://x/' + steps.bal.output['currencyy']}\"}\n  - id: bal\n    call: payment.balance\n",
		[]want{{CodeUnknownField, 5, 51}},
		[]string{`steps.bal.output has no field "currencyy"`, "(did you mean currency?)"}},
	{"field of a string",
		"name: f\nsteps:\n  - id: fetch\n    call: web.fetch\n    with: {url: x}\noutputs:\n  t: \"${steps.fetch.output.title.text}\"\n",
		[]want{{CodeUnknownField, 7, 34}},
		[]string{`steps.fetch.output.title is a string (the output schema of tool web.fetch); it has no field "text"`}},
	{"nested field in a $ref-free nested object",
		"name: f\nsteps:\n  - id: a\n    agent: {model: llm, instructions: go, tools: [web.fetch]}\n  - id: b\n    agent:\n      model: llm\n      instructions: go\n      output_schema: {type: object, properties: {who: {type: object, properties: {name: {type: string}}, additionalProperties: false}}}\noutputs:\n  x: \"${steps.a.output.answer}\"\n  y: \"${steps.b.output.who.nmae}\"\n",
		[]want{{CodeUnknownField, 11, 24}, {CodeUnknownField, 12, 28}},
		[]string{"agent step a, which has no output_schema: its answer is a string", `steps.b.output.who has no field "nmae": the output_schema of agent step b gives name (did you mean name?)`}},
	{"field of a for_each step's list",
		"name: f\nsteps:\n  - id: pay\n    call: payment.charge\n    for_each: \"${[1, 2]}\"\n    with: {amount: \"${item}\", currency: EUR, payee: p}\noutputs:\n  first: \"${steps.pay.output.charge_id}\"\n  ok: \"${steps.pay.output[0].chargeid}\"\n",
		[]want{{CodeUnknownField, 8, 30}, {CodeUnknownField, 9, 30}},
		[]string{`steps.pay.output is a list: step pay calls its tool once per element of for_each; read one call's output, e.g. steps.pay.output[0].charge_id`,
			`steps.pay.output.0 has no field "chargeid": the output schema of tool payment.charge gives charge_id, status (did you mean charge_id?)`}},
	{"field of a list in an output, and of its element",
		"name: f\nsteps:\n  - id: a\n    agent:\n      model: llm\n      instructions: go\n      output_schema: {type: object, properties: {seats: {type: array, items: {type: string}}}}\noutputs:\n  x: \"${steps.a.output.seats.first}\"\n  y: \"${steps.a.output.seats[1].row}\"\n",
		[]want{{CodeUnknownField, 9, 30}, {CodeUnknownField, 10, 33}},
		[]string{`steps.a.output.seats is a list (the output_schema of agent step a); it has no field "first": read an element, e.g. steps.a.output.seats[0].first`,
			`steps.a.output.seats.1 is a string (the output_schema of agent step a); it has no field "row"`}},
	{"field through a local reference",
		"name: f\nsteps:\n  - id: b\n    agent:\n      model: llm\n      instructions: go\n      output_schema: {type: object, $defs: {p: {type: object, properties: {name: {type: string}}, additionalProperties: false}}, properties: {who: {$ref: '#/$defs/p'}}}\noutputs:\n  y: \"${steps.b.output.who.nmae + steps.b.output.who.name}\"\n",
		[]want{{CodeUnknownField, 9, 28}},
		[]string{`steps.b.output.who has no field "nmae": the output_schema of agent step b gives name (did you mean name?)`}},
	{"field of an input",
		"name: f\ninputs:\n  n: {type: number}\nsteps:\n  - {id: a, call: payment.balance}\noutputs:\n  x: \"${inputs.n.value}\"\n",
		[]want{{CodeUnknownField, 7, 18}},
		[]string{`inputs.n is a number (declared at line 3); it has no field "value"`}},
	{"string plus number",
		"name: f\ninputs:\n  n: {type: number}\nsteps:\n  - id: a\n    call: web.fetch\n    with: {url: \"${'x' + inputs.n}\"}\n",
		[]want{{CodeExpr, 7, 24}},
		[]string{"operator + cannot take a string and a number (double)", "e.g. string(…)"}},
	{"integer output plus string in an if",
		"name: f\nsteps:\n  - id: a\n    call: web.fetch\n    with: {url: x}\n  - id: b\n    call: payment.balance\n    if: \"${steps.a.output.status + '0' == '2000'}\"\n",
		[]want{{CodeExpr, 8, 34}},
		[]string{"operator + cannot take an integer (int) and a string"}},
}

func TestLoadShapeErrors(t *testing.T) {
	for _, tc := range shapeCases {
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
			for _, m := range tc.msgs {
				if !strings.Contains(ds.Error(), m) {
					t.Errorf("diagnostics lack %q:\n%v", m, ds)
				}
			}
		})
	}
}

// What is declared, read rightly, passes; so does what is not declared.
func TestLoadShapeControls(t *testing.T) {
	for name, src := range map[string]string{
		"declared fields":               "name: f\ninputs:\n  n: {type: number}\n  who: {type: string}\nsteps:\n  - id: pay\n    call: payment.charge\n    with: {amount: \"${inputs.n}\", currency: EUR, payee: \"${inputs.who}\"}\n  - id: fetch\n    call: web.fetch\n    if: \"${inputs.n > 10 && steps.fetch0.output.status == 200}\"\n    with: {url: \"${'http://x/' + steps.pay.output.charge_id + '/' + string(inputs.n)}\"}\n  - {id: fetch0, call: web.fetch, with: {url: x}}\noutputs:\n  charge: \"${steps.pay.output.charge_id}\"\n  all: \"${steps.pay.output}\"\n",
		"tool without an output schema": "name: f\nsteps:\n  - id: pick\n    call: llm.extract\n    with: {text: t, instruction: i, schema: {type: object}}\noutputs:\n  p: \"${steps.pick.output.price + 1}\"\n",
		"schema that allows more":       "name: f\nsteps:\n  - id: a\n    agent: {model: llm, instructions: go, output_schema: {type: object, properties: {x: {type: string}}}}\noutputs:\n  y: \"${steps.a.output.y}\"\n",
		"element of a list":             "name: f\nsteps:\n  - id: pay\n    call: payment.charge\n    for_each: \"${[1, 2]}\"\n    with: {amount: \"${item}\", currency: EUR, payee: p}\noutputs:\n  first: \"${steps.pay.output[0].charge_id}\"\n  n: \"${size(steps.pay.output)}\"\n",
		"computed key":                  "name: f\ninputs:\n  k: {type: string}\nsteps:\n  - {id: bal, call: payment.balance}\noutputs:\n  v: \"${steps.bal.output[inputs.k]}\"\n",
	} {
		if _, err := load(t, src); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The caret points at the misspelled field.
func TestShapeErrorRendered(t *testing.T) {
	src := shapeCases[0].src
	_, err := load(t, src)
	ds, _ := schemas.AsDiagnostics(err)
	got := schemas.Render(ds, map[string][]byte{"f.yaml": []byte(src)})
	want := `f.yaml:7:31: steps.pay.output has no field "chargeid": the output schema of tool payment.charge gives charge_id, status (did you mean charge_id?)
 |   charge: "${steps.pay.output.chargeid}"
 | ..............................^
1 error
`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// Inputs read back from JSON get their declared types again.
func TestRestoreInputs(t *testing.T) {
	p, err := load(t, "name: f\ninputs:\n  n: {type: number}\n  i: {type: integer}\n  s: {type: string}\nsteps:\n  - {id: a, call: payment.balance}\n")
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]any{"n": int64(5), "i": int64(3), "s": "x", "gone": int64(1)}
	p.RestoreInputs(in)
	if in["n"] != float64(5) || in["i"] != int64(3) || in["s"] != "x" || in["gone"] != int64(1) {
		t.Fatalf("restored %#v", in)
	}
	p.RestoreInputs(nil)
}
