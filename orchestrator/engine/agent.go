package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/flow"
)

// An agent step runs a loop: the conversation goes to the model's chat
// tool, and each tool call the model proposes is mediated by the policy
// gate like any call of a flow, with the agent's context label joined with
// the labels of the values its arguments name. Results below the context's
// integrity reach the model as handles (when the step hides them): the
// model can pass a handle as an argument, and the orchestrator substitutes
// the value and its label, but it cannot read it, so the context stays as
// trusted as what the model actually saw.

// inspectTool is the name under which inspect is offered to the model.
const inspectTool = "inspect"

// agentPreamble tells the model how handles and inspect work.
const agentPreamble = `You are one step of a Sluice flow. Call only the tools offered to you.
Some tool results are given to you as handles, {"$handle": "h1", "tool": ..., "fields": [...]}: you cannot read them,
but you can pass a handle (or {"$handle": "h1", "field": "name"}) anywhere in the arguments of a tool call or in your final answer,
and its value is put in its place. To learn one fact from a handle, call inspect with the handle, a question and a narrow schema
(a boolean, an enum of strings, a number with minimum and maximum, or a date string).
When you are done, answer with your final answer as the message content and no tool calls.`

type chatMessage struct {
	Role       string         `json:"role"`
	Content    *string        `json:"content,omitempty"`
	ToolCalls  []chatToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
	Name       string         `json:"name,omitempty"`
}

type chatToolCall struct {
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

type chatTool struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Parameters  any    `json:"parameters,omitempty"`
}

// handle is a tool result the model was not shown.
type handle struct {
	tool string
	v    *value
}

type agentRun struct {
	r   *run
	s   *flow.Step
	a   *flow.Agent
	res *StepResult
	// label is the agent's context label: the join of what the model saw.
	label   ifc.Label
	handles map[string]*handle
	tools   map[string]flow.AgentTool // by offered name and by full name
}

func str(s string) *string { return &s }

// agent runs an agent step.
func (r *run) agent(ctx context.Context, s *flow.Step, sc scope, ifLabel ifc.Label) (res *StepResult, out *value) {
	res = &StepResult{ID: s.ID, Tool: s.Call}
	defer func() {
		// A model's answer, however strange, must not bring the
		// orchestrator down.
		if p := recover(); p != nil {
			res.Status, res.Error, out = StatusFailed, fmt.Sprintf("agent: internal error: %v", p), nil
		}
	}()
	a := s.Agent
	ar := &agentRun{r: r, s: s, a: a, res: res, handles: map[string]*handle{}, tools: map[string]flow.AgentTool{}}
	instrLabel := a.Instructions.Label(sc.lookup)
	res.ArgLabels = map[string]ifc.Label{"instructions": instrLabel}
	ar.label = ifc.Join(ifLabel, instrLabel)
	instr, err := a.Instructions.Eval(sc.vars)
	if err != nil {
		res.Status, res.Label, res.Error = StatusFailed, ar.label, fmt.Sprintf("instructions: %v", err)
		return res, nil
	}
	text, ok := instr.(string)
	if !ok {
		b, _ := json.Marshal(instr)
		text = string(b)
	}
	var offered []chatTool
	for _, t := range a.Tools {
		name := offeredName(t.Name)
		ar.tools[name], ar.tools[t.Name] = t, t
		ct := chatTool{Name: name, Description: t.Spec.Description}
		if t.Spec.Input != nil {
			ct.Parameters = t.Spec.Input.Doc()
		}
		offered = append(offered, ct)
	}
	if a.Extract != nil && a.HideUntrusted {
		offered = append(offered, chatTool{Name: inspectTool,
			Description: "Answer one question about a hidden value (a handle) with a narrow schema.",
			Parameters: map[string]any{"type": "object", "required": []any{"handle", "question", "schema"},
				"properties": map[string]any{"handle": map[string]any{"type": "string"}, "question": map[string]any{"type": "string"},
					"schema": map[string]any{"type": "object"}}}})
	}
	system := agentPreamble
	if a.OutputSchema != nil {
		b, _ := json.Marshal(a.OutputDoc)
		system += "\nYour final answer must be JSON that satisfies this schema: " + string(b)
	}
	msgs := []chatMessage{{Role: "system", Content: str(system)}, {Role: "user", Content: str(text)}}
	for turn := 1; turn <= a.MaxTurns; turn++ {
		res.Turns = turn
		msg, ok := ar.chat(ctx, turn, msgs, offered)
		if !ok {
			return res, nil
		}
		if len(msg.ToolCalls) == 0 {
			content := ""
			if msg.Content != nil {
				content = *msg.Content
			}
			v, problem := ar.final(content)
			if v != nil {
				res.Status, res.Label = StatusCompleted, ar.label
				all := v.all()
				res.OutputLabel = &all
				return res, v
			}
			msgs = append(msgs, chatMessage{Role: "assistant", Content: str(content)},
				chatMessage{Role: "user", Content: str("Your final answer was not accepted: " + problem + ". Answer again.")})
			continue
		}
		msgs = append(msgs, chatMessage{Role: "assistant", Content: msg.Content, ToolCalls: msg.ToolCalls})
		for i, tc := range msg.ToolCalls {
			content, stop := ar.toolCall(ctx, turn, i, tc)
			if stop {
				return res, nil
			}
			msgs = append(msgs, chatMessage{Role: "tool", ToolCallID: tc.ID, Name: tc.Name, Content: str(content)})
		}
	}
	res.Status, res.Label = StatusFailed, ar.label
	res.Error = fmt.Sprintf("agent %s did not finish within max_turns (%d): the model was still calling tools", s.ID, a.MaxTurns)
	return res, nil
}

