package agent

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/schemas"
)

// Message is one message of a conversation, as a model's chat tool takes
// it; ToolCall is a call a model proposes.
type (
	Message  = schemas.ChatMessage
	ToolCall = schemas.ChatToolCall
)

// handle is a value the model was not shown: the outcome of a call (its
// output, or the fact that it failed and why), kept with its label.
type handle struct {
	tool string
	// out is the output of a call that completed; failed says it did not,
	// and why (never shown to the model: using the handle fails).
	out    any
	failed string
	base   ifc.Label
	fields map[string]ifc.Label
	// static is the label the outcome was known to have before the call
	// (callOutcome).
	static ifc.Label
}

func (h *handle) label() ifc.Label {
	l := h.base
	for _, k := range slices.Sorted(maps.Keys(h.fields)) {
		l = l.Join(h.fields[k])
	}
	return l
}

// conversation is what a model is told in an agent step, and the label of
// all of it.
//
// Its messages are appended to in one place, tell; nothing else in the
// package touches them (TestConversationHasOneWriter). So whoever reviews
// what a model can learn reads tell, and the labels its callers pass.
type conversation struct {
	msgs []Message
	// label is the context label: the join of everything the model was
	// shown, and of what decided that it was shown.
	label ifc.Label
	// hide: a call outcome below the context's integrity is kept behind a
	// handle rather than shown.
	hide    bool
	handles []*handle
	// latest keeps only the latest message: a session's client is sent
	// each reply once, and no model reads the conversation again.
	latest bool
	// fixed: the context label may not rise. A message that would raise it
	// is not told (a planner's conversation: a planner is shown trusted
	// text only, at the label of its instructions).
	fixed bool
}

// callOutcome is the outcome of a call the model asked for, as tell takes
// it: the tool, the outcome kept behind a handle if it is hidden, and
// static, the label the outcome was known to have before the call was
// made — the join of the call's context, of the handles its arguments name
// (as they were known when each was made) and of the tool's declared
// output label. Only static decides whether the outcome is hidden: so that
// decision, and the handle's number, depend on nothing the call returned.
type callOutcome struct {
	tool   *flow.AgentTool
	static ifc.Label
	h      *handle
}

// tell adds a message to the conversation. dep is the label of everything
// the message depends on: the values it quotes, and the facts it reveals
// (that a call failed, was refused, that a value has some shape).
//
// When the message reports the outcome of a call (o), the conversation
// hides, and o's static label is below the context's integrity, the model
// is shown a handle instead: a description made of the tool's name and
// output schema and the handle's number — the same whether the call
// succeeded or failed, whatever it returned — and the outcome is kept
// behind it. Otherwise the message is shown as it is and the context label
// is raised by dep: the model now knows what the message says. In a fixed
// conversation a message whose dep is not below the context label is not
// told, and tell reports false.
func (c *conversation) tell(m Message, dep ifc.Label, o *callOutcome) bool {
	if o != nil && c.hide && o.static.Integrity() < c.label.Integrity() {
		id := "h" + strconv.Itoa(len(c.handles)+1)
		o.h.tool, o.h.static = o.tool.Name, o.static
		c.handles = append(c.handles, o.h)
		// Field names come from the tool's output schema, never from the
		// value: a key can carry an instruction as well as a value, and
		// which keys a value has says something about it.
		fields := []string{}
		if o.tool.Spec != nil && o.tool.Spec.Output != nil {
			props, _ := o.tool.Spec.Output.Shape()
			fields = slices.Sorted(slices.Values(props))
		}
		b, _ := json.Marshal(map[string]any{"$handle": id, "tool": o.tool.Name, "fields": fields})
		m.Content, m.ToolCalls = str(string(b)), nil
	} else {
		if c.fixed && Raises(c.label, dep) {
			return false
		}
		c.label = c.label.Join(dep)
	}
	if c.latest {
		c.msgs = append(c.msgs[:0], m)
		return true
	}
	c.msgs = append(c.msgs, m)
	return true
}

// Raises reports whether joining dep into l makes it less trusted or more
// secret: whether telling a model at context l something that depends on
// dep tells it more than l allows. Sources alone do not count.
func Raises(l, dep ifc.Label) bool {
	if dep.Integrity() < l.Integrity() {
		return true
	}
	for _, tag := range dep.Secrecy() {
		if !l.HasSecrecy(tag) {
			return true
		}
	}
	return false
}

// Planner is a planner's conversation: the same conversation as an agent
// model's, told through tell, fixed at the label it starts with. Nothing
// that depends on a value less trusted or more secret than its start —
// a tool result, an input, an error that quotes either — can be told.
type Planner struct{ c conversation }

// NewPlanner starts a planner's conversation at label.
func NewPlanner(label ifc.Label) *Planner {
	return &Planner{c: conversation{label: label, fixed: true}}
}

// Tell tells the planner m, which depends on dep; it reports false, and
// tells nothing, when dep would raise the conversation's label.
func (p *Planner) Tell(m Message, dep ifc.Label) bool { return p.c.tell(m, dep, nil) }

// Messages returns a copy of the conversation, to send to the planner.
func (p *Planner) Messages() []Message { return p.c.messages() }

// Label is the conversation's label: what the planner was told depends on
// nothing above it.
func (p *Planner) Label() ifc.Label { return p.c.label }

// handle returns handle id, or nil.
func (c *conversation) handle(id string) *handle {
	if len(id) < 2 || id[0] != 'h' {
		return nil
	}
	n, err := strconv.Atoi(id[1:])
	if err != nil || n < 1 || n > len(c.handles) || strconv.Itoa(n) != id[1:] {
		return nil
	}
	return c.handles[n-1]
}

// last returns the latest message told.
func (c *conversation) last() Message {
	if len(c.msgs) == 0 {
		return Message{}
	}
	return c.msgs[len(c.msgs)-1]
}

// messages returns a copy of the conversation, to send to the model.
func (c *conversation) messages() []Message { return slices.Clone(c.msgs) }

func str(s string) *string { return &s }
