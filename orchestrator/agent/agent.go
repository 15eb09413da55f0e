// Package agent runs agent steps: a model that chooses tool calls at run
// time from the tools its step names, each call mediated by the policy
// gate with the agent's context label.
//
// Everything the model is told — tool results and errors, validation
// messages, refusals, inspect answers and failures, handle descriptions,
// rejected final answers — enters its conversation through one function,
// conversation.tell, with the label of everything it depends on. When a
// call's outcome is below the context's integrity and the step hides such
// outcomes, the model gets a handle that looks the same whether the call
// succeeded or failed; anything else it is shown raises the context label.
// So the label of the model's next answer is the join of all it could have
// learned, and a hijacked model's tool calls carry it to the gate.
//
// The package makes no call itself: a Host (the engine) mediates, records
// and, when the step runs again — after an approval, a restart or a crash —
// answers each call made before from its record, so the loop replays to
// where it stopped and no call is made twice.
package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/internal/jsonvalue"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/schemas"
)

// Statuses of an outcome and of a step.
const (
	Completed = "completed"
	Denied    = "denied"
	Held      = "held"
	Failed    = "failed"
)

// InspectTool is the name under which inspect is offered to the model.
const InspectTool = "inspect"

// preamble tells the model how handles and inspect work.
const preamble = `You are one step of a Sluice flow. Call only the tools offered to you.
Some tool results are given to you as handles, {"$handle": "h1", "tool": ..., "fields": [...]}: you cannot read them,
but you can pass a handle (or {"$handle": "h1", "field": "name"}) anywhere in the arguments of a tool call or in your final answer,
and its value is put in its place. To learn one fact from a handle, call inspect with the handle, a question and a narrow schema
(a boolean, an enum of strings, a number with minimum and maximum, or a date string).
When you are done, answer with your final answer as the message content and no tool calls.`

// Call is one call an agent step makes through the gate.
type Call struct {
	// Key names the call within the step ("chat/1" for the model's first
	// answer, "2/0" for the first tool call of its second); with the
	// step's idempotency key it is the call's.
	Key       string
	Tool      flow.AgentTool
	Args      map[string]any
	Label     ifc.Label
	ArgLabels map[string]ifc.Label
	// Context is the context label the call was made in: an argument
	// labeled otherwise carries a handle's value.
	Context ifc.Label
	// Handles says the arguments name a handle: they carry a value the
	// client was not shown, even when its label adds nothing to the
	// context's.
	Handles bool
}

// Outcome is what became of a call.
type Outcome struct {
	Status string
	// Output of a completed call, with its labels.
	Output any
	Base   ifc.Label
	Fields map[string]ifc.Label
	// Error and Reasons of a call that did not complete; Label is the label
	// of that fact and of its message: the decision's, the error's.
	Error   string
	Reasons []string
	Label   ifc.Label
	// Stop says the step ends here: the call is held for a person, the run
	// was interrupted, or what happened could not be recorded.
	Stop bool
	// Approval is the id of the approval a held call waits on.
	Approval string
}

func (o *Outcome) label() ifc.Label {
	if o.Status != Completed {
		return o.Label
	}
	l := o.Base
	for _, k := range slices.Sorted(maps.Keys(o.Fields)) {
		l = l.Join(o.Fields[k])
	}
	return l
}

// Host mediates an agent's calls.
type Host interface {
	// Call asks the policy gate about a call, holds it for a person or
	// makes it, and records its outcome before the next call is
	// delivered. A call with a recorded outcome is not made again: its
	// outcome is returned.
	Call(ctx context.Context, c Call) Outcome
	// Refuse records that the model proposed a tool the step does not
	// offer, denied with reason, the same way.
	Refuse(ctx context.Context, key, tool string, label ifc.Label, reason string) Outcome
}

// Step is an agent step to run.
type Step struct {
	ID    string
	Agent *flow.Agent
	// Chat is the model's chat tool.
	Chat flow.AgentTool
	// Instructions, evaluated, and Label, the label of what they read and
	// of the step's if condition.
	Instructions string
	Label        ifc.Label
}

// Result of an agent step.
type Result struct {
	Status string
	// Turns is how many answers the model gave.
	Turns int
	// Label is the context label at the end.
	Label ifc.Label
	// Output of a completed step, with its labels.
	Output any
	Base   ifc.Label
	Fields map[string]ifc.Label
	Error  string
}

