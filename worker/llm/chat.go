package llm

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// Message is one message of a conversation (schemas.ChatMessage).
type Message = schemas.ChatMessage

// ToolCall is a model's request to call a tool.
type ToolCall = schemas.ChatToolCall

// ToolSpec offers a tool to the model (schemas.ChatTool).
type ToolSpec = schemas.ChatTool

type chatArgs struct {
	Messages []Message  `json:"messages"`
	Tools    []ToolSpec `json:"tools"`
}

func (t *tools) chat(ctx context.Context, call *worker.Call) (any, error) {
	var args chatArgs
	if err := decodeArgs(call.Args, &args); err != nil {
		return nil, err
	}
	if len(args.Messages) == 0 {
		return nil, worker.BadArguments("argument messages is empty")
	}
	for i, m := range args.Messages {
		switch m.Role {
		case "system", "user", "assistant", "tool":
		default:
			return nil, worker.BadArguments("argument messages[%d].role must be system, user, assistant or tool", i)
		}
	}
	msg, err := t.b.chat(ctx, call, args.Messages, args.Tools)
	if err != nil {
		return nil, err
	}
	offered := map[string]bool{}
	for _, ts := range args.Tools {
		offered[ts.Name] = true
	}
	for i, tc := range msg.ToolCalls {
		if !json.Valid(tc.Arguments) || !strings.HasPrefix(strings.TrimSpace(string(tc.Arguments)), "{") {
			return nil, worker.Failed("the model's tool call %d has arguments that are not a JSON object", i)
		}
		if msg.ToolCalls[i].ID == "" {
			msg.ToolCalls[i].ID = fmt.Sprintf("call_%d", i+1)
		}
	}
	if msg.Content == nil && len(msg.ToolCalls) == 0 {
		empty := ""
		msg.Content = &empty
	}
	msg.Role = ""
	return map[string]any{"message": msg}, nil
}

// render writes a conversation as text, for the script's regular
// expressions: one line per message, "role: content", tool calls and
// their arguments written out.
func render(messages []Message) string {
	var b strings.Builder
	for _, m := range messages {
		b.WriteString(m.Role)
		b.WriteString(": ")
		if m.Content != nil {
			b.WriteString(*m.Content)
		}
		for _, tc := range m.ToolCalls {
			fmt.Fprintf(&b, " [call %s %s]", tc.Name, tc.Arguments)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// chat answers from the script: the turn is 1 for the model's first answer
// in a conversation, and the regular expressions see the whole
// conversation rendered as text.
func (m *model) chat(_ context.Context, _ *worker.Call, messages []Message, _ []ToolSpec) (Message, error) {
	turn := 1
	for _, msg := range messages {
		if msg.Role == "assistant" {
			turn++
		}
	}
	prompt := render(messages)
	if m.hijackable {
		// A model reads the text inside a JSON tool result, not its
		// escaped form: so does the worst-case one, and what it reads
		// there comes first.
		prompt = toolTexts(messages) + prompt
	}
	a, err := m.answerAt(prompt, turn)
	if err != nil {
		return Message{}, err
	}
	var out Message
	var text string
	if json.Unmarshal(a, &text) == nil {
		return Message{Content: &text}, nil
	}
	if err := json.Unmarshal(a, &out); err != nil || (out.Content == nil && len(out.ToolCalls) == 0) {
		return Message{}, worker.Failed("the model's answer is not a message: want a string, {content: …} or {tool_calls: […]}")
	}
	return out, nil
}

// toolTexts writes the strings inside tool messages whose content is JSON,
// unescaped, one after the other.
func toolTexts(messages []Message) string {
	var b strings.Builder
	for _, m := range messages {
		if m.Role == "tool" && m.Content != nil {
			b.WriteString(jsonTexts(*m.Content))
		}
	}
	return b.String()
}

// jsonTexts writes the strings inside s, when s is JSON, unescaped, one per
// line (object members in key order); it returns "" for anything else.
func jsonTexts(s string) string {
	var v any
	if json.Unmarshal([]byte(s), &v) != nil {
		return ""
	}
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			b.WriteString(x)
			b.WriteByte('\n')
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(x)) {
				walk(x[k])
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return b.String()
}
