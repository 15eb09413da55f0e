package plan

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/orchestrator/agent"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/schemas"
)

// FirstLine is the first line of every planner's system message.
const FirstLine = "You are the planner of a Sluice plan step."

// rules tell the planner the language.
const rules = `Write a program, in Starlark (a small subset of Python), that does what the user asks.
- Tools are functions, called with keyword arguments only: worker.tool(arg=value, ...). They are the only functions with effects; call no others.
- A tool call returns the tool's output (a dict, a list, a string, a number); a call that fails ends the program.
- You are never shown what a tool returns, nor the values of the inputs: the program reads them when it runs.
- inputs["name"] is the value of a step input.
- inspect(value, question, schema) asks a quarantined model one question about a value and returns its answer,
  a value that satisfies schema: any JSON Schema of at most 4096 bytes (a string, an object, a list...), for example
  {"type": "string"} or {"type": "object", "properties": {"iban": {"type": "string"}, "amount": {"type": "number"}}}.
  You are not shown the answer either: use it in the program.
- Lists and dicts cannot be changed after they are made: write xs = xs + [x], d = dict(d, k=v); no append, no d[k] = v.
- There is no load, no while loop and no recursion; for loops run over lists and range(n).
- Put the answer in the top-level variable result.
Answer with the program only, in a ` + "```python" + ` fence.`

// System is the planner's system message: the first line, the language,
// the tools with their input schemas and the manifest's words about them
// (never an MCP server's own), the names of the inputs, and the output
// schema. Every word of it comes from the flow and the manifests.
func System(ps *flow.PlanStep) string {
	var b strings.Builder
	b.WriteString(FirstLine + "\n" + rules + "\n")
	if len(ps.Tools) > 0 {
		b.WriteString("\nTools:\n")
	}
	for _, t := range ps.Tools {
		b.WriteString(signature(t))
	}
	if ps.Extract == nil {
		b.WriteString("\ninspect is not available: the model has no extract tool.\n")
	}
	if len(ps.InputNames) > 0 {
		b.WriteString("\nInputs (values not shown): ")
		for i, n := range ps.InputNames {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "inputs[%q]", n)
		}
		b.WriteString("\n")
	}
	if ps.OutputDoc != nil {
		doc, _ := json.Marshal(ps.OutputDoc)
		fmt.Fprintf(&b, "\nresult must satisfy this JSON Schema: %s\n", doc)
	}
	return b.String()
}

// signature shows one tool: its name, its arguments and input schema
// without the schema's free text, and its description when the manifest
// wrote it.
func signature(t flow.AgentTool) string {
	var b strings.Builder
	var params []string
	var schema any = map[string]any{"type": "object"}
	if t.Spec.Input != nil {
		params, _ = t.Spec.Input.Shape()
		schema = plain(agent.ShownSchema(t.Spec, t.Spec.Input))
	}
	sch, _ := json.Marshal(schema)
	fmt.Fprintf(&b, "- %s(%s)\n  input schema: %s\n", t.Name, strings.Join(params, ", "), sch)
	if d := strings.TrimSpace(t.Spec.Description); d != "" && !t.Spec.DescriptionFromServer {
		fmt.Fprintf(&b, "  %s\n", strings.Join(strings.Fields(d), " "))
	}
	if t.Spec.Output != nil {
		out, _ := json.Marshal(plain(agent.ShownSchema(t.Spec, t.Spec.Output)))
		fmt.Fprintf(&b, "  returns: %s\n", out)
	}
	return b.String()
}

// freeText are the keys of a JSON Schema that hold prose, not structure:
// an MCP server writes them, so a planner is not shown them.
var freeText = map[string]bool{"description": true, "title": true, "examples": true, "$comment": true, "default": true}

// plain returns a schema without its free text.
func plain(x any) any {
	switch x := x.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, v := range x {
			if freeText[k] {
				continue
			}
			if k == "properties" {
				props, _ := v.(map[string]any)
				pp := make(map[string]any, len(props))
				for name, p := range props {
					pp[name] = plain(p)
				}
				out[k] = pp
				continue
			}
			out[k] = plain(v)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plain(e)
		}
		return out
	}
	return x
}

// Program takes the program out of the planner's answer: the first
// ```python (or ```) fence, else the whole answer.
func Program(answer string) string {
	for _, open := range []string{"```python", "```starlark", "```py", "```"} {
		i := strings.Index(answer, open)
		if i < 0 {
			continue
		}
		rest := answer[i+len(open):]
		if nl := strings.IndexByte(rest, '\n'); nl >= 0 && strings.TrimSpace(rest[:nl]) == "" {
			rest = rest[nl+1:]
		} else {
			continue
		}
		if j := strings.Index(rest, "```"); j >= 0 {
			rest = rest[:j]
		}
		return rest
	}
	return answer
}

// MaxInspectSchema bounds the size of the schema of an inspect in a plan,
// as JSON.
const MaxInspectSchema = 4096

// inspectSchema accepts the schema of an inspect in a plan: any JSON
// Schema that compiles, of at most MaxInspectSchema bytes. Unlike an agent
// step's inspect (agent.NarrowSchema), a plan's answer is a value in the
// program that the planner is never shown, labeled like the value asked
// about, so it need not be narrow to carry no instructions to the planner.
func inspectSchema(s map[string]any) string {
	if s == nil {
		return "the schema must be a JSON Schema object"
	}
	b, err := json.Marshal(s)
	if err != nil {
		return "the schema is not JSON: " + err.Error()
	}
	if len(b) > MaxInspectSchema {
		return fmt.Sprintf("the schema is %d bytes; at most %d are allowed", len(b), MaxInspectSchema)
	}
	if _, err := schemas.Compile(s); err != nil {
		return "the schema is not a valid JSON Schema: " + err.Error()
	}
	return ""
}
