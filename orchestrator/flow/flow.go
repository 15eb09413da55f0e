// Package flow turns a flow file into a checked, immutable [Plan]: its
// inputs, its steps with the tool each calls and the compiled expressions
// of each argument, the order derived from what each expression reads, and
// its outputs. Every mistake in the file is reported at once, each with its
// file:line:col.
package flow

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/ifc/expr"
	"github.com/sluicehq/sluice/schemas"
)

// Diagnostic codes of flow files.
const (
	CodeUnknownTool   = "flow_unknown_tool"
	CodeUnknownRef    = "flow_unknown_reference"
	CodeDuplicateStep = "flow_duplicate_step"
	CodeCycle         = "flow_cycle"
	CodeExpr          = "flow_expression"
	CodeBadArgs       = "flow_bad_arguments"
	CodeBadInput      = "flow_bad_input"
	CodeBadStep       = "flow_bad_step"
)

// Plan is a checked flow. It is not changed after Load.
type Plan struct {
	Name string
	File string
	// Source is the flow file as it was loaded: a run keeps it, so that
	// it resumes with the flow it started with.
	Source []byte
	// Inputs by name, and their names in file order.
	Inputs     map[string]Input
	InputNames []string
	// Steps in file order.
	Steps []*Step
	// Outputs by name.
	Outputs     map[string]*Value
	OutputNames []string
}

// Input is a declared input of a flow.
type Input struct {
	Type    string // string, number, integer or boolean
	Default any    // nil when the input is required
	Pos     schemas.Pos
}

// Step is one step of a plan.
type Step struct {
	ID string
	// Call is the full tool name ("payment.charge"); Worker and Tool its
	// parts; Spec the tool's manifest entry.
	Call, Worker string
	Spec         *capabilities.Tool
	// With are the arguments, by name, in a stable order in ArgNames.
	With     map[string]*Value
	ArgNames []string
	// If, when set, must be true for the step to run; what it reads is
	// joined into the step's context label.
	If *Value
	// ForEach, when set, gives a list; the call is made once per element,
	// with item and index bound, at most Concurrency at once.
	ForEach     *Value
	Concurrency int
	// Timeout bounds each try of the call; zero means the tool's limit.
	Timeout time.Duration
	// Retries is how many more tries a failed call gets.
	Retries int
	// Deps are the ids of the steps this one reads, sorted.
	Deps []string
	Pos  schemas.Pos
	// Agent, when set, makes the step an agent: Call is then the model's
	// chat tool ("llm.chat"), Worker the model's worker and Spec its
	// chat tool, and the step has no arguments.
	Agent *Agent
	// Plan, when set, makes the step a plan, with Call, Worker and Spec
	// its planner's chat tool, like an agent's.
	Plan *PlanStep
}

// Agent is the part of an agent step that a call step does not have.
type Agent struct {
	// Model is the worker whose chat tool answers; Extract is its extract
	// tool (for inspect), nil when it has none.
	Model   string
	Extract *capabilities.Tool
	// Instructions is what the agent is asked to do.
	Instructions *Value
	// Tools are the only tools the agent may call, in file order.
	Tools []AgentTool
	// MaxTurns bounds the model's answers.
	MaxTurns int
	// OutputSchema, when set, the final answer must satisfy; OutputDoc is
	// its source, to show the model.
	OutputSchema *schemas.Schema
	OutputDoc    any
	// HideUntrusted hands the model results below its context integrity
	// as handles.
	HideUntrusted bool
}

// AgentTool is a tool an agent may call.
type AgentTool struct {
	Name, Worker string
	Spec         *capabilities.Tool
}

// DefaultMaxTurns bounds an agent's turns when the step does not say.
const DefaultMaxTurns = 8

// DefaultConcurrency bounds the calls of a for_each step at once.
const DefaultConcurrency = 4

// Catalog answers which tools exist: the configured workers' manifests.
type Catalog map[string]*capabilities.Manifest

