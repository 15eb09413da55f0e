package flow

import (
	"strconv"
	"strings"

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
	for _, key := range []string{"with", "for_each", "concurrency"} {
		if _, ok := step[key]; ok {
			l.ds.Add(l.doc.File, l.doc.KeyPos(ptr+"/"+key), CodeBadStep, "%s applies only to a call step; an agent takes what it needs in its instructions", key)
		}
	}
	if mf, ok := l.cat[a.Model]; !ok {
		l.errorf(aptr+"/model", CodeUnknownTool, "agent model %q: no worker %q is configured", a.Model, a.Model)
	} else if chat, ok := mf.Tool("chat"); !ok {
		l.errorf(aptr+"/model", CodeUnknownTool, "agent model %q: worker %s has no chat tool (it has: %s)", a.Model, a.Model, strings.Join(mf.ToolNames(), ", "))
	} else {
		s.Spec = chat
		a.Extract, _ = mf.Tool("extract")
	}
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