type run struct {
	h     Host
	s     Step
	c     *conversation
	tools map[string]flow.AgentTool // by offered name and by full name
	// session: the calls come from a client, not a model (Session); a
	// held call is told to it rather than ending the step.
	session bool
}

// Run runs an agent step.
func Run(ctx context.Context, h Host, s Step) (res Result) {
	c := &conversation{label: s.Label, hide: s.Agent.HideUntrusted}
	defer func() {
		// A model's answer, however strange, must not bring the
		// orchestrator down.
		if p := recover(); p != nil {
			res = Result{Status: Failed, Turns: res.Turns, Label: c.label, Error: fmt.Sprintf("agent: internal error: %v", p)}
		}
	}()
	a := s.Agent
	r := &run{h: h, s: s, c: c, tools: map[string]flow.AgentTool{}}
	offered, described := r.offer()
	system := preamble
	if a.OutputSchema != nil {
		b, _ := json.Marshal(a.OutputDoc)
		system += "\nYour final answer must be JSON that satisfies this schema: " + string(b)
	}
	// Both come from the flow: the system prompt from its file, the
	// instructions labeled with what they read. The tools offered come
	// with their descriptions: an MCP server's own words raise the
	// context by what the server returns.
	c.tell(Message{Role: "system", Content: str(system)}, described, nil)
	c.tell(Message{Role: "user", Content: str(s.Instructions)}, s.Label, nil)
	for turn := 1; turn <= a.MaxTurns; turn++ {
		res.Turns = turn
		args := map[string]any{"messages": c.messages()}
		if len(offered) > 0 {
			args["tools"] = offered
		}
		o := h.Call(ctx, Call{Key: "chat/" + strconv.Itoa(turn), Tool: s.Chat, Args: args, Label: c.label,
			ArgLabels: map[string]ifc.Label{"messages": c.label, "tools": described}})
		switch o.Status {
		case Completed:
		case Held:
			return r.end(res, Held, "turn %d: the call to %s is held for approval", turn, s.Chat.Name)
		case Denied:
			return r.end(res, Denied, "turn %d: the call to %s was denied: %s", turn, s.Chat.Name, strings.Join(o.Reasons, "; "))
		default:
			return r.end(res, Failed, "turn %d: the model did not answer: %s", turn, o.Error)
		}
		msg, ok := message(o.Output, turn)
		if !ok {
			return r.end(res, Failed, "turn %d: %s answered with something that is not a message", turn, s.Chat.Name)
		}
		// What the model says was decided by what it saw.
		c.tell(msg, o.label(), nil)
		if len(msg.ToolCalls) == 0 {
			if done, ok := r.answer(res, turn, msg); ok {
				return done
			}
			continue
		}
		for i, tc := range msg.ToolCalls {
			if stop := r.toolCall(ctx, turn, i, tc); stop != nil {
				stop.Turns = res.Turns
				return *stop
			}
		}
	}
	return r.end(res, Failed, "agent %s did not finish within max_turns (%d): the model was still calling tools", s.ID, a.MaxTurns)
}

// offer lists the tools the model is offered, under the names it may
// use, and inspect when the step may inspect handles; described is the
// label of their descriptions: trusted, joined with the integrity and
// sources of the output label of each tool whose description is the words
// its MCP server sent (serverWords).
func (r *run) offer() (offered []schemas.ChatTool, described ifc.Label) {
	described = ifc.TrustedFrom()
	for _, t := range r.s.Agent.Tools {
		name := OfferedName(t.Name)
		r.tools[name], r.tools[t.Name] = t, t
		if t.Spec.DescriptionFromServer {
			described = described.Join(serverWords(t.Spec.OutputLabel))
		}
		ct := schemas.ChatTool{Name: name, Description: t.Spec.Description}
		if t.Spec.Input != nil {
			ct.Parameters, _ = json.Marshal(ShownSchema(t.Spec, t.Spec.Input)) // a schema loaded from JSON always encodes
		}
		offered = append(offered, ct)
	}
	if r.inspectable() {
		offered = append(offered, schemas.ChatTool{Name: InspectTool,
			Description: "Answer one question about a hidden value (a handle) with a narrow schema.",
			Parameters: json.RawMessage(`{"type":"object","required":["handle","question","schema"],` +
				`"properties":{"handle":{"type":"string"},"question":{"type":"string"},"schema":{"type":"object"}}}`)})
	}
	return offered, described
}

