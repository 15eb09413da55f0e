package policy

import (
	"reflect"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/schemas"
)

// TestRuleWithTypoFailsToLoad: a misspelled variable, field, argument,
// tool or worker is a load error at its file:line:col, never a rule that
// silently does not match.
func TestRuleWithTypoFailsToLoad(t *testing.T) {
	t.Parallel()
	rule := func(when string) string { return "rules:\n  - name: r\n    when: " + when + "\n    action: deny\n" }
	// when starts at column 11 of line 3.
	tests := []struct {
		name string
		when string
		col  int
		code string
	}{
		{name: "field of label", when: `label.integrty == "untrusted"`, col: 11 + 5, code: CodeCompile},
		{name: "variable", when: `tool.egress && lable.integrity == "untrusted"`, col: 11 + 15, code: CodeCompile},
		{name: "argument", when: `tool.name == "payment.charge" && args.amonut > 10`, col: 11 + 37, code: CodeUnknownArgument},
		{name: "argument label", when: `tool.name == "payment.charge" && arg_labels.paye.integrity == "trusted"`, col: 11 + 43, code: CodeUnknownArgument},
		{name: "argument of one of two tools", when: `tool.name in ["web.fetch", "payment.charge"] && args.url == "x"`, col: 11 + 52, code: CodeUnknownArgument},
		{name: "argument of a worker's tool", when: `tool.worker == "payment" && args.url == "x"`, col: 11 + 32, code: CodeUnknownArgument},
		{name: "tool", when: `tool.name == "payment.chrage" && args.amount > 10`, col: 11 + 13, code: CodeUnknownTool},
		{name: "tool inside ||", when: `tool.name == "web.fetch" || tool.name == "web.fecth"`, col: 11 + 41, code: CodeUnknownTool},
		{name: "worker", when: `tool.worker == "paymnet"`, col: 11 + 15, code: CodeUnknownTool},
		{name: "argument of the wrong type", when: `tool.name == "payment.charge" && args.payee > 3`, col: 11 + 44, code: CodeCompile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(builtinTools(t), file("p.yaml", rule(tt.when)))
			want := []diag{{"p.yaml", 3, tt.col, tt.code}}
			if got := diags(t, err); !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v\n%v", got, want, err)
			}
		})
	}
}

// TestTypedArgs: a rule about a tool reads its arguments as typed fields;
// a rule about any tool reads them as a map.
func TestTypedArgs(t *testing.T) {
	t.Parallel()
	s := mustLoadTools(t, builtinTools(t), DefaultFile(), file("p.yaml", `rules:
  - name: memo-says-refund
    when: tool.name == "payment.charge" && has(args.memo) && args.memo.startsWith("refund")
    action: approve
  - name: half-euros
    when: tool.name == "payment.charge" && args.amount == 0.5
    action: deny
  - name: payee-label
    when: tool.name == "payment.charge" && from_source(arg_labels.payee, "web:")
    action: approve
  - name: any-tool
    when: '"url" in args && args.url.contains("evil")'
    action: deny
  - name: either
    when: tool.name == "payment.charge" || args.missing == 1
    action: approve
`))
	trusted := ifc.TrustedFrom("user")
	tests := []struct {
		name  string
		in    Input
		want  Action
		rules []string
	}{
		{name: "memo", in: Input{Tool: charge, Label: trusted,
			Args:      map[string]any{"amount": int64(3), "payee": "p", "memo": "refund 1"},
			ArgLabels: map[string]ifc.Label{"payee": trusted}},
			want: Approve, rules: []string{"memo-says-refund", "either"}},
		{name: "no memo", in: Input{Tool: charge, Label: trusted,
			Args:      map[string]any{"amount": 3.5, "payee": "p"},
			ArgLabels: map[string]ifc.Label{"payee": ifc.TrustedFrom("web:x")}},
			want: Approve, rules: []string{"payee-label", "either"}},
		{name: "an int compares with a double", in: Input{Tool: charge, Label: trusted,
			Args: map[string]any{"amount": 0.5, "payee": "p"}, ArgLabels: map[string]ifc.Label{"payee": trusted}},
			want: Deny, rules: []string{"half-euros"}},
		{name: "any tool", in: Input{Tool: Tool{Name: "web.fetch", Clearance: ifc.NewClearance(ifc.Untrusted)}, Label: trusted,
			Args: map[string]any{"url": "http://evil.example/"}},
			want: Deny, rules: []string{"any-tool"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := s.Decide(tt.in)
			if d.Action != tt.want || !reflect.DeepEqual(names(d.Rules), tt.rules) {
				t.Errorf("Decide = %s by %v, want %s by %v (errors %v)", d.Action, names(d.Rules), tt.want, tt.rules, d.Errors)
			}
		})
	}
	// A rule about a tool reads its arguments as fields: indexing them or
	// testing them with "in" is a load error; has() is the way.
	for _, when := range []string{`tool.name == "payment.charge" && args["payee"] == "x"`, `tool.name == "payment.charge" && "memo" in args`} {
		_, err := Load(builtinTools(t), file("p.yaml", "rules:\n  - name: r\n    when: '"+when+"'\n    action: deny\n"))
		if got := diags(t, err); len(got) != 1 || got[0].Code != CodeCompile {
			t.Errorf("%s: %v", when, err)
		}
	}
}

