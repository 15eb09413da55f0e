package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// openAIConfig configures an OpenAI-compatible chat-completions endpoint
// (OpenAI, vLLM, Ollama, llama.cpp server):
//
//	backend: openai
//	base_url: http://127.0.0.1:11434/v1   # the worker's net grant must name its host:port
//	model: llama3.1
//	api_key: "{{secret:openai_key}}"      # a placeholder; the egress broker fills it in
//	max_retries: 3                        # on 429 and 5xx, with backoff
//
// The worker never holds the key: it sends the placeholder, and the broker
// substitutes it for the hosts the secret is granted to.
type openAIConfig struct {
	BaseURL    string `json:"base_url"`
	Model      string `json:"model"`
	APIKey     string `json:"api_key"`
	MaxRetries *int   `json:"max_retries"`
}

func loadOpenAIConfig(raw json.RawMessage, c *openAIConfig) error {
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(raw, &keys)
	for k := range keys {
		switch k {
		case "backend", "base_url", "model", "api_key", "max_retries":
		default:
			return fmt.Errorf("llm config: unknown key %q for backend openai (keys are: backend, base_url, model, api_key, max_retries)", k)
		}
	}
	if err := json.Unmarshal(raw, c); err != nil {
		return errors.New("llm config: base_url, model and api_key must be strings, max_retries a number")
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("llm config: base_url must be an http(s) URL such as https://api.openai.com/v1")
	}
	if c.Model == "" {
		return errors.New("llm config: model is required for backend openai")
	}
	if c.APIKey != "" && !strings.Contains(c.APIKey, "{{secret:") {
		return errors.New("llm config: api_key must be a secret placeholder such as \"{{secret:openai_key}}\", not the key itself")
	}
	if c.MaxRetries == nil {
		n := 3
		c.MaxRetries = &n
	}
	if *c.MaxRetries < 0 || *c.MaxRetries > 10 {
		return errors.New("llm config: max_retries must be from 0 to 10")
	}
	return nil
}

type openAI struct{ cfg openAIConfig }

// wire types of the chat-completions API.
type oaMessage struct {
	Role       string       `json:"role"`
	Content    *string      `json:"content"`
	ToolCalls  []oaToolCall `json:"tool_calls,omitempty"`
	ToolCallID string       `json:"tool_call_id,omitempty"`
	Name       string       `json:"name,omitempty"`
}

type oaToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type oaRequest struct {
	Model          string      `json:"model"`
	Messages       []oaMessage `json:"messages"`
	Tools          []oaTool    `json:"tools,omitempty"`
	ResponseFormat any         `json:"response_format,omitempty"`
	Temperature    float64     `json:"temperature"`
}

type oaTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters,omitempty"`
	} `json:"function"`
}

type oaResponse struct {
	Choices []struct {
		Message oaMessage `json:"message"`
	} `json:"choices"`
}

func str(s string) *string { return &s }

func (o *openAI) complete(ctx context.Context, call *worker.Call, system, prompt string) (string, error) {
	var msgs []oaMessage
	if system != "" {
		msgs = append(msgs, oaMessage{Role: "system", Content: str(system)})
	}
	msgs = append(msgs, oaMessage{Role: "user", Content: str(prompt)})
	m, err := o.post(ctx, call, oaRequest{Messages: msgs})
	if err != nil {
		return "", err
	}
	if m.Content == nil {
		return "", worker.Failed("the model answered with no text")
	}
	return *m.Content, nil
}

func (o *openAI) extract(ctx context.Context, call *worker.Call, instruction, text string, schema json.RawMessage) (json.RawMessage, error) {
	req := oaRequest{
		Messages: []oaMessage{
			{Role: "system", Content: str("Answer with one JSON value that satisfies the given schema, and nothing else. " + instruction)},
			{Role: "user", Content: str(text)},
		},
		ResponseFormat: map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "answer", "schema": schema}},
	}
	m, err := o.post(ctx, call, req)
	if err != nil {
		return nil, err
	}
	if m.Content == nil {
		return nil, worker.Failed("the model answered with no text")
	}
	a := strings.TrimSpace(*m.Content)
	// Some servers wrap JSON in a code fence despite the response format.
	a = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(a, "```json"), "```"), "```")
	if !json.Valid([]byte(a)) {
		return nil, worker.Failed("the model's answer is not valid JSON")
	}
	return json.RawMessage(a), nil
}

