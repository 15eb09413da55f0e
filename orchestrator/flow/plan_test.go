package flow

import (
	"strings"
	"testing"
	"time"
)

func TestLoadPlan(t *testing.T) {
	p, err := load(t, `name: a
inputs: {city: {type: string}}
steps:
  - id: fetch
    call: web.fetch
    with: {url: "http://127.0.0.1:1/x"}
  - id: trip
    plan:
      model: llm
      instructions: "${'Find hotels in ' + inputs.city}"
      tools: [web.fetch, payment.charge]
      inputs: {city: "${inputs.city}", page: "${steps.fetch.output.text}"}
      output_schema: {type: object, properties: {hotel: {type: string}}}
      max_rewrites: 2
      limits: {steps: 5000, memory: 2MiB, time: 250ms}
  - id: plain
    plan: {model: llm, instructions: go}
`)
	if err != nil {
		t.Fatal(err)
	}
	trip, plain := p.Steps[1], p.Steps[2]
	ps := trip.Plan
	if ps == nil || trip.Call != "llm.chat" || trip.Spec == nil || ps.Extract == nil || ps.MaxRewrites != 2 {
		t.Fatalf("trip %+v %+v", trip, ps)
	}
	if len(ps.Tools) != 2 || ps.Tools[1].Name != "payment.charge" || ps.Tools[1].Worker != "payment" || ps.Tools[1].Spec == nil {
		t.Fatalf("tools %+v", ps.Tools)
	}
	if strings.Join(ps.InputNames, ",") != "city,page" || ps.OutputSchema == nil {
		t.Fatalf("inputs %v, schema %v", ps.InputNames, ps.OutputSchema)
	}
	if ps.Limits != (PlanLimits{Steps: 5000, Memory: 2 << 20, Time: 250 * time.Millisecond}) {
		t.Fatalf("limits %+v", ps.Limits)
	}
	if len(trip.Deps) != 1 || trip.Deps[0] != "fetch" {
		t.Fatalf("deps %v: the plan's inputs are read", trip.Deps)
	}
	if plain.Plan.MaxRewrites != DefaultMaxRewrites || plain.Plan.Limits != (PlanLimits{}) {
		t.Fatalf("defaults %+v", plain.Plan)
	}
}

func TestLoadPlanErrors(t *testing.T) {
	_, err := load(t, `name: a
steps:
  - id: a
    plan:
      model: web
      instructions: x
      tools: [web.fetch, payment.refund_all]
      output_schema: {type: 7}
      limits: {memory: 12 apples, time: forever}
  - id: b
    call: web.fetch
    plan: {model: llm, instructions: x}
  - id: c
    with: {x: 1}
    for_each: "${[1]}"
    plan: {model: nope, instructions: x}
`)
	if err == nil {
		t.Fatal("loaded")
	}
	msg := err.Error()
	for _, want := range []string{
		"f.yaml:12:5", "has plan and call",
		"f.yaml:5:14", "worker web has no chat tool",
		"f.yaml:7:26", `unknown tool "payment.refund_all"`,
		"f.yaml:8:22", "output_schema is not a valid JSON Schema",
		"f.yaml:9:24", `memory "12 apples"`,
		"f.yaml:9:41", `time "forever"`,
		"f.yaml:14:5", "with applies only to a call step",
		"f.yaml:15:5", "for_each applies only to a call step",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("errors lack %q:\n%s", want, msg)
		}
	}
}

// The planner is shown only trusted text: instructions that read the
// output of a tool known to be untrusted are refused at load time, with
// where, and a benign control reading a trusted input loads.
func TestLoadPlanUntrustedInstructions(t *testing.T) {
	_, err := load(t, `name: a
steps:
  - id: fetch
    call: web.fetch
    with: {url: "http://127.0.0.1:1/x"}
  - id: trip
    plan:
      model: llm
      instructions: "${'Summarise ' + steps.fetch.output.text}"
      tools: [web.fetch]
`)
	if err == nil || !strings.Contains(err.Error(), "f.yaml:9:") || !strings.Contains(err.Error(), "steps.fetch.output.text, which is untrusted") ||
		!strings.Contains(err.Error(), "plan.inputs") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"64MiB": 64 << 20, "2048": 2048, "1KiB": 1024, "3 GB": 3 << 30, "10MB": 10 << 20} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "12", "x", "5TiB", "-1MiB", "64 apples", "8GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) passed", in)
		}
	}
}

func TestLoadPlanMaxRewrites(t *testing.T) {
	_, err := load(t, "name: a\nsteps:\n  - id: a\n    plan: {model: llm, instructions: x, max_rewrites: 4}\n")
	if err == nil || !strings.Contains(err.Error(), "f.yaml:4:55: steps.0.plan.max_rewrites: maximum: got 4, want 3") {
		t.Fatalf("err = %v", err)
	}
}
