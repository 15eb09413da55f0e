package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/engine"
)

// WASM modules are built once per test binary, next to the sluice binary
// (TestMain removes that directory): the hostile modules of
// testdata/wasm and the example tools.
var wasmBuild struct {
	once sync.Once
	dir  string
	err  error
}

var (
	hostileModules = []string{"loop", "bomb", "flood", "files", "network", "trap"}
	exampleTools   = []string{"currency", "money"}
)

// wasmModule returns the path of the built module name.
func wasmModule(t *testing.T, name string) string {
	t.Helper()
	wasmBuild.once.Do(func() {
		wasmBuild.dir = filepath.Join(filepath.Dir(sluiceBin), "wasm")
		pkgs := map[string]string{}
		for _, m := range hostileModules {
			pkgs[m] = "./testdata/wasm/" + m
		}
		for _, m := range exampleTools {
			pkgs[m] = "../examples/tools/" + m
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []string
		sem := make(chan struct{}, 2)
		for name, pkg := range pkgs {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", filepath.Join(wasmBuild.dir, name+".wasm"), pkg)
				cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
				if out, err := cmd.CombinedOutput(); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("build %s: %v\n%s", pkg, err, out))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			wasmBuild.err = fmt.Errorf("%s", strings.Join(errs, "\n"))
		}
	})
	if wasmBuild.err != nil {
		t.Fatal(wasmBuild.err)
	}
	return filepath.Join(wasmBuild.dir, name+".wasm")
}

// hostile is one hostile module served by a real worker process under an
// orchestrator running in the test.
type hostile struct {
	t    *testing.T
	w    *workspace
	name string
	orch *orchestrator.Orchestrator
	pid  int
}

