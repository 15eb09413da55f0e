package llm

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// answer is one HTTP answer of a fake model API.
type answer struct {
	status int
	header map[string]string
	body   any // marshalled to JSON; a string is sent as it is
}

// modelAPI is a model API on 127.0.0.1 that checks each request against
// its protocol (check answers 400 with the protocol's error body when a
// request breaks it) and answers with the queued answers first, then with
// next.
type modelAPI struct {
	mu      sync.Mutex
	reqs    []map[string]any
	headers []http.Header
	times   []time.Time
	queue   []answer
	next    func(req map[string]any) answer
	srv     *httptest.Server
}

func newModelAPI(t *testing.T, path string, check func(h http.Header, req map[string]any) (errType string, ok bool), next func(map[string]any) answer) *modelAPI {
	t.Helper()
	f := &modelAPI{next: next}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != path || r.Method != "POST" {
			w.WriteHeader(404)
			io.WriteString(w, `{"type":"error","error":{"type":"not_found_error","message":"Not found"}}`)
			return
		}
		var req map[string]any
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(400)
			io.WriteString(w, `{"error":{"type":"invalid_request_error","message":"not JSON"}}`)
			return
		}
		f.mu.Lock()
		f.reqs, f.headers, f.times = append(f.reqs, req), append(f.headers, r.Header.Clone()), append(f.times, time.Now())
		var a answer
		if len(f.queue) > 0 {
			a, f.queue = f.queue[0], f.queue[1:]
		} else if typ, ok := check(r.Header, req); !ok {
			st := 400
			if typ == "authentication_error" || typ == "invalid_api_key" {
				st = 401
			}
			a = answer{status: st, body: map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": "the request breaks the protocol"}}}
		} else {
			a = f.next(req)
		}
		f.mu.Unlock()
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		if a.status == 0 {
			a.status = 200
		}
		w.WriteHeader(a.status)
		if s, ok := a.body.(string); ok {
			io.WriteString(w, s)
			return
		}
		json.NewEncoder(w).Encode(a.body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *modelAPI) requests() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.reqs...)
}

// toolName is the name rule both APIs apply to tools.
var toolName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// anthropicCheck holds a request to the Messages API's rules: the key
// and version headers, a model, max_tokens, user and assistant turns that
// alternate from user, every tool_result answering a tool_use of the turn
// before, and tool names and schemas as the API wants them.
func anthropicCheck(h http.Header, req map[string]any) (string, bool) {
	if h.Get("X-Api-Key") != testKey || h.Get("Authorization") != "" {
		return "authentication_error", false
	}
	if h.Get("Anthropic-Version") != anthropicVersion {
		return "invalid_request_error", false
	}
	if m, _ := req["model"].(string); m == "" {
		return "invalid_request_error", false
	}
	if n, ok := req["max_tokens"].(float64); !ok || n < 1 {
		return "invalid_request_error", false
	}
	if _, ok := req["temperature"]; ok {
		if _, isNum := req["temperature"].(float64); !isNum {
			return "invalid_request_error", false
		}
	}
	msgs, _ := req["messages"].([]any)
	if len(msgs) == 0 {
		return "invalid_request_error", false
	}
	prevUses := map[string]bool{}
	for i, m := range msgs {
		m := m.(map[string]any)
		want := []string{"user", "assistant"}[i%2]
		if m["role"] != want {
			return "invalid_request_error", false
		}
		uses := map[string]bool{}
		blocks, ok := m["content"].([]any)
		if !ok || len(blocks) == 0 {
			return "invalid_request_error", false
		}
		for _, b := range blocks {
			b := b.(map[string]any)
			switch b["type"] {
			case "text":
				if t, _ := b["text"].(string); t == "" {
					return "invalid_request_error", false
				}
			case "tool_use":
				if _, ok := b["input"].(map[string]any); !ok || m["role"] != "assistant" || b["id"] == "" {
					return "invalid_request_error", false
				}
				uses[b["id"].(string)] = true
			case "tool_result":
				id, _ := b["tool_use_id"].(string)
				if m["role"] != "user" || !prevUses[id] {
					return "invalid_request_error", false
				}
			default:
				return "invalid_request_error", false
			}
		}
		prevUses = uses
	}
	for _, t := range asList(req["tools"]) {
		t := t.(map[string]any)
		name, _ := t["name"].(string)
		sch, _ := t["input_schema"].(map[string]any)
		if !toolName.MatchString(name) || sch["type"] != "object" {
			return "invalid_request_error", false
		}
	}
	return "", true
}

