package policy

import (
	"slices"
	"strings"

	"github.com/sluicehq/sluice/schemas"
)

// Window is the span a cap's budget covers.
type Window string

const (
	// PerRun: one budget for each run.
	PerRun Window = "run"
	// PerDay: one budget for each calendar day, in UTC, across runs and
	// across restarts of the orchestrator.
	PerDay Window = "day"
)

// Cap is a spend, count or token budget on the calls of one tool or of
// several, from the caps: list of a policy file:
//
//	caps:
//	  - name: hotel-spend        # unique among rules and caps
//	    tool: payment.charge     # or a list: [llm.chat, llm.extract]
//	    per: payee               # optional: one budget per value of this argument
//	    window: day              # run or day
//	    sum: amount              # the argument whose values are added up ...
//	    max_total: 300           # ... to at most this
//	    max_count: 5             # and/or at most this many calls
//	  - name: model-tokens
//	    tool: [llm.chat, llm.extract]
//	    window: run
//	    max_tokens: 200000       # the tokens the calls spent at a model API
//
// The orchestrator keeps the budgets and enforces them on every call it
// is about to deliver — allowed, endorsed or approved alike — so that
// splitting one large payment into small ones gains nothing. Decide does
// not: a cap depends on the calls before, not on one call. The calls of
// all the tools of a cap count against one budget.
//
// A token budget cannot be reserved, as a call's tokens are known only
// once it is answered: it refuses the next call once the tokens already
// spent reach it, so the last call let through may pass it by its own
// tokens.
type Cap struct {
	Ref RuleRef
	// Tools are the tools whose calls count, in the order written.
	Tools  []string
	Per    string // argument name; "" for one budget for all the tool's calls
	Window Window
	Sum    string // argument name; "" when the cap only counts calls
	// MaxTotal bounds the sum of Sum over the window (when Sum is set).
	MaxTotal float64
	// MaxCount bounds the number of calls over the window; 0 means no
	// bound on the count.
	MaxCount int64
	// MaxTokens bounds the tokens (input and output) the calls spent at
	// a model API over the window; 0 means the cap is not a token
	// budget. A token budget has no Per, Sum or MaxCount.
	MaxTokens int64
}

// Caps returns the caps on tool, in load order.
func (s *Set) Caps(tool string) []Cap {
	if s == nil {
		return nil
	}
	var out []Cap
	for _, c := range s.caps {
		if slices.Contains(c.Tools, tool) {
			out = append(out, c)
		}
	}
	return out
}

// HasCaps reports whether any cap is loaded.
func (s *Set) HasCaps() bool { return s != nil && len(s.caps) > 0 }

func (l *loader) cap(doc *schemas.Document, i int, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	ptr := schemas.Pointer("caps", i)
	pos := doc.Pos(ptr)
	name, _ := m["name"].(string)
	c := Cap{Ref: RuleRef{Name: name, File: doc.File, Line: pos.Line, Col: pos.Col}}
	keep := l.claim(doc, ptr, name, CodeDuplicateCap, c.Ref)
	c.Tools = capTools(m["tool"])
	c.Per, _ = m["per"].(string)
	c.Sum, _ = m["sum"].(string)
	w, _ := m["window"].(string)
	c.Window = Window(w)
	c.MaxTotal = toFloat(m["max_total"])
	c.MaxCount, _ = m["max_count"].(int64)
	c.MaxTokens, _ = m["max_tokens"].(int64)
	if len(c.Tools) == 0 || c.Window != PerRun && c.Window != PerDay || c.Sum == "" && c.MaxCount == 0 && c.MaxTokens == 0 {
		return // the schema check reported it
	}
	keep = l.tokensAlone(doc, ptr, c) && keep
	if l.tools != nil {
		for j, tool := range c.Tools {
			keep = l.capTool(doc, ptr, toolPointer(ptr, m, j), m, name, tool) && keep
		}
	}
	if keep {
		l.set.caps = append(l.set.caps, c)
	}
}

// tokensAlone reports whether a token budget is a cap of its own, as it
// must be: one budget per window, without per, sum or max_count.
func (l *loader) tokensAlone(doc *schemas.Document, ptr string, c Cap) bool {
	if c.MaxTokens == 0 || c.Per == "" && c.Sum == "" && c.MaxCount == 0 {
		return true
	}
	l.ds.Add(doc.File, doc.Pos(ptr+"/max_tokens"), CodeCapTokens,
		"cap %q: a token budget (max_tokens) is one budget per %s; write per, sum and max_count in a cap of their own", c.Ref.Name, c.Window)
	return false
}

// toolPointer points at the j-th tool of the cap at ptr: its tool: value,
// or the j-th element when that is a list.
func toolPointer(ptr string, m map[string]any, j int) string {
	if _, list := m["tool"].([]any); list {
		return ptr + schemas.Pointer("tool", j)
	}
	return ptr + "/tool"
}

// toFloat is a YAML number as a float64; 0 for anything else.
func toFloat(v any) float64 {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case float64:
		return x
	}
	return 0
}

// capTools is the tool: of a cap, one name or a list of them.
func capTools(v any) []string {
	if s, ok := v.(string); ok && s != "" {
		return []string{s}
	}
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		if s, ok := x.(string); ok && s != "" {
			out = append(out, s)
		}
	}
	return out
}

// capTool checks one tool of a cap against the catalog: the tool exists
// (at tptr), and has the cap's per and sum arguments, sum a number. It
// reports false when the cap cannot be kept.
func (l *loader) capTool(doc *schemas.Document, ptr, tptr string, m map[string]any, name, tool string) bool {
	sch, known := l.tools[tool]
	if !known {
		l.ds.Add(doc.File, doc.Pos(tptr), CodeUnknownTool, "cap %q: no tool %q (tools are: %s)", name, tool, strings.Join(sortedKeys(l.tools), ", "))
		return false
	}
	args, typed := l.tools.arguments(tool)
	keep := true
	for _, key := range []string{"per", "sum"} {
		arg, _ := m[key].(string)
		if arg == "" || !typed {
			continue
		}
		if !slices.Contains(args, arg) {
			l.ds.Add(doc.File, doc.Pos(ptr+"/"+key), CodeUnknownArgument, "cap %q: %s has no argument %q (its arguments: %s)", name, tool, arg, strings.Join(args, ", "))
			keep = false
			continue
		}
		if key == "sum" {
			if p, err := sch.Property(arg); err == nil && p != nil && p.Type() != "number" && p.Type() != "integer" {
				l.ds.Add(doc.File, doc.Pos(ptr+"/sum"), CodeCapSum, "cap %q: argument %q of %s is not a number", name, arg, tool)
				keep = false
			}
		}
	}
	return keep
}

func sortedKeys(t Tools) []string {
	out := make([]string, 0, len(t))
	for k := range t {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
