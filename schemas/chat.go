package schemas

import "encoding/json"

// ChatMessage is one message of a model conversation, as a chat tool
// (llm.chat) takes and gives it: Sluice's form of the OpenAI chat format,
// in which a tool call names the tool and gives its arguments as a JSON
// object, not a string. The orchestrator's agent loop writes it and the
// llm worker reads it.
type ChatMessage struct {
	Role       string         `json:"role,omitempty"`
	Content    *string        `json:"content,omitempty"`
	ToolCalls  []ChatToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
	Name       string         `json:"name,omitempty"`
}

// ChatToolCall is a model's request to call a tool.
type ChatToolCall struct {
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// ChatTool offers a tool to the model: its name as the model may use it
// (no dots), what it does, and the JSON Schema of its arguments.
type ChatTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}