// Tool looks up a full tool name.
func (c Catalog) Tool(call string) (*capabilities.Tool, string, error) {
	worker, tool, _ := strings.Cut(call, ".")
	m, ok := c[worker]
	if !ok {
		names := slices.Sorted(maps.Keys(c))
		return nil, "", fmt.Errorf("unknown tool %q: no worker %q is configured (workers: %s)", call, worker, strings.Join(names, ", "))
	}
	t, ok := m.Tool(tool)
	if !ok {
		return nil, "", fmt.Errorf("unknown tool %q; worker %q has: %s", call, worker, strings.Join(m.ToolNames(), ", "))
	}
	return t, worker, nil
}

// LoadFile reads and checks a flow file.
func LoadFile(path string, cat Catalog, env *expr.Env) (*Plan, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read flow: %w", err)
	}
	return Load(path, src, cat, env)
}

// Load checks a flow and returns its plan, or every problem found.
func Load(file string, src []byte, cat Catalog, env *expr.Env) (*Plan, error) {
	doc, ds := schemas.ParseYAML(file, src)
	if err := ds.Err(); err != nil {
		return nil, err
	}
	sch, err := schemas.Load("flow.json")
	if err != nil {
		return nil, err
	}
	if ds := doc.Validate(sch); ds.Err() != nil {
		return nil, ds.Err()
	}
	l := &loader{doc: doc, env: env, cat: cat}
	p := l.plan()
	if err := l.ds.Err(); err != nil {
		return nil, err
	}
	p.Source = src
	return p, nil
}

type loader struct {
	doc *schemas.Document
	env *expr.Env
	cat Catalog
	ds  schemas.Diagnostics
	// outShapes is what the flow knows of each step's output, by id.
	outShapes map[string]shape
}

func (l *loader) errorf(ptr, code, format string, args ...any) {
	l.ds.Add(l.doc.File, l.doc.Pos(ptr), code, format, args...)
}

// errorIn reports a problem inside the string at ptr, at the start of its text.
func (l *loader) errorIn(ptr, code, format string, args ...any) {
	pos, ok := l.doc.ScalarStart(ptr)
	if !ok {
		pos = l.doc.Pos(ptr)
	}
	l.ds.Add(l.doc.File, pos, code, format, args...)
}

func (l *loader) plan() *Plan {
	root := l.doc.Value.(map[string]any)
	p := &Plan{Name: root["name"].(string), File: l.doc.File, Inputs: map[string]Input{}, Outputs: map[string]*Value{}}
	l.planInputs(p, root)
	steps := root["steps"].([]any)
	l.typeOutputs(p, steps)
	ids := l.stepIndex(steps)
	stepIDs := slices.Sorted(maps.Keys(ids))
	for i, raw := range steps {
		p.Steps = append(p.Steps, l.step(p, ids, i, raw.(map[string]any)))
	}
	l.planOutputs(p, root, ids)
	l.checkCycles(p, stepIDs)
	return p
}

// planInputs reads the flow's inputs, in file order, into p and checks
// each default against its input's type.
func (l *loader) planInputs(p *Plan, root map[string]any) {
	ins, ok := root["inputs"].(map[string]any)
	if !ok {
		return
	}
	p.InputNames = l.keysInFileOrder("/inputs", ins)
	for _, name := range p.InputNames {
		spec := ins[name].(map[string]any)
		in := Input{Type: spec["type"].(string), Default: spec["default"], Pos: l.doc.KeyPos(schemas.Pointer("inputs", name))}
		if in.Default != nil {
			if _, err := Coerce(in.Type, in.Default); err != nil {
				l.errorf(schemas.Pointer("inputs", name, "default"), CodeBadInput, "input %s: default: %v", name, err)
			}
		}
		p.Inputs[name] = in
	}
}

// typeOutputs records what each step's output holds, where its tool or
// agent declares it, and gives the expression environment the types of
// the inputs and those outputs: expressions are type-checked against
// them, and the fields they read are checked against them.
func (l *loader) typeOutputs(p *Plan, steps []any) {
	l.outShapes = l.shapes(steps)
	typed, err := l.env.WithTypes(declarations(p.Inputs, l.outShapes))
	if err != nil {
		l.errorf("", CodeExpr, "%v", err)
		return
	}
	l.env = typed
}