func (o *openAI) chat(ctx context.Context, call *worker.Call, messages []Message, tools []ToolSpec) (Message, error) {
	req := oaRequest{}
	for _, m := range messages {
		om := oaMessage{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID, Name: m.Name}
		for _, tc := range m.ToolCalls {
			otc := oaToolCall{ID: tc.ID, Type: "function"}
			otc.Function.Name, otc.Function.Arguments = tc.Name, string(tc.Arguments)
			om.ToolCalls = append(om.ToolCalls, otc)
		}
		req.Messages = append(req.Messages, om)
	}
	for _, t := range tools {
		ot := oaTool{Type: "function"}
		ot.Function.Name, ot.Function.Description, ot.Function.Parameters = t.Name, t.Description, t.Parameters
		req.Tools = append(req.Tools, ot)
	}
	m, err := o.post(ctx, call, req)
	if err != nil {
		return Message{}, err
	}
	out := Message{Content: m.Content}
	for i, tc := range m.ToolCalls {
		args := strings.TrimSpace(tc.Function.Arguments)
		if args == "" {
			args = "{}"
		}
		if !json.Valid([]byte(args)) {
			return Message{}, worker.Failed("the model's tool call %d has arguments that are not JSON", i)
		}
		out.ToolCalls = append(out.ToolCalls, ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: json.RawMessage(args)})
	}
	return out, nil
}

// post sends one chat-completions request through the egress broker,
// trying again with backoff on 429 and 5xx, and returns the first choice's
// message.
func (o *openAI) post(ctx context.Context, call *worker.Call, req oaRequest) (oaMessage, error) {
	req.Model = o.cfg.Model
	body, err := json.Marshal(req)
	if err != nil {
		return oaMessage{}, err
	}
	headers := map[string]string{"Content-Type": "application/json", "Accept": "application/json"}
	if o.cfg.APIKey != "" {
		headers["Authorization"] = "Bearer " + o.cfg.APIKey
	}
	endpoint := strings.TrimSuffix(o.cfg.BaseURL, "/") + "/chat/completions"
	backoff := 250 * time.Millisecond
	for try := 0; ; try++ {
		resp, err := call.HTTP(ctx, schemas.EgressRequest{Method: "POST", URL: endpoint, Headers: headers, Body: body})
		if err != nil {
			return oaMessage{}, err
		}
		switch {
		case resp.Status == 200:
			var r oaResponse
			if err := json.Unmarshal(resp.Body, &r); err != nil || len(r.Choices) == 0 {
				return oaMessage{}, worker.Failed("the model API answered with no choice")
			}
			return r.Choices[0].Message, nil
		case (resp.Status == 429 || resp.Status >= 500) && try < *o.cfg.MaxRetries:
			wait := backoff
			if s, err := strconv.Atoi(resp.Headers["Retry-After"]); err == nil && s > 0 {
				wait = min(time.Duration(s)*time.Second, 10*time.Second)
			}
			call.Log.Warn("model API busy; trying again", "status", resp.Status, "attempt", try+1)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return oaMessage{}, ctx.Err()
			}
			backoff = min(backoff*2, 5*time.Second)
		default:
			return oaMessage{}, worker.Failed("the model API answered %d%s", resp.Status, apiError(resp.Body))
		}
	}
}

// apiError returns the API's error type, which names the problem without
// quoting the prompt.
func apiError(body []byte) string {
	var e struct {
		Error struct {
			Type string `json:"type"`
			Code any    `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(bytes.TrimSpace(body), &e) == nil && e.Error.Type != "" {
		return " (" + e.Error.Type + ")"
	}
	return ""
}
