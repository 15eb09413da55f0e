package flow

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/schemas"
)

// PlanStep is the part of a plan step that a call step does not have: a
// planner model writes a program from trusted text only, and the
// orchestrator runs it with a label on every value.
type PlanStep struct {
	// Model is the worker whose chat tool writes the program; Extract is
	// its extract tool (for inspect), nil when it has none.
	Model   string
	Extract *capabilities.Tool
	// Instructions are shown to the planner: they must read only trusted
	// values.
	Instructions *Value
	// Tools are the only tools the program may call, in file order.
	Tools []AgentTool
	// Inputs are the values the program reads as inputs["name"], by name,
	// and their names in file order; the planner sees the names only.
	Inputs     map[string]*Value
	InputNames []string
	// OutputSchema, when set, the program's result must satisfy;
	// OutputDoc is its source, to show the planner.
	OutputSchema *schemas.Schema
	OutputDoc    any
	// MaxRewrites bounds how often the planner may write the program
	// again after it failed.
	MaxRewrites int
	Limits      PlanLimits
}

// PlanLimits bound the interpretation of a plan; zero values take the
// interpreter's defaults.
type PlanLimits struct {
	Steps  uint64
	Memory int64
	Time   time.Duration
}

// DefaultMaxRewrites is a plan step's max_rewrites when it does not say.
const DefaultMaxRewrites = 1

// planStep checks a plan step: its model has a chat tool, every tool it lists
// exists, its instructions read nothing known to be untrusted, its output
// schema compiles, its limits parse, and it has none of the keys that
// belong to call steps.
func (l *loader) planStep(ptr string, s *Step, m map[string]any, step map[string]any, p *Plan, ids map[string]int, deps map[string]bool) {
	pptr := ptr + "/plan"
	ps := &PlanStep{Model: m["model"].(string), MaxRewrites: DefaultMaxRewrites, Inputs: map[string]*Value{}}
	s.Plan = ps
	s.Worker, s.Call = ps.Model, ps.Model+".chat"
	l.modelStep(ptr, "plan", "a plan takes its values in plan.inputs", ps.Model, s, step)
	ps.Extract = l.extractTool(ps.Model)
	ps.Instructions = l.value(pptr+"/instructions", m["instructions"])
	l.checkReads(ps.Instructions, p, ids, s.ID, deps, false)
	l.trustedReads(ps.Instructions, ids, s.ID)
	if tools, ok := m["tools"].([]any); ok {
		for i, raw := range tools {
			name := raw.(string)
			spec, worker, err := l.cat.Tool(name)
			if err != nil {
				l.errorf(pptr+"/tools/"+strconv.Itoa(i), CodeUnknownTool, "plan tool: %v", err)
				continue
			}
			ps.Tools = append(ps.Tools, AgentTool{Name: name, Worker: worker, Spec: spec})
		}
	}
	if ins, ok := m["inputs"].(map[string]any); ok {
		ps.InputNames = l.keysInFileOrder(pptr+"/inputs", ins)
		for _, name := range ps.InputNames {
			v := l.value(pptr+"/inputs/"+escape(name), ins[name])
			l.checkReads(v, p, ids, s.ID, deps, false)
			ps.Inputs[name] = v
		}
	}
	if n, ok := m["max_rewrites"].(int64); ok {
		ps.MaxRewrites = int(n)
	}
	if doc, ok := m["output_schema"]; ok {
		sch, err := schemas.Compile(doc)
		if err != nil {
			l.errorf(pptr+"/output_schema", CodeBadStep, "output_schema is not a valid JSON Schema: %v", err)
		}
		ps.OutputSchema, ps.OutputDoc = sch, doc
	}
	if lim, ok := m["limits"].(map[string]any); ok {
		ps.Limits = l.planLimits(pptr+"/limits", lim)
	}
}

// planLimits reads a plan's limits: steps, memory (bytes, or a size such
// as 64MiB) and time (a duration).
func (l *loader) planLimits(ptr string, m map[string]any) PlanLimits {
	var lim PlanLimits
	if n, ok := m["steps"].(int64); ok {
		lim.Steps = uint64(n)
	}
	switch x := m["memory"].(type) {
	case int64:
		lim.Memory = x
		if x < 1<<10 {
			l.errorf(ptr+"/memory", CodeBadStep, "memory %d: want at least 1KiB", x)
		}
	case string:
		n, err := ParseSize(x)
		if err != nil {
			l.errorf(ptr+"/memory", CodeBadStep, "memory %q: %v", x, err)
		}
		lim.Memory = n
	}
	if raw, ok := m["time"].(string); ok {
		d, err := time.ParseDuration(raw)
		if err != nil || d <= 0 || d > time.Hour {
			l.errorf(ptr+"/time", CodeBadStep, "time %q: want a duration from 1ms to 1h, such as 5s", raw)
		}
		lim.Time = d
	}
	return lim
}

// ParseSize reads a size in bytes: a number with an optional unit, B,
// KiB, MiB or GiB (KB, MB, GB are taken as the same), from 1KiB to 4GiB.
func ParseSize(s string) (int64, error) {
	num := strings.TrimRight(strings.TrimSpace(s), "BKMGib")
	unit := strings.TrimSpace(strings.TrimSpace(s)[len(num):])
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	mult := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "KB": 1 << 10, "MiB": 1 << 20, "MB": 1 << 20, "GiB": 1 << 30, "GB": 1 << 30}[unit]
	if err != nil || mult == 0 || n <= 0 || n > (4<<30)/mult || n*mult < 1<<10 {
		return 0, fmt.Errorf("want a size from 1KiB to 4GiB, such as 64MiB")
	}
	return n * mult, nil
}

// trustedReads reports every read of v that is known, before the run, to
// be untrusted: the output of a call step whose tool's output is
// untrusted. A plan's instructions are shown to the planner, which must
// see only trusted text.
func (l *loader) trustedReads(v *Value, ids map[string]int, self string) {
	steps, _ := l.doc.Value.(map[string]any)["steps"].([]any)
	for _, r := range v.reads() {
		if len(r.path) < 2 || r.path[0] != "steps" {
			continue
		}
		i, ok := ids[r.path[1]]
		if !ok || r.path[1] == self || i >= len(steps) {
			continue
		}
		call, _ := steps[i].(map[string]any)["call"].(string)
		spec, _, err := l.cat.Tool(call)
		if call == "" || err != nil || spec.OutputLabel.Integrity() >= ifc.Trusted {
			continue
		}
		l.errorIn(r.ptr, CodeBadStep, "plan instructions read %s, which is untrusted (the output of %s): the planner is shown only trusted text; pass the value through plan.inputs and read it in the program as inputs[\"name\"]", r.path.String(), call)
	}
}