// stepIndex maps each step id to the index of the step that first has it,
// and reports every later step with the same id.
func (l *loader) stepIndex(steps []any) map[string]int {
	ids := map[string]int{}
	for i, raw := range steps {
		m := raw.(map[string]any)
		id := m["id"].(string)
		if prev, dup := ids[id]; dup {
			l.errorf(schemas.Pointer("steps", i, "id"), CodeDuplicateStep, "duplicate step id %q (first at line %d)", id, l.doc.Pos(schemas.Pointer("steps", prev, "id")).Line)
			continue
		}
		ids[id] = i
	}
	return ids
}

// step reads and checks the step m at index i: what it runs, when and how
// often, its arguments, and the steps whose output it reads.
func (l *loader) step(p *Plan, ids map[string]int, i int, m map[string]any) *Step {
	ptr := schemas.Pointer("steps", i)
	s := &Step{ID: m["id"].(string), With: map[string]*Value{}, Pos: l.doc.Pos(ptr)}
	deps := map[string]bool{}
	spec := l.stepTarget(ptr, s, m, p, ids, deps)
	l.stepForEach(ptr, s, m, p, ids, deps)
	if raw, ok := m["if"]; ok {
		s.If = l.value(ptr+"/if", raw)
		l.checkReads(s.If, p, ids, s.ID, deps, false)
	}
	l.stepTimeout(ptr, s, m)
	if r, ok := m["retries"].(int64); ok {
		s.Retries = int(r)
	}
	l.stepArgs(ptr, s, m, p, ids, deps)
	if spec != nil && s.Agent == nil && s.Plan == nil {
		l.checkArgs(ptr, s)
	}
	s.Deps = slices.Sorted(maps.Keys(deps))
	return s
}

// stepTarget reads what step s runs: a tool (call), an agent or a plan,
// exactly one of them. It returns the tool's spec for a call to a tool the
// catalog has, else nil.
func (l *loader) stepTarget(ptr string, s *Step, m map[string]any, p *Plan, ids map[string]int, deps map[string]bool) *capabilities.Tool {
	call, isCall := m["call"].(string)
	agent, isAgent := m["agent"].(map[string]any)
	plan, isPlan := m["plan"].(map[string]any)
	switch {
	case isCall && isAgent:
		l.ds.Add(l.doc.File, l.doc.KeyPos(ptr+"/agent"), CodeBadStep, "step %s has both call and agent; a step is one or the other", s.ID)
	case isPlan && (isCall || isAgent):
		l.ds.Add(l.doc.File, l.doc.KeyPos(ptr+"/plan"), CodeBadStep, "step %s has plan and %s; a step is a call, an agent or a plan", s.ID, map[bool]string{true: "call", false: "agent"}[isCall])
	case isCall:
		s.Call = call
		spec, worker, err := l.cat.Tool(s.Call)
		if err != nil {
			l.errorf(ptr+"/call", CodeUnknownTool, "%v", err)
		}
		s.Spec, s.Worker = spec, worker
		return spec
	case isAgent:
		l.agent(ptr, s, agent, m, p, ids, deps)
	case isPlan:
		l.planStep(ptr, s, plan, m, p, ids, deps)
	default:
		l.errorf(ptr, CodeBadStep, "step %s needs call (a tool), agent (a model that calls tools) or plan (a program a model writes)", s.ID)
	}
	return nil
}

// stepForEach reads a step's for_each and its concurrency, which applies
// only to a for_each step.
func (l *loader) stepForEach(ptr string, s *Step, m map[string]any, p *Plan, ids map[string]int, deps map[string]bool) {
	raw, ok := m["for_each"]
	if !ok {
		if _, ok := m["concurrency"]; ok {
			l.ds.Add(l.doc.File, l.doc.KeyPos(ptr+"/concurrency"), CodeBadStep, "concurrency applies only to a for_each step")
		}
		return
	}
	s.ForEach = l.value(ptr+"/for_each", raw)
	l.checkReads(s.ForEach, p, ids, s.ID, deps, false)
	s.Concurrency = DefaultConcurrency
	if c, ok := m["concurrency"].(int64); ok {
		s.Concurrency = int(c)
	}
}