// answer takes the model's final answer: the step's result when it is
// accepted or must end the step; ok false when the model is told why it
// was not accepted and asked again.
func (r *run) answer(res Result, turn int, msg Message) (done Result, ok bool) {
	c := r.c
	content := ""
	if msg.Content != nil {
		content = *msg.Content
	}
	out, problem, refs := r.final(content)
	if problem == "" {
		res.Status, res.Label = Completed, c.label
		res.Output, res.Base, res.Fields = out.v, out.base, out.fields
		return res, true
	}
	if refs.static.Integrity() < c.label.Integrity() {
		// Whether the answer fits depends on values the model was not
		// shown: telling it so would tell it about them.
		res.Label = c.label.Join(refs.dyn)
		return r.end(res, Failed, "turn %d: the final answer, with the values of its handles put in, was not accepted", turn), true
	}
	c.tell(Message{Role: "user", Content: str("Your final answer was not accepted: " + problem + ". Answer again.")}, refs.dyn, nil)
	return Result{}, false
}

// end ends the step with status.
func (r *run) end(res Result, status, format string, a ...any) Result {
	res.Status, res.Error = status, fmt.Sprintf(format, a...)
	res.Label = res.Label.Join(r.c.label)
	return res
}

func (r *run) inspectable() bool { return r.s.Agent.Extract != nil && r.s.Agent.HideUntrusted }

// serverWords is the label of the words an MCP server wrote about its
// tools: as trusted as its outputs, from the same sources, and secret to
// no one (they were written before any call, with nobody's data).
func serverWords(output ifc.Label) ifc.Label {
	return ifc.New(output.Integrity(), nil, output.Sources())
}

// ShownSchema is what a model is shown of one of a tool's schemas: the
// whole document when the manifest gave it, only its structure when an MCP
// server did (every word of it is the server's, where an injection can
// hide).
func ShownSchema(t *capabilities.Tool, s *schemas.Schema) any {
	if t.SchemasFromServer {
		return schemas.Structure(s.Doc())
	}
	return s.Doc()
}

// OfferedName is a tool's name as the model sees it: model APIs do not
// allow dots in tool names.
func OfferedName(full string) string { return strings.ReplaceAll(full, ".", "__") }

// message decodes the chat tool's output.
func message(out any, turn int) (Message, bool) {
	m, _ := out.(map[string]any)
	b, err := json.Marshal(m["message"])
	var msg Message
	if err != nil || json.Unmarshal(b, &msg) != nil {
		return Message{}, false
	}
	msg.Role = "assistant"
	for i := range msg.ToolCalls {
		if msg.ToolCalls[i].ID == "" {
			msg.ToolCalls[i].ID = fmt.Sprintf("call_%d_%d", turn, i+1)
		}
	}
	return msg, true
}

// toolError is the text of a call that did not happen or failed.
func toolError(format string, a ...any) string {
	b, _ := json.Marshal(map[string]string{"error": fmt.Sprintf(format, a...)})
	return string(b)
}

// refuse records and tells the model that it proposed a tool the step does
// not offer; it returns the step's result when the refusal could not be
// recorded.
func (r *run) refuse(ctx context.Context, key string, tc ToolCall, reply func(string, ifc.Label, *callOutcome)) *Result {
	c := r.c
	name := tc.Name
	if len(name) > 100 {
		name = name[:100] + "…"
	}
	names := make([]string, 0, len(r.s.Agent.Tools))
	for _, t := range r.s.Agent.Tools {
		names = append(names, t.Name)
	}
	reason := fmt.Sprintf("agent step %s may call only: %s", r.s.ID, strings.Join(names, ", "))
	if o := r.h.Refuse(ctx, key, name, c.label, reason); o.Stop {
		return &Result{Status: Failed, Label: c.label, Error: o.Error}
	}
	// What the model chose and what the flow offers: nothing new.
	reply(toolError("tool %q is not available to you: %s", name, reason), c.label, nil)
	return nil
}