// startHostile writes a manifest for the module name with tools, extra
// manifest YAML (limits), and starts an orchestrator serving it.
func startHostile(t *testing.T, name string, tools []string, extra string) *hostile {
	t.Helper()
	var mf strings.Builder
	fmt.Fprintf(&mf, "worker: %s\nrun: wasm:%s\ntools:\n", name, wasmModule(t, name))
	for _, tool := range tools {
		fmt.Fprintf(&mf, "  %s: {input_schema: any.json}\n", tool)
	}
	mf.WriteString(extra)
	w := newWorkspace(t, map[string]string{
		name + ".yaml": mf.String(),
		"any.json":     `{"type": "object"}`,
		"sluice.yaml":  "workers:\n  - manifest: " + name + ".yaml\n",
	})
	dep, err := config.Load(w.path("sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	orch := startOrchestrator(t, orchestrator.Config{Deployment: dep})
	pids := orch.Pids()[name]
	if len(pids) != 1 {
		t.Fatalf("worker %s has processes %v", name, pids)
	}
	return &hostile{t: t, w: w, name: name, orch: orch, pid: pids[0]}
}

// call runs a one-step flow calling tool with args, and returns its step.
func (h *hostile) call(tool, args string) engine.StepResult {
	h.t.Helper()
	file := fmt.Sprintf("%s-%d.yaml", tool, time.Now().UnixNano())
	h.w.write(file, fmt.Sprintf("name: %s\nsteps:\n  - id: %s\n    call: %s.%s\n    with: %s\n", tool, tool, h.name, tool, args))
	plan, err := h.orch.LoadFlow(h.w.path(file))
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := h.orch.Run(ctx, plan, nil, engine.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	if len(res.Steps) != 1 {
		h.t.Fatalf("run %+v", res)
	}
	return res.Steps[0]
}

// attack calls the attack tool (or another), expects the call to fail with
// an error naming want, and then shows that the same worker process serves
// the next call.
func (h *hostile) attack(tool, args string, want ...string) engine.StepResult {
	h.t.Helper()
	start := time.Now()
	s := h.call(tool, args)
	if s.Status != engine.StatusFailed {
		h.t.Fatalf("%s.%s: status %s, output label %v: the attack was not stopped", h.name, tool, s.Status, s.OutputLabel)
	}
	for _, w := range want {
		if !strings.Contains(s.Error, w) {
			h.t.Errorf("%s.%s: error %q does not say %q", h.name, tool, s.Error, w)
		}
	}
	h.t.Logf("%s.%s stopped after %s: %s", h.name, tool, time.Since(start).Round(time.Millisecond), s.Error)
	h.serves()
	return s
}

// serves checks that the worker answers an ordinary call, in the same
// process as before.
func (h *hostile) serves() {
	h.t.Helper()
	s := h.call("echo", `{said: after}`)
	if s.Status != engine.StatusCompleted {
		h.t.Fatalf("%s.echo after the attack: %s: %s", h.name, s.Status, s.Error)
	}
	if pids := h.orch.Pids()[h.name]; !slices.Equal(pids, []int{h.pid}) {
		h.t.Fatalf("worker %s was restarted: pids %v, was %d", h.name, pids, h.pid)
	}
}

// An endless loop is stopped at the manifest's time limit.
func TestWASMEndlessLoop(t *testing.T) {
	h := startHostile(t, "loop", []string{"attack", "echo"}, "limits: {timeout: 1s}\n")
	h.attack("attack", "{}", "tool_failed", "time limit of 1s")
}

// A memory bomb is stopped at the manifest's memory limit. Its first
// allocation is past the limit, and the time limit is out of reach, so the
// machine's speed cannot decide which limit stops it.
func TestWASMMemoryBomb(t *testing.T) {
	h := startHostile(t, "bomb", []string{"attack", "echo"}, "limits: {timeout: 10m, memory: 64MiB}\n")
	h.attack("attack", "{}", "memory limit of 64MiB")
}

// A flood of output is stopped at the manifest's output limit: the error
// names that limit, not the time limit, which is out of reach.
func TestWASMFloodOfOutput(t *testing.T) {
	h := startHostile(t, "flood", []string{"attack", "echo"}, "limits: {timeout: 10m, max_output: 256KiB}\n")
	h.attack("attack", "{}", "too_large", "limit of 256KiB")
}

// Without a file grant the module has no file system: it can neither read
// a host file nor plant one.
func TestWASMOpenFile(t *testing.T) {
	h := startHostile(t, "files", []string{"attack", "echo"}, "")
	secret := h.w.path("secret.txt")
	h.w.write("secret.txt", "canary-4711")
	h.attack("attack", fmt.Sprintf("{path: %q}", secret), "no file system: 4 attempts failed")
	if _, err := os.Stat(secret + ".planted"); err == nil {
		t.Fatal("the module wrote a file")
	}
}

// The module cannot reach the network: WASI gives it no socket, and the
// egress broker refuses a host the worker was not granted, and records the
// refusal. The server never sees a connection.
func TestWASMNetwork(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ConnState = func(net.Conn, http.ConnState) { hits.Add(1) }
	srv.Start()
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	// The worker may reach one other host, so the request goes to the
	// broker, which refuses it.
	h := startHostile(t, "network", []string{"attack", "dial", "echo"}, "grants: {net: [\"127.0.0.1:9\"]}\n")
	h.attack("dial", fmt.Sprintf("{addr: %q}", addr), "dial failed")
	s := h.attack("attack", fmt.Sprintf("{addr: %q}", addr), "is not granted")
	if n := hits.Load(); n != 0 {
		t.Fatalf("the server saw %d connection events", n)
	}
	recs, err := h.orch.Audit().Records(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	refused := false
	for _, r := range recs {
		if r.Kind == audit.KindEgress && r.MsgID == s.MsgID && r.Status == "refused" && r.Subject == addr {
			refused = true
		}
	}
	if !refused {
		t.Errorf("the audit log has no refused egress to %s for call %s", addr, s.MsgID)
	}
}

// A trap (a Go panic the guest cannot recover) ends that instance only.
func TestWASMTrap(t *testing.T) {
	h := startHostile(t, "trap", []string{"attack", "echo"}, "")
	h.attack("attack", "{}", "trapped", "wasm error: unreachable")
}

// copyTool copies an example tool's manifest and schemas into dir, with
// the freshly built module beside them.
func copyTool(t *testing.T, w *workspace, name string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("../examples/tools", name, "*.*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if ext := filepath.Ext(f); ext != ".yaml" && ext != ".json" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		w.write(filepath.Join(name, filepath.Base(f)), string(b))
	}
	b, err := os.ReadFile(wasmModule(t, name))
	if err != nil {
		t.Fatal(err)
	}
	w.write(filepath.Join(name, name+".wasm"), string(b))
}

const splitBalanceFlow = `name: split-balance
inputs:
  payee: {type: string}
steps:
  - id: balance
    call: payment.balance
    with: {}
  - id: split
    call: money.split
    with: {amount: "${steps.balance.output.balance}", parts: 2, currency: "${steps.balance.output.currency}"}
  - id: pay
    call: payment.charge
    with: {amount: "${steps.split.output.shares[0]}", currency: EUR, payee: "${inputs.payee}"}
outputs:
  charge: "${steps.pay.output.charge_id}"
`

// A WASM tool between two built-in tools: its output is untrusted, with
// source tool:money.split, unless its manifest says otherwise, and the step
// after it carries that label. A payment decided by it is held; the same
// flow with a manifest that trusts the tool pays.
func TestWASMToolBetweenBuiltins(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted bool
	}{{"untrusted by default", false}, {"trusted by its manifest", true}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorkspace(t, map[string]string{"split.yaml": splitBalanceFlow, "sluice.yaml": `workers:
  - manifest: builtin:payment
    config: {opening_balance: 250}
  - manifest: money/money.yaml
`})
			copyTool(t, w, "money")
			if tc.trusted {
				b, _ := os.ReadFile(w.path("money/money.yaml"))
				w.write("money/money.yaml", strings.Replace(string(b), "output_schema: split.output.json",
					"output_schema: split.output.json\n    output_label: {integrity: trusted}", 1))
			}
			r := w.sluice("run", "split.yaml", "--input", "payee=acct_hotel_1", "--wait=false", "--json")
			run := decodeRun(t, r.stdout)
			var split struct {
				Steps []struct {
					ID          string `json:"id"`
					OutputLabel struct {
						Integrity string   `json:"integrity"`
						Secrecy   []string `json:"secrecy"`
						Sources   []string `json:"sources"`
					} `json:"output_label"`
				} `json:"steps"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &split); err != nil {
				t.Fatal(err)
			}
			out := split.Steps[run.step(t, "split")].OutputLabel
			pay := run.Steps[run.step(t, "pay")]
			for _, src := range []string{"tool:money.split", "tool:payment.balance"} {
				if !slices.Contains(out.Sources, src) || !slices.Contains(pay.Label.Sources, src) {
					t.Errorf("split output sources %v, pay sources %v: want %s in both", out.Sources, pay.Label.Sources, src)
				}
			}
			if !slices.Contains(out.Secrecy, "payment") || !slices.Contains(pay.Label.Secrecy, "payment") {
				t.Errorf("the balance's secrecy was not carried: split %v, pay %v", out.Secrecy, pay.Label.Secrecy)
			}
			if !tc.trusted {
				if r.code != 4 || out.Integrity != "untrusted" || pay.Label.Integrity != "untrusted" || pay.Status != "held" {
					t.Fatalf("exit %d, split output %s, pay %s %s: want 4, untrusted, untrusted, held", r.code, out.Integrity, pay.Label.Integrity, pay.Status)
				}
				if !slices.Contains(pay.Rules, "untrusted-never-pays-alone") {
					t.Errorf("pay rules %v", pay.Rules)
				}
				if lines := w.ledger(); len(lines) != 0 {
					t.Fatalf("the ledger was written: %v", lines)
				}
				return
			}
			if r.code != 0 || out.Integrity != "trusted" || pay.Status != "completed" {
				t.Fatalf("exit %d, split output %s, pay %s: want 0, trusted, completed", r.code, out.Integrity, pay.Status)
			}
			if lines := w.ledger(); len(lines) != 1 || !strings.Contains(lines[0], `"amount":125`) {
				t.Fatalf("ledger %v: want one charge of 125", lines)
			}
		})
	}
}

// The currency tool converts through the host's HTTP function: the egress
// broker lets it reach only the granted rates API, only the currency codes
// leave the machine, and the output is labeled with the host it reached.
func TestWASMToolMakesHTTPRequestsThroughTheBroker(t *testing.T) {
	var mu sync.Mutex
	var queries []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.Path+"?"+r.URL.RawQuery)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"amount": 1.0, "base": "EUR", "date": "2026-01-02", "rates": {"USD": 1.25}}`)
	}))
	t.Cleanup(api.Close)
	host := strings.TrimPrefix(api.URL, "http://")
	w := newWorkspace(t, map[string]string{
		"convert.yaml": `name: convert
inputs:
  amount: {type: number}
  api: {type: string}
steps:
  - id: convert
    call: currency.convert
    with: {amount: "${inputs.amount}", from: EUR, to: usd, api: "${inputs.api}"}
outputs:
  usd: "${steps.convert.output.converted}"
`,
		"sluice.yaml": fmt.Sprintf("workers:\n  - manifest: currency/currency.yaml\n    grants: {net: [%q]}\n", host),
	})
	copyTool(t, w, "currency")
	r := w.sluice("run", "convert.yaml", "--input", "amount=80", "--input", "api=http://"+host, "--json")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	run := decodeRun(t, r.stdout)
	if run.Outputs["usd"] != 100.0 {
		t.Errorf("outputs %v, want usd 100", run.Outputs)
	}
	var labels struct {
		Steps []struct {
			OutputLabel struct {
				Integrity string   `json:"integrity"`
				Sources   []string `json:"sources"`
			} `json:"output_label"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &labels); err != nil {
		t.Fatal(err)
	}
	out := labels.Steps[0].OutputLabel
	if out.Integrity != "untrusted" || !slices.Contains(out.Sources, "tool:currency.convert") || !slices.Contains(out.Sources, "web:"+host) {
		t.Errorf("output label %+v: want untrusted from tool:currency.convert and web:%s", out, host)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(queries, []string{"/latest?from=EUR&to=USD"}) {
		t.Errorf("the API saw %v", queries)
	}
}

// The example tools' manifests load, with their schemas.
func TestExampleToolManifestsLoad(t *testing.T) {
	for _, name := range exampleTools {
		m, err := capabilities.Load(filepath.Join("../examples/tools", name, name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if m.Run != "wasm:"+name+".wasm" {
			t.Errorf("%s: run %q", name, m.Run)
		}
		for _, tool := range m.Tools {
			if tool.Input == nil || tool.Output == nil {
				t.Errorf("%s: no input or output schema", tool.Name)
			}
		}
	}
}

// The split-bill example runs as its README says: one module serves both
// of its tools, and their outputs are untrusted third-party work.
func TestWASMExampleSplitBill(t *testing.T) {
	flow, err := os.ReadFile("../examples/tools/split-bill.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w := newWorkspace(t, map[string]string{"split-bill.yaml": string(flow), "sluice.yaml": "workers:\n  - manifest: money/money.yaml\n"})
	copyTool(t, w, "money")
	r := w.sluice("run", "split-bill.yaml", "--input", "people=4", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	run := decodeRun(t, r.stdout)
	if fmt.Sprint(run.Outputs["total"], run.Outputs["shares"]) != "357.6 [89.4 89.4 89.4 89.4]" {
		t.Errorf("outputs %v", run.Outputs)
	}
	shares := run.Steps[run.step(t, "shares")]
	if shares.Label.Integrity != "untrusted" || !slices.Contains(shares.Label.Sources, "tool:money.total") {
		t.Errorf("shares step label %+v: want untrusted, from tool:money.total", shares.Label)
	}
}

// docs/workers.md shows the currency manifest as it is.
func TestWorkersDocShowsTheExampleManifest(t *testing.T) {
	doc, err := os.ReadFile("../docs/workers.md")
	if err != nil {
		t.Fatal(err)
	}
	mf, err := os.ReadFile("../examples/tools/currency/currency.yaml")
	if err != nil {
		t.Fatal(err)
	}
	body := string(mf[strings.Index(string(mf), "worker:"):])
	if !strings.Contains(string(doc), "# examples/tools/currency/currency.yaml\n"+body+"```") {
		t.Error("docs/workers.md does not show examples/tools/currency/currency.yaml as it is")
	}
}
