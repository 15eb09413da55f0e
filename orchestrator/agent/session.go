package agent

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/schemas"
)

// Session is an agent step driven from outside, one call at a time: an
// MCP client, not a model, chooses each call. Everything the client is
// sent about a call goes through the conversation's one writer, tell, as
// it would for a model: a result below the session's integrity comes back
// as a handle that looks the same whether the call succeeded or failed,
// and anything shown raises the session's context label, which every later
// call carries to the gate.
type Session struct {
	mu      sync.Mutex
	r       *run
	offered []schemas.ChatTool
	n       int
}

// NewSession starts a session with s's tools and handle rules; s.Label is
// what the client is taken to know when it starts. s.Chat and
// s.Instructions are not used: no model is asked anything but inspect's.
func NewSession(h Host, s Step) *Session {
	c := &conversation{label: s.Label, hide: s.Agent.HideUntrusted, latest: true}
	r := &run{h: h, s: s, c: c, tools: map[string]flow.AgentTool{}, session: true}
	offered, described := r.offer()
	// The client is shown the tools' descriptions before anything else.
	c.tell(Message{Role: "system", Content: str("tools offered")}, described, nil)
	return &Session{r: r, offered: offered}
}

// Tools lists the tools the session offers, under the names the client
// uses (OfferedName), with inspect when it can inspect handles.
func (s *Session) Tools() []schemas.ChatTool { return slices.Clone(s.offered) }

// Label is the session's context label: the join of everything its client
// was shown, and of what decided that it was shown.
func (s *Session) Label() ifc.Label {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.c.label
}

// Call makes one call the client asked for (a tool it was offered, by its
// offered name, or inspect) through the host, and returns the text the
// client is sent: the result, a handle, or why the call was not made.
// Calls of one session are made one at a time, in the order they come.
func (s *Session) Call(ctx context.Context, name string, args json.RawMessage) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	tc := ToolCall{ID: "call_" + strconv.Itoa(s.n), Name: name, Arguments: args}
	if len(args) == 0 {
		tc.Arguments = json.RawMessage("{}")
	}
	if stop := s.r.toolCall(ctx, s.n, 0, tc); stop != nil {
		// The call could not be recorded, or the session is ending:
		// nothing about its outcome is known to the client.
		s.r.c.tell(Message{Role: "tool", ToolCallID: tc.ID, Name: name,
			Content: str(toolError("the call was not completed: %s", stop.Error))}, stop.Label, nil)
	}
	m := s.r.c.last()
	if m.Content == nil {
		return ""
	}
	return *m.Content
}
