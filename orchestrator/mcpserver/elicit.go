package mcpserver

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sluicehq/sluice/internal/display"
	"github.com/sluicehq/sluice/orchestrator/engine"
)

// approveInput is the id of the one input request a held call makes.
const approveInput = "approve"

// pendingKey keys a tool call's pending state in its context.
type pendingKey struct{}

// pending is what one tool call learned while it was held: the question
// to ask the client's user instead of waiting.
type pending struct {
	cancel   context.CancelFunc
	answered bool // the call came with the user's answer: do not ask again

	mu sync.Mutex
	q  *mcp.CallToolResult
}

func (p *pending) question() *mcp.CallToolResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.q
}

// held is told of a call of a session that waits for a person. When the
// client can ask its user (elicitation) and the call carries only values
// the client chose itself, the wait ends and the call's result asks the
// user instead; their answer comes with the client's next try of the
// call and is recorded as given by "elicitation:<client>". A call that
// carries a value the client was not shown is never described to it: a
// person answers it in `sluice approvals` or on the web page.
func (s *Server) held(ctx context.Context, ss *mcp.ServerSession, st engine.StepResult, hidden bool) {
	p, _ := ctx.Value(pendingKey{}).(*pending)
	if p == nil || p.answered || !s.cfg.Elicit || hidden || st.ApprovalID == "" || !canElicit(ss) {
		return
	}
	a, err := s.cfg.Engine.Approval(ctx, st.ApprovalID)
	if err != nil {
		s.log.Warn("held call not asked about", "approval", st.ApprovalID, "err", err)
		return
	}
	// The state names the approval and the hash of the call described:
	// the answer is taken for that call only.
	q := &mcp.CallToolResult{RequestState: a.ID + "." + a.Hash, InputRequests: mcp.InputRequestMap{approveInput: &mcp.ElicitParams{
		Mode: "form", Message: elicitMessage(a),
		RequestedSchema: map[string]any{"type": "object", "required": []string{"approve"},
			"properties": map[string]any{"approve": map[string]any{"type": "boolean",
				"title": "Approve this call", "description": "true lets this one call through; false denies it"}}}}}}
	key := s.sessionKey(ss)
	s.mu.Lock()
	if s.asked[key] == nil {
		s.asked[key] = map[string]string{}
	}
	s.asked[key][a.ID] = a.Hash
	s.mu.Unlock()
	p.mu.Lock()
	p.q = q
	p.mu.Unlock()
	p.cancel()
}

// answer takes the user's answer to the question a held call asked: the
// approval named by the request state must be one this session was asked
// about, and the answer is bound to the hash of the call described.
func (s *Server) answer(ctx context.Context, es *engine.Session, req *mcp.CallToolRequest, client string) {
	id, hash, _ := strings.Cut(req.Params.RequestState, ".")
	res, ok := req.Params.InputResponses[approveInput].(*mcp.ElicitResult)
	if !ok || id == "" || hash == "" {
		return
	}
	// Only a question this session was asked is answered, once: a client
	// cannot answer for a call it was not shown, nor for another
	// session's.
	key := s.sessionKey(req.Session)
	s.mu.Lock()
	asked, was := s.asked[key][id]
	delete(s.asked[key], id)
	s.mu.Unlock()
	if !was || asked != hash {
		s.log.Warn("an answer to a question this session was not asked was refused", "approval", id)
		return
	}
	if res.Action != "accept" && res.Action != "decline" {
		return // dismissed: the call stays held
	}
	approve, _ := res.Content["approve"].(bool)
	ans := engine.Answer{Approved: res.Action == "accept" && approve, Who: "elicitation:" + client, Hash: hash}
	if err := s.decide(ctx, id, ans); err != nil {
		s.log.Warn("answer through elicitation not taken", "approval", id, "run_id", es.ID(), "err", err)
	}
}

func canElicit(ss *mcp.ServerSession) bool {
	p := ss.InitializeParams()
	return p != nil && p.Capabilities != nil && p.Capabilities.Elicitation != nil
}

// elicitMessage describes a held call to the client's user: the tool, its
// arguments as the client sent them, and why it is held.
func elicitMessage(a *engine.Approval) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Sluice holds a call for your approval: %s\n", display.String(a.Tool))
	for _, k := range slices.Sorted(maps.Keys(a.Args)) {
		v, _ := json.Marshal(a.Args[k])
		fmt.Fprintf(&b, "  %s: %s\n", display.String(k), display.String(string(v)))
	}
	if why := a.WhyHeld(); len(why) > 0 {
		fmt.Fprintf(&b, "Held because: %s\n", display.String(strings.Join(why, "; ")))
	}
	for _, l := range a.Lookalikes {
		fmt.Fprintf(&b, "Warning: %s %q looks like %q, which is known\n", display.String(l.Arg), display.String(l.Value), display.String(l.Like))
	}
	b.WriteString("Approve it only if you asked for exactly this.")
	return b.String()
}
