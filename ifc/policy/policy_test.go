package policy

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/schemas"
)

func file(name, src string) File { return File{Name: name, Src: []byte(src)} }

func readFile(t testing.TB, path string) File {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return File{Name: path, Src: b}
}

func mustLoad(t testing.TB, files ...File) *Set {
	t.Helper()
	s, err := Load(nil, files...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

// diag is what tests compare: code and position, never the wording.
type diag struct {
	File string
	Line int
	Col  int
	Code string
}

func (d diag) String() string { return fmt.Sprintf("%s:%d:%d %s", d.File, d.Line, d.Col, d.Code) }

func diags(t *testing.T, err error) []diag {
	t.Helper()
	ds, ok := schemas.AsDiagnostics(err)
	if !ok {
		t.Fatalf("error %v is not schemas.Diagnostics", err)
	}
	var out []diag
	for _, d := range ds {
		if d.Message == "" {
			t.Errorf("empty message for %s", d.Code)
		}
		out = append(out, diag{d.File, d.Line, d.Col, d.Code})
	}
	return out
}

func TestLoadDefault(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, DefaultFile())
	want := []RuleRef{
		{Name: "untrusted-never-pays-alone", File: DefaultFileName, Line: 21, Col: 5},
		{Name: "no-secrets-to-egress", File: DefaultFileName, Line: 33, Col: 5},
	}
	if got := s.Rules(); !reflect.DeepEqual(got, want) {
		t.Errorf("Rules() = %v, want %v", got, want)
	}
	if got := want[0].String(); got != "untrusted-never-pays-alone (builtin/default.yaml:21:5)" {
		t.Errorf("String() = %q", got)
	}
	if got := (RuleRef{Name: ClearanceRule, File: BuiltinFile}).String(); got != "clearance (builtin)" {
		t.Errorf("String() = %q", got)
	}
	// DefaultFile returns a copy: changing it does not change the next.
	f := DefaultFile()
	f.Src[0] = 'X'
	if DefaultFile().Src[0] == 'X' {
		t.Error("DefaultFile shares its bytes")
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files []File
		want  []diag
	}{
		{
			name:  "bad yaml",
			files: []File{file("p.yaml", "rules:\n  - name: a\n    when: [tool.egress\n    action: deny\n")},
			want:  []diag{{"p.yaml", 2, 1, schemas.CodeYAMLSyntax}},
		},
		{
			name:  "empty file",
			files: []File{file("p.yaml", "")},
			want:  []diag{{"p.yaml", 1, 1, schemas.CodeYAMLSyntax}},
		},
		{
			name:  "anchor",
			files: []File{file("p.yaml", "rules:\n  - &r\n    name: a\n    when: tool.egress\n    action: deny\n")},
			want:  []diag{{"p.yaml", 2, 5, schemas.CodeYAMLFeature}},
		},
		{
			name:  "unknown key in a rule",
			files: []File{file("p.yaml", "rules:\n  - name: a\n    whn: tool.egress\n    action: deny\n")},
			want:  []diag{{"p.yaml", 2, 5, schemas.CodeSchemaMissing}, {"p.yaml", 3, 5, schemas.CodeSchemaUnknown}},
		},
		{
			name:  "unknown top-level key",
			files: []File{file("p.yaml", "rules: []\nrulez: []\n")},
			want:  []diag{{"p.yaml", 2, 1, schemas.CodeSchemaUnknown}},
		},
		{
			name:  "bad action",
			files: []File{file("p.yaml", "rules:\n  - name: a\n    when: tool.egress\n    action: block\n")},
			want:  []diag{{"p.yaml", 4, 13, schemas.CodeSchemaMismatch}},
		},
		{
			name:  "bad name",
			files: []File{file("p.yaml", "rules:\n  - name: No Spaces\n    when: tool.egress\n    action: deny\n")},
			want:  []diag{{"p.yaml", 2, 11, schemas.CodeSchemaMismatch}},
		},
		{
			name:  "non-boolean rule",
			files: []File{file("p.yaml", "rules:\n  - name: a\n    when: size(label.secrecy) + 1\n    action: deny\n")},
			want:  []diag{{"p.yaml", 3, 11, CodeNotBoolean}},
		},
		{
			name:  "dyn is not boolean",
			files: []File{file("p.yaml", "rules:\n  - name: a\n    when: args.confirmed\n    action: allow\n")},
			want:  []diag{{"p.yaml", 3, 11, CodeNotBoolean}},
		},
		{
			// The text starts at column 12, after the quote. CEL reports
			// the third "&", rune 25 of the value; in the file the two
			// escapes \" before it take one column more each.
			name:  "syntax error in a double-quoted when",
			files: []File{file("p.yaml", "rules:\n  - name: a\n    when: \"label.integrity == \\\"x\\\" &&& tool.egress\"\n    action: deny\n")},
			want:  []diag{{"p.yaml", 3, 12 + 25 + 2, CodeCompile}},
		},
		{
			name:  "undeclared variable",
			files: []File{file("p.yaml", "rules:\n  - name: a\n    when: tool.egress && user.admin\n    action: deny\n")},
			want:  []diag{{"p.yaml", 3, 26, CodeCompile}},
		},
		{
			name:  "misspelled field",
			files: []File{file("p.yaml", "rules:\n  - name: a\n    when: label.integrty == 'untrusted'\n    action: deny\n")},
			want:  []diag{{"p.yaml", 3, 16, CodeCompile}},
		},
		{
			name:  "wrong function arguments",
			files: []File{file("p.yaml", "rules:\n  - name: a\n    when: flows_to(label, 'trusted')\n    action: deny\n")},
			want:  []diag{{"p.yaml", 3, 19, CodeCompile}},
		},
		{
			name: "duplicate names across two files",
			files: []File{
				file("a.yaml", "rules:\n  - name: same\n    when: tool.egress\n    action: deny\n"),
				file("b.yaml", "rules:\n  - name: other\n    when: tool.egress\n    action: deny\n  - name: same\n    when: tool.privileged\n    action: approve\n"),
			},
			want: []diag{{"b.yaml", 5, 11, CodeDuplicateRule}},
		},
		{
			name:  "duplicate name in one file",
			files: []File{file("a.yaml", "rules:\n  - name: same\n    when: tool.egress\n    action: deny\n  - name: same\n    when: tool.egress\n    action: deny\n")},
			want:  []diag{{"a.yaml", 5, 11, CodeDuplicateRule}},
		},
		{
			name:  "duplicate of a default rule",
			files: []File{DefaultFile(), file("a.yaml", "rules:\n  - name: no-secrets-to-egress\n    when: 'false'\n    action: allow\n")},
			want:  []diag{{"a.yaml", 2, 11, CodeDuplicateRule}},
		},
		{
			name:  "reserved name",
			files: []File{file("a.yaml", "rules:\n  - name: clearance\n    when: 'true'\n    action: allow\n")},
			want:  []diag{{"a.yaml", 2, 11, CodeReservedRule}},
		},
		{
			name:  "declassify without tags",
			files: []File{file("a.yaml", "rules:\n  - name: d\n    when: 'true'\n    action: declassify\n")},
			want:  []diag{{"a.yaml", 4, 13, CodeTags}},
		},
		{
			name:  "tags on an endorse rule",
			files: []File{file("a.yaml", "rules:\n  - name: d\n    when: 'true'\n    action: endorse\n    tags: [pii]\n")},
			want:  []diag{{"a.yaml", 5, 5, CodeTags}},
		},
		{
			name:  "empty tags",
			files: []File{file("a.yaml", "rules:\n  - name: d\n    when: 'true'\n    action: declassify\n    tags: []\n")},
			want:  []diag{{"a.yaml", 5, 11, schemas.CodeSchemaMismatch}},
		},
		{
			name:  "unknown registry",
			files: []File{file("a.yaml", "rules:\n  - name: r\n    when: args.payee in registry.payes\n    action: deny\nregistries:\n  payees: [x]\n")},
			want:  []diag{{"a.yaml", 3, 33, CodeUnknownRegistry}},
		},
		{
			name:  "unknown registry by index",
			files: []File{file("a.yaml", "rules:\n  - name: r\n    when: args.payee in registry['payes']\n    action: deny\n")},
			want:  []diag{{"a.yaml", 3, 33, CodeUnknownRegistry}},
		},
		{
			name: "duplicate registry",
			files: []File{
				file("a.yaml", "registries:\n  payees: [x]\n"),
				file("b.yaml", "registries:\n  contacts: []\n  payees: [y]\n"),
			},
			want: []diag{{"b.yaml", 3, 3, CodeDuplicateRegistry}},
		},
		{
			name:  "registry of numbers",
			files: []File{file("a.yaml", "registries:\n  payees: [1, 2]\n")},
			want:  []diag{{"a.yaml", 2, 12, schemas.CodeSchemaMismatch}, {"a.yaml", 2, 15, schemas.CodeSchemaMismatch}},
		},
		{
			name:  "expression too long",
			files: []File{file("a.yaml", "rules:\n  - name: r\n    when: "+strings.Repeat("true && ", MaxRuleSize/8+1)+"true\n    action: deny\n")},
			want:  []diag{{"a.yaml", 3, 11, CodeCompile}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(nil, tt.files...)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if got := diags(t, err); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %v\nwant %v\n%v", got, tt.want, err)
			}
		})
	}
}