// openAICheck holds a request to the chat-completions rules that matter
// here: the bearer key, a model, messages, function tools with valid
// names, and, as reasoning models do, no temperature at all.
func openAICheck(reasoning bool) func(h http.Header, req map[string]any) (string, bool) {
	return func(h http.Header, req map[string]any) (string, bool) {
		if h.Get("Authorization") != "Bearer "+testKey {
			return "invalid_api_key", false
		}
		if m, _ := req["model"].(string); m == "" || len(asList(req["messages"])) == 0 {
			return "invalid_request_error", false
		}
		if _, ok := req["temperature"]; ok && reasoning {
			return "invalid_request_error", false
		}
		if _, ok := req["max_tokens"]; ok && reasoning {
			return "invalid_request_error", false
		}
		// As OpenAI: the root of a json_schema response format is an
		// object, and strict mode takes only closed objects with every
		// property required.
		if rf, ok := req["response_format"].(map[string]any); ok && rf["type"] == "json_schema" {
			js, _ := rf["json_schema"].(map[string]any)
			sch, _ := js["schema"].(map[string]any)
			if sch["type"] != "object" || js["strict"] == true && !strictNode(sch) {
				return "invalid_request_error", false
			}
		}
		for _, t := range asList(req["tools"]) {
			fn, _ := t.(map[string]any)["function"].(map[string]any)
			if name, _ := fn["name"].(string); !toolName.MatchString(name) {
				return "invalid_request_error", false
			}
		}
		return "", true
	}
}

func asList(v any) []any { l, _ := v.([]any); return l }

func anMsg(stop string, usage [2]int, content ...any) answer {
	return answer{body: map[string]any{"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-test",
		"content": content, "stop_reason": stop, "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": usage[0], "output_tokens": usage[1]}}}
}

func anText(s string) map[string]any { return map[string]any{"type": "text", "text": s} }

func anToolUse(id, name string, input any) map[string]any {
	return map[string]any{"type": "tool_use", "id": id, "name": name, "input": input}
}

func anError(status int, typ string, header map[string]string) answer {
	return answer{status: status, header: header,
		body: map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": "Something about it"}}}
}

func oaMsg(finish string, usage [2]int, msg map[string]any) answer {
	msg["role"] = "assistant"
	return answer{body: map[string]any{"id": "chatcmpl-1", "object": "chat.completion", "model": "m",
		"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": finish}},
		"usage":   map[string]any{"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": usage[0] + usage[1]}}}
}

func oaError(status int, typ, code string, header map[string]string) answer {
	return answer{status: status, header: header,
		body: map[string]any{"error": map[string]any{"message": "Something about it", "type": typ, "param": nil, "code": code}}}
}