// offeredName is a tool's name as the model sees it: model APIs do not
// allow dots in tool names.
func offeredName(full string) string { return strings.ReplaceAll(full, ".", "__") }

// chat sends the conversation to the model through the policy gate, with
// the agent's context label.
func (ar *agentRun) chat(ctx context.Context, turn int, msgs []chatMessage, tools []chatTool) (chatMessage, bool) {
	res := ar.res
	st := &flow.Step{ID: ar.s.ID, Call: ar.s.Call, Worker: ar.s.Worker, Spec: ar.s.Spec, Timeout: ar.s.Timeout, Retries: ar.s.Retries}
	args := map[string]any{"messages": msgs}
	if len(tools) > 0 {
		args["tools"] = tools
	}
	sub := &StepResult{ID: ar.s.ID, Tool: st.Call, Label: ar.label,
		ArgLabels: map[string]ifc.Label{"messages": ar.label, "tools": ifc.TrustedFrom()}}
	fail := func(status, format string, a ...any) (chatMessage, bool) {
		res.Status, res.Label, res.Error = status, ar.label, fmt.Sprintf("turn %d: ", turn)+fmt.Sprintf(format, a...)
		res.Decision, res.Rules, res.Reasons, res.ApprovalID, res.MsgID = sub.Decision, sub.Rules, sub.Reasons, sub.ApprovalID, sub.MsgID
		return chatMessage{}, false
	}
	body, err := json.Marshal(args)
	if err != nil {
		return fail(StatusFailed, "conversation: %v", err)
	}
	v := ar.r.gate(ctx, st, sub, args, body, fmt.Sprintf("%s/%s/chat/%d", ar.r.id, ar.s.ID, turn))
	if v == nil {
		switch sub.Status {
		case StatusDenied:
			return fail(StatusDenied, "the call to %s was denied: %s", st.Call, strings.Join(sub.Reasons, "; "))
		case StatusHeld:
			return fail(StatusHeld, "the call to %s is held for approval", st.Call)
		}
		return fail(StatusFailed, "the model did not answer: %s", sub.Error)
	}
	// What the model says was decided by what it saw.
	ar.label = ar.label.Join(v.all())
	out, _ := v.out.(map[string]any)
	b, err := json.Marshal(out["message"])
	var msg chatMessage
	if err != nil || json.Unmarshal(b, &msg) != nil {
		return fail(StatusFailed, "%s answered with something that is not a message", st.Call)
	}
	msg.Role = "assistant"
	for i := range msg.ToolCalls {
		if msg.ToolCalls[i].ID == "" {
			msg.ToolCalls[i].ID = fmt.Sprintf("call_%d_%d", turn, i+1)
		}
	}
	return msg, true
}

// toolError is what the model is told when a tool call does not happen.
func toolError(format string, a ...any) string {
	b, _ := json.Marshal(map[string]string{"error": fmt.Sprintf(format, a...)})
	return string(b)
}

