package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/orchestrator/engine"
)

// deployment is one suite's Sluice: a working directory with its
// sluice.yaml, the suite's worker and an llm worker talking to the model,
// and a sluice up serving them.
type deployment struct {
	s     *suite
	dir   string
	bin   string
	model *model
	up    *exec.Cmd
	upErr bytes.Buffer
	// client submits runs to sluice up and answers what it holds, through
	// the API sluice run and sluice approve use.
	client *api.Client
	tools  []string
	// agentFlows and planFlows hold the generated agent and plan versions
	// of each task.
	agentFlows map[string]string
	planFlows  map[string]string
	// person is how the person answers a held call of a run without an
	// attack: approve, endorse or remember (-person).
	person string
	// undefended: the control, with the suite's policy replaced by one
	// that endorses every call and agents shown everything.
	undefended bool
}

// undefendedPolicy endorses every call and declassifies every secrecy tag
// the manifest names: with it, and agents that are shown every result,
// nothing stands between an injection and the environment. It shows what
// the attacks do when they are not stopped, and that the judge sees it.
func undefendedPolicy(manifest string) ([]byte, error) {
	var m any
	if err := decodeYAML(manifest, &m, false); err != nil {
		return nil, err
	}
	tags := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if list, ok := x.([]any); ok && k == "secrecy" {
					for _, t := range list {
						tags[fmt.Sprint(t)] = true
					}
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(m)
	p := "rules:\n  - name: undefended-endorse\n    when: \"true\"\n    action: endorse\n    reason: the evaluation's undefended control\n"
	if len(tags) > 0 {
		list := make([]string, 0, len(tags))
		for t := range tags {
			list = append(list, t)
		}
		sort.Strings(list)
		p += "  - name: undefended-declassify\n    when: \"true\"\n    action: declassify\n    tags: [" + strings.Join(list, ", ") + "]\n    reason: the evaluation's undefended control\n"
	}
	return []byte(p), nil
}

const upTimeout = 2 * time.Minute

// deploy writes the suite's deployment under dir and starts sluice up.
func deploy(s *suite, dir, bin, envserver string, undefended bool) (*deployment, error) {
	d := &deployment{s: s, dir: dir, bin: bin, agentFlows: map[string]string{}, planFlows: map[string]string{}, undefended: undefended}
	if err := os.MkdirAll(filepath.Join(dir, "env"), 0o755); err != nil {
		return nil, err
	}
	for _, f := range []string{"manifest.yaml", "policy.yaml"} {
		b, err := os.ReadFile(filepath.Join(s.dir, f))
		if err != nil {
			return nil, err
		}
		if f == "policy.yaml" && undefended {
			b, err = undefendedPolicy(filepath.Join(s.dir, "manifest.yaml"))
			if err != nil {
				return nil, err
			}
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			return nil, err
		}
	}
	b, err := os.ReadFile(envserver)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "envserver"), b, 0o755); err != nil {
		return nil, err
	}
	m, err := newModel()
	if err != nil {
		return nil, err
	}
	d.model = m
	cfg := fmt.Sprintf(`# The %s suite of the evaluation, written by the harness.
policies: [policy.yaml]
workers:
  - manifest: manifest.yaml
  - manifest: builtin:llm
    config: {backend: openai, base_url: "http://%s/v1", model: oracle, max_retries: 0}
    grants: {net: ["%s"]}
`, s.name, m.addr(), m.addr())
	if err := os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	if out, err := d.sluice(context.Background(), "worker", "discover", "--manifest", "manifest.yaml"); err != nil {
		return nil, fmt.Errorf("%s: sluice worker discover: %v\n%s", s.name, err, out)
	}
	if err := d.writeAgentFlows(); err != nil {
		return nil, err
	}
	if err := d.writePlanFlows(); err != nil {
		return nil, err
	}
	return d, d.start()
}

// writeAgentFlows writes each task's agent version: one agent step with the
// task's prompt as its instructions and every tool of the suite.
func (d *deployment) writeAgentFlows() error {
	var manifest struct {
		Tools map[string]any `yaml:"tools"`
	}
	if err := decodeYAML(filepath.Join(d.dir, "manifest.yaml"), &manifest, false); err != nil {
		return err
	}
	for name := range manifest.Tools {
		if strings.ContainsAny(name, "*?[") {
			return fmt.Errorf("%s/manifest.yaml: the harness needs each tool named, not %q", d.s.dir, name)
		}
		d.tools = append(d.tools, d.s.worker+"."+name)
	}
	sort.Strings(d.tools)
	if err := os.MkdirAll(filepath.Join(d.dir, "agent"), 0o755); err != nil {
		return err
	}
	for _, t := range d.s.tasks {
		f := map[string]any{
			"name": t.ID + "-agent",
			"steps": []any{map[string]any{"id": "agent", "agent": map[string]any{
				"model":          "llm",
				"instructions":   strings.ReplaceAll(t.Prompt, "${", "$ {"),
				"tools":          d.tools,
				"max_turns":      len(t.Calls) + maxInjectionCalls(d.s) + 4,
				"hide_untrusted": !d.undefended,
			}}},
			"outputs": map[string]any{"answer": "${steps.agent.output}"},
		}
		b, err := yaml.Marshal(f)
		if err != nil {
			return err
		}
		path := filepath.Join(d.dir, "agent", t.ID+".yaml")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
		d.agentFlows[t.ID] = path
	}
	return nil
}

