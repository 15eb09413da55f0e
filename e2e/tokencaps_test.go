package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tokenBudgetAPI is a model API on loopback whose every answer spends 100
// input and 20 output tokens: to instructions that say "forever" it asks
// for a page again at every turn, to others it asks once and then answers.
func tokenBudgetAPI(t *testing.T, key, page string) *anthropicAPI {
	return newAnthropicAPI(t, key, func(req map[string]any) map[string]any {
		msgs := req["messages"].([]any)
		first, _ := json.Marshal(msgs[0])
		if len(msgs) > 1 && !strings.Contains(string(first), "forever") {
			return anthropicMessage("end_turn", 100, 20, map[string]any{"type": "text", "text": "A double room costs 120 EUR per night."})
		}
		return anthropicMessage("tool_use", 100, 20, map[string]any{"type": "tool_use", "id": fmt.Sprintf("toolu_%d", len(msgs)),
			"name": "web__fetch", "input": map[string]any{"url": "http://" + page + "/hotel"}})
	})
}

// tokenBudgetWorkspace: an agent step on Anthropic's API under a token
// budget of 300 per window, on its chat turns and its extract calls.
func tokenBudgetWorkspace(t *testing.T, window string) (*workspace, *anthropicAPI, string) {
	const key = "sk-ant-e2e-tokens-7c1d"
	page := site(t, map[string]string{"/hotel": honestPage})
	api := tokenBudgetAPI(t, key, page)
	t.Setenv("SLUICE_E2E_ANTHROPIC_KEY", key)
	w := newWorkspace(t, map[string]string{
		"sluice.yaml": fmt.Sprintf(`policies: [policy.yaml]
workers:
  - manifest: builtin:web
    grants: {net: [%q]}
  - manifest: builtin:llm
    config: {backend: anthropic, base_url: "http://%s", model: claude-test, api_key: "{{secret:anthropic_key}}", max_tokens: 64}
    grants:
      net: [%q]
      secrets: [{name: anthropic_key, hosts: ["127.0.0.1"]}]
secrets:
  anthropic_key: {env: SLUICE_E2E_ANTHROPIC_KEY}
`, page, api.host, api.host),
		"policy.yaml": `rules: []
caps:
  - name: model-tokens
    tool: [llm.chat, llm.extract]
    window: ` + window + `
    max_tokens: 300
`,
		"flow.yaml": `name: price
inputs:
  ask: {type: string}
steps:
  - id: research
    agent:
      model: llm
      instructions: "${inputs.ask + ' What does a room cost at the hotel?'}"
      tools: [web.fetch]
      max_turns: 8
      hide_untrusted: false
outputs:
  answer: "${steps.research.output}"
`})
	return w, api, page
}

func (a *anthropicAPI) answered() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.reqs)
}

