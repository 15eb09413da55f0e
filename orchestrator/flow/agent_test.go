package flow

import (
	"strings"
	"testing"
)

func TestLoadAgent(t *testing.T) {
	p, err := load(t, `name: a
inputs: {dest: {type: string}}
steps:
  - id: research
    agent:
      model: llm
      instructions: "${'Find flights to ' + inputs.dest}"
      tools: [web.fetch]
      output_schema: {type: object, properties: {flight: {type: string}}}
  - id: pay
    agent: {model: llm, instructions: "${'Pay for ' + steps.research.output.flight}", tools: [payment.charge], max_turns: 3, hide_untrusted: false}
`)
	if err != nil {
		t.Fatal(err)
	}
	r, pay := p.Steps[0], p.Steps[1]
	if r.Agent == nil || r.Call != "llm.chat" || r.Spec == nil || r.Agent.Extract == nil || r.Agent.MaxTurns != DefaultMaxTurns || !r.Agent.HideUntrusted {
		t.Fatalf("research %+v %+v", r, r.Agent)
	}
	if len(pay.Deps) != 1 || pay.Deps[0] != "research" || pay.Agent.MaxTurns != 3 || pay.Agent.HideUntrusted || pay.Agent.Tools[0].Name != "payment.charge" {
		t.Fatalf("pay %+v %+v", pay, pay.Agent)
	}
}

func TestLoadAgentErrors(t *testing.T) {
	_, err := load(t, `name: a
steps:
  - id: a
    agent:
      model: web
      instructions: x
      tools: [web.fetch, payment.refund_all]
      output_schema: {type: 7}
  - id: b
    call: web.fetch
    agent: {model: llm, instructions: x}
  - id: c
    with: {x: 1}
    agent: {model: nope, instructions: x}
`)
	if err == nil {
		t.Fatal("loaded")
	}
	msg := err.Error()
	for _, want := range []string{
		"f.yaml:11:5", "both call and agent",
		"f.yaml:5:14", "worker web has no chat tool",
		"f.yaml:7:26", `unknown tool "payment.refund_all"`,
		"f.yaml:8:22", "output_schema is not a valid JSON Schema",
		"f.yaml:13:5", "with applies only to a call step",
		`no worker "nope"`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("errors lack %q:\n%s", want, msg)
		}
	}
}

func TestLoadAgentUnknownKey(t *testing.T) {
	_, err := load(t, "name: a\nsteps:\n  - id: a\n    agent: {model: llm, instructions: x, colour: red}\n  - id: b\n")
	if err == nil || !strings.Contains(err.Error(), "f.yaml:4:42: unknown key \"colour\"") || !strings.Contains(err.Error(), `f.yaml:5:5: steps.1: missing one of the keys "call", "agent"`) {
		t.Fatalf("err = %v", err)
	}
}
