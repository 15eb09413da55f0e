package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/sluicehq/sluice/worker"
)

// apiConfig configures a model API backend; for openai, an
// OpenAI-compatible chat-completions endpoint
// (OpenAI, vLLM, Ollama, llama.cpp server):
//
//	backend: openai
//	base_url: http://127.0.0.1:11434/v1   # the worker's net grant must name its host:port
//	model: llama3.1
//	api_key: "{{secret:openai_key}}"      # a placeholder; the egress broker fills it in
//	max_retries: 3                        # on 429 and 5xx, with backoff or as Retry-After says
//	max_tokens: 4096                      # sent as max_completion_tokens
//	temperature: 0.2                      # sent only when set (reasoning models refuse it)
//
// The worker never holds the key: it sends the placeholder, and the broker
// substitutes it for the hosts the secret is granted to.
type apiConfig struct {
	BaseURL     string   `json:"base_url"`
	Model       string   `json:"model"`
	APIKey      string   `json:"api_key"`
	MaxRetries  *int     `json:"max_retries"`
	MaxTokens   *int     `json:"max_tokens"`
	Temperature *float64 `json:"temperature"`
}

// loadAPIConfig checks the configuration of backend (openai or
// anthropic): only its keys, a base URL (defaultURL when none is given,
// as exampleURL otherwise), a model, and the keys every API backend has.
func loadAPIConfig(raw json.RawMessage, backend, defaultURL, exampleURL string, c *apiConfig) error {
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(raw, &keys)
	for k := range keys {
		switch k {
		case "backend", "base_url", "model", "api_key", "max_retries", "max_tokens", "temperature":
		default:
			return fmt.Errorf("llm config: unknown key %q for backend %s (keys are: backend, base_url, model, api_key, max_retries, max_tokens, temperature)", k, backend)
		}
	}
	if err := json.Unmarshal(raw, c); err != nil {
		return errors.New("llm config: base_url, model and api_key must be strings; max_retries, max_tokens and temperature numbers")
	}
	if c.BaseURL == "" {
		c.BaseURL = defaultURL
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("llm config: base_url must be an http(s) URL such as %s", exampleURL)
	}
	if c.Model == "" {
		return fmt.Errorf("llm config: model is required for backend %s", backend)
	}
	return checkCommon(backend, backend+"_key", c.APIKey, &c.MaxRetries, &c.MaxTokens, c.Temperature)
}

// checkCommon checks the keys every API backend has and fills in the
// defaults of max_retries and max_tokens.
func checkCommon(backend, keyName, apiKey string, retries, maxTokens **int, temperature *float64) error {
	if apiKey != "" && !strings.Contains(apiKey, "{{secret:") {
		return fmt.Errorf("llm config: api_key must be a secret placeholder such as \"{{secret:%s}}\", not the key itself", keyName)
	}
	if *retries == nil {
		n := 3
		*retries = &n
	}
	if **retries < 0 || **retries > 10 {
		return errors.New("llm config: max_retries must be from 0 to 10")
	}
	if *maxTokens == nil {
		n := defaultMaxTokens
		*maxTokens = &n
	}
	if **maxTokens < 1 {
		return fmt.Errorf("llm config: max_tokens must be at least 1 for backend %s", backend)
	}
	if temperature != nil && (*temperature < 0 || *temperature > 2) {
		return errors.New("llm config: temperature must be from 0 to 2")
	}
	return nil
}

type openAI struct{ cfg apiConfig }

// wire types of the chat-completions API.
type oaMessage struct {
	Role       string       `json:"role"`
	Content    *string      `json:"content"`
	Refusal    *string      `json:"refusal,omitempty"`
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
	// Temperature is sent only when configured: reasoning models refuse
	// any value.
	Temperature         *float64 `json:"temperature,omitempty"`
	MaxCompletionTokens int      `json:"max_completion_tokens,omitempty"`
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
		Message      oaMessage `json:"message"`
		FinishReason string    `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int64 `json:"prompt_tokens"`
		CompletionTokens int64 `json:"completion_tokens"`
	} `json:"usage"`
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
	root, wrapped := objectSchema(schema)
	req := oaRequest{
		Messages: []oaMessage{
			{Role: "system", Content: str("Answer with one JSON value that satisfies the given schema, and nothing else. " + instruction)},
			{Role: "user", Content: str(text)},
		},
		// strict: the API holds the answer to the schema, when the schema
		// is one strict mode takes (see strictable).
		ResponseFormat: map[string]any{"type": "json_schema",
			"json_schema": map[string]any{"name": "answer", "strict": strictable(root), "schema": root}},
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
	return unwrap(json.RawMessage(a), wrapped)
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

// post sends one chat-completions request through the egress broker (see
// send) and returns the first choice's message. The usage it reports is
// added to the call's; a refusal, and an answer cut off at max_tokens, are
// errors.
func (o *openAI) post(ctx context.Context, call *worker.Call, req oaRequest) (oaMessage, error) {
	req.Model = o.cfg.Model
	req.Temperature = o.cfg.Temperature
	req.MaxCompletionTokens = *o.cfg.MaxTokens
	body, err := json.Marshal(req)
	if err != nil {
		return oaMessage{}, err
	}
	headers := map[string]string{"Content-Type": "application/json", "Accept": "application/json"}
	if o.cfg.APIKey != "" {
		headers["Authorization"] = "Bearer " + o.cfg.APIKey
	}
	endpoint := strings.TrimSuffix(o.cfg.BaseURL, "/") + "/chat/completions"
	b, err := send(ctx, call, endpoint, headers, body, *o.cfg.MaxRetries)
	if err != nil {
		return oaMessage{}, err
	}
	var r oaResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return oaMessage{}, worker.Failed("the model API answered with no choice")
	}
	if r.Usage != nil {
		call.AddUsage(r.Usage.PromptTokens, r.Usage.CompletionTokens)
	}
	if len(r.Choices) == 0 {
		return oaMessage{}, worker.Failed("the model API answered with no choice")
	}
	c := r.Choices[0]
	switch {
	case c.Message.Refusal != nil && *c.Message.Refusal != "":
		return oaMessage{}, worker.Failed("the model refused to answer")
	case c.FinishReason == "length":
		return oaMessage{}, worker.Failed("the model's answer was cut off at max_tokens (%d); raise max_tokens in the llm worker's config", *o.cfg.MaxTokens)
	case c.FinishReason == "content_filter":
		return oaMessage{}, worker.Failed("the model's answer was withheld by the API's content filter")
	}
	return c.Message, nil
}