// stepTimeout reads a step's timeout: a duration from 1ms to 1h.
func (l *loader) stepTimeout(ptr string, s *Step, m map[string]any) {
	raw, ok := m["timeout"].(string)
	if !ok {
		return
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d <= 0 || d > time.Hour {
		l.errorf(ptr+"/timeout", CodeBadStep, "timeout %q: want a duration from 1ms to 1h, such as 30s", raw)
	}
	s.Timeout = d
}

// stepArgs compiles a step's arguments (with), in file order, and checks
// what each reads; item and index are there only in a for_each step.
func (l *loader) stepArgs(ptr string, s *Step, m map[string]any, p *Plan, ids map[string]int, deps map[string]bool) {
	with, ok := m["with"].(map[string]any)
	if !ok {
		return
	}
	s.ArgNames = l.keysInFileOrder(ptr+"/with", with)
	for _, name := range s.ArgNames {
		v := l.value(ptr+"/with/"+escape(name), with[name])
		s.With[name] = v
		l.checkReads(v, p, ids, s.ID, deps, s.ForEach != nil)
	}
}

// planOutputs compiles the flow's outputs, in file order, and checks what
// each reads.
func (l *loader) planOutputs(p *Plan, root map[string]any, ids map[string]int) {
	outs, ok := root["outputs"].(map[string]any)
	if !ok {
		return
	}
	p.OutputNames = l.keysInFileOrder("/outputs", outs)
	for _, name := range p.OutputNames {
		ptr := schemas.Pointer("outputs", name)
		v := l.value(ptr, outs[name])
		l.checkReads(v, p, ids, "", map[string]bool{}, false)
		p.Outputs[name] = v
	}
}

func (l *loader) keysInFileOrder(ptr string, m map[string]any) []string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		pa, pb := l.doc.KeyPos(ptr+"/"+escape(a)), l.doc.KeyPos(ptr+"/"+escape(b))
		if pa.Line != pb.Line {
			return pa.Line - pb.Line
		}
		return pa.Col - pb.Col
	})
	return keys
}

// value compiles every string in v as a template.
func (l *loader) value(ptr string, v any) *Value {
	switch v := v.(type) {
	case string:
		t, err := l.env.Compile(v)
		if err != nil {
			l.exprErrors(ptr, v, err)
			return &Value{literal: v}
		}
		if t.IsLiteral() {
			lit, _ := t.Eval(nil)
			return &Value{literal: lit}
		}
		return &Value{tmpl: t, ptr: ptr}
	case map[string]any:
		out := &Value{fields: map[string]*Value{}}
		for k, x := range v {
			out.fields[k] = l.value(ptr+"/"+escape(k), x)
		}
		return out
	case []any:
		out := &Value{items: []*Value{}}
		for i, x := range v {
			out.items = append(out.items, l.value(ptr+"/"+strconv.Itoa(i), x))
		}
		return out
	}
	return &Value{literal: v}
}

// exprErrors maps expression errors (byte offsets in the string) to file
// positions.
func (l *loader) exprErrors(ptr, s string, err error) {

	var list expr.ErrorList
	var one *expr.Error
	switch {
	case errors.As(err, &list):
	case errors.As(err, &one):
		list = expr.ErrorList{one}
	default:
		l.errorf(ptr, CodeExpr, "%v", err)
		return
	}
	for _, e := range list {
		l.ds.Add(l.doc.File, l.posAt(ptr, s, e.Offset), CodeExpr, "%s", e.Message)
	}
}