// toolCall mediates one tool call and returns what the model is told.
// stop says the step ends here (a call held for a person, or an audit log
// that cannot be written).
func (ar *agentRun) toolCall(ctx context.Context, turn, i int, tc chatToolCall) (content string, stop bool) {
	r, s := ar.r, ar.s
	if tc.Name == inspectTool && ar.a.Extract != nil && ar.a.HideUntrusted {
		return ar.inspect(ctx, turn, i, tc)
	}
	t, ok := ar.tools[tc.Name]
	if !ok {
		name := tc.Name
		if len(name) > 100 {
			name = name[:100] + "…"
		}
		names := make([]string, 0, len(ar.a.Tools))
		for _, t := range ar.a.Tools {
			names = append(names, t.Name)
		}
		reason := fmt.Sprintf("agent step %s may call only: %s", s.ID, strings.Join(names, ", "))
		sub := StepResult{ID: s.ID, Tool: name, Status: StatusDenied, Decision: "deny", Label: ar.label,
			Rules: []string{"agent-tools"}, Reasons: []string{reason}, MsgID: audit.NewID()}
		rec := audit.Record{Kind: audit.KindDecision, RunID: r.id, Flow: r.plan.Name, Step: s.ID, Tool: name,
			MsgID: sub.MsgID, Label: &ar.label, Action: "deny", Rules: sub.Rules, Reasons: sub.Reasons}
		if err := r.publish(rec); err != nil {
			ar.res.Status, ar.res.Error = StatusFailed, err.Error()
			return "", true
		}
		ar.res.Calls = append(ar.res.Calls, sub)
		return toolError("tool %q is not available to you: %s", name, reason), false
	}
	args, labels, problem := ar.arguments(tc.Arguments)
	if problem != "" {
		return toolError("arguments of %s: %s", t.Name, problem), false
	}
	body, err := json.Marshal(args)
	if err != nil {
		return toolError("arguments of %s: %v", t.Name, err), false
	}
	if _, err := t.Spec.Input.ValidateJSON(body); err != nil {
		return toolError("arguments of %s do not match its input schema: %v", t.Name, err), false
	}
	st := &flow.Step{ID: s.ID, Call: t.Name, Worker: t.Worker, Spec: t.Spec, Timeout: s.Timeout, Retries: s.Retries}
	sub := &StepResult{ID: s.ID, Tool: t.Name, ArgLabels: labels, Label: ifc.Join(append([]ifc.Label{ar.label}, slices.Collect(maps.Values(labels))...)...)}
	v := r.gate(ctx, st, sub, args, body, fmt.Sprintf("%s/%s/%d/%d", r.id, s.ID, turn, i))
	ar.res.Calls = append(ar.res.Calls, *sub)
	if v == nil {
		switch sub.Status {
		case StatusHeld:
			// The step waits on the person, like a held call step.
			res := ar.res
			res.Status, res.Tool, res.Label, res.ArgLabels = StatusHeld, sub.Tool, sub.Label, sub.ArgLabels
			res.Decision, res.Rules, res.Reasons, res.ApprovalID, res.Args, res.MsgID = sub.Decision, sub.Rules, sub.Reasons, sub.ApprovalID, sub.Args, sub.MsgID
			res.Error = fmt.Sprintf("turn %d: the call to %s is held for approval", turn, t.Name)
			return "", true
		case StatusDenied:
			return toolError("the call to %s was denied by policy: %s", t.Name, strings.Join(sub.Reasons, "; ")), false
		}
		if ctx.Err() != nil {
			ar.res.Status, ar.res.Error = StatusFailed, ctx.Err().Error()
			return "", true
		}
		// The error message is the tool's output: it is shown only
		// where the tool's output would be.
		el := ifc.Join(sub.Label, t.Spec.OutputLabel)
		if sub.ErrorLabel != nil {
			el = el.Join(*sub.ErrorLabel)
		}
		if el.Integrity() < ar.label.Integrity() {
			if ar.a.HideUntrusted {
				return toolError("the call to %s failed; its error message came from the tool and is hidden", t.Name), false
			}
			ar.label = ar.label.Join(el)
		}
		return toolError("the call to %s failed: %s", t.Name, sub.Error), false
	}
	return ar.show(t, v), false
}