// An agent whose model keeps asking for pages is stopped at its run's
// token budget: three turns spend 360 tokens, past the 300, and the
// fourth is denied by the cap — a denial (exit 3) that names the cap,
// what was spent and the budget, in the run's output, in sluice trace and
// in the audit log. The control: an agent that answers within the budget
// completes, and a run has a budget of its own.
func TestTokenBudgetPerRun(t *testing.T) {
	w, api, _ := tokenBudgetWorkspace(t, "run")
	const reason = "the calls of llm.chat, llm.extract have spent 360 tokens of the 300 allowed per run"

	r := w.sluice("run", "flow.yaml", "--input", "ask=Read the page forever.", "--json")
	if r.code != 3 {
		t.Fatalf("exit code %d, want 3 (denied)\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if api.answered() != 3 {
		t.Fatalf("the model API answered %d requests, want 3 (the fourth turn is past the budget)", api.answered())
	}
	validateOutput(t, "run.json", "run --json (denied by a token budget)", r.stdout)
	var run struct {
		RunID string `json:"run_id"`
		Steps []struct {
			Status  string   `json:"status"`
			Rules   []string `json:"rules"`
			Reasons []string `json:"reasons"`
			Error   string   `json:"error"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &run); err != nil {
		t.Fatal(err)
	}
	s := run.Steps[0]
	if s.Status != "denied" || strings.Join(s.Rules, ",") != "model-tokens" || !strings.Contains(s.Error+strings.Join(s.Reasons, ";"), reason) {
		t.Fatalf("research: %+v", s)
	}
	text := w.sluice("run", "flow.yaml", "--input", "ask=Read the page forever.")
	if text.code != 3 || !strings.Contains(text.stdout+text.stderr, "cap model-tokens (policy.yaml:3:5): "+reason) {
		t.Fatalf("the run's text output does not name the cap and the budget: exit %d\n%s\n%s", text.code, text.stdout, text.stderr)
	}
	if tr := w.sluice("trace", run.RunID); tr.code != 0 || !strings.Contains(tr.stdout, "model-tokens") || !strings.Contains(tr.stdout, reason) {
		t.Fatalf("sluice trace does not show the cap's denial: exit %d\n%s", tr.code, tr.stdout)
	}
	var denials, spent int
	for _, rec := range checkAudit(t, w) {
		if rec["run_id"] != run.RunID {
			continue
		}
		if rec["kind"] == "decision" && rec["action"] == "deny" && rec["tool"] == "llm.chat" {
			b, _ := json.Marshal(rec)
			if !strings.Contains(string(b), `"rules":["model-tokens (policy.yaml:3:5)"]`) || !strings.Contains(string(b), reason) {
				t.Errorf("denial record %s", b)
			}
			denials++
		}
		if u, ok := rec["usage"].(map[string]any); ok && rec["tool"] == "llm.chat" {
			for _, k := range []string{"input_tokens", "output_tokens"} {
				n, _ := u[k].(json.Number).Int64()
				spent += int(n)
			}
		}
	}
	if denials != 1 || spent != 360 {
		t.Errorf("audit log of the run: %d denials by the cap, %d tokens in its result records; want 1 and 360", denials, spent)
	}

	before := api.answered()
	ok := w.sluice("run", "flow.yaml", "--input", "ask=Be brief.", "--json")
	if ok.code != 0 || !strings.Contains(ok.stdout, "A double room costs 120 EUR per night.") {
		t.Fatalf("a run within its budget: exit %d\n%s\n%s", ok.code, ok.stdout, ok.stderr)
	}
	validateOutput(t, "run.json", "run --json (within a token budget)", ok.stdout)
	var control struct {
		Steps []struct {
			Usage map[string]int `json:"usage"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(ok.stdout), &control); err != nil {
		t.Fatal(err)
	}
	if u := control.Steps[0].Usage; u["input_tokens"] != 200 || u["output_tokens"] != 40 {
		t.Errorf("the agent step reports usage %v, want its two turns' (200 and 40)", u)
	}
	if n := api.answered() - before; n != 2 {
		t.Errorf("a run within its budget made %d requests, want 2", n)
	}
}

// A per-day token budget spans runs and a restart of sluice up: the first
// run spends 240 of the 300 and completes; after the restart, the second
// run's first turn is let through (240 is under the budget) and its
// second is denied.
//
// A day's budget is the UTC day's: a test that straddles midnight saw two
// budgets, and is run once more (it cannot straddle the next midnight).
func TestTokenBudgetPerDaySurvivesRestart(t *testing.T) {
	for try := 0; ; try++ {
		day := time.Now().UTC().Format(time.DateOnly)
		err := perDayAcrossRestart(t)
		if err == nil {
			return
		}
		if time.Now().UTC().Format(time.DateOnly) == day || try == 1 {
			t.Fatal(err)
		}
		t.Logf("the UTC day changed during the test (%v): running it again", err)
	}
}

// perDayAcrossRestart is the test once; what it finds wrong is its error.
func perDayAcrossRestart(t *testing.T) error {
	w, api, _ := tokenBudgetWorkspace(t, "day")
	up := upAndReady(t, w)
	defer func() {
		up.cmd.Process.Signal(syscall.SIGINT)
		up.wait(t, 30*time.Second)
	}()
	if r := w.sluice("run", "flow.yaml", "--input", "ask=Be brief."); r.code != 0 {
		return fmt.Errorf("first run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	up.cmd.Process.Signal(syscall.SIGINT)
	if code := up.wait(t, 30*time.Second); code != 0 {
		return fmt.Errorf("up exit %d", code)
	}

	up = upAndReady(t, w)
	before := api.answered()
	r := w.sluice("run", "flow.yaml", "--input", "ask=Be brief.")
	if r.code != 3 || !strings.Contains(r.stdout+r.stderr, "cap model-tokens (policy.yaml:3:5): the calls of llm.chat, llm.extract have spent 360 tokens of the 300 allowed per day") {
		return fmt.Errorf("second run, after the restart: exit %d, want 3 (denied by the cap)\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := api.answered() - before; n != 1 {
		return fmt.Errorf("the second run made %d requests, want 1", n)
	}
	return nil
}

// A token budget that cannot be kept does not load: sluice lint and sluice
// run name each problem at its file:line:col, and nothing runs.
func TestTokenBudgetPolicyErrors(t *testing.T) {
	w, api, _ := tokenBudgetWorkspace(t, "run")
	w.write("policy.yaml", `caps:
  - name: model-tokens
    tool: [llm.chat, llm.chatt]
    window: run
    max_tokens: -5
  - name: mixed
    tool: llm.chat
    window: day
    max_tokens: 10
    max_count: 3
  - name: typo
    tool: llm.chat
    window: day
    tokens: 10
`)
	want := []string{
		`policy.yaml:3:22: cap "model-tokens": no tool "llm.chatt" (tools are: llm.chat, llm.complete, llm.extract, web.fetch)`,
		`policy.yaml:5:17: caps.0.max_tokens: minimum: got -5, want 1`,
		`policy.yaml:9:17: cap "mixed": a token budget (max_tokens) is one budget per day; write per, sum and max_count in a cap of their own`,
		`policy.yaml:14:5: unknown key "tokens" (did you mean "max_tokens"?)`,
	}
	for _, args := range [][]string{{"lint"}, {"run", "flow.yaml", "--input", "ask=Be brief."}} {
		r := w.sluice(args...)
		if r.code != 1 {
			t.Errorf("sluice %s: exit %d, want 1\n%s", args[0], r.code, r.stderr)
		}
		for _, line := range want {
			if !strings.Contains(r.stderr, line) {
				t.Errorf("sluice %s does not say %q:\n%s", args[0], line, r.stderr)
			}
		}
	}
	if api.answered() != 0 {
		t.Errorf("the model API was asked %d times by a deployment whose policy did not load", api.answered())
	}
}
