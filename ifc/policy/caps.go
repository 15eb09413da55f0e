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

// Cap is a spend or count budget on the calls of one tool, from the caps:
// list of a policy file:
//
//	caps:
//	  - name: hotel-spend        # unique among rules and caps
//	    tool: payment.charge
//	    per: payee               # optional: one budget per value of this argument
//	    window: day              # run or day
//	    sum: amount              # the argument whose values are added up ...
//	    max_total: 300           # ... to at most this
//	    max_count: 5             # and/or at most this many calls
//
// The orchestrator keeps the budgets and enforces them on every call it
// is about to deliver — allowed, endorsed or approved alike — so that
// splitting one large payment into small ones gains nothing. Decide does
// not: a cap depends on the calls before, not on one call.
type Cap struct {
	Ref    RuleRef
	Tool   string
	Per    string // argument name; "" for one budget for all the tool's calls
	Window Window
	Sum    string // argument name; "" when the cap only counts calls
	// MaxTotal bounds the sum of Sum over the window (when Sum is set).
	MaxTotal float64
	// MaxCount bounds the number of calls over the window; 0 means no
	// bound on the count.
	MaxCount int64
}

// Caps returns the caps on tool, in load order.
func (s *Set) Caps(tool string) []Cap {
	if s == nil {
		return nil
	}
	var out []Cap
	for _, c := range s.caps {
		if c.Tool == tool {
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
	c.Tool, _ = m["tool"].(string)
	c.Per, _ = m["per"].(string)
	c.Sum, _ = m["sum"].(string)
	w, _ := m["window"].(string)
	c.Window = Window(w)
	switch x := m["max_total"].(type) {
	case int64:
		c.MaxTotal = float64(x)
	case float64:
		c.MaxTotal = x
	}
	if n, ok := m["max_count"].(int64); ok {
		c.MaxCount = n
	}
	if c.Tool == "" || c.Window != PerRun && c.Window != PerDay || c.Sum == "" && c.MaxCount == 0 {
		return // the schema check reported it
	}
	if l.tools != nil {
		sch, known := l.tools[c.Tool]
		if !known {
			l.ds.Add(doc.File, doc.Pos(ptr+"/tool"), CodeUnknownTool, "cap %q: no tool %q (tools are: %s)", name, c.Tool, strings.Join(sortedKeys(l.tools), ", "))
			return
		}
		args, typed := l.tools.arguments(c.Tool)
		for _, key := range []string{"per", "sum"} {
			arg, _ := m[key].(string)
			if arg == "" || !typed {
				continue
			}
			if !slices.Contains(args, arg) {
				l.ds.Add(doc.File, doc.Pos(ptr+"/"+key), CodeUnknownArgument, "cap %q: %s has no argument %q (its arguments: %s)", name, c.Tool, arg, strings.Join(args, ", "))
				keep = false
				continue
			}
			if key == "sum" {
				if p, err := sch.Property(arg); err == nil && p != nil && p.Type() != "number" && p.Type() != "integer" {
					l.ds.Add(doc.File, doc.Pos(ptr+"/sum"), CodeCapSum, "cap %q: argument %q of %s is not a number", name, arg, c.Tool)
					keep = false
				}
			}
		}
	}
	if keep {
		l.set.caps = append(l.set.caps, c)
	}
}

func sortedKeys(t Tools) []string {
	out := make([]string, 0, len(t))
	for k := range t {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