func TestTargets(t *testing.T) {
	t.Parallel()
	tools := builtinTools(t)
	tests := []struct {
		when string
		want []string // nil: any tool
	}{
		{when: `tool.egress`, want: nil},
		{when: `tool.name == "web.fetch"`, want: []string{"web.fetch"}},
		{when: `"web.fetch" == tool.name && label.integrity == "trusted"`, want: []string{"web.fetch"}},
		{when: `label.integrity == "trusted" && (tool.egress && tool.name == "web.fetch")`, want: []string{"web.fetch"}},
		{when: `tool.name in ["web.fetch", "payment.charge"]`, want: []string{"payment.charge", "web.fetch"}},
		{when: `tool.name in ["web.fetch", "payment.charge"] && tool.worker == "payment"`, want: []string{"payment.charge"}},
		{when: `tool.worker == "llm"`, want: []string{"llm.complete", "llm.extract"}},
		{when: `tool.name == "web.fetch" && tool.name == "payment.charge"`, want: []string{}},
		{when: `tool.name == "web.fetch" || tool.egress`, want: nil},
		{when: `!(tool.name == "web.fetch")`, want: nil},
		{when: `tool.name != "web.fetch"`, want: nil},
		{when: `has(tool.name) && tool.egress`, want: nil},
		{when: `[tool.name].exists(tool, tool == "web.fetch")`, want: nil},
	}
	env, err := newEnvs(tools)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		checked, iss := env.dynamic.Compile(tt.when)
		if iss.Err() != nil {
			t.Fatalf("%s: %v", tt.when, iss.Err())
		}
		got, ok := targets(checked.NativeRep(), tools)
		if !ok {
			got = nil
		} else if got == nil {
			got = []string{}
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("targets(%s) = %v, want %v", tt.when, got, tt.want)
		}
	}
}

// TestIndex: Decide evaluates, for a tool, the rules about any tool and
// the rules about that tool, and no other.
func TestIndex(t *testing.T) {
	t.Parallel()
	s := mustLoadTools(t, builtinTools(t), DefaultFile(), file("p.yaml", `rules:
  - {name: a, when: 'tool.name == "payment.charge" && args.amount > 1', action: deny}
  - {name: b, when: 'tool.name == "web.fetch" && args.url == ""', action: deny}
  - {name: c, when: 'tool.worker == "payment"', action: allow}
  - {name: d, when: 'tool.name == "payment.balance"', action: endorse}
`))
	plan := func(p *plan) []string {
		var out []string
		for _, phase := range [][]step{p.deny, p.lower, p.lateDeny, p.late} {
			for _, st := range phase {
				out = append(out, st.r.ref.Name)
			}
		}
		slices.Sort(out)
		return out
	}
	for tool, want := range map[string][]string{
		"payment.charge":  {"a", "c", "no-secrets-to-egress", "untrusted-never-pays-alone"},
		"payment.balance": {"c", "d", "no-secrets-to-egress", "untrusted-never-pays-alone"},
		"web.fetch":       {"b", "no-secrets-to-egress", "untrusted-never-pays-alone"},
	} {
		if got := plan(s.byTool[tool]); !reflect.DeepEqual(got, want) {
			t.Errorf("rules for %s: %v, want %v", tool, got, want)
		}
	}
	if got, want := plan(s.any), []string{"no-secrets-to-egress", "untrusted-never-pays-alone"}; !reflect.DeepEqual(got, want) {
		t.Errorf("rules for other tools: %v, want %v", got, want)
	}
	if got := s.byTool["payment.charge"].deny[0].p; got == s.rules[2].generic {
		t.Error("rule a runs with dynamic args for the tool it is about")
	}
	// For a call, the rules that need a flag the tool lacks drop out too:
	// tool.egress for a payment, tool.privileged for a fetch.
	if got, want := plan(s.forTool(charge).plan), []string{"a", "c", "untrusted-never-pays-alone"}; !reflect.DeepEqual(got, want) {
		t.Errorf("rules for a payment call: %v, want %v", got, want)
	}
	fetch := Tool{Name: "web.fetch", Worker: "web", Egress: true, Clearance: ifc.NewClearance(ifc.Untrusted)}
	if got, want := plan(s.forTool(fetch).plan), []string{"b", "no-secrets-to-egress"}; !reflect.DeepEqual(got, want) {
		t.Errorf("rules for a fetch call: %v, want %v", got, want)
	}
	// The same tool name with other flags is planned anew.
	fetch.Egress, fetch.Privileged = false, true
	if got, want := plan(s.forTool(fetch).plan), []string{"b", "untrusted-never-pays-alone"}; !reflect.DeepEqual(got, want) {
		t.Errorf("rules for a changed tool: %v, want %v", got, want)
	}
	if d := s.Decide(Input{Tool: fetch, Label: ifc.UntrustedFrom("web:x"), Args: map[string]any{"url": "u"}}); d.Action != Approve {
		t.Errorf("a privileged fetch with an untrusted label: %s by %v", d.Action, names(d.Rules))
	}
}