// show returns what the model is told of a tool's result: the result
// itself, which then joins the context label, or a handle when the
// result is below the context's integrity and the step hides it.
func (ar *agentRun) show(t flow.AgentTool, v *value) string {
	tool := t.Name
	l := v.all()
	if ar.a.HideUntrusted && l.Integrity() < ar.label.Integrity() {
		id := "h" + strconv.Itoa(len(ar.handles)+1)
		ar.handles[id] = &handle{tool: tool, v: v}
		// Field names come from the tool's output schema, never from the
		// hidden value: a key can carry an instruction as well as a value.
		fields := []string{}
		if m, ok := v.out.(map[string]any); ok && t.Spec.Output != nil {
			props, _ := t.Spec.Output.Shape()
			for _, k := range slices.Sorted(maps.Keys(m)) {
				if slices.Contains(props, k) {
					fields = append(fields, k)
				}
			}
		}
		b, _ := json.Marshal(map[string]any{"$handle": id, "tool": tool, "fields": fields})
		return string(b)
	}
	ar.label = ar.label.Join(l)
	b, err := json.Marshal(v.out)
	if err != nil {
		return toolError("the result of %s cannot be shown: %v", tool, err)
	}
	return string(b)
}

// arguments decodes a tool call's arguments and puts the value of every
// handle in its place; each argument's label is the context label joined
// with the labels of the handles it contains.
func (ar *agentRun) arguments(raw json.RawMessage) (map[string]any, map[string]ifc.Label, string) {
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, nil, "not valid JSON"
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, nil, "want a JSON object"
	}
	args := map[string]any{}
	labels := map[string]ifc.Label{}
	for k, x := range m {
		l := ar.label
		out, problem := ar.substitute(x, "", func(_ string, hl ifc.Label) { l = l.Join(hl) })
		if problem != "" {
			return nil, nil, problem
		}
		args[k], labels[k] = out, l
	}
	return args, labels, ""
}

// substitute replaces every handle in x by its value, telling found of
// each one, with its path below x (dotted) and its label.
func (ar *agentRun) substitute(x any, path string, found func(path string, l ifc.Label)) (any, string) {
	switch x := x.(type) {
	case map[string]any:
		if id, ok := x["$handle"]; ok {
			hid, _ := id.(string)
			h, ok := ar.handles[hid]
			if !ok {
				return nil, fmt.Sprintf("no handle %v (handles: %s)", id, strings.Join(slices.Sorted(maps.Keys(ar.handles)), ", "))
			}
			val, l := h.v.out, h.v.all()
			if f, ok := x["field"]; ok {
				fs, _ := f.(string)
				parts := strings.Split(fs, ".")
				val = h.v.out
				for _, p := range parts {
					m, ok := val.(map[string]any)
					if !ok {
						return nil, fmt.Sprintf("handle %s has no field %q", hid, fs)
					}
					if val, ok = m[p]; !ok {
						return nil, fmt.Sprintf("handle %s has no field %q", hid, fs)
					}
				}
				l = h.v.at(parts)
			}
			found(path, l)
			return val, ""
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			v, problem := ar.substitute(e, join(path, k), found)
			if problem != "" {
				return nil, problem
			}
			out[k] = v
		}
		return out, ""
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			v, problem := ar.substitute(e, join(path, strconv.Itoa(i)), found)
			if problem != "" {
				return nil, problem
			}
			out[i] = v
		}
		return out, ""
	}
	return x, ""
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// final checks the model's final answer. It returns the step's output, or
// what is wrong with the answer.
func (ar *agentRun) final(content string) (*value, string) {
	v := &value{base: ar.label, fields: map[string]ifc.Label{}}
	found := func(path string, l ifc.Label) {
		if path == "" {
			v.base = v.base.Join(l)
			return
		}
		v.fields[path] = l
	}
	text := strings.TrimSpace(content)
	if ar.a.OutputSchema == nil {
		// A plain answer; one that is JSON with handles in it gets their
		// values, and their labels.
		if x, err := decodeJSON([]byte(text)); err == nil && strings.Contains(text, `"$handle"`) {
			out, problem := ar.substitute(x, "", found)
			if problem != "" {
				return nil, problem
			}
			v.out = out
			return v, ""
		}
		v.out = content
		return v, ""
	}
	text = strings.TrimPrefix(strings.TrimSuffix(text, "```"), "```json")
	text = strings.TrimSpace(strings.TrimPrefix(text, "```"))
	x, err := decodeJSON([]byte(text))
	if err != nil {
		return nil, "it is not JSON"
	}
	out, problem := ar.substitute(x, "", found)
	if problem != "" {
		return nil, problem
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err.Error()
	}
	if _, err := ar.a.OutputSchema.ValidateJSON(b); err != nil {
		return nil, fmt.Sprintf("it does not satisfy the output schema: %v", err)
	}
	v.out = out
	return v, ""
}