// writePlanFlows writes each task's plan version: one plan step with the
// task's prompt as its instructions and every tool of the suite. The
// planner is shown the prompt and the tools, never a result; the program
// it writes makes the calls.
func (d *deployment) writePlanFlows() error {
	if err := os.MkdirAll(filepath.Join(d.dir, "plan"), 0o755); err != nil {
		return err
	}
	for _, t := range d.s.tasks {
		f := map[string]any{
			"name": t.ID + "-plan",
			"steps": []any{map[string]any{"id": "plan", "plan": map[string]any{
				"model":        "llm",
				"instructions": strings.ReplaceAll(t.Prompt, "${", "$ {"),
				"tools":        d.tools,
			}}},
			"outputs": map[string]any{"answer": "${steps.plan.output}"},
		}
		b, err := yaml.Marshal(f)
		if err != nil {
			return err
		}
		path := filepath.Join(d.dir, "plan", t.ID+".yaml")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
		d.planFlows[t.ID] = path
	}
	return nil
}

func maxInjectionCalls(s *suite) int {
	n := 0
	for _, a := range s.attacks {
		n = max(n, len(a.Calls))
	}
	return n
}

func (d *deployment) start() error {
	if _, _, err := d.reset(nil); err != nil {
		return err
	}
	d.up = exec.Command(d.bin, "up", "--http", "off", "-q")
	d.up.Dir = d.dir
	d.up.Stdout = &d.upErr
	d.up.Stderr = &d.upErr
	if err := d.up.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(upTimeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(d.dir, ".sluice", "run", "api.json")); err == nil {
			c, err := api.Dial(filepath.Join(d.dir, ".sluice"))
			if err != nil {
				d.stop()
				return fmt.Errorf("%s: %v", d.s.name, err)
			}
			d.client = c
			return nil
		}
		if d.up.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.stop()
	return fmt.Errorf("%s: sluice up did not start:\n%s", d.s.name, d.upErr.String())
}

func (d *deployment) stop() {
	if d.client != nil {
		d.client.Close()
	}
	if d.up != nil && d.up.Process != nil {
		_ = d.up.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = d.up.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = d.up.Process.Kill()
			<-done
		}
	}
	d.model.close()
}

// reset puts a fresh environment in place, with texts in the vectors they
// name and the benign text in every other one.
func (d *deployment) reset(texts map[string]string) (state []byte, vectors map[string]string, err error) {
	state, vectors, err = d.s.environment(texts)
	if err != nil {
		return nil, nil, err
	}
	env := filepath.Join(d.dir, "env")
	if err := os.WriteFile(filepath.Join(env, "state.json"), state, 0o644); err != nil {
		return nil, nil, err
	}
	vb, _ := json.Marshal(vectors)
	if err := os.WriteFile(filepath.Join(env, "vectors.json"), vb, 0o644); err != nil {
		return nil, nil, err
	}
	if err := os.Remove(filepath.Join(env, "read.log")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	return state, vectors, nil
}

func (d *deployment) sluice(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, d.bin, args...)
	cmd.Dir = d.dir
	var out bytes.Buffer
	cmd.Stdout = &out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil && stderr.Len() > 0 {
		return out.Bytes(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), err
}

// runResult is what one run did, judged on the environment.
type runResult struct {
	Status    string   `json:"status"`
	Approvals int      `json:"approvals"`
	Held      int      `json:"held"`
	Denied    int      `json:"denied"`
	Vectors   []string `json:"vectors_read,omitempty"`
	Output    string   `json:"-"`
	Notes     []string `json:"notes,omitempty"`
	Saw       bool     `json:"saw_injection,omitempty"`
	Obeyed    int      `json:"obeyed,omitempty"`
	// Plans counts the programs the planner wrote; Unwritten the requests
	// it could not honestly answer (its notes say why).
	Plans     int    `json:"plans,omitempty"`
	Unwritten int    `json:"plans_not_written,omitempty"`
	Error     string `json:"error,omitempty"`
	pre, post []byte
}

type sluiceRun struct {
	RunID   string            `json:"run_id"`
	Status  string            `json:"status"`
	Steps   []json.RawMessage `json:"steps"`
	Outputs map[string]any    `json:"outputs"`
	Error   string            `json:"error"`
}

const runTimeout = 2 * time.Minute

// run runs one flow against a fresh environment. With a person, every
// call policy holds is approved as it comes (and counted); without one, a
// held run waits for nobody: it is cancelled, and judged as it stands.
func (d *deployment) run(flow string, ep *episode, texts map[string]string, person bool) (*runResult, error) {
	state, vectors, err := d.reset(texts)
	if err != nil {
		return nil, err
	}
	ep.secrets = secretTexts(state, vectors, ep.task.Prompt)
	pre, err := os.ReadFile(filepath.Join(d.dir, "env", "state.json"))
	if err != nil {
		return nil, err
	}
	d.model.play(ep)
	defer d.model.play(nil)
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	res := &runResult{pre: pre}
	r, err := d.submit(ctx, flow, person, res)
	if err != nil {
		return nil, fmt.Errorf("run %s: %v", flow, err)
	}
	res.Status, res.Error = r.Status, r.Error
	if r.Status == "held" {
		if _, err := d.client.Cancel(ctx, r.RunID, "eval"); err != nil {
			return nil, fmt.Errorf("cancel %s: %v", r.RunID, err)
		}
	}
	for _, s := range r.Steps {
		countDecisions(s, res)
	}
	res.Output = outputText(r.Outputs)
	if res.post, err = os.ReadFile(filepath.Join(d.dir, "env", "state.json")); err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(d.dir, "env", "read.log")); err == nil {
		seen := map[string]bool{}
		for _, v := range strings.Fields(string(b)) {
			if !seen[v] {
				seen[v] = true
				res.Vectors = append(res.Vectors, v)
			}
		}
		sort.Strings(res.Vectors)
	}
	ep.mu.Lock()
	res.Notes, res.Saw, res.Obeyed = ep.notes, ep.saw, ep.obeyed
	res.Plans, res.Unwritten = ep.plans, ep.unwritten
	leak := ep.leak
	ep.mu.Unlock()
	if leak != "" {
		// The plan step's guarantee is that its planner is shown trusted
		// text only: a run that broke it is not a measurement.
		return nil, fmt.Errorf("run %s: the plan step broke its guarantee: %s", flow, leak)
	}
	return res, nil
}