// toolCall mediates one tool call the model proposed and tells the model
// its outcome. It returns the step's result when the step ends here.
func (r *run) toolCall(ctx context.Context, turn, i int, tc ToolCall) *Result {
	c, key := r.c, strconv.Itoa(turn)+"/"+strconv.Itoa(i)
	reply := func(text string, dep ifc.Label, o *callOutcome) {
		c.tell(Message{Role: "tool", ToolCallID: tc.ID, Name: tc.Name, Content: str(text)}, dep, o)
	}
	if tc.Name == InspectTool && r.inspectable() {
		return r.inspect(ctx, key, tc, reply)
	}
	t, ok := r.tools[tc.Name]
	if !ok {
		return r.refuse(ctx, key, tc, reply)
	}
	args, argLabels, refs, problem := r.arguments(tc.Arguments)
	callLabel := refs.dyn
	// Known before the call: whether its outcome is hidden.
	static := refs.static.Join(t.Spec.OutputLabel)
	failed := func(why string, l ifc.Label) *callOutcome {
		return &callOutcome{tool: &t, static: static, h: &handle{failed: why, base: l}}
	}
	if problem != "" {
		// Found while putting hidden values in place, a problem depends
		// on them: it is the call's outcome, hidden like its output.
		reply(toolError("arguments of %s: %s", t.Name, problem), callLabel, failed(problem, callLabel))
		return nil
	}
	if ms := t.Spec.Input.Mismatches(args); len(ms) > 0 {
		why := "do not match its input schema (" + strings.Join(ms, "; ") + ")"
		reply(toolError("arguments of %s %s", t.Name, why), callLabel, failed(why, callLabel))
		return nil
	}
	o := r.h.Call(ctx, Call{Key: key, Tool: t, Args: args, Label: callLabel, ArgLabels: argLabels, Context: c.label, Handles: refs.named})
	switch {
	case o.Status == Held && r.session:
		// Whether the call was held depends on what it carried: the
		// client learns that, and the context label rises with it.
		reply(toolError("the call to %s is held for approval %s and was not made: a person answers it (sluice approve %s, or the web page); then make the same call again", t.Name, o.Approval, o.Approval), callLabel.Join(o.Label), nil)
	case o.Status == Held:
		return &Result{Status: Held, Label: c.label.Join(callLabel),
			Error: fmt.Sprintf("turn %d: the call to %s is held for approval", turn, t.Name)}
	case o.Stop:
		return &Result{Status: Failed, Label: c.label, Error: o.Error}
	case o.Status == Completed:
		b, err := json.Marshal(o.Output)
		text := string(b)
		if err != nil {
			text = toolError("the result of %s cannot be shown", t.Name)
		}
		reply(text, o.label(), &callOutcome{tool: &t, static: static, h: &handle{out: o.Output, base: o.Base, fields: o.Fields}})
	case o.Status == Denied:
		reasons := strings.Join(o.Reasons, "; ")
		reply(toolError("the call to %s was denied: %s", t.Name, reasons), o.Label, failed("denied: "+reasons, o.Label))
	default:
		reply(toolError("the call to %s failed: %s", t.Name, o.Error), o.Label, failed(o.Error, o.Label))
	}
	return nil
}

// refLabels are the labels of the handles a value names, joined with the
// context's: dyn, of their values (what the policy gate and the output
// see); static, as each was known before its call was made (what decides
// whether an outcome is hidden).
type refLabels struct {
	dyn, static ifc.Label
	// named: a handle is named at all.
	named bool
}

// arguments decodes a tool call's arguments and puts the value of every
// handle in its place. Each argument's label is the context label joined
// with the labels of the handles it names; refs is the join of the labels
// of every handle the arguments name — what a problem found while putting
// them in place depends on. The handles named are the model's choice; their
// labels are known without reading their values.
func (r *run) arguments(raw json.RawMessage) (args map[string]any, labels map[string]ifc.Label, refs refLabels, problem string) {
	refs = refLabels{dyn: r.c.label, static: r.c.label}
	v, err := jsonvalue.Decode(raw)
	if err != nil {
		return nil, nil, refs, "not valid JSON"
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, nil, refs, "want a JSON object"
	}
	if refs, problem = r.refs(m, refs); problem != "" {
		return nil, nil, refs, problem
	}
	args, labels = map[string]any{}, map[string]ifc.Label{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		l := r.c.label
		out, problem := r.substitute(m[k], "", func(_ string, hl ifc.Label) { l = l.Join(hl) })
		if problem != "" {
			return nil, nil, refs, problem
		}
		args[k], labels[k] = out, l
	}
	return args, labels, refs, ""
}

