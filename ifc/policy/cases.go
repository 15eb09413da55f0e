package policy

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/schemas"
)

// A cases file holds decision tests: each case is one call, described by
// the labels, tool and arguments a [Set] decides on, and the decision it
// must get. It is what `sluice policy test` reads, and what this package's
// own tests load from testdata/cases.yaml:
//
//	cases:
//	  - name: trusted arguments may pay        # required, unique in the file
//	    tool:                                  # required
//	      name: payment.charge                 # required
//	      worker: payment
//	      privileged: true                     # flags: missing means false
//	      approvable: true
//	      egress: false
//	      clearance:                           # missing integrity means trusted,
//	        integrity: trusted                 # missing secrecy means none
//	        secrecy: [payment]
//	    label:                                 # the context label; required
//	      integrity: trusted                   # required
//	      secrecy: []
//	      sources: [user]
//	    arg_labels:                            # optional, by argument name
//	      amount: {integrity: trusted, sources: [user]}
//	    args: {amount: 120, payee: acct_hotel_1}   # optional
//	    run: {id: r1, flow: book-trip, step: pay}  # optional
//	    want:
//	      action: allow                        # required: allow, deny or approve
//	      rules: []                            # optional: when given, exactly the
//	                                           # rules the decision names, in any
//	                                           # order ("clearance" for the
//	                                           # built-in check; an allow names
//	                                           # the endorse and declassify rules
//	                                           # that matched)
//
// The cases run against whatever policy files the runner loads, the
// default policy first.

//go:embed cases.json
var casesSchema []byte

// Case is one decision test.
type Case struct {
	Name      string
	File      string
	Line, Col int // where the case starts
	Input     Input
	Want      Action
	// WantRules are the names of the rules the decision must name, in any
	// order; nil when the case does not check them.
	WantRules []string
}