func (l *loader) checkReads(v *Value, p *Plan, ids map[string]int, self string, deps map[string]bool, item bool) {
	l.checkFields(v, p)
	for _, r := range v.reads() {
		path, ptr := r.path, r.ptr
		switch path[0] {
		case "item", "index":
			if !item {
				l.errorIn(ptr, CodeUnknownRef, "%s is available only in the arguments of a for_each step", path[0])
			}
		case "inputs":
			if len(path) < 2 {
				l.errorIn(ptr, CodeUnknownRef, "name one input (inputs.<name>); inputs are: %s", strings.Join(p.InputNames, ", "))
				continue
			}
			if _, ok := p.Inputs[path[1]]; !ok {
				l.errorIn(ptr, CodeUnknownRef, "no input %q (inputs are: %s)", path[1], strings.Join(p.InputNames, ", "))
			}
		case "steps":
			if len(path) < 2 {
				l.errorIn(ptr, CodeUnknownRef, "name one step's output (steps.<id>.output)")
				continue
			}
			id := path[1]
			if _, ok := ids[id]; !ok {
				l.errorIn(ptr, CodeUnknownRef, "no step %q (steps are: %s)", id, strings.Join(slices.Sorted(maps.Keys(ids)), ", "))
				continue
			}
			if len(path) >= 3 && path[2] != "output" {
				l.errorIn(ptr, CodeUnknownRef, "step %s has no %q; use steps.%s.output", id, path[2], id)
				continue
			}
			if id == self {
				l.errorIn(ptr, CodeCycle, "step %s reads its own output", id)
				continue
			}
			deps[id] = true
		default:
			l.errorIn(ptr, CodeUnknownRef, "%q is not available here; expressions read inputs and steps.<id>.output", path[0])
		}
	}
}

// checkArgs checks literal arguments against the tool's input schema now;
// values computed at run time are checked before the call.
func (l *loader) checkArgs(ptr string, s *Step) {
	props, req := schemaShape(s.Spec.Input)
	known := map[string]bool{}
	for _, k := range props {
		known[k] = true
	}
	l.checkArgNames(ptr, s, props, known, req)
	// Each argument against its schema: constants now, with the real
	// validator; expressions by the type the checker gives them.
	for _, name := range s.ArgNames {
		if known[name] {
			l.checkArgValue(ptr, s, name)
		}
	}
}

// checkArgNames reports each argument the tool does not take (where its
// schema names the ones it takes, props) and each required one (req) the
// step does not give.
func (l *loader) checkArgNames(ptr string, s *Step, props []string, known map[string]bool, req []string) {
	for _, name := range s.ArgNames {
		if len(known) > 0 && !known[name] {
			l.ds.Add(l.doc.File, l.doc.KeyPos(ptr+"/with/"+escape(name)), CodeBadArgs, "tool %s has no argument %q (arguments: %s)", s.Call, name, strings.Join(props, ", "))
		}
	}
	for _, k := range req {
		if _, ok := s.With[k]; !ok {
			l.errorf(ptr+"/call", CodeBadArgs, "tool %s needs argument %q", s.Call, k)
		}
	}
}

// checkArgValue checks the argument name of step s against its property
// in the tool's input schema: a constant with the schema's validator, an
// expression by the JSON type the checker gives it.
func (l *loader) checkArgValue(ptr string, s *Step, name string) {
	prop, err := s.Spec.Input.Property(name)
	if err != nil || prop == nil {
		return
	}
	aptr := ptr + "/with/" + escape(name)
	v := s.With[name]
	if c, ok := v.constant(); ok {
		for _, d := range prop.Validate(l.doc.File, c, func(sub string) schemas.Pos { return l.doc.Pos(aptr + sub) }) {
			d.Code = CodeBadArgs
			d.Message = fmt.Sprintf("argument %s of %s: %s", name, s.Call, strings.TrimPrefix(d.Message, "document: "))
			l.ds = append(l.ds, d)
		}
		return
	}
	if t, ok := v.Template(); ok {
		got, want := t.JSONType(), prop.Type()
		if got != "" && want != "" && got != want && !(got == "integer" && want == "number") {
			l.errorIn(aptr, CodeBadArgs, "argument %s of %s takes %s; this expression gives %s", name, s.Call, article(want), article(got))
		}
	}
}

func article(jsonType string) string {
	switch jsonType {
	case "integer", "object", "array":
		return "an " + jsonType
	case "null":
		return "null"
	}
	return "a " + jsonType
}

func (l *loader) checkCycles(p *Plan, ids []string) {
	byID := map[string]*Step{}
	for _, s := range p.Steps {
		byID[s.ID] = s
	}
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var visit func(id string, stack []string) bool
	visit = func(id string, stack []string) bool {
		color[id] = grey
		for _, d := range byID[id].Deps {
			switch color[d] {
			case grey:
				i := slices.Index(stack, d)
				cycle := append(slices.Clone(stack[i:]), d)
				s := byID[d]
				l.ds.Add(l.doc.File, s.Pos, CodeCycle, "steps form a cycle: %s", strings.Join(cycle, " -> "))
				return true
			case white:
				if visit(d, append(stack, d)) {
					return true
				}
			}
		}
		color[id] = black
		return false
	}
	for _, id := range ids {
		if byID[id] != nil && color[id] == white && visit(id, []string{id}) {
			return
		}
	}
}

