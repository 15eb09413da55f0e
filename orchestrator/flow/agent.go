package flow

import (
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/schemas"
)

// agent checks an agent step: its model has a chat tool, every tool it
// lists exists, its output schema compiles, and it has none of the keys
// that belong to call steps.
func (l *loader) agent(ptr string, s *Step, m map[string]any, step map[string]any, p *Plan, ids map[string]int, deps map[string]bool) {
	aptr := ptr + "/agent"
	a := &Agent{Model: m["model"].(string), MaxTurns: DefaultMaxTurns, HideUntrusted: true}
	s.Agent = a
	s.Worker, s.Call = a.Model, a.Model+".chat"
	l.modelStep(ptr, "agent", "an agent takes what it needs in its instructions", a.Model, s, step)
	a.Extract = l.extractTool(a.Model)
	a.Instructions = l.value(aptr+"/instructions", m["instructions"])
	l.checkReads(a.Instructions, p, ids, s.ID, deps, false)
	if tools, ok := m["tools"].([]any); ok {
		for i, raw := range tools {
			name := raw.(string)
			spec, worker, err := l.cat.Tool(name)
			if err != nil {
				l.errorf(aptr+"/tools/"+strconv.Itoa(i), CodeUnknownTool, "agent tool: %v", err)
				continue
			}
			a.Tools = append(a.Tools, AgentTool{Name: name, Worker: worker, Spec: spec})
		}
	}
	if n, ok := m["max_turns"].(int64); ok {
		a.MaxTurns = int(n)
	}
	if h, ok := m["hide_untrusted"].(bool); ok {
		a.HideUntrusted = h
	}
	if doc, ok := m["output_schema"]; ok {
		sch, err := schemas.Compile(doc)
		if err != nil {
			l.errorf(aptr+"/output_schema", CodeBadStep, "output_schema is not a valid JSON Schema: %v", err)
		}
		a.OutputSchema, a.OutputDoc = sch, doc
	}
}

// modelStep checks what an agent and a plan step share: none of the keys
// that belong to call steps (hint says where their values go instead), and
// a model worker with a chat tool, which becomes the step's Spec.
func (l *loader) modelStep(ptr, kind, hint, model string, s *Step, step map[string]any) {
	for _, key := range []string{"with", "for_each", "concurrency"} {
		if _, ok := step[key]; ok {
			l.ds.Add(l.doc.File, l.doc.KeyPos(ptr+"/"+key), CodeBadStep, "%s applies only to a call step; %s", key, hint)
		}
	}
	mptr := ptr + "/" + kind + "/model"
	if mf, ok := l.cat[model]; !ok {
		l.errorf(mptr, CodeUnknownTool, "%s model %q: no worker %q is configured", kind, model, model)
	} else if chat, ok := mf.Tool("chat"); !ok {
		l.errorf(mptr, CodeUnknownTool, "%s model %q: worker %s has no chat tool (it has: %s)", kind, model, model, strings.Join(mf.ToolNames(), ", "))
	} else {
		s.Spec = chat
	}
}

// extractTool is the model worker's extract tool, for inspect; nil when it
// has none.
func (l *loader) extractTool(model string) *capabilities.Tool {
	if mf, ok := l.cat[model]; ok {
		t, _ := mf.Tool("extract")
		return t
	}
	return nil
}