// LoadCases reads a cases file. On failure the error is a
// schemas.Diagnostics holding every problem, sorted.
func LoadCases(f File) ([]Case, error) {
	var raw any
	if err := json.Unmarshal(casesSchema, &raw); err != nil {
		return nil, fmt.Errorf("load cases schema: %w", err)
	}
	sch, err := schemas.Compile(raw)
	if err != nil {
		return nil, fmt.Errorf("load cases schema: %w", err)
	}
	doc, ds := schemas.ParseYAML(f.Name, f.Src)
	if doc == nil {
		return nil, ds.Err()
	}
	ds = append(ds, doc.Validate(sch)...)
	if err := ds.Err(); err != nil {
		return nil, err
	}
	var file struct {
		Cases []struct {
			Name      string               `json:"name"`
			Tool      caseTool             `json:"tool"`
			Label     ifc.Label            `json:"label"`
			ArgLabels map[string]ifc.Label `json:"arg_labels"`
			Run       struct {
				ID   string `json:"id"`
				Flow string `json:"flow"`
				Step string `json:"step"`
			} `json:"run"`
			Want struct {
				Action Action   `json:"action"`
				Rules  []string `json:"rules"`
			} `json:"want"`
		} `json:"cases"`
	}
	// The document is valid against the schema, so decoding its JSON form
	// fails only on what the schema cannot say; report that at the file.
	b, err := json.Marshal(doc.Value)
	if err == nil {
		err = json.Unmarshal(b, &file)
	}
	if err != nil {
		ds.Add(f.Name, schemas.Pos{Line: 1, Col: 1}, schemas.CodeSchemaMismatch, "decode cases: %v", err)
		return nil, ds.Err()
	}
	var out []Case
	first := map[string]schemas.Pos{}
	for i, c := range file.Cases {
		ptr := schemas.Pointer("cases", i)
		pos := doc.Pos(ptr)
		if p, dup := first[c.Name]; dup {
			ds.Add(f.Name, doc.Pos(ptr+"/name"), CodeDuplicateCase, "case %q is already defined at line %d", c.Name, p.Line)
			continue
		}
		first[c.Name] = pos
		var rules []string
		if c.Want.Rules != nil {
			rules = slices.Clone(c.Want.Rules)
		}
		out = append(out, Case{
			Name: c.Name, File: f.Name, Line: pos.Line, Col: pos.Col,
			Input: Input{
				Tool: Tool{Name: c.Tool.Name, Worker: c.Tool.Worker, Privileged: c.Tool.Privileged,
					Approvable: c.Tool.Approvable, Egress: c.Tool.Egress, Clearance: c.Tool.Clearance},
				Label:     c.Label,
				ArgLabels: c.ArgLabels,
				Args:      caseArgs(doc, i),
				Run:       Run{ID: c.Run.ID, Flow: c.Run.Flow, Step: c.Run.Step},
			},
			Want:      c.Want.Action,
			WantRules: rules,
		})
	}
	if err := ds.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// caseArgs returns the args of case i as the YAML decoder produced them,
// so that integers stay int64 and other numbers float64.
func caseArgs(doc *schemas.Document, i int) map[string]any {
	root, _ := doc.Value.(map[string]any)
	cases, _ := root["cases"].([]any)
	c, _ := cases[i].(map[string]any)
	args, _ := c["args"].(map[string]any)
	return args
}

type caseTool struct {
	Name       string        `json:"name"`
	Worker     string        `json:"worker"`
	Privileged bool          `json:"privileged"`
	Approvable bool          `json:"approvable"`
	Egress     bool          `json:"egress"`
	Clearance  ifc.Clearance `json:"clearance"`
}

// UnmarshalJSON defaults a missing clearance to trusted with no secrecy,
// as a manifest does.
func (t *caseTool) UnmarshalJSON(b []byte) error {
	type plain caseTool
	p := plain{Clearance: ifc.NewClearance(ifc.Trusted)}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*t = caseTool(p)
	return nil
}

// Check compares a decision with what the case wants, and returns nil when
// they agree, else a *[CaseFailure].
func (c Case) Check(d Decision) error {
	got := ruleNames(d.Rules)
	okRules := true
	if c.WantRules != nil {
		want := slices.Sorted(slices.Values(c.WantRules))
		have := slices.Sorted(slices.Values(got))
		okRules = slices.Equal(want, have)
	}
	if d.Action == c.Want && okRules {
		return nil
	}
	return &CaseFailure{Case: c, Got: d}
}

// CaseFailure is a decision that is not the one its case wants.
type CaseFailure struct {
	Case Case
	Got  Decision
}

// Error says, on one line, which case failed, where it is written, and
// what was wanted and got.
func (f *CaseFailure) Error() string {
	c := f.Case
	want := string(c.Want)
	if c.WantRules != nil {
		want += " by [" + strings.Join(c.WantRules, " ") + "]"
	}
	return fmt.Sprintf("case %q (%s:%d:%d): got %s by [%s], want %s", c.Name, c.File, c.Line, c.Col,
		f.Got.Action, strings.Join(ruleNames(f.Got.Rules), " "), want)
}

// Diff shows, one item per line and indented, what differs: the action
// wanted and got, the rules the case wants that the decision does not
// name ("- name") and those it names that the case does not want
// ("+ name"), and the errors of rules that failed while deciding.
func (f *CaseFailure) Diff() string {
	var b strings.Builder
	c, d := f.Case, f.Got
	if d.Action != c.Want {
		fmt.Fprintf(&b, "    action: want %s, got %s\n", c.Want, d.Action)
	} else {
		fmt.Fprintf(&b, "    action: %s, as wanted\n", d.Action)
	}
	got := ruleNames(d.Rules)
	if c.WantRules != nil {
		fmt.Fprintf(&b, "    rules:  want [%s]\n", strings.Join(slices.Sorted(slices.Values(c.WantRules)), " "))
		fmt.Fprintf(&b, "            got  [%s]\n", strings.Join(slices.Sorted(slices.Values(got)), " "))
		for _, n := range slices.Sorted(slices.Values(c.WantRules)) {
			if !slices.Contains(got, n) {
				fmt.Fprintf(&b, "            - %s (wanted, not named)\n", n)
			}
		}
		for _, n := range slices.Sorted(slices.Values(got)) {
			if !slices.Contains(c.WantRules, n) {
				fmt.Fprintf(&b, "            + %s (named, not wanted)\n", n)
			}
		}
	} else {
		fmt.Fprintf(&b, "    rules:  [%s] (not checked)\n", strings.Join(got, " "))
	}
	for i, r := range d.Rules {
		if i < len(d.Reasons) && d.Reasons[i] != "" {
			fmt.Fprintf(&b, "    %s: %s\n", r.Name, d.Reasons[i])
		}
	}
	for _, e := range d.Errors {
		fmt.Fprintf(&b, "    error: %s\n", e)
	}
	return b.String()
}

func ruleNames(rs []RuleRef) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}
