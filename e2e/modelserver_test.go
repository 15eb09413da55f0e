//go:build modelserver

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/e2e/modelserver"
)

// This file is the opt-in test against a real model server, Ollama, which
// no one here wrote: `make e2e-model-server` builds Ollama and runs it
// with -tags modelserver; make test never does.

// chainTemplate is the model's chat template (Ollama's Go template over
// .Messages). It writes each message out and ends the prompt with one
// token that tells the model what to do: <|answer|> when the last message
// is a tool's result, <|extract|> when no tools are offered (llm.extract's
// request, with a JSON schema as its response format), <|ask|> otherwise. It names .Tools, which is how
// Ollama knows the model takes tools, and the text after {{ if .ToolCalls }}
// is the tag Ollama's tool-call parser looks for in the model's output.
const chainTemplate = `{{- if .Tools }}tools: {{ range .Tools }}{{ .Function.Name }} {{ end }}
{{ end }}
{{- range $i, $m := .Messages }}
{{- if eq .Role "assistant" }}
{{- if .ToolCalls }}<tool_call>{{ range .ToolCalls }}{"name":"{{ .Function.Name }}"}{{ end }}</tool_call>
{{ else }}{{ .Content }}
{{ end }}
{{- else }}{{ .Role }}: {{ .Content }}
{{ end }}
{{- if eq (len (slice $.Messages $i)) 1 }}{{ if eq .Role "tool" }}<|answer|>{{ else if not $.Tools }}<|extract|>{{ else }}<|ask|>{{ end }}{{ end }}
{{- end }}`

// ollamaBin is the ollama binary: $SLUICE_OLLAMA, else ollama on PATH.
func ollamaBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SLUICE_OLLAMA"); p != "" {
		return p
	}
	p, err := exec.LookPath("ollama")
	if err != nil {
		t.Fatal("no ollama binary: set SLUICE_OLLAMA or put ollama on PATH (make e2e-model-server builds one)")
	}
	return p
}

// startOllama runs `ollama serve` on 127.0.0.1 with its models and keys
// under dir, waits until it answers, and returns its host:port and the
// environment its client commands need. It is stopped at the test's end.
func startOllama(t *testing.T, bin, dir string) (string, []string) {
	t.Helper()
	host := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1, "127.0.0.1")[0])
	env := append(os.Environ(), "OLLAMA_HOST="+host, "OLLAMA_MODELS="+filepath.Join(dir, "models"), "HOME="+dir,
		"OLLAMA_NOPRUNE=1", "OLLAMA_NUM_PARALLEL=1", "OLLAMA_MAX_LOADED_MODELS=1")
	logf, err := os.Create(filepath.Join(dir, "ollama.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env, cmd.Stdout, cmd.Stderr = env, logf, logf
	// Its own process group: ollama serve starts a runner process per
	// loaded model, which must end with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("ollama serve:\n%s", b)
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get("http://" + host + "/api/version")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Logf("ollama serve on %s: %s", host, b)
				return host, env
			}
		}
		select {
		case <-exited:
			t.Fatal("ollama serve exited before it answered")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("ollama serve did not answer within 2 minutes")
		}
	}
}