// refs joins l with the labels of every handle x names. A name that is no
// handle is a problem that depends on nothing hidden: which handles exist
// follows from the calls the model made.
func (r *run) refs(x any, l refLabels) (refLabels, string) {
	switch x := x.(type) {
	case map[string]any:
		if id, ok := x["$handle"]; ok {
			hid, _ := id.(string)
			h := r.c.handle(hid)
			if h == nil {
				ids := make([]string, len(r.c.handles))
				for i := range ids {
					ids[i] = "h" + strconv.Itoa(i+1)
				}
				return l, fmt.Sprintf("no handle %v (handles: %s)", id, strings.Join(ids, ", "))
			}
			return refLabels{l.dyn.Join(h.label()), l.static.Join(h.static), true}, ""
		}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			var problem string
			if l, problem = r.refs(x[k], l); problem != "" {
				return l, problem
			}
		}
	case []any:
		for _, e := range x {
			var problem string
			if l, problem = r.refs(e, l); problem != "" {
				return l, problem
			}
		}
	}
	return l, ""
}

// substitute replaces every handle in x by its value, telling found of
// each one, with its path below x (dotted) and its label. Its problems
// never quote a value.
func (r *run) substitute(x any, path string, found func(path string, l ifc.Label)) (any, string) {
	switch x := x.(type) {
	case map[string]any:
		if id, ok := x["$handle"]; ok {
			hid, _ := id.(string)
			h := r.c.handle(hid)
			if h == nil {
				return nil, fmt.Sprintf("no handle %q", fmt.Sprint(id))
			}
			if h.failed != "" {
				return nil, fmt.Sprintf("handle %s has no value", hid)
			}
			val, l := h.out, h.label()
			if f, ok := x["field"]; ok {
				fs, _ := f.(string)
				parts := strings.Split(fs, ".")
				for _, p := range parts {
					m, ok := val.(map[string]any)
					if !ok {
						return nil, fmt.Sprintf("handle %s has no field %q", hid, fs)
					}
					if val, ok = m[p]; !ok {
						return nil, fmt.Sprintf("handle %s has no field %q", hid, fs)
					}
				}
			}
			found(path, l)
			return val, ""
		}
		out := make(map[string]any, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) {
			v, problem := r.substitute(x[k], join(path, k), found)
			if problem != "" {
				return nil, problem
			}
			out[k] = v
		}
		return out, ""
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			v, problem := r.substitute(e, join(path, strconv.Itoa(i)), found)
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

type output struct {
	v      any
	base   ifc.Label
	fields map[string]ifc.Label
}

// final checks the model's final answer. It returns the step's output, or
// what is wrong with the answer and refs, the label of what that depends
// on: the context's, joined with the labels of the handles the answer
// names. An output with handles in it carries their labels whole: whether
// it was accepted depended on their values.
func (r *run) final(content string) (output, string, refLabels) {
	c := r.c
	none := refLabels{dyn: c.label, static: c.label}
	text := strings.TrimSpace(content)
	schema := r.s.Agent.OutputSchema
	if schema == nil {
		// A plain answer; one that is JSON with handles in it gets their
		// values, and their labels.
		x, err := jsonvalue.Decode([]byte(text))
		if err != nil || !strings.Contains(text, `"$handle"`) {
			return output{v: content, base: c.label, fields: map[string]ifc.Label{}}, "", none
		}
		return r.resolve(x, nil)
	}
	text = strings.TrimPrefix(strings.TrimSuffix(text, "```"), "```json")
	text = strings.TrimSpace(strings.TrimPrefix(text, "```"))
	x, err := jsonvalue.Decode([]byte(text))
	if err != nil {
		return output{}, "it is not JSON", none
	}
	return r.resolve(x, schema)
}

// resolve puts the values of the handles in a final answer x in their
// place and checks the result against schema, when there is one.
func (r *run) resolve(x any, schema *schemas.Schema) (output, string, refLabels) {
	c := r.c
	out := output{base: c.label, fields: map[string]ifc.Label{}}
	refs, problem := r.refs(x, refLabels{dyn: c.label, static: c.label})
	if problem != "" {
		return out, problem, refs
	}
	v, problem := r.substitute(x, "", func(path string, l ifc.Label) {
		if path == "" {
			out.base = out.base.Join(l)
			return
		}
		out.fields[path] = out.fields[path].Join(l)
	})
	if problem != "" {
		return out, problem, refs
	}
	if schema != nil {
		if ms := schema.Mismatches(v); len(ms) > 0 {
			return out, "it does not satisfy the output schema (" + strings.Join(ms, "; ") + ")", refs
		}
	}
	out.v, out.base = v, out.base.Join(refs.dyn)
	return out, "", refs
}

// inspect answers one question about a hidden value with a quarantined
// call to the model's extract tool, through the policy gate. The answer is
// narrow (a boolean, an enum, a bounded number, a date) so that it cannot
// carry instructions; it keeps the hidden value's label unless a policy
// rule endorses the call, and is shown: the context label rises by it, as
// it does by an inspect that fails, since that too says something of the
// value.
func (r *run) inspect(ctx context.Context, key string, tc ToolCall, reply func(string, ifc.Label, *callOutcome)) *Result {
	c := r.c
	var in struct {
		Handle   string         `json:"handle"`
		Question string         `json:"question"`
		Schema   map[string]any `json:"schema"`
	}
	// These problems are in what the model wrote.
	if err := json.Unmarshal(tc.Arguments, &in); err != nil {
		reply(toolError("arguments of inspect: want {handle, question, schema}"), c.label, nil)
		return nil
	}
	h := c.handle(in.Handle)
	if h == nil {
		reply(toolError("inspect: no handle %q", in.Handle), c.label, nil)
		return nil
	}
	if strings.TrimSpace(in.Question) == "" {
		reply(toolError("inspect: the question is empty"), c.label, nil)
		return nil
	}
	if problem := NarrowSchema(in.Schema); problem != "" {
		reply(toolError("inspect: %s", problem), c.label, nil)
		return nil
	}
	hl := h.label()
	if h.failed != "" {
		reply(toolError("inspect: handle %s has no value", in.Handle), c.label.Join(hl), nil)
		return nil
	}
	text, ok := h.out.(string)
	if !ok {
		b, _ := json.Marshal(h.out)
		text = string(b)
	}
	a := r.s.Agent
	extract := flow.AgentTool{Name: a.Model + ".extract", Worker: a.Model, Spec: a.Extract}
	// Quarantined: the extract reads the hidden value and the question
	// only, not the conversation.
	o := r.h.Call(ctx, Call{Key: key, Tool: extract, Label: c.label.Join(hl),
		Args:      map[string]any{"text": text, "instruction": in.Question, "schema": in.Schema},
		ArgLabels: map[string]ifc.Label{"text": hl, "instruction": c.label, "schema": c.label}})
	switch {
	case o.Status == Held:
		return &Result{Status: Held, Label: c.label.Join(hl), Error: "the call to " + extract.Name + " is held for approval"}
	case o.Stop:
		return &Result{Status: Failed, Label: c.label, Error: o.Error}
	case o.Status == Completed:
		b, _ := json.Marshal(map[string]any{"answer": o.Output})
		reply(string(b), o.label(), nil)
	default:
		reply(toolError("inspect failed: %s %s", o.Error, strings.Join(o.Reasons, "; ")), o.Label.Join(hl), nil)
	}
	return nil
}

// NarrowSchema accepts the schemas inspect may answer with: a boolean, an
// enum of strings, a number or integer with both bounds, a date string.
func NarrowSchema(s map[string]any) string {
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
		if enum, ok := s["enum"].([]any); ok && allowed("type", "enum") {
			return narrowEnum(enum, want)
		}
		if s["format"] == "date" && allowed("type", "format") {
			return ""
		}
	case "number", "integer":
		lo, hi := isNumber(s["minimum"]), isNumber(s["maximum"])
		if lo && hi && allowed("type", "minimum", "maximum") {
			return ""
		}
	}
	return want
}

// isNumber says x is a JSON number, decoded as an integer or not.
func isNumber(x any) bool {
	switch x.(type) {
	case float64, int64, int:
		return true
	}
	return false
}

// narrowEnum accepts from 1 to 32 strings of at most 64 bytes each.
func narrowEnum(enum []any, want string) string {
	if len(enum) == 0 || len(enum) > 32 {
		return want
	}
	for _, e := range enum {
		if x, ok := e.(string); !ok || len(x) > 64 {
			return want + "; enum values are strings of at most 64 characters"
		}
	}
	return ""
}