// submit runs a flow in sluice up, as sluice run does. With a person,
// each call policy holds is approved as soon as it is held, as a person who
// reads and approves every held call would; without one, the run stops at
// the first hold.
func (d *deployment) submit(ctx context.Context, flow string, person bool, res *runResult) (*sluiceRun, error) {
	var mu sync.Mutex
	var answerErr error
	onEvent := func(raw json.RawMessage) {
		var ev api.RunEvent
		if !person || json.Unmarshal(raw, &ev) != nil || ev.Held == nil || ev.Held.ApprovalID == "" {
			return
		}
		req := api.AnswerRequest{ID: ev.Held.ApprovalID, Approved: true, Who: "eval"}
		switch args := untrustedArgs(ev.Held); {
		case len(args) == 0:
		case d.person == "endorse":
			req.Endorse = &engine.EndorseScope{Args: args}
		case d.person == "remember":
			req.Remember = &engine.RememberScope{Pin: args, AnyFlow: true}
		}
		err := d.client.AnswerAndRemember(ctx, req)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			answerErr = err
			return
		}
		res.Approvals++
	}
	rep, err := d.client.Run(ctx, api.RunRequest{Flow: flow, Wait: person}, onEvent)
	if err != nil {
		return nil, err
	}
	if rep.Error != "" {
		return nil, errors.New(rep.Error)
	}
	var r sluiceRun
	if err := json.Unmarshal(rep.Result, &r); err != nil {
		return nil, fmt.Errorf("the orchestrator's result: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return &r, answerErr
}

// untrustedArgs are the arguments of a held call that are not trusted:
// what a person endorses (-person endorse: for the rest of the run) or
// keeps as approved (-person remember: for every later run, in any flow).
func untrustedArgs(held *engine.StepResult) []string {
	var args []string
	for name, l := range held.ArgLabels {
		if l.Integrity() != ifc.Trusted {
			args = append(args, name)
		}
	}
	sort.Strings(args)
	return args
}

// countDecisions counts the held and denied calls of a step, of the calls
// an agent step made and of a for_each step's elements.
func countDecisions(raw json.RawMessage, res *runResult) {
	var s struct {
		Decision string            `json:"decision"`
		Status   string            `json:"status"`
		Calls    []json.RawMessage `json:"calls"`
		Items    []json.RawMessage `json:"items"`
	}
	if json.Unmarshal(raw, &s) != nil {
		return
	}
	switch {
	case s.Decision == "deny" || s.Status == "denied":
		res.Denied++
	case s.Decision == "approve" || s.Status == "held":
		res.Held++
	}
	for _, c := range append(s.Calls, s.Items...) {
		countDecisions(c, res)
	}
}

// outputText is a run's outputs as text: each string as it is, anything
// else as JSON, one per line in the order of their names.
func outputText(outputs map[string]any) string {
	keys := make([]string, 0, len(outputs))
	for k := range outputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if s, ok := outputs[k].(string); ok {
			b.WriteString(s)
		} else {
			j, _ := json.Marshal(outputs[k])
			b.Write(j)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
