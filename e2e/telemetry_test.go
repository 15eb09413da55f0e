package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP trace receiver on 127.0.0.1: it decodes
// every export request with the protocol's own message types.
type otlpReceiver struct {
	url      string
	mu       sync.Mutex
	requests int
	spans    []*tracepb.Span
	service  []string
}

func startOTLPReceiver(t *testing.T, addr string) (*otlpReceiver, error) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &otlpReceiver{url: "http://" + ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil || req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want a protobuf export on /v1/traces", http.StatusBadRequest)
			return
		}
		var ex coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &ex); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.requests++
		for _, rs := range ex.ResourceSpans {
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.Key == "service.name" {
					r.service = append(r.service, kv.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.ScopeSpans {
				r.spans = append(r.spans, ss.Spans...)
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r, nil
}

func (r *otlpReceiver) got() (int, []*tracepb.Span) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests, slices.Clone(r.spans)
}

// cleanEnv is the test's environment without any OTEL_ variable, plus add.
func cleanEnv(add ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return append(env, add...)
}

func spanAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			v := kv.GetValue()
			switch {
			case v.GetArrayValue() != nil:
				var parts []string
				for _, x := range v.GetArrayValue().Values {
					parts = append(parts, x.GetStringValue())
				}
				return strings.Join(parts, ",")
			case v.GetIntValue() != 0:
				return strconv.FormatInt(v.GetIntValue(), 10)
			}
			return v.GetStringValue()
		}
	}
	return ""
}