func handlersFor(t *testing.T, cfg map[string]any) map[string]worker.Handler {
	t.Helper()
	b, _ := json.Marshal(cfg)
	hs, err := New(worker.Env{Config: b})
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// run calls tool and returns its output as JSON, the usage the call
// reported and the error.
func run(hs map[string]worker.Handler, tool string, args any) (string, *schemas.Usage, error) {
	b, _ := json.Marshal(args)
	c := worker.NewCall(tool, b, broker)
	out, err := hs[tool](context.Background(), c)
	o, _ := json.Marshal(out)
	return string(o), c.Usage(), err
}

var chatArgsWithTools = map[string]any{
	"messages": []any{
		map[string]any{"role": "system", "content": "You book trips."},
		map[string]any{"role": "user", "content": "Find flights"},
	},
	"tools": []any{map[string]any{"name": "web__fetch", "description": "Fetch a page",
		"parameters": map[string]any{"type": "object", "properties": map[string]any{"url": map[string]any{"type": "string"}}}}},
}

// A conversation in which the model called two tools at once and both
// results came back: Anthropic wants both results in one user message.
var chatArgsAfterTools = map[string]any{
	"messages": []any{
		map[string]any{"role": "system", "content": "You book trips."},
		map[string]any{"role": "user", "content": "Find flights"},
		map[string]any{"role": "assistant", "tool_calls": []any{
			map[string]any{"id": "toolu_1", "name": "web__fetch", "arguments": map[string]any{"url": "http://a/"}},
			map[string]any{"id": "toolu_2", "name": "web__fetch", "arguments": map[string]any{"url": "http://b/"}}}},
		map[string]any{"role": "tool", "tool_call_id": "toolu_1", "content": "TP 1234 289 EUR"},
		map[string]any{"role": "tool", "tool_call_id": "toolu_2", "content": "LH 42 310 EUR"},
	},
	"tools": chatArgsWithTools["tools"],
}

func TestAnthropic(t *testing.T) {
	f := newModelAPI(t, "/v1/messages", anthropicCheck, func(req map[string]any) answer {
		if tc, ok := req["tool_choice"].(map[string]any); ok && tc["name"] == "answer" {
			sch := asList(req["tools"])[0].(map[string]any)["input_schema"].(map[string]any)
			if _, wrapped := sch["properties"].(map[string]any)["value"]; wrapped {
				return anMsg("tool_use", [2]int{30, 5}, anToolUse("toolu_a", "answer", map[string]any{"value": "TP 1234"}))
			}
			return anMsg("tool_use", [2]int{30, 7}, anToolUse("toolu_a", "answer", map[string]any{"price": 289, "payee": "acct_tap_air"}))
		}
		msgs := asList(req["messages"])
		if len(msgs) == 1 && len(asList(req["tools"])) > 0 {
			return anMsg("tool_use", [2]int{20, 9}, anText("Let me look."), anToolUse("toolu_9", "web__fetch", map[string]any{"url": "http://x/"}))
		}
		if len(msgs) > 1 {
			return anMsg("end_turn", [2]int{50, 4}, anText("TP 1234 is cheapest."))
		}
		return anMsg("end_turn", [2]int{12, 3}, anText("Lisbon "), anText("is lovely."))
	})
	hs := handlersFor(t, map[string]any{"backend": "anthropic", "base_url": f.srv.URL, "model": "claude-test",
		"api_key": "{{secret:anthropic_key}}", "max_retries": 2})

	out, usage, err := run(hs, "complete", map[string]any{"prompt": "Say something", "system": "Be brief."})
	if err != nil || out != `{"text":"Lisbon is lovely."}` {
		t.Fatalf("complete: %s %v", out, err)
	}
	if usage == nil || *usage != (schemas.Usage{InputTokens: 12, OutputTokens: 3}) {
		t.Errorf("complete usage %+v", usage)
	}
	req := f.requests()[0]
	if req["system"] != "Be brief." || req["max_tokens"] != float64(defaultMaxTokens) || req["model"] != "claude-test" {
		t.Errorf("complete request %v", req)
	}
	if _, ok := req["temperature"]; ok {
		t.Errorf("temperature sent though not configured: %v", req)
	}

	out, usage, err = run(hs, "extract", map[string]any{"text": "TP 1234 289 EUR", "instruction": "Pick one.",
		"schema": map[string]any{"type": "object", "properties": map[string]any{"price": map[string]any{"type": "number"}}, "required": []any{"price"}}})
	if err != nil || out != `{"payee":"acct_tap_air","price":289}` || usage.OutputTokens != 7 {
		t.Fatalf("extract: %s %v %+v", out, err, usage)
	}
	out, _, err = run(hs, "extract", map[string]any{"text": "TP 1234 289 EUR", "instruction": "Which flight?",
		"schema": map[string]any{"type": "string"}})
	if err != nil || out != `"TP 1234"` {
		t.Fatalf("extract of a string: %s %v", out, err)
	}

	out, _, err = run(hs, "chat", chatArgsWithTools)
	if err != nil || out != `{"message":{"content":"Let me look.","tool_calls":[{"id":"toolu_9","name":"web__fetch","arguments":{"url":"http://x/"}}]}}` {
		t.Fatalf("chat: %s %v", out, err)
	}
	reqs := f.requests()
	if req := reqs[len(reqs)-1]; req["system"] != "You book trips." || len(asList(req["messages"])) != 1 {
		t.Errorf("chat request %v", req)
	}
	out, usage, err = run(hs, "chat", chatArgsAfterTools)
	if err != nil || out != `{"message":{"content":"TP 1234 is cheapest."}}` || usage.InputTokens != 50 {
		t.Fatalf("chat after tools: %s %v %+v", out, err, usage)
	}
	reqs = f.requests()
	msgs := asList(reqs[len(reqs)-1]["messages"])
	if len(msgs) != 3 || len(asList(msgs[2].(map[string]any)["content"])) != 2 {
		t.Errorf("the two tool results are not one user message: %v", msgs)
	}
}

// Temperature and max_tokens, when configured, are sent as they are.
func TestAnthropicConfigured(t *testing.T) {
	f := newModelAPI(t, "/v1/messages", anthropicCheck, func(map[string]any) answer {
		return anMsg("end_turn", [2]int{1, 1}, anText("ok"))
	})
	hs := handlersFor(t, map[string]any{"backend": "anthropic", "base_url": f.srv.URL + "/", "model": "claude-test",
		"api_key": "{{secret:anthropic_key}}", "max_tokens": 100, "temperature": 0.5})
	if _, _, err := run(hs, "complete", map[string]any{"prompt": "hi"}); err != nil {
		t.Fatal(err)
	}
	if req := f.requests()[0]; req["max_tokens"] != float64(100) || req["temperature"] != 0.5 {
		t.Errorf("request %v", req)
	}
}

// What each backend makes of an API's errors, rate limits, refusals and
// answers cut off at max_tokens. Usage is reported whenever the API
// reported it, a failed call included.
func TestModelAPIFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backend string
		queue   []answer
		tries   int
		wantErr string
		noText  string // what the error must not repeat
		usage   *schemas.Usage
	}{
		{name: "anthropic 400", backend: "anthropic", queue: []answer{anError(400, "invalid_request_error", nil)},
			tries: 1, wantErr: "answered 400 (invalid_request_error)", noText: "Something about it"},
		{name: "anthropic 401", backend: "anthropic", queue: []answer{anError(401, "authentication_error", nil)},
			tries: 1, wantErr: "answered 401 (authentication_error)"},
		{name: "anthropic 500 past the retries", backend: "anthropic",
			queue: []answer{anError(500, "api_error", nil), anError(500, "api_error", nil), anError(500, "api_error", nil)},
			tries: 3, wantErr: "answered 500 (api_error)"},
		{name: "anthropic 529 overloaded, then an answer", backend: "anthropic",
			queue: []answer{anError(529, "overloaded_error", nil)}, tries: 2},
		{name: "anthropic 429, then an answer", backend: "anthropic",
			queue: []answer{anError(429, "rate_limit_error", map[string]string{"Retry-After": "0"})}, tries: 2},
		{name: "anthropic refusal", backend: "anthropic",
			queue: []answer{anMsg("refusal", [2]int{40, 2}, anText("I can't help with that."))},
			tries: 1, wantErr: "refused", noText: "can't help", usage: &schemas.Usage{InputTokens: 40, OutputTokens: 2}},
		{name: "anthropic max_tokens", backend: "anthropic",
			queue: []answer{anMsg("max_tokens", [2]int{40, 4096}, anText("A long"))},
			tries: 1, wantErr: "cut off at max_tokens (4096)", usage: &schemas.Usage{InputTokens: 40, OutputTokens: 4096}},
		{name: "anthropic not JSON", backend: "anthropic", queue: []answer{{status: 200, body: "<html>"}},
			tries: 1, wantErr: "no message"},
		{name: "openai 400", backend: "openai", queue: []answer{oaError(400, "invalid_request_error", "unsupported_parameter", nil)},
			tries: 1, wantErr: "answered 400 (invalid_request_error: unsupported_parameter)", noText: "Something about it"},
		{name: "openai 503 past the retries", backend: "openai",
			queue: []answer{oaError(503, "server_error", "", nil), oaError(503, "server_error", "", nil), oaError(503, "server_error", "", nil)},
			tries: 3, wantErr: "answered 503 (server_error)"},
		{name: "openai 429, then an answer", backend: "openai",
			queue: []answer{oaError(429, "requests", "rate_limit_exceeded", map[string]string{"Retry-After": "0"})}, tries: 2},
		{name: "openai refusal", backend: "openai",
			queue: []answer{oaMsg("stop", [2]int{30, 6}, map[string]any{"content": nil, "refusal": "I'm sorry, I cannot help."})},
			tries: 1, wantErr: "refused", noText: "cannot help", usage: &schemas.Usage{InputTokens: 30, OutputTokens: 6}},
		{name: "openai max tokens", backend: "openai",
			queue: []answer{oaMsg("length", [2]int{30, 4096}, map[string]any{"content": "A long"})},
			tries: 1, wantErr: "cut off at max_tokens (4096)", usage: &schemas.Usage{InputTokens: 30, OutputTokens: 4096}},
		{name: "openai no choice", backend: "openai", queue: []answer{{status: 200, body: `{"choices":[]}`}},
			tries: 1, wantErr: "no choice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f *modelAPI
			cfg := map[string]any{"backend": tc.backend, "model": "m", "max_retries": 2}
			if tc.backend == "anthropic" {
				f = newModelAPI(t, "/v1/messages", anthropicCheck, func(map[string]any) answer {
					return anMsg("end_turn", [2]int{1, 1}, anText("ok"))
				})
				cfg["base_url"], cfg["api_key"] = f.srv.URL, "{{secret:anthropic_key}}"
			} else {
				f = newModelAPI(t, "/v1/chat/completions", openAICheck(false), func(map[string]any) answer {
					return oaMsg("stop", [2]int{1, 1}, map[string]any{"content": "ok"})
				})
				cfg["base_url"], cfg["api_key"] = f.srv.URL+"/v1", "{{secret:openai_key}}"
			}
			f.queue = tc.queue
			out, usage, err := run(handlersFor(t, cfg), "complete", map[string]any{"prompt": "hi"})
			if tc.wantErr == "" {
				if err != nil || out != `{"text":"ok"}` {
					t.Fatalf("got %s %v, want the answer", out, err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if tc.noText != "" && strings.Contains(err.Error(), tc.noText) {
				t.Errorf("the error repeats what the API said: %v", err)
			}
			if n := len(f.requests()); n != tc.tries {
				t.Errorf("%d requests, want %d", n, tc.tries)
			}
			if tc.usage != nil && (usage == nil || *usage != *tc.usage) {
				t.Errorf("usage %+v, want %+v", usage, tc.usage)
			}
		})
	}
}

// Retry-After is honoured in both its forms: a number of seconds, and an
// HTTP date. The wait asked for (about 2s) is far longer than the
// backoff used without one (250ms), so a shorter wait fails the test.
func TestRetryAfterIsHonoured(t *testing.T) {
	for _, tc := range []struct {
		name, backend string
		header        func() string
	}{
		{"anthropic seconds", "anthropic", func() string { return "2" }},
		{"anthropic date", "anthropic", func() string { return time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat) }},
		{"openai seconds", "openai", func() string { return "2" }},
		{"openai date", "openai", func() string { return time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f *modelAPI
			cfg := map[string]any{"backend": tc.backend, "model": "m", "max_retries": 1}
			if tc.backend == "anthropic" {
				f = newModelAPI(t, "/v1/messages", anthropicCheck, func(map[string]any) answer { return anMsg("end_turn", [2]int{1, 1}, anText("ok")) })
				f.queue = []answer{anError(429, "rate_limit_error", map[string]string{"Retry-After": tc.header()})}
				cfg["base_url"], cfg["api_key"] = f.srv.URL, "{{secret:anthropic_key}}"
			} else {
				f = newModelAPI(t, "/v1/chat/completions", openAICheck(false), func(map[string]any) answer {
					return oaMsg("stop", [2]int{1, 1}, map[string]any{"content": "ok"})
				})
				f.queue = []answer{oaError(429, "requests", "rate_limit_exceeded", map[string]string{"Retry-After": tc.header()})}
				cfg["base_url"], cfg["api_key"] = f.srv.URL+"/v1", "{{secret:openai_key}}"
			}
			if _, _, err := run(handlersFor(t, cfg), "complete", map[string]any{"prompt": "hi"}); err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.times) != 2 {
				t.Fatalf("%d requests, want 2", len(f.times))
			}
			if waited := f.times[1].Sub(f.times[0]); waited < 1500*time.Millisecond {
				t.Errorf("tried again after %s; Retry-After asked for about 2s", waited)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"3", 3 * time.Second, true},
		{" 0 ", 0, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"-1", 0, false},
		{"3600", maxRetryWait, true},
		{"Sun, 01 Mar 2026 12:00:07 GMT", 7 * time.Second, true},
		{"Sunday, 01-Mar-26 12:00:05 GMT", 5 * time.Second, true},
		{"Sun, 01 Mar 2026 11:59:00 GMT", 0, true},
		{"Sun, 01 Mar 2026 13:00:00 GMT", maxRetryWait, true},
		{"soon", 0, false},
	} {
		got, ok := retryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("retryAfter(%q) = %s, %v; want %s, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// The OpenAI request as a reasoning model accepts it: no temperature unless
// configured, max_completion_tokens (never max_tokens), and a strict JSON
// Schema response format for extract.
func TestOpenAIRequest(t *testing.T) {
	f := newModelAPI(t, "/v1/chat/completions", openAICheck(true), func(req map[string]any) answer {
		if rf, ok := req["response_format"].(map[string]any); ok {
			sch := rf["json_schema"].(map[string]any)["schema"].(map[string]any)
			if _, wrapped := sch["properties"].(map[string]any)["value"]; wrapped {
				return oaMsg("stop", [2]int{10, 4}, map[string]any{"content": `{"value": "TP 1234"}`})
			}
			return oaMsg("stop", [2]int{10, 4}, map[string]any{"content": `{"price": 289}`})
		}
		if len(asList(req["tools"])) > 0 {
			return oaMsg("tool_calls", [2]int{10, 4}, map[string]any{"content": nil, "tool_calls": []any{map[string]any{
				"id": "call_1", "type": "function", "function": map[string]any{"name": "web__fetch", "arguments": `{"url":"http://x/"}`}}}})
		}
		return oaMsg("stop", [2]int{10, 4}, map[string]any{"content": "ok"})
	})
	hs := handlersFor(t, map[string]any{"backend": "openai", "base_url": f.srv.URL + "/v1", "model": "o-test",
		"api_key": "{{secret:openai_key}}"})
	if out, usage, err := run(hs, "complete", map[string]any{"prompt": "hi"}); err != nil || out != `{"text":"ok"}` ||
		usage == nil || *usage != (schemas.Usage{InputTokens: 10, OutputTokens: 4}) {
		t.Fatalf("complete: %s %v %+v", out, err, usage)
	}
	if req := f.requests()[0]; req["max_completion_tokens"] != float64(defaultMaxTokens) {
		t.Errorf("request %v: want max_completion_tokens %d", req, defaultMaxTokens)
	}
	out, _, err := run(hs, "extract", map[string]any{"text": "289 EUR", "instruction": "Price?",
		"schema": map[string]any{"type": "object", "properties": map[string]any{"price": map[string]any{"type": "number"}},
			"required": []any{"price"}, "additionalProperties": false}})
	if err != nil || out != `{"price":289}` {
		t.Fatalf("extract: %s %v", out, err)
	}
	rf := f.requests()[1]["response_format"].(map[string]any)
	if js := rf["json_schema"].(map[string]any); rf["type"] != "json_schema" || js["strict"] != true || js["schema"] == nil {
		t.Errorf("response_format %v: want a strict json_schema", rf)
	}
	// A schema strict mode does not take (an optional property) is sent
	// without strict; one that is not an object, as the property value of
	// one, and the answer is that value.
	out, _, err = run(hs, "extract", map[string]any{"text": "289 EUR", "instruction": "Price?",
		"schema": map[string]any{"type": "object", "properties": map[string]any{"price": map[string]any{"type": "number"},
			"note": map[string]any{"type": "string"}}, "required": []any{"price"}}})
	if err != nil || out != `{"price":289}` {
		t.Fatalf("extract with an optional property: %s %v", out, err)
	}
	if js := f.requests()[2]["response_format"].(map[string]any)["json_schema"].(map[string]any); js["strict"] != false {
		t.Errorf("json_schema %v: want strict false for a schema strict mode refuses", js)
	}
	out, _, err = run(hs, "extract", map[string]any{"text": "TP 1234 289 EUR", "instruction": "Which flight?",
		"schema": map[string]any{"type": "string"}})
	if err != nil || out != `"TP 1234"` {
		t.Fatalf("extract of a string: %s %v", out, err)
	}
	out, _, err = run(hs, "chat", chatArgsWithTools)
	if err != nil || out != `{"message":{"tool_calls":[{"id":"call_1","name":"web__fetch","arguments":{"url":"http://x/"}}]}}` {
		t.Fatalf("chat: %s %v", out, err)
	}

	f2 := newModelAPI(t, "/v1/chat/completions", openAICheck(false), func(map[string]any) answer {
		return oaMsg("stop", [2]int{1, 1}, map[string]any{"content": "ok"})
	})
	configured := handlersFor(t, map[string]any{"backend": "openai", "base_url": f2.srv.URL + "/v1", "model": "gpt-test",
		"api_key": "{{secret:openai_key}}", "temperature": 0.2, "max_tokens": 256})
	if _, _, err := run(configured, "complete", map[string]any{"prompt": "hi"}); err != nil {
		t.Fatal(err)
	}
	if req := f2.requests()[0]; req["temperature"] != 0.2 || req["max_completion_tokens"] != float64(256) {
		t.Errorf("request %v: want temperature 0.2 and max_completion_tokens 256", req)
	}
	// The same configuration against a reasoning model: it refuses the
	// temperature, and the error names the API's error type.
	if _, _, err := run(handlersFor(t, map[string]any{"backend": "openai", "base_url": f.srv.URL + "/v1", "model": "o-test",
		"api_key": "{{secret:openai_key}}", "temperature": 0.2}), "complete", map[string]any{"prompt": "hi"}); err == nil ||
		!strings.Contains(err.Error(), "answered 400 (invalid_request_error)") {
		t.Errorf("err %v, want the API's 400", err)
	}
}

func TestStrictable(t *testing.T) {
	for _, tc := range []struct {
		schema string
		want   bool
	}{
		{`{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false}`, true},
		{`{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}`, false},
		{`{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"number"}},"required":["a"],"additionalProperties":false}`, false},
		{`{"type":"object","properties":{"a":{"type":"array","items":{"type":"object","properties":{"x":{"type":"number"}},"required":["x"]}}},"required":["a"],"additionalProperties":false}`, false},
		{`{"type":"object","properties":{"a":{"anyOf":[{"type":"string"},{"type":"object","properties":{},"additionalProperties":false}]}},"required":["a"],"additionalProperties":false}`, true},
		{`{"type":"object","properties":{"type":{"type":"string"}},"required":["type"],"additionalProperties":false}`, true},
		{`{"type":"object","properties":{"a":{"$ref":"#/$defs/x"}},"required":["a"],"additionalProperties":false,"$defs":{"x":{"type":"object","properties":{"y":{}}}}}`, false},
	} {
		if got := strictable(json.RawMessage(tc.schema)); got != tc.want {
			t.Errorf("strictable(%s) = %v, want %v", tc.schema, got, tc.want)
		}
	}
}

// A wait that Retry-After asks for and that would outlast the call fails
// the call at once, saying so, rather than when the call times out.
func TestRetryAfterPastTheTimeout(t *testing.T) {
	f := newModelAPI(t, "/v1/messages", anthropicCheck, func(map[string]any) answer { return anMsg("end_turn", [2]int{1, 1}, anText("ok")) })
	f.queue = []answer{anError(429, "rate_limit_error", map[string]string{"Retry-After": "20"})}
	hs := handlersFor(t, map[string]any{"backend": "anthropic", "base_url": f.srv.URL, "model": "m", "api_key": "{{secret:anthropic_key}}"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := hs["complete"](ctx, worker.NewCall("complete", json.RawMessage(`{"prompt":"hi"}`), broker))
	if err == nil || !strings.Contains(err.Error(), "answered 429 and asked to wait 20s, past the call's timeout") {
		t.Fatalf("err %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the call waited until its timeout")
	}
}