// inspect answers one question about a hidden value with a quarantined
// call to the model's extract tool, through the policy gate. The answer is
// narrow (a boolean, an enum, a bounded number, a date) so that it cannot
// carry instructions; it keeps the hidden value's label unless a policy
// rule endorses the call, and the model that reads it is labeled so.
func (ar *agentRun) inspect(ctx context.Context, turn, i int, tc chatToolCall) (string, bool) {
	var in struct {
		Handle   string         `json:"handle"`
		Question string         `json:"question"`
		Schema   map[string]any `json:"schema"`
	}
	if err := json.Unmarshal(tc.Arguments, &in); err != nil {
		return toolError("arguments of inspect: want {handle, question, schema}"), false
	}
	h, ok := ar.handles[in.Handle]
	if !ok {
		return toolError("inspect: no handle %q", in.Handle), false
	}
	if strings.TrimSpace(in.Question) == "" {
		return toolError("inspect: the question is empty"), false
	}
	if problem := narrowSchema(in.Schema); problem != "" {
		return toolError("inspect: %s", problem), false
	}
	text, ok := h.v.out.(string)
	if !ok {
		b, _ := json.Marshal(h.v.out)
		text = string(b)
	}
	hl := h.v.all()
	s := ar.s
	spec := ar.a.Extract
	st := &flow.Step{ID: s.ID, Call: ar.a.Model + ".extract", Worker: ar.a.Model, Spec: spec, Timeout: s.Timeout, Retries: s.Retries}
	args := map[string]any{"text": text, "instruction": in.Question, "schema": in.Schema}
	// Quarantined: the extract reads the hidden value and the question
	// only, not the conversation.
	sub := &StepResult{ID: s.ID, Tool: st.Call, Label: ar.label.Join(hl),
		ArgLabels: map[string]ifc.Label{"text": hl, "instruction": ar.label, "schema": ar.label}}
	body, err := json.Marshal(args)
	if err != nil {
		return toolError("inspect: %v", err), false
	}
	v := ar.r.gate(ctx, st, sub, args, body, fmt.Sprintf("%s/%s/%d/%d", ar.r.id, s.ID, turn, i))
	ar.res.Calls = append(ar.res.Calls, *sub)
	if v == nil {
		if sub.Status == StatusHeld {
			res := ar.res
			res.Status, res.Tool, res.Label, res.ArgLabels = StatusHeld, sub.Tool, sub.Label, sub.ArgLabels
			res.Decision, res.Rules, res.Reasons, res.ApprovalID, res.Args, res.MsgID = sub.Decision, sub.Rules, sub.Reasons, sub.ApprovalID, sub.Args, sub.MsgID
			return "", true
		}
		return toolError("inspect failed: %s %s", sub.Error, strings.Join(sub.Reasons, "; ")), false
	}
	ar.label = ar.label.Join(v.all())
	b, _ := json.Marshal(map[string]any{"answer": v.out})
	return string(b), false
}

// narrowSchema accepts the schemas inspect may answer with: a boolean, an
// enum of strings, a number or integer with both bounds, a date string.
func narrowSchema(s map[string]any) string {
	const want = "the schema must be {type: boolean}, {type: string, enum: [...]}, {type: number|integer, minimum, maximum} or {type: string, format: date}"
	allowed := func(keys ...string) bool {
		for k := range s {
			if k != "description" && !slices.Contains(keys, k) {
				return false
			}
		}
		return true
	}
	switch s["type"] {
	case "boolean":
		if allowed("type") {
			return ""
		}
	case "string":
		if enum, ok := s["enum"].([]any); ok && allowed("type", "enum") && len(enum) > 0 && len(enum) <= 32 {
			for _, e := range enum {
				if x, ok := e.(string); !ok || len(x) > 64 {
					return want + "; enum values are strings of at most 64 characters"
				}
			}
			return ""
		}
		if s["format"] == "date" && allowed("type", "format") {
			return ""
		}
	case "number", "integer":
		_, lo := s["minimum"].(float64)
		_, hi := s["maximum"].(float64)
		if lo && hi && allowed("type", "minimum", "maximum") {
			return ""
		}
	}
	return want
}
