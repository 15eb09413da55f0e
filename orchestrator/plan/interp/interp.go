// Package interp runs a plan: a Starlark program (go.starlark.net) that a
// planner model wrote from trusted text only, with an information-flow
// label on every value.
//
// The program makes no call itself. Each call of a tool, and each
// inspect, is handed to a Host (the engine) with the labels of its
// arguments and the program counter label — the join of everything that
// decided the program reached the call — and the Host passes it through
// the policy gate like a flow step's. The interpreter is deterministic:
// given the same program, inputs and outcomes, it makes the same calls in
// the same order, numbered from 1, so a Host that answers calls made in an
// earlier pass from their records replays the program to where it
// stopped.
//
// Labels. Data flow joins the labels of the operands into the result of
// every operator, builtin and method. Control flow is sound first: when a
// condition, a loop's iteration, an index, a comparison or a short-circuit
// depends on a labelled value, the program counter label rises by that
// label and never falls again, and every later call and the output carry
// it. Containers a program makes cannot be changed after they are made, so
// a value's label cannot fall behind its contents. An error ends the
// program; its text carries the label of what it depends on.
//
// How it is done: Compile rewrites the program's syntax tree so that every
// operator, comparison, and/or, condition, loop, index, slice, attribute
// and container literal calls a helper that knows the labels of its
// operands (compile.go, ops.go); the universe builtins are shadowed by
// ones that unwrap their arguments and label their result (builtins.go).
// A value is plain (the bottom label), a plain value with a label, or a
// record: a tool's output or an input with a label per path, whose
// elements carry the labels on their path (record.go). Where Starlark
// itself takes a labelled value's truth, length, hash, order or
// elements, the value raises the program counter label on its own, so a
// path the helpers miss does not drop a label.
//
// # Notes
//
// Termination is not treated as a control dependency. An attacker who
// controls data a program reads can make it stop early — by an error, a
// limit of steps, memory or time, or a denied call — as a failing step
// stops a flow; the calls made before the stop are the calls the program
// would have made anyway, and the error's text and the fact of the stop
// carry the error's label. Nothing else about the data reaches a call
// without its label.
package interp

import (
	"context"
	"sort"
	"time"

	"github.com/sluicehq/sluice/ifc"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// Statuses of an outcome and of a run.
const (
	Completed = "completed"
	Denied    = "denied"
	Held      = "held"
	Failed    = "failed"
)

// Tool is a function a program may call, as worker.tool(name=value, ...).
type Tool struct {
	// Name is the full tool name, "web.fetch".
	Name string
	// Params are the argument names its input schema declares; nil when
	// it declares none (any keyword is passed on).
	Params []string
}

// Call is one call a program makes.
type Call struct {
	// N numbers the program's calls and inspects from 1 in the order they
	// are made.
	N    int
	Tool string
	// Args are JSON-shaped: nil, bool, int64, float64, string, []any,
	// map[string]any.
	Args map[string]any
	// ArgLabels is each argument's label; PC the program counter label at
	// the call. The call's label is their join.
	ArgLabels map[string]ifc.Label
	PC        ifc.Label
}

// Inspection is one question about one value, asked of a quarantined model
// that has no tools: inspect(value, question, schema) in a program.
type Inspection struct {
	N        int
	Value    any
	Label    ifc.Label
	Question string
	Schema   map[string]any
	PC       ifc.Label
}

// Outcome is what became of a call or an inspection.
type Outcome struct {
	Status string
	// Output of a completed call: Base labels the whole, Fields the paths
	// below it ("items.0.name"), as the engine keeps a step's output.
	Output any
	Base   ifc.Label
	Fields map[string]ifc.Label
	// Error of a call that did not complete, and the label of that fact
	// and of its text.
	Error string
	Label ifc.Label
	// Stop says the program ends here without a result of its own: the
	// call is held for a person or the run was interrupted.
	Stop bool
}

// Host mediates a program's calls. A call with a recorded outcome is not
// made again: its outcome is returned.
type Host interface {
	Call(ctx context.Context, c Call) Outcome
	Inspect(ctx context.Context, i Inspection) Outcome
}

// Limits bound a run. Zero values take the defaults.
type Limits struct {
	// Steps bounds Starlark's execution steps.
	Steps uint64
	// Memory bounds the bytes of the values the program makes, in all.
	Memory int64
	// Time bounds the time spent interpreting, not counting the calls.
	Time time.Duration
}

// Defaults for Limits.
const (
	DefaultSteps  = 1_000_000
	DefaultMemory = 64 << 20
	DefaultTime   = 5 * time.Second
)

// Input is a value the program gets under inputs["name"], with its labels.
type Input struct {
	Value  any
	Base   ifc.Label
	Fields map[string]ifc.Label
}

// Result of a run. The program's output is the value of its top-level
// variable result (None when it sets none), labelled with its own label
// joined with the program counter label at the end.
type Result struct {
	Status string
	Output any
	Base   ifc.Label
	Fields map[string]ifc.Label
	// PC is the program counter label at the end.
	PC ifc.Label
	// Calls counts the calls and inspects made (or answered from records).
	Calls int
	// Error says why a run did not complete, with Line and Col in the
	// program when known; ErrorLabel is the label of the error's text
	// and of the fact that the run failed there: the program counter
	// label joined with the labels of the operands that failed.
	Error      string
	ErrorLabel ifc.Label
	Line, Col  int
}

// Program is a compiled plan. It may be run many times, also at once.
type Program struct {
	file        string
	prog        *starlark.Program
	predeclared starlark.StringDict
}

// Compile parses and checks a program: Starlark syntax, the subset plans
// allow (no load, no changing a container after it is made), and the
// names it calls. Its errors name line:col and depend on the program text
// alone.
func Compile(filename, src string, tools []Tool) (*Program, error) {
	f, err := fileOptions().Parse(filename, src, 0)
	if err != nil {
		return nil, err
	}
	c := &checker{file: filename, tools: toolTable(tools)}
	c.collectBound(f)
	c.stmts(f.Stmts)
	if len(c.problems) > 0 {
		sort.SliceStable(c.problems, func(i, j int) bool { return before(c.problems[i].pos, c.problems[j].pos) })
		return nil, &compileError{file: filename, problems: c.problems}
	}
	pre := predeclared(tools)
	prog, err := starlark.FileProgram(f, pre.Has)
	if err != nil {
		return nil, err
	}
	return &Program{file: filename, prog: prog, predeclared: pre}, nil
}

func before(a, b syntax.Position) bool {
	if a.Line != b.Line {
		return a.Line < b.Line
	}
	return a.Col < b.Col
}

// predeclared are the names a plan starts with: the helpers, the
// builtins, the workers and inputs (bound at each run).
func predeclared(tools []Tool) starlark.StringDict {
	out := modules(tools)
	for name, fn := range helpers() {
		out[name] = starlark.NewBuiltin(name, fn)
	}
	for name, fn := range builtins() {
		out[name] = starlark.NewBuiltin(name, fn)
	}
	out["inputs"] = starlark.None
	return out
}

// Run runs the program with inputs bound to the name inputs (a dict).
func (p *Program) Run(ctx context.Context, h Host, inputs map[string]Input, lim Limits) Result {
	return p.run(ctx, h, inputs, lim)
}