// An agent step of Sluice against Ollama through its OpenAI-compatible
// API: the model (a GGUF written here, whose answers its weights fix) asks
// for a page with a tool call; Ollama turns its output into OpenAI
// tool_calls; Sluice's gate lets web.fetch through to the page; the page
// goes back to the model as a tool result, and the model answers. The
// answer is only reachable through the tool result: the template ends a
// prompt whose last message is not a tool's result with <|ask|>, after
// which the model can only ask for the page again.
func TestModelServerOllama(t *testing.T) {
	bin := ollamaBin(t)
	const answer = "A double room costs 120 EUR per night."
	var fetched atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hotel" {
			http.NotFound(w, r)
			return
		}
		fetched.Add(1)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, honestPage)
	}))
	t.Cleanup(srv.Close)
	page := strings.TrimPrefix(srv.URL, "http://")

	dir := t.TempDir()
	call := fmt.Sprintf(`<tool_call>{"name":"web__fetch","arguments":{"url":"http://%s/hotel"}}</tool_call>`, page)
	f, err := os.Create(filepath.Join(dir, "chain.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := modelserver.WriteChain(f, "sluice-chain",
		[]modelserver.Turn{{Marker: "<|ask|>", Output: call}, {Marker: "<|answer|>", Output: answer},
			{Marker: "<|extract|>", Output: `{"price":120}`}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	modelfile := "FROM ./chain.gguf\nTEMPLATE \"\"\"" + chainTemplate + "\"\"\"\n" +
		"PARAMETER temperature 0\nPARAMETER num_ctx 8192\nPARAMETER num_predict 8\n"
	if err := os.WriteFile(filepath.Join(dir, "Modelfile"), []byte(modelfile), 0o644); err != nil {
		t.Fatal(err)
	}

	host, env := startOllama(t, bin, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	create := exec.CommandContext(ctx, bin, "create", "sluice-chain", "-f", "Modelfile")
	create.Dir, create.Env = dir, env
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("ollama create: %v\n%s", err, out)
	}

	w := newWorkspace(t, map[string]string{
		"sluice.yaml": fmt.Sprintf(`workers:
  - manifest: builtin:web
    grants: {net: [%q]}
  - manifest: builtin:llm
    config: {backend: openai, base_url: "http://%s/v1", model: sluice-chain, max_tokens: 64}
    grants: {net: [%q]}
`, page, host, host),
		"flow.yaml": `name: price
inputs:
  ask: {type: string}
steps:
  - id: research
    agent:
      model: llm
      instructions: "${inputs.ask}"
      tools: [web.fetch]
      max_turns: 4
      hide_untrusted: false
outputs:
  answer: "${steps.research.output}"
`})
	r := w.sluice("run", "flow.yaml", "--input", "ask=What does a room cost at the hotel?", "--json")
	if r.code != 0 {
		t.Fatalf("sluice run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	validateOutput(t, "run.json", "run --json (an agent step against Ollama)", r.stdout)
	var run struct {
		RunID   string         `json:"run_id"`
		Status  string         `json:"status"`
		Outputs map[string]any `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &run); err != nil {
		t.Fatal(err)
	}
	if run.Status != "completed" || !strings.Contains(fmt.Sprint(run.Outputs["answer"]), answer) {
		t.Fatalf("run %s: status %s, outputs %v; want the model's answer %q", run.RunID, run.Status, run.Outputs, answer)
	}
	if n := fetched.Load(); n != 1 {
		t.Fatalf("the page was fetched %d times, want once (the model's one tool call)", n)
	}

	// The audit log: the gate allowed web.fetch, which completed, between
	// two chat turns that completed with the tokens Ollama reported.
	var fetchAllowed, fetchDone, chats, tokens int
	for _, rec := range checkAudit(t, w) {
		if rec["run_id"] != run.RunID {
			continue
		}
		switch {
		case rec["kind"] == "decision" && rec["tool"] == "web.fetch" && rec["action"] == "allow":
			fetchAllowed++
		case rec["kind"] == "result" && rec["tool"] == "web.fetch" && rec["status"] == "completed":
			fetchDone++
		case rec["kind"] == "result" && rec["tool"] == "llm.chat" && rec["status"] == "completed":
			chats++
			if u, ok := rec["usage"].(map[string]any); ok {
				for _, k := range []string{"input_tokens", "output_tokens"} {
					n, _ := u[k].(json.Number).Int64()
					tokens += int(n)
				}
			}
		}
	}
	if fetchAllowed != 1 || fetchDone != 1 || chats != 2 || tokens == 0 {
		t.Errorf("audit log of the run: web.fetch allowed %d and completed %d times, %d chat turns completed spending %d tokens; want 1, 1, 2 and some",
			fetchAllowed, fetchDone, chats, tokens)
	}

	// JSON-schema output: llm.extract asks with a strict json_schema
	// response format, which Ollama turns into a grammar its sampler keeps
	// to; the answer is checked against the schema again by the worker.
	w.write("extract.yaml", `name: extract
steps:
  - id: price
    call: llm.extract
    with:
      text: "A double room costs 120 EUR per night."
      instruction: "The price of a double room, in EUR."
      schema: {type: object, properties: {price: {type: integer}}, required: [price], additionalProperties: false}
outputs:
  price: "${steps.price.output.price}"
`)
	r = w.sluice("run", "extract.yaml", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"price": 120`) && !strings.Contains(r.stdout, `"price":120`) {
		t.Errorf("llm.extract with a JSON schema against Ollama: exit %d, want the price 120\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	// An error of the server's own: a model it does not have. The run
	// fails saying how the server answered (its status: the server's own
	// words are not repeated), and nothing else is called.
	cfg, err := os.ReadFile(w.path("sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	flowSrc, err := os.ReadFile(w.path("flow.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bad := newWorkspace(t, map[string]string{
		"sluice.yaml": strings.Replace(string(cfg), "model: sluice-chain", "model: no-such-model", 1),
		"flow.yaml":   string(flowSrc),
	})
	r = bad.sluice("run", "flow.yaml", "--input", "ask=What does a room cost at the hotel?")
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "the model did not answer: llm.chat: tool_failed: the model API answered 404") {
		t.Errorf("sluice run with a model Ollama does not have: exit %d, want 1 and the API's 404\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := fetched.Load(); n != 1 {
		t.Errorf("the page was fetched %d times in all, want once: the failed run fetched it", n)
	}
}