// The agent of TestAgentInjectedPayment (hiding off) run with
// OTEL_EXPORTER_OTLP_ENDPOINT set: the run is one trace, whose spans nest
// as run > step > agent > its turns and tool calls > the gate's decision,
// delivery, approval wait and egress request, with Sluice's attributes and
// never an argument's value. Without the variable nothing is sent, even
// to a receiver on the default OTLP/HTTP port.
func TestTracesOverOTLP(t *testing.T) {
	host := site(t, map[string]string{"/poisoned": agentPoisonedPage})
	files := map[string]string{"sluice.yaml": deployment(host, "hijackable"),
		"answers.yaml": agentScript(host), "book.yaml": strings.Replace(agentBookFlow, "HIDE", "false", 1)}
	args := []string{"run", "book.yaml", "--input", "url=http://" + host + "/poisoned", "--wait=false", "--json"}

	t.Run("configured", func(t *testing.T) {
		rcv, err := startOTLPReceiver(t, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		w := newWorkspace(t, files)
		r := w.sluiceEnv(cleanEnv("OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.url, "OTEL_SERVICE_NAME=sluice-e2e"), args...)
		if r.code != 4 {
			t.Fatalf("exit code %d, want 4 (held)", r.code)
		}
		run := decodeRun(t, r.stdout)
		// The spans were flushed before sluice run exited.
		_, spans := rcv.got()
		byID := map[string]*tracepb.Span{}
		byName := map[string][]*tracepb.Span{}
		for _, s := range spans {
			byID[string(s.SpanId)] = s
			byName[s.Name] = append(byName[s.Name], s)
		}
		one := func(name string) *tracepb.Span {
			t.Helper()
			if len(byName[name]) != 1 {
				names := []string{}
				for _, s := range spans {
					names = append(names, s.Name)
				}
				t.Fatalf("%d spans named %q, want 1; spans: %v", len(byName[name]), name, names)
			}
			return byName[name][0]
		}
		parent := func(s *tracepb.Span) *tracepb.Span { return byID[string(s.ParentSpanId)] }
		root := one("run agent-book")
		if len(root.ParentSpanId) != 0 || spanAttr(root, "sluice.run.id") != run.RunID || spanAttr(root, "sluice.status") != "held" {
			t.Fatalf("run span: parent %x, attributes %v", root.ParentSpanId, root.Attributes)
		}
		for _, s := range spans {
			if !bytes.Equal(s.TraceId, root.TraceId) {
				t.Errorf("span %s is in another trace", s.Name)
			}
			if s.EndTimeUnixNano < s.StartTimeUnixNano {
				t.Errorf("span %s ends before it starts", s.Name)
			}
			for _, kv := range s.Attributes {
				if v := kv.GetValue().GetStringValue(); strings.Contains(v, "acct_attacker") || strings.Contains(v, "/poisoned") {
					t.Errorf("span %s attribute %s carries an argument's value: %q", s.Name, kv.Key, v)
				}
			}
		}
		step := one("step booker")
		agent := one("invoke_agent booker")
		if parent(step) != root || parent(agent) != step || spanAttr(agent, "gen_ai.operation.name") != "invoke_agent" {
			t.Fatalf("step %v under %v, agent under %v", step.Name, parent(step), parent(agent))
		}
		if spanAttr(step, "sluice.status") != "held" {
			t.Errorf("step status %q", spanAttr(step, "sluice.status"))
		}
		chats := byName["chat llm.chat"]
		if len(chats) != 2 {
			t.Fatalf("%d chat spans, want 2 (the model's two turns)", len(chats))
		}
		for _, c := range chats {
			if parent(c) != agent || spanAttr(c, "gen_ai.operation.name") != "chat" {
				t.Errorf("chat span under %v, attributes %v", parent(c), c.Attributes)
			}
		}
		fetch := one("execute_tool web.fetch")
		pay := one("execute_tool payment.charge")
		for _, s := range []*tracepb.Span{fetch, pay} {
			if parent(s) != agent || spanAttr(s, "gen_ai.operation.name") != "execute_tool" {
				t.Errorf("%s under %v", s.Name, parent(s))
			}
		}
		// The gate's spans, under each tool call.
		fetchCall := one("call web.fetch")
		if parent(fetchCall) != fetch || spanAttr(fetchCall, "sluice.decision") != "allow" || spanAttr(fetchCall, "sluice.status") != "completed" {
			t.Errorf("call web.fetch under %v, attributes %v", parent(fetchCall), fetchCall.Attributes)
		}
		deliver := one("deliver web.fetch")
		if parent(deliver) != fetchCall || deliver.Kind != tracepb.Span_SPAN_KIND_CLIENT {
			t.Errorf("deliver web.fetch under %v, kind %v", parent(deliver), deliver.Kind)
		}
		egress := one("egress")
		if parent(egress) != deliver || spanAttr(egress, "server.address") != host || spanAttr(egress, "sluice.egress.outcome") != "performed" {
			t.Errorf("egress under %v, attributes %v", parent(egress), egress.Attributes)
		}
		payCall := one("call payment.charge")
		if parent(payCall) != pay || spanAttr(payCall, "sluice.decision") != "approve" || spanAttr(payCall, "sluice.status") != "held" ||
			!strings.Contains(spanAttr(payCall, "sluice.label"), "untrusted") {
			t.Errorf("call payment.charge under %v, attributes %v", parent(payCall), payCall.Attributes)
		}
		wait := one("approval.wait")
		if parent(wait) != payCall || spanAttr(wait, "sluice.approval.id") != run.Steps[0].ApprovalID || spanAttr(wait, "sluice.status") != "held" {
			t.Errorf("approval.wait under %v, attributes %v", parent(wait), wait.Attributes)
		}
		if len(byName["deliver payment.charge"]) != 0 {
			t.Error("the held payment was delivered")
		}
		decides := byName["policy.decide"]
		if len(decides) != 4 {
			t.Errorf("%d policy.decide spans, want 4 (two chats, the fetch, the payment)", len(decides))
		}
		for _, d := range decides {
			if p := parent(d); p == nil || !strings.HasPrefix(p.Name, "call ") || spanAttr(d, "sluice.decision") == "" {
				t.Errorf("policy.decide under %v, attributes %v", p, d.Attributes)
			}
		}
		rcv.mu.Lock()
		svc := slices.Clone(rcv.service)
		rcv.mu.Unlock()
		if len(svc) == 0 || svc[0] != "sluice-e2e" {
			t.Errorf("service.name %v, want sluice-e2e (OTEL_SERVICE_NAME)", svc)
		}
	})

	t.Run("sluice.yaml", func(t *testing.T) {
		rcv, err := startOTLPReceiver(t, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := map[string]string{}
		for k, v := range files {
			cfg[k] = v
		}
		cfg["sluice.yaml"] = "telemetry:\n  otlp_endpoint: " + rcv.url + "\n" + files["sluice.yaml"]
		w := newWorkspace(t, cfg)
		if r := w.sluiceEnv(cleanEnv(), args...); r.code != 4 {
			t.Fatalf("exit code %d, want 4 (held)", r.code)
		}
		if _, spans := rcv.got(); len(spans) == 0 || !slices.ContainsFunc(spans, func(s *tracepb.Span) bool { return s.Name == "run agent-book" }) {
			t.Fatalf("%d spans, none for the run", len(spans))
		}
		cfg["sluice.yaml"] = "telemetry:\n  otlp_endpoint: 127.0.0.1:4318\n" + files["sluice.yaml"]
		w = newWorkspace(t, cfg)
		r := w.sluiceEnv(cleanEnv(), args...)
		if r.code == 0 || r.code == 4 || !strings.Contains(r.stderr, "sluice.yaml:2:18") || !strings.Contains(r.stderr, "otlp_endpoint") {
			t.Fatalf("a bad telemetry.otlp_endpoint: exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})

	t.Run("not configured", func(t *testing.T) {
		// A receiver where an exporter with no endpoint would send.
		rcv, err := startOTLPReceiver(t, "127.0.0.1:4318")
		if err != nil {
			t.Skipf("the default OTLP/HTTP port is taken (%v): nothing to listen with", err)
		}
		w := newWorkspace(t, files)
		if r := w.sluiceEnv(cleanEnv(), args...); r.code != 4 {
			t.Fatalf("exit code %d, want 4 (held)", r.code)
		}
		if n, _ := rcv.got(); n != 0 {
			t.Fatalf("%d export requests with no endpoint configured", n)
		}
	})

	t.Run("bad endpoint", func(t *testing.T) {
		w := newWorkspace(t, files)
		r := w.sluiceEnv(cleanEnv("OTEL_EXPORTER_OTLP_ENDPOINT=localhost:4318"), args...)
		if r.code == 0 || r.code == 4 || !strings.Contains(r.stderr, "OTEL_EXPORTER_OTLP_ENDPOINT=localhost:4318: want an http:// or https:// URL") {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		r = w.sluiceEnv(cleanEnv("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"), args...)
		if r.code == 0 || r.code == 4 || !strings.Contains(r.stderr, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: sluice exports traces over OTLP/HTTP only") {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})

	// The OTEL_BSP_* variables batch the spans: one span an export when
	// the batch size is 1, all of a short run in one by default; a value
	// that is not a whole number above 0 is refused, naming it.
	t.Run("batching", func(t *testing.T) {
		for _, tc := range []struct {
			env      []string
			oneEach  bool
			describe string
		}{
			{describe: "default"},
			{env: []string{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE=1"}, oneEach: true, describe: "a batch of 1"},
		} {
			rcv, err := startOTLPReceiver(t, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			w := newWorkspace(t, files)
			if r := w.sluiceEnv(cleanEnv(append(tc.env, "OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.url)...), args...); r.code != 4 {
				t.Fatalf("%s: exit code %d, want 4 (held); stderr:\n%s", tc.describe, r.code, r.stderr)
			}
			exports, spans := rcv.got()
			if len(spans) < 10 || (exports == len(spans)) != tc.oneEach {
				t.Errorf("%s: %d spans in %d exports", tc.describe, len(spans), exports)
			}
		}
		w := newWorkspace(t, files)
		r := w.sluiceEnv(cleanEnv("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=0"), args...)
		if r.code == 0 || r.code == 4 || !strings.Contains(r.stderr, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=0: want a whole number above 0") {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})
}

// sluice trace, --dot and --json of a run whose agent's payment was held
// and whose next step was therefore skipped: the payment shows under the
// agent's step as held, with the rule; every step and call its time; the
// skipped step as skipped (grey and dashed in the graph).
func TestTraceShowsAnAgentsCallsAndSkippedSteps(t *testing.T) {
	host := site(t, map[string]string{"/poisoned": agentPoisonedPage})
	flow := strings.Replace(agentBookFlow, "HIDE", "false", 1) + `  - id: note
    call: web.fetch
    with: {url: "${steps.booker.output}"}
`
	w := newWorkspace(t, map[string]string{"sluice.yaml": deployment(host, "hijackable"),
		"answers.yaml": agentScript(host), "book.yaml": flow})
	r := w.sluice("run", "book.yaml", "--input", "url=http://"+host+"/poisoned", "--wait=false", "--json")
	if r.code != 4 {
		t.Fatalf("exit code %d, want 4 (held)", r.code)
	}
	id := decodeRun(t, r.stdout).RunID

	tr := w.sluice("trace", id)
	if tr.code != 0 {
		t.Fatalf("trace: exit %d: %s", tr.code, tr.stderr)
	}
	timed := regexp.MustCompile(`(?m)^├─ booker — llm\.chat: held \([0-9.]+[µm]?s\)$`)
	for _, re := range []*regexp.Regexp{timed,
		regexp.MustCompile(`(?m)^│      llm\.chat: completed \([0-9.]+[µm]?s\); decision allow; arguments `),
		regexp.MustCompile(`(?m)^│      web\.fetch: completed \([0-9.]+[µm]?s\); decision allow; arguments `),
		regexp.MustCompile(`(?m)^│      payment\.charge: held \(0s\); decision approve by .*untrusted-never-pays-alone.*; arguments untrusted`),
		regexp.MustCompile(`(?m)^└─ note — web\.fetch: skipped$`)} {
		if !re.MatchString(tr.stdout) {
			t.Errorf("sluice trace lacks %s:\n%s", re, tr.stdout)
		}
	}

	dot := w.sluice("trace", id, "--dot")
	if dot.code != 0 {
		t.Fatalf("trace --dot: exit %d: %s", dot.code, dot.stderr)
	}
	for _, want := range []string{`[label="note\nweb.fetch\nskipped", fillcolor="#eeeeee", style="rounded,filled,dashed"`,
		`[label="payment.charge\nheld (0s)", fillcolor="#ffcdd2", fontsize=10, color="#f57c00", penwidth=3]`, `s0 -> s0_c2 [style=dotted`} {
		if !strings.Contains(dot.stdout, want) {
			t.Errorf("trace --dot lacks %s:\n%s", want, dot.stdout)
		}
	}

	js := w.sluice("trace", id, "--json")
	var run struct {
		Steps []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Inner  []struct {
				Tool, Status, Decision string
				DurationMS             *int64 `json:"duration_ms"`
			} `json:"inner_calls"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(js.stdout), &run); err != nil {
		t.Fatal(err)
	}
	if len(run.Steps) != 2 || len(run.Steps[0].Inner) != 4 || run.Steps[1].Status != "skipped" {
		t.Fatalf("trace --json: %s", js.stdout)
	}
	if c := run.Steps[0].Inner[3]; c.Tool != "payment.charge" || c.Status != "held" || c.Decision != "approve" || c.DurationMS == nil {
		t.Errorf("the held payment in --json: %+v", c)
	}
}

// A call that spent tokens at a model API is traced with the GenAI
// conventions' attributes: the operation, the tokens the worker reported
// and the model the deployment's configuration names; the API key, which
// stays at the broker, is in no span.
func TestModelCallSpans(t *testing.T) {
	const key = "sk-ant-e2e-trace-7c1d"
	api := newAnthropicAPI(t, key, func(req map[string]any) map[string]any {
		return anthropicMessage("tool_use", 41, 9, map[string]any{"type": "tool_use", "id": "toolu_x", "name": "answer",
			"input": map[string]any{"price": 120, "currency": "EUR"}})
	})
	rcv, err := startOTLPReceiver(t, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := newWorkspace(t, map[string]string{
		"sluice.yaml": fmt.Sprintf(`workers:
  - manifest: builtin:llm
    config: {backend: anthropic, base_url: "http://%s", model: claude-test, api_key: "{{secret:anthropic_key}}", max_tokens: 1024}
    grants:
      net: [%q]
      secrets: [{name: anthropic_key, hosts: ["127.0.0.1"]}]
secrets:
  anthropic_key: {env: SLUICE_E2E_ANTHROPIC_KEY}
`, api.host, api.host),
		"flow.yaml": `name: price
steps:
  - id: price
    call: llm.extract
    with:
      text: A double room costs 120 EUR per night.
      instruction: The price per night.
      schema: {type: object, properties: {price: {type: number}, currency: {type: string}}, required: [price, currency]}
`})
	r := w.sluiceEnv(cleanEnv("SLUICE_E2E_ANTHROPIC_KEY="+key, "OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.url), "run", "flow.yaml", "--json")
	if r.code != 0 {
		t.Fatalf("exit code %d, want 0", r.code)
	}
	_, spans := rcv.got()
	var deliver *tracepb.Span
	for _, s := range spans {
		if s.Name == "deliver llm.extract" {
			deliver = s
		}
		for _, kv := range s.Attributes {
			if strings.Contains(kv.GetValue().GetStringValue(), key) {
				t.Errorf("span %s attribute %s carries the API key", s.Name, kv.Key)
			}
		}
	}
	if deliver == nil {
		t.Fatalf("no deliver llm.extract span among %d", len(spans))
	}
	for k, want := range map[string]string{"gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-test",
		"gen_ai.usage.input_tokens": "41", "gen_ai.usage.output_tokens": "9"} {
		if got := spanAttr(deliver, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}