func TestFlagTests(t *testing.T) {
	t.Parallel()
	env, err := newEnvs(nil)
	if err != nil {
		t.Fatal(err)
	}
	for when, want := range map[string][]flagTest{
		`tool.egress && label.integrity == "untrusted"`:         {{"egress", true}},
		`!tool.privileged && tool.approvable == false`:          {{"privileged", false}, {"approvable", false}},
		`true == tool.privileged`:                               {{"privileged", true}},
		`tool.egress || tool.privileged`:                        nil,
		`!(tool.egress && tool.privileged)`:                     nil,
		`has(tool.egress) && label.integrity == "untrusted"`:    nil,
		`[true].exists(tool, tool) && label.sources.size() > 1`: nil,
	} {
		checked, iss := env.dynamic.Compile(when)
		if iss.Err() != nil {
			t.Fatalf("%s: %v", when, iss.Err())
		}
		if got := flagTests(checked.NativeRep()); !reflect.DeepEqual(got, want) {
			t.Errorf("flagTests(%s) = %v, want %v", when, got, want)
		}
	}
}

func TestLoadCaps(t *testing.T) {
	t.Parallel()
	s := mustLoadTools(t, builtinTools(t), file("p.yaml", `caps:
  - {name: hotel-spend, tool: payment.charge, per: payee, window: day, sum: amount, max_total: 300}
  - {name: charges-per-run, tool: payment.charge, window: run, max_count: 5}
  - {name: fetches, tool: web.fetch, window: day, max_count: 1000}
`))
	want := []Cap{
		{Ref: RuleRef{Name: "hotel-spend", File: "p.yaml", Line: 2, Col: 5}, Tools: []string{"payment.charge"}, Per: "payee", Window: PerDay, Sum: "amount", MaxTotal: 300},
		{Ref: RuleRef{Name: "charges-per-run", File: "p.yaml", Line: 3, Col: 5}, Tools: []string{"payment.charge"}, Window: PerRun, MaxCount: 5},
	}
	if got := s.Caps("payment.charge"); !reflect.DeepEqual(got, want) {
		t.Errorf("Caps = %+v\nwant %+v", got, want)
	}
	// A token budget over two tools: each counts against the one cap.
	s = mustLoadTools(t, builtinTools(t), file("p.yaml", `caps:
  - {name: model-tokens, tool: [llm.complete, llm.extract], window: day, max_tokens: 200000}
`))
	tokens := Cap{Ref: RuleRef{Name: "model-tokens", File: "p.yaml", Line: 2, Col: 5}, Tools: []string{"llm.complete", "llm.extract"}, Window: PerDay, MaxTokens: 200000}
	for _, tool := range []string{"llm.complete", "llm.extract"} {
		if got := s.Caps(tool); !reflect.DeepEqual(got, []Cap{tokens}) {
			t.Errorf("Caps(%s) = %+v\nwant %+v", tool, got, tokens)
		}
	}
	if !s.HasCaps() || len(s.Caps("web.fetch")) != 0 {
		t.Error("HasCaps or Caps of a tool without caps")
	}

	tests := []struct {
		name string
		src  string
		want []diag
	}{
		{name: "unknown tool", src: "caps:\n  - {name: c, tool: payment.chrge, window: run, max_count: 1}\n",
			want: []diag{{"p.yaml", 2, 21, CodeUnknownTool}}},
		{name: "unknown per", src: "caps:\n  - {name: c, tool: payment.charge, per: payyee, window: run, max_count: 1}\n",
			want: []diag{{"p.yaml", 2, 42, CodeUnknownArgument}}},
		{name: "sum of a string", src: "caps:\n  - {name: c, tool: payment.charge, sum: payee, window: day, max_total: 1}\n",
			want: []diag{{"p.yaml", 2, 42, CodeCapSum}}},
		{name: "max_total without sum", src: "caps:\n  - {name: c, tool: payment.charge, window: day, max_total: 1}\n",
			want: []diag{{"p.yaml", 2, 5, schemas.CodeSchemaMismatch}}},
		{name: "no budget", src: "caps:\n  - {name: c, tool: payment.charge, window: day}\n",
			want: []diag{{"p.yaml", 2, 5, schemas.CodeSchemaMissing}}},
		{name: "bad window", src: "caps:\n  - {name: c, tool: payment.charge, window: week, max_count: 1}\n",
			want: []diag{{"p.yaml", 2, 45, schemas.CodeSchemaMismatch}}},
		{name: "negative token budget", src: "caps:\n  - {name: c, tool: llm.complete, window: run, max_tokens: -5}\n",
			want: []diag{{"p.yaml", 2, 60, schemas.CodeSchemaMismatch}}},
		{name: "token budget per argument", src: "caps:\n  - {name: c, tool: llm.complete, per: model, window: run, max_tokens: 5}\n",
			want: []diag{{"p.yaml", 2, 40, CodeUnknownArgument}, {"p.yaml", 2, 72, CodeCapTokens}}},
		{name: "token budget and count", src: "caps:\n  - {name: c, tool: llm.complete, window: run, max_tokens: 5, max_count: 2}\n",
			want: []diag{{"p.yaml", 2, 60, CodeCapTokens}}},
		{name: "unknown tool in a list", src: "caps:\n  - {name: c, tool: [llm.extract, llm.completee], window: run, max_tokens: 5}\n",
			want: []diag{{"p.yaml", 2, 35, CodeUnknownTool}}},
		{name: "sum missing from a tool of the list", src: "caps:\n  - {name: c, tool: [payment.charge, web.fetch], sum: amount, window: day, max_total: 1}\n",
			want: []diag{{"p.yaml", 2, 55, CodeUnknownArgument}}},
		{name: "empty tool list", src: "caps:\n  - {name: c, tool: [], window: run, max_tokens: 5}\n",
			want: []diag{{"p.yaml", 2, 21, schemas.CodeSchemaMismatch}}},
		{name: "unknown field", src: "caps:\n  - {name: c, tool: llm.complete, window: run, tokens: 5}\n",
			want: []diag{{"p.yaml", 2, 5, schemas.CodeSchemaMissing}, {"p.yaml", 2, 48, schemas.CodeSchemaUnknown}}},
		{name: "name of a rule", src: "rules:\n  - {name: c, when: 'true', action: allow}\ncaps:\n  - {name: c, tool: payment.charge, window: run, max_count: 1}\n",
			want: []diag{{"p.yaml", 4, 12, CodeDuplicateCap}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(builtinTools(t), file("p.yaml", tt.src))
			if got := diags(t, err); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v\n%v", got, tt.want, err)
			}
		})
	}
}

// TestTargetedRuleErrors: a rule specialized for its tool still reports
// where it failed.
func TestTargetedRuleErrors(t *testing.T) {
	t.Parallel()
	for _, tools := range []Tools{nil, builtinTools(t)} {
		s := mustLoadTools(t, tools, file("p.yaml", `rules:
  - name: r
    when: tool.name == "payment.charge" && args.memo.size() > 3
    action: approve
`))
		d := s.Decide(Input{Tool: charge, Label: ifc.TrustedFrom("user"), Args: map[string]any{"payee": "x"}})
		if d.Action != Approve || len(d.Errors) != 1 || d.Errors[0] != "rule r (p.yaml:2:5): no such key at p.yaml:3:48" {
			t.Errorf("tools %v: %s, errors %q", tools != nil, d.Action, d.Errors)
		}
	}
}