// TestLoadReportsEverything checks that one Load reports every problem of
// every file, sorted.
func TestLoadReportsEverything(t *testing.T) {
	t.Parallel()
	a := `rules:
  - name: one
    when: tool.egress &&
    action: deny
  - name: two
    when: 42
    action: deny
  - name: three
    when: args.amount <= 50
    action: endorse
    colour: red
  - name: four
    when: label.integrity
    action: approve
`
	b := `rules:
  - name: one
    when: nope
    action: allow
registries:
  payees: [x]
  extra: true
`
	_, err := Load(nil, file("a.yaml", a), file("b.yaml", b))
	want := []diag{
		{"a.yaml", 3, 24, CodeCompile},
		{"a.yaml", 6, 11, schemas.CodeSchemaMismatch},
		{"a.yaml", 11, 5, schemas.CodeSchemaUnknown},
		{"a.yaml", 13, 11, CodeNotBoolean},
		{"b.yaml", 2, 11, CodeDuplicateRule},
		{"b.yaml", 3, 11, CodeCompile},
		{"b.yaml", 7, 10, schemas.CodeSchemaMismatch},
	}
	if got := diags(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v\n%v", got, want, err)
	}
}

// TestScalarStyles checks that a CEL error maps to its place in the file
// in every YAML scalar style. The error is always the undeclared "nope".
func TestScalarStyles(t *testing.T) {
	t.Parallel()
	rule := func(when string) string {
		return "rules:\n  - name: a\n    when:" + when + "\n    action: deny\n"
	}
	tests := []struct {
		name      string
		src       string
		line, col int
	}{
		{name: "plain", src: rule(" tool.egress && nope"), line: 3, col: 26},
		{name: "plain in a flow mapping", src: "rules:\n  - {name: b, when: tool.egress && nope, action: deny}\n", line: 2, col: 36},
		{name: "single-quoted", src: rule(" 'tool.name == ''x'' && nope'"), line: 3, col: 34},
		{name: "double-quoted", src: rule(` "tool.name == \"x\" && nope"`), line: 3, col: 34},
		{name: "double-quoted with unicode escape", src: rule(` "tool.name == '\u00e9' && nope"`), line: 3, col: 37},
		{name: "double-quoted after multibyte", src: rule(` "tool.name == 'éé' && nope"`), line: 3, col: 33},
		{name: "double-quoted on two lines", src: rule(" \"tool.egress\n      && nope\""), line: 4, col: 10},
		{name: "literal", src: rule(" |\n      tool.egress &&\n        nope"), line: 5, col: 9},
		{name: "literal with keep", src: rule(" |+\n      tool.egress\n      && nope\n"), line: 5, col: 10},
		{name: "folded", src: rule(" >\n      tool.egress\n      && nope"), line: 5, col: 10},
		{name: "folded after a blank line", src: rule(" >-\n\n      tool.egress\n\n      && nope"), line: 7, col: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(nil, file("p.yaml", tt.src))
			want := []diag{{"p.yaml", tt.line, tt.col, CodeCompile}}
			if got := diags(t, err); !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v\n%s\n%v", got, want, tt.src, err)
			}
		})
	}
}