func escape(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}

// Coerce converts a command-line or default value to an input's type.
func Coerce(typ string, v any) (any, error) {
	switch typ {
	case "string":
		if s, ok := v.(string); ok {
			return s, nil
		}
	case "number":
		return coerceNumber(v)
	case "integer":
		return coerceInteger(v)
	case "boolean":
		return coerceBoolean(v)
	}
	return nil, wrongType(typ, v)
}

// coerceNumber converts a number, an integer or a string that spells a
// finite number to a number (float64): NaN and infinities are refused.
func coerceNumber(v any) (any, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case int64:
		return float64(x), nil
	case string:
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return nil, fmt.Errorf("want a number, got %q", x)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			// JSON has neither: the run could not be recorded.
			return nil, fmt.Errorf("want a finite number, got %q", x)
		}
		return f, nil
	}
	return nil, wrongType("number", v)
}

// coerceInteger converts an integer or a string that spells one to an
// integer (int64).
func coerceInteger(v any) (any, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case string:
		i, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("want an integer, got %q", x)
		}
		return i, nil
	}
	return nil, wrongType("integer", v)
}

// coerceBoolean converts a boolean or a string that spells one (true,
// false, 1, 0, …) to a boolean.
func coerceBoolean(v any) (any, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		b, err := strconv.ParseBool(x)
		if err != nil {
			return nil, fmt.Errorf("want true or false, got %q", x)
		}
		return b, nil
	}
	return nil, wrongType("boolean", v)
}

// wrongType is the error for a value v of a Go type that cannot be
// converted to the input type typ.
func wrongType(typ string, v any) error {
	return fmt.Errorf("want a %s, got %T", typ, v)
}

// BindInputs checks the values given for a run against the declared inputs and
// fills in defaults. Every problem is reported.
func (p *Plan) BindInputs(given map[string]string) (map[string]any, error) {
	values := make(map[string]any, len(given))
	for k, v := range given {
		values[k] = v
	}
	return p.bind(values, "pass --input %s=…")
}

// BindValues is BindInputs for values that come typed (JSON, as an MCP
// client sends a flow's inputs).
func (p *Plan) BindValues(given map[string]any) (map[string]any, error) {
	return p.bind(given, "give a value for %s")
}

func (p *Plan) bind(given map[string]any, how string) (map[string]any, error) {
	out := map[string]any{}
	var errs []error
	for name, raw := range given {
		in, ok := p.Inputs[name]
		if !ok {
			errs = append(errs, fmt.Errorf("flow %s has no input %q (inputs: %s)", p.Name, name, strings.Join(p.InputNames, ", ")))
			continue
		}
		v, err := Coerce(in.Type, raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("input %s: %w", name, err))
			continue
		}
		out[name] = v
	}
	for _, name := range p.InputNames {
		if _, ok := out[name]; ok {
			continue
		}
		if _, bad := given[name]; bad {
			continue
		}
		in := p.Inputs[name]
		if in.Default == nil {
			errs = append(errs, fmt.Errorf("input %s (%s) is required: "+how, name, in.Type, name))
			continue
		}
		v, _ := Coerce(in.Type, in.Default)
		out[name] = v
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// RestoreInputs gives inputs read back from JSON (a run resumed from the
// store) their declared types again, in place: JSON writes the number 5.0
// as 5, which reads back as an integer, while the flow's expressions were
// checked, and first ran, with a number.
func (p *Plan) RestoreInputs(in map[string]any) {
	for name, v := range in {
		spec, ok := p.Inputs[name]
		if !ok {
			continue
		}
		if c, err := Coerce(spec.Type, v); err == nil {
			in[name] = c
		}
	}
}

// InputLabel is the label of a value the user gave to a run.
func InputLabel() ifc.Label { return ifc.TrustedFrom(ifc.SourceUser) }
