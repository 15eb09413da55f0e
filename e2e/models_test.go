package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// anthropicAPI is a model API on 127.0.0.1 that speaks Anthropic's
// Messages API: it answers 401 without the right x-api-key, 400 (with the
// API's error body) to a request that breaks the protocol's rules the
// backend relies on, and otherwise what answer returns.
type anthropicAPI struct {
	mu   sync.Mutex
	reqs []map[string]any
	bad  []string // why requests were refused
	host string
}

func newAnthropicAPI(t *testing.T, key string, answer func(req map[string]any) map[string]any) *anthropicAPI {
	t.Helper()
	f := &anthropicAPI{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fail := func(status int, typ, why string) {
			f.mu.Lock()
			f.bad = append(f.bad, why)
			f.mu.Unlock()
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"type":"error","error":{"type":%q,"message":%q}}`, typ, why)
		}
		if r.URL.Path != "/v1/messages" || r.Method != "POST" {
			fail(404, "not_found_error", "no such endpoint")
			return
		}
		if r.Header.Get("X-Api-Key") != key || r.Header.Get("Authorization") != "" {
			fail(401, "authentication_error", "invalid x-api-key")
			return
		}
		if r.Header.Get("Anthropic-Version") == "" {
			fail(400, "invalid_request_error", "anthropic-version header is required")
			return
		}
		var req map[string]any
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &req); err != nil {
			fail(400, "invalid_request_error", "not JSON")
			return
		}
		if _, ok := req["max_tokens"].(float64); !ok || req["model"] == nil {
			fail(400, "invalid_request_error", "model and max_tokens are required")
			return
		}
		msgs, _ := req["messages"].([]any)
		for i, m := range msgs {
			if m.(map[string]any)["role"] != []string{"user", "assistant"}[i%2] {
				fail(400, "invalid_request_error", "roles must alternate, from user")
				return
			}
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		f.mu.Unlock()
		json.NewEncoder(w).Encode(answer(req))
	}))
	t.Cleanup(srv.Close)
	f.host = strings.TrimPrefix(srv.URL, "http://")
	return f
}

func anthropicMessage(stop string, in, out int, content ...map[string]any) map[string]any {
	return map[string]any{"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-test",
		"content": content, "stop_reason": stop, "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": in, "output_tokens": out}}
}

// An agent step and an extract step run against Anthropic's Messages API:
// the model calls web.fetch (tool use), answers from the page, and
// answers extract through the tool it is made to call (JSON output). The
// key reaches the API as x-api-key from the broker and is found in no
// output or audit record; every model call's tokens are in its result
// record, which matches the record format.
func TestAnthropicBackend(t *testing.T) {
	const key = "sk-ant-e2e-5d0c41f7a2"
	page := site(t, map[string]string{"/hotel": honestPage})
	api := newAnthropicAPI(t, key, func(req map[string]any) map[string]any {
		if tc, ok := req["tool_choice"].(map[string]any); ok && tc["name"] == "answer" {
			return anthropicMessage("tool_use", 41, 9, map[string]any{"type": "tool_use", "id": "toolu_x", "name": "answer",
				"input": map[string]any{"price": 120, "currency": "EUR"}})
		}
		msgs := req["messages"].([]any)
		if len(msgs) == 1 {
			return anthropicMessage("tool_use", 300, 25, map[string]any{"type": "text", "text": "I will read the page."},
				map[string]any{"type": "tool_use", "id": "toolu_1", "name": "web__fetch", "input": map[string]any{"url": "http://" + page + "/hotel"}})
		}
		// The page came back as a tool_result answering toolu_1.
		last, _ := json.Marshal(msgs[len(msgs)-1])
		if !strings.Contains(string(last), `"tool_use_id":"toolu_1"`) || !strings.Contains(string(last), "120 EUR") {
			return anthropicMessage("end_turn", 1, 1, map[string]any{"type": "text", "text": "no page"})
		}
		return anthropicMessage("end_turn", 520, 12, map[string]any{"type": "text", "text": "A double room costs 120 EUR per night."})
	})
	t.Setenv("SLUICE_E2E_ANTHROPIC_KEY", key)
	w := newWorkspace(t, map[string]string{
		"sluice.yaml": fmt.Sprintf(`workers:
  - manifest: builtin:web
    grants: {net: [%q]}
  - manifest: builtin:llm
    config: {backend: anthropic, base_url: "http://%s", model: claude-test, api_key: "{{secret:anthropic_key}}", max_tokens: 1024}
    grants:
      net: [%q]
      secrets: [{name: anthropic_key, hosts: ["127.0.0.1"]}]
secrets:
  anthropic_key: {env: SLUICE_E2E_ANTHROPIC_KEY}
`, page, api.host, api.host),
		"flow.yaml": `name: price
inputs:
  url: {type: string}
steps:
  - id: research
    agent:
      model: llm
      instructions: "${'What does a room cost at ' + inputs.url + '?'}"
      tools: [web.fetch]
      max_turns: 3
      hide_untrusted: false
  - id: price
    call: llm.extract
    with:
      text: "${steps.research.output}"
      instruction: The price per night.
      schema: {type: object, properties: {price: {type: number}, currency: {type: string}}, required: [price, currency]}
outputs:
  answer: "${steps.research.output}"
  price: "${steps.price.output.price}"
`})
	r := w.sluice("run", "flow.yaml", "--input", "url=http://"+page+"/hotel", "--json")
	api.mu.Lock()
	reqs, bad := len(api.reqs), api.bad
	api.mu.Unlock()
	if r.code != 0 {
		t.Fatalf("exit code %d, want 0 (requests refused by the API: %v)", r.code, bad)
	}
	var run agentRunJSON
	if err := json.Unmarshal([]byte(r.stdout), &run); err != nil {
		t.Fatal(err)
	}
	if run.Outputs["answer"] != "A double room costs 120 EUR per night." || run.Outputs["price"] != float64(120) {
		t.Fatalf("outputs %v", run.Outputs)
	}
	if reqs != 3 || len(bad) != 0 {
		t.Fatalf("the API answered %d requests and refused %v; want 3 answered", reqs, bad)
	}
	if s := run.Steps[0]; len(s.Calls) != 1 || s.Calls[0].Tool != "web.fetch" || s.Calls[0].Status != "completed" {
		t.Errorf("research made calls %+v, want one web.fetch", s.Calls)
	}

	recs := checkAudit(t, w)
	var usage []string
	for _, rec := range recs {
		if u, ok := rec["usage"]; ok {
			b, _ := json.Marshal(u)
			usage = append(usage, fmt.Sprintf("%s %s", rec["tool"], b))
		}
	}
	want := []string{`llm.chat {"input_tokens":300,"output_tokens":25}`, `llm.chat {"input_tokens":520,"output_tokens":12}`,
		`llm.extract {"input_tokens":41,"output_tokens":9}`}
	if strings.Join(usage, "\n") != strings.Join(want, "\n") {
		t.Errorf("usage in the audit log:\n%s\nwant:\n%s", strings.Join(usage, "\n"), strings.Join(want, "\n"))
	}
	all, _ := json.Marshal(recs)
	if strings.Contains(string(all), key) || strings.Contains(r.stdout, key) || strings.Contains(r.stderr, key) {
		t.Errorf("the key left the broker")
	}
}