func TestFunctions(t *testing.T) {
	t.Parallel()
	rules := `rules:
  - name: flows
    when: flows_to(arg_labels.x, tool.clearance)
    action: approve
  - name: from-web
    when: from_source(label, "web:")
    action: approve
  - name: constructed
    when: 'flows_to(policy.label{integrity: "trusted", secrecy: ["pii"]}, policy.clearance{integrity: "untrusted", secrecy: ["pii"]})'
    action: approve
`
	s := mustLoad(t, file("f.yaml", rules))
	tool := Tool{Name: "t.t", Approvable: true, Clearance: ifc.NewClearance(ifc.Untrusted, "pii")}
	tests := []struct {
		name  string
		label ifc.Label
		x     ifc.Label
		want  []string
	}{
		{name: "x flows", label: ifc.TrustedFrom("user"), x: ifc.TrustedFrom().WithSecrecy("pii"), want: []string{"flows", "constructed"}},
		{name: "x too secret", label: ifc.TrustedFrom("user"), x: ifc.TrustedFrom().WithSecrecy("payment"), want: []string{"constructed"}},
		{name: "from the web", label: ifc.UntrustedFrom("web:a.example"), x: ifc.UntrustedFrom(), want: []string{"flows", "from-web", "constructed"}},
		{name: "prefix is a prefix", label: ifc.UntrustedFrom("webhook:x"), x: ifc.UntrustedFrom(), want: []string{"flows", "constructed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := s.Decide(Input{Tool: tool, Label: tt.label, ArgLabels: map[string]ifc.Label{"x": tt.x}})
			if got := names(d.Rules); !reflect.DeepEqual(got, tt.want) || len(d.Errors) > 0 {
				t.Errorf("rules %v (errors %v), want %v", got, d.Errors, tt.want)
			}
		})
	}
}

