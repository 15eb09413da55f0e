package llm

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/sluicehq/sluice/worker"
)

// anthropicVersion is the API version every request names.
const anthropicVersion = "2023-06-01"

// answerTool is the tool that extract makes the model call: its input is
// the answer.
const answerTool = "answer"

// The anthropic backend calls Anthropic's Messages API:
//
//	backend: anthropic
//	base_url: https://api.anthropic.com   # the default; the worker's net grant must name its host:port
//	model: claude-sonnet-4-5
//	api_key: "{{secret:anthropic_key}}"   # a placeholder; the egress broker fills it in (x-api-key)
//	max_retries: 3                        # on 429, 529 and 5xx, with backoff or as Retry-After says
//	max_tokens: 4096                      # the API requires a bound; this is the default
//	temperature: 0.2                      # sent only when set
//
// The client is this file, not the SDK: every request is one egress call
// to the orchestrator's broker, which holds the key and fills it in for
// the granted hosts only, so the worker needs a request encoder and a
// response decoder, not an HTTP client (docs/workers.md).
// Its configuration is an apiConfig, checked by loadAPIConfig.
type anthropic struct{ cfg apiConfig }

// wire types of the Messages API.
type anRequest struct {
	Model       string      `json:"model"`
	MaxTokens   int         `json:"max_tokens"`
	System      string      `json:"system,omitempty"`
	Messages    []anMessage `json:"messages"`
	Tools       []anTool    `json:"tools,omitempty"`
	ToolChoice  any         `json:"tool_choice,omitempty"`
	Temperature *float64    `json:"temperature,omitempty"`
}

type anMessage struct {
	Role    string    `json:"role"`
	Content []anBlock `json:"content"`
}

// anBlock is a content block: text, tool_use (from the model) or
// tool_result (to it).
type anBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   string          `json:"content,omitempty"`
}

type anTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type anResponse struct {
	Content    []anBlock `json:"content"`
	StopReason string    `json:"stop_reason"`
	Usage      *struct {
		InputTokens  int64 `json:"input_tokens"`
		OutputTokens int64 `json:"output_tokens"`
	} `json:"usage"`
}

func textBlock(s string) anBlock { return anBlock{Type: "text", Text: s} }

func (a *anthropic) complete(ctx context.Context, call *worker.Call, system, prompt string) (string, error) {
	r, err := a.post(ctx, call, anRequest{System: system,
		Messages: []anMessage{{Role: "user", Content: []anBlock{textBlock(prompt)}}}})
	if err != nil {
		return "", err
	}
	text, ok := r.text()
	if !ok {
		return "", worker.Failed("the model answered with no text")
	}
	return text, nil
}

// text joins the response's text blocks; ok is false when it has none.
func (r *anResponse) text() (string, bool) {
	var b strings.Builder
	ok := false
	for _, c := range r.Content {
		if c.Type == "text" {
			b.WriteString(c.Text)
			ok = true
		}
	}
	return b.String(), ok
}

// extract makes the model call one tool, answer, whose input schema is
// the schema: the API's way to a JSON answer of a given shape. The input
// of a tool is an object, so any other schema is wrapped as the property
// value of one.
func (a *anthropic) extract(ctx context.Context, call *worker.Call, instruction, text string, schema json.RawMessage) (json.RawMessage, error) {
	input, wrapped := objectSchema(schema)
	req := anRequest{
		System:     "Answer by calling the tool " + answerTool + " once, with input that satisfies its schema. " + instruction,
		Messages:   []anMessage{{Role: "user", Content: []anBlock{textBlock(text)}}},
		Tools:      []anTool{{Name: answerTool, Description: "Give the answer.", InputSchema: input}},
		ToolChoice: map[string]any{"type": "tool", "name": answerTool},
	}
	r, err := a.post(ctx, call, req)
	if err != nil {
		return nil, err
	}
	for _, c := range r.Content {
		if c.Type == "tool_use" && c.Name == answerTool {
			return unwrap(c.Input, wrapped)
		}
	}
	return nil, worker.Failed("the model did not call the tool %s with its answer", answerTool)
}

