package flow

import (
	"fmt"
	"path/filepath"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/schemas"
)

// Tool describes the flow as a tool an MCP client calls (sluice mcp
// --flows): its input schema is made from the declared inputs (an input
// with a default is optional), its output is an object of the flow's
// outputs, and its OutputLabel is what the outputs are known to carry
// before the flow runs: the join of the declared output labels of the
// tools its steps call (a step that calls no tool of a manifest, as an
// agent step's model answers, counts as untrusted). Only that label
// decides whether a session is sent the outputs or a handle, so the
// decision depends on nothing a run returns.
func (p *Plan) Tool() (*capabilities.Tool, error) {
	props := map[string]any{}
	required := []string{}
	for _, name := range p.InputNames {
		in := p.Inputs[name]
		props[name] = map[string]any{"type": in.Type}
		if in.Default == nil {
			required = append(required, name)
		}
	}
	input, err := schemas.Compile(map[string]any{"type": "object", "properties": props, "required": required,
		"additionalProperties": false})
	if err != nil {
		return nil, fmt.Errorf("flow %s: input schema: %w", p.Name, err)
	}
	outProps := map[string]any{}
	for _, name := range p.OutputNames {
		outProps[name] = map[string]any{}
	}
	output, err := schemas.Compile(map[string]any{"type": "object", "properties": outProps})
	if err != nil {
		return nil, fmt.Errorf("flow %s: output schema: %w", p.Name, err)
	}
	static := ifc.TrustedFrom()
	for _, s := range p.Steps {
		if s.Spec == nil || s.Agent != nil {
			static = static.Join(ifc.UntrustedFrom())
			continue
		}
		static = static.Join(s.Spec.OutputLabel)
	}
	return &capabilities.Tool{Name: p.Name, Input: input, Output: output, OutputLabel: static,
		Description: fmt.Sprintf("Runs the flow %s (%s) and returns its outputs.", p.Name, filepath.Base(p.File))}, nil
}