func names(rs []RuleRef) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

// TestCases runs testdata/cases.yaml against the default policy and
// testdata/policy.yaml, the way `sluice policy test` runs a cases file.
func TestCases(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, DefaultFile(), readFile(t, "testdata/policy.yaml"))
	cases, err := LoadCases(readFile(t, "testdata/cases.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 10 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			if err := c.Check(s.Decide(c.Input)); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestCaseCheck(t *testing.T) {
	t.Parallel()
	c := Case{Name: "c", File: "cases.yaml", Line: 3, Col: 5, Want: Approve, WantRules: []string{"clearance", "r"}}
	ok := Decision{Action: Approve, Rules: []RuleRef{{Name: "r"}, {Name: "clearance"}}}
	if err := c.Check(ok); err != nil {
		t.Errorf("Check(%v) = %v", ok, err)
	}
	for _, d := range []Decision{
		{Action: Deny, Rules: ok.Rules},
		{Action: Approve, Rules: []RuleRef{{Name: "r"}}},
		{Action: Approve, Rules: append(slices.Clone(ok.Rules), RuleRef{Name: "s"})},
	} {
		err := c.Check(d)
		if err == nil || !strings.Contains(err.Error(), `case "c" (cases.yaml:3:5)`) {
			t.Errorf("Check(%v) = %v", d, err)
		}
	}
	c.WantRules = nil // rules not checked
	if err := c.Check(Decision{Action: Approve, Rules: []RuleRef{{Name: "x"}}}); err != nil {
		t.Errorf("Check without rules: %v", err)
	}
}

func TestLoadCasesErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		want []diag
	}{
		{name: "missing want", src: "cases:\n  - name: a\n    tool: {name: x.y}\n    label: {integrity: trusted}\n", want: []diag{{"c.yaml", 2, 5, schemas.CodeSchemaMissing}}},
		{name: "label without integrity", src: "cases:\n  - name: a\n    tool: {name: x.y}\n    label: {secrecy: [pii]}\n    want: {action: allow}\n", want: []diag{{"c.yaml", 4, 12, schemas.CodeSchemaMissing}}},
		{name: "unknown key", src: "cases:\n  - name: a\n    tool: {name: x.y, clearence: {}}\n    label: {integrity: trusted}\n    want: {action: allow}\n", want: []diag{{"c.yaml", 3, 23, schemas.CodeSchemaUnknown}}},
		{name: "bad action", src: "cases:\n  - name: a\n    tool: {name: x.y}\n    label: {integrity: trusted}\n    want: {action: endorse}\n", want: []diag{{"c.yaml", 5, 20, schemas.CodeSchemaMismatch}}},
		{name: "duplicate case", src: "cases:\n  - name: a\n    tool: {name: x.y}\n    label: {integrity: trusted}\n    want: {action: allow}\n  - name: a\n    tool: {name: x.y}\n    label: {integrity: trusted}\n    want: {action: allow}\n", want: []diag{{"c.yaml", 6, 11, CodeDuplicateCase}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadCases(file("c.yaml", tt.src))
			if got := diags(t, err); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v\n%v", got, tt.want, err)
			}
		})
	}
}