func (a *anthropic) chat(ctx context.Context, call *worker.Call, messages []Message, tools []ToolSpec) (Message, error) {
	req := anRequest{}
	var system []string
	add := func(role string, blocks ...anBlock) {
		// The API wants user and assistant to alternate: consecutive
		// messages of one role (the results of parallel tool calls) go
		// into one message.
		if n := len(req.Messages); n > 0 && req.Messages[n-1].Role == role {
			req.Messages[n-1].Content = append(req.Messages[n-1].Content, blocks...)
			return
		}
		req.Messages = append(req.Messages, anMessage{Role: role, Content: blocks})
	}
	for _, m := range messages {
		content := ""
		if m.Content != nil {
			content = *m.Content
		}
		switch m.Role {
		case "system":
			system = append(system, content)
		case "user":
			add("user", textBlock(content))
		case "assistant":
			var blocks []anBlock
			if content != "" {
				blocks = append(blocks, textBlock(content))
			}
			for _, tc := range m.ToolCalls {
				in := tc.Arguments
				if len(in) == 0 {
					in = json.RawMessage("{}")
				}
				blocks = append(blocks, anBlock{Type: "tool_use", ID: tc.ID, Name: tc.Name, Input: in})
			}
			if len(blocks) > 0 {
				add("assistant", blocks...)
			}
		case "tool":
			add("user", anBlock{Type: "tool_result", ToolUseID: m.ToolCallID, Content: content})
		}
	}
	req.System = strings.Join(system, "\n\n")
	for _, t := range tools {
		params := t.Parameters
		if len(params) == 0 {
			params = json.RawMessage(`{"type":"object"}`)
		}
		req.Tools = append(req.Tools, anTool{Name: t.Name, Description: t.Description, InputSchema: params})
	}
	r, err := a.post(ctx, call, req)
	if err != nil {
		return Message{}, err
	}
	var out Message
	if text, ok := r.text(); ok && text != "" {
		out.Content = &text
	}
	for _, c := range r.Content {
		if c.Type == "tool_use" {
			in := c.Input
			if len(in) == 0 {
				in = json.RawMessage("{}")
			}
			out.ToolCalls = append(out.ToolCalls, ToolCall{ID: c.ID, Name: c.Name, Arguments: in})
		}
	}
	return out, nil
}

// post sends one Messages request through the egress broker (see send).
// The usage it reports is added to the call's; a refusal, and an answer
// cut off at max_tokens, are errors.
func (a *anthropic) post(ctx context.Context, call *worker.Call, req anRequest) (*anResponse, error) {
	req.Model = a.cfg.Model
	req.MaxTokens = *a.cfg.MaxTokens
	req.Temperature = a.cfg.Temperature
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	headers := map[string]string{"Content-Type": "application/json", "Accept": "application/json",
		"Anthropic-Version": anthropicVersion}
	if a.cfg.APIKey != "" {
		headers["X-Api-Key"] = a.cfg.APIKey
	}
	endpoint := strings.TrimSuffix(a.cfg.BaseURL, "/") + "/v1/messages"
	b, err := send(ctx, call, endpoint, headers, body, *a.cfg.MaxRetries)
	if err != nil {
		return nil, err
	}
	var r anResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, worker.Failed("the model API answered with no message")
	}
	if r.Usage != nil {
		call.AddUsage(r.Usage.InputTokens, r.Usage.OutputTokens)
	}
	switch r.StopReason {
	case "refusal":
		return nil, worker.Failed("the model refused to answer (stop_reason refusal)")
	case "max_tokens":
		return nil, worker.Failed("the model's answer was cut off at max_tokens (%d); raise max_tokens in the llm worker's config", *a.cfg.MaxTokens)
	case "model_context_window_exceeded":
		return nil, worker.Failed("the conversation exceeds the model's context window")
	}
	return &r, nil
}