func TestLoadCasesDefaults(t *testing.T) {
	t.Parallel()
	cs, err := LoadCases(file("c.yaml", "cases:\n  - name: a\n    tool: {name: x.y}\n    label: {integrity: untrusted}\n    args: {n: 3, f: 1.5, l: [1]}\n    want: {action: deny}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := cs[0]
	if c.Input.Tool.Clearance.Integrity() != ifc.Trusted || len(c.Input.Tool.Clearance.Secrecy()) != 0 {
		t.Errorf("missing clearance = %v, want trusted with no secrecy", c.Input.Tool.Clearance)
	}
	if c.WantRules != nil {
		t.Errorf("WantRules = %v, want nil when not given", c.WantRules)
	}
	want := map[string]any{"n": int64(3), "f": 1.5, "l": []any{int64(1)}}
	if !reflect.DeepEqual(c.Input.Args, want) {
		t.Errorf("Args = %#v, want %#v", c.Input.Args, want)
	}
	if c.Line != 2 || c.Col != 5 {
		t.Errorf("case at %d:%d, want 2:5", c.Line, c.Col)
	}
}

func TestDecideReasonsAndErrors(t *testing.T) {
	t.Parallel()
	const secret = "acct_s3cr3t"
	s := mustLoad(t, DefaultFile(), file("p.yaml", `rules:
  - name: by-key
    when: args[args.which] == "x"
    action: deny
  - name: missing
    when: args.payee == "acct"
    action: approve
    reason: checks the payee
  - name: too-costly
    when: args.items.all(a, args.items.all(b, args.items.all(c, a + b + c >= 0)))
    action: approve
`))
	items := make([]any, 200)
	for i := range items {
		items[i] = int64(i)
	}
	d := s.Decide(Input{
		Tool:  Tool{Name: "payment.charge", Privileged: true, Approvable: true, Clearance: ifc.NewClearance(ifc.Trusted, "payment", "pii")},
		Label: ifc.UntrustedFrom("web:x.example"),
		Args:  map[string]any{"which": secret, "items": items},
	})
	if d.Action != Deny {
		t.Errorf("Action = %s, want deny (by-key fails closed)", d.Action)
	}
	if got, want := names(d.Rules), []string{"by-key"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Rules = %v, want %v", got, want)
	}
	if len(d.Reasons) != len(d.Rules) {
		t.Errorf("%d reasons for %d rules", len(d.Reasons), len(d.Rules))
	}
	// A deny decides without the approve and allow rules: their errors
	// are not evaluated, so not recorded.
	if len(d.Errors) != 1 || !strings.Contains(d.Errors[0], "by-key (p.yaml:2:5): no such key at p.yaml:3:") {
		t.Fatalf("Errors = %q, want the error of by-key", d.Errors)
	}
	all := slices.Clone(d.Errors)
	// With a key that exists, by-key does not match; the approve rules
	// fail closed and hold the call.
	d = s.Decide(Input{
		Tool:  Tool{Name: "payment.charge", Privileged: true, Approvable: true, Clearance: ifc.NewClearance(ifc.Trusted, "payment", "pii")},
		Label: ifc.UntrustedFrom("web:x.example"),
		Args:  map[string]any{"which": "which", "items": items, "note": secret},
	})
	if d.Action != Approve || len(d.Errors) != 2 {
		t.Fatalf("Decide = %s, errors %q; want approve with two errors", d.Action, d.Errors)
	}
	for i, want := range []string{"missing (p.yaml:5:5): no such key at p.yaml:6:15", "too-costly (p.yaml:9:5): cost limit"} {
		if !strings.Contains(d.Errors[i], want) {
			t.Errorf("Errors[%d] = %q, want it to contain %q", i, d.Errors[i], want)
		}
	}
	for _, e := range append(all, d.Errors...) {
		if strings.Contains(e, secret) {
			t.Errorf("error %q carries an argument value", e)
		}
	}

	// Without the failing deny rule, the failing approve rules hold the
	// call, with the clearance check and the default rule.
	s = mustLoad(t, DefaultFile(), file("p.yaml", `rules:
  - name: missing
    when: args.payee == "acct"
    action: approve
    reason: checks the payee
`))
	d = s.Decide(Input{
		Tool:  Tool{Name: "payment.charge", Privileged: true, Approvable: true, Clearance: ifc.NewClearance(ifc.Trusted, "payment", "pii")},
		Label: ifc.UntrustedFrom("web:x.example"),
	})
	want := Decision{
		Action: Approve,
		Rules: []RuleRef{
			{Name: ClearanceRule, File: BuiltinFile},
			{Name: "untrusted-never-pays-alone", File: DefaultFileName, Line: 21, Col: 5},
			{Name: "missing", File: "p.yaml", Line: 2, Col: 5},
		},
		Reasons: []string{
			"context label untrusted{} does not flow to clearance trusted{payment,pii}",
			"untrusted content cannot decide a privileged call",
			"checks the payee",
		},
		Label:  ifc.UntrustedFrom("web:x.example"),
		Errors: []string{"rule missing (p.yaml:2:5): no such key at p.yaml:3:15"},
	}
	if d.held == nil {
		t.Error("a decision to hold cannot be approved")
	}
	d.held = nil
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Decide =\n%#v\nwant\n%#v", d, want)
	}
}

func TestDecideWithoutRules(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, file("empty.yaml", "rules: []\n"))
	tool := Tool{Name: "web.fetch", Egress: true, Clearance: ifc.NewClearance(ifc.Untrusted)}
	tests := []struct {
		name  string
		tool  Tool
		label ifc.Label
		want  Action
		rules []string
	}{
		{name: "clearance passes", tool: tool, label: ifc.UntrustedFrom("web:a"), want: Allow, rules: []string{}},
		{name: "clearance fails, not approvable", tool: tool, label: ifc.TrustedFrom().WithSecrecy("pii"), want: Deny, rules: []string{ClearanceRule}},
		{name: "clearance fails, approvable", tool: Tool{Approvable: true, Clearance: ifc.NewClearance(ifc.Trusted)}, label: ifc.UntrustedFrom(), want: Approve, rules: []string{ClearanceRule}},
		{name: "zero clearance refuses secrets", tool: Tool{}, label: ifc.TrustedFrom().WithSecrecy("calendar"), want: Deny, rules: []string{ClearanceRule}},
		{name: "zero label is untrusted", tool: Tool{Clearance: ifc.NewClearance(ifc.Trusted)}, label: ifc.Label{}, want: Deny, rules: []string{ClearanceRule}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := s.Decide(Input{Tool: tt.tool, Label: tt.label})
			if d.Action != tt.want || !reflect.DeepEqual(names(d.Rules), tt.rules) {
				t.Errorf("Decide = %s by %v, want %s by %v", d.Action, names(d.Rules), tt.want, tt.rules)
			}
		})
	}
	var nilSet *Set
	if d := nilSet.Decide(Input{Tool: tool, Label: ifc.UntrustedFrom()}); d.Action != Deny {
		t.Errorf("nil Set decides %s, want deny", d.Action)
	}
}

// TestConcurrentDecide hammers one Set from many goroutines; run it with
// -race.
func TestConcurrentDecide(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, DefaultFile(), readFile(t, "testdata/policy.yaml"))
	cases, err := LoadCases(readFile(t, "testdata/cases.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 16, 50
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range rounds {
				c := cases[(w+i)%len(cases)]
				if err := c.Check(s.Decide(c.Input)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestLoadErrorIsDiagnostics(t *testing.T) {
	t.Parallel()
	_, err := Load(nil, file("p.yaml", "rules: 3\n"))
	var ds schemas.Diagnostics
	if !errors.As(err, &ds) || len(ds) != 1 || ds[0].Code != schemas.CodeSchemaMismatch {
		t.Errorf("error = %v, want one schema diagnostic", err)
	}
}
