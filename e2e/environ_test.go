package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// environLeaks lists what a worker's environment must not hold: a variable
// whose value contains the secret, and a variable that is neither one of
// its settings from the supervisor nor PATH, HOME, LANG or TZ from the
// orchestrator's environment.
func environLeaks(env []string, secret string) []string {
	allowed := []string{
		"SLUICE_NATS_URL", "SLUICE_NATS_CREDS", "SLUICE_STATE", "SLUICE_SUBJECT_PREFIX",
		"SLUICE_WORKER_CONFIG", "SLUICE_WORKER_GRANTS", "SLUICE_SEAL_NETWORK", "SLUICE_SEAL_REPORT_FD",
		"GOMEMLIMIT", "PATH", "HOME", "LANG", "TZ",
	}
	var out []string
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		switch {
		case strings.Contains(value, secret):
			out = append(out, "the secret, in "+name)
		case !slices.Contains(allowed, name):
			out = append(out, "unlisted "+name)
		}
	}
	return out
}

// environOf reads the environment a process was started with.
func environOf(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// A secret configured by environment is held by the orchestrator alone:
// under sluice up, no worker's /proc/<pid>/environ holds it, nor any
// variable the allowlist does not name, while the orchestrator's own
// environment holds both (the control: the check finds them where they
// are). The secret is live — the broker fills it in for the payment
// provider — and every built-in worker serves its call.
func TestWorkersHoldNoSecret(t *testing.T) {
	const key = "sk-canary-e5a90c3d71"
	var mu sync.Mutex
	authorized := 0
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+key || r.URL.Path != "/v1/charges" {
			http.Error(w, `{"error": {"code": "unauthorized"}}`, http.StatusUnauthorized)
			return
		}
		mu.Lock()
		authorized++
		mu.Unlock()
		fmt.Fprint(w, `{"id": "ch_1", "status": "succeeded"}`)
	}))
	t.Cleanup(api.Close)
	apiHost := strings.TrimPrefix(api.URL, "http://")
	host := site(t, map[string]string{"/hotel": honestPage})
	w := newWorkspace(t, map[string]string{
		"sluice.yaml": `workers:
  - manifest: builtin:web
    grants: {net: ["` + host + `"]}
  - manifest: builtin:payment
    config: {backend: http, base_url: "` + api.URL + `", api_key: "{{secret:payments_key}}"}
    grants:
      net: ["` + apiHost + `"]
      secrets: [{name: payments_key, hosts: ["127.0.0.1"]}]
  - manifest: builtin:llm
    config: {backend: scripted, script: answers.yaml}
  - manifest: builtin:files
    grants: {files: {root: ./files}}
  - manifest: builtin:calendar
  - manifest: builtin:email
secrets:
  payments_key: {env: PAYMENTS_KEY}
`,
		"answers.yaml":     "- match: hello\n  respond: Hello.\n",
		"files/readme.txt": "a file",
		"every.yaml": `name: every-worker
steps:
  - {id: fetch, call: web.fetch, with: {url: "http://` + host + `/hotel"}}
  - {id: pay, call: payment.charge, with: {amount: 7, currency: EUR, payee: acct_hotel_1}}
  - {id: ask, call: llm.complete, with: {prompt: Say hello.}}
  - {id: read, call: files.read, with: {path: readme.txt}}
  - {id: events, call: calendar.list_events, with: {from: "2026-12-01T00:00:00Z", to: "2026-12-02T00:00:00Z"}}
  - {id: mail, call: email.inbox, with: {limit: 1}}
`,
	})
	up := w.startEnv([]string{"PAYMENTS_KEY=" + key, "E2E_UNLISTED=unlisted-4c1d", "LANG=C.UTF-8", "TZ=Europe/Lisbon"}, "up")
	up.waitLine(t, "stop with Ctrl-C", time.Minute)

	// The control: the check finds the secret and the unlisted variable in
	// the orchestrator's environment, which does hold them.
	if leaks := environLeaks(environOf(t, up.cmd.Process.Pid), key); !slices.Contains(leaks, "the secret, in PAYMENTS_KEY") ||
		!slices.Contains(leaks, "unlisted E2E_UNLISTED") {
		t.Fatalf("control: the check does not see what the orchestrator's environment holds: %v", leaks)
	}
	workers := childProcesses(t, up.cmd.Process.Pid)
	if len(workers) != 6 {
		t.Fatalf("workers %v, want 6", workers)
	}
	for pid, cmdline := range workers {
		env := environOf(t, pid)
		if leaks := environLeaks(env, key); len(leaks) > 0 {
			t.Errorf("worker %d (%s) holds %v", pid, cmdline, leaks)
		}
		for _, want := range []string{"LANG=C.UTF-8", "TZ=Europe/Lisbon", "SLUICE_SEAL_NETWORK=1"} {
			if !slices.Contains(env, want) {
				t.Errorf("worker %d (%s) lacks %s: %v", pid, cmdline, want, env)
			}
		}
	}

	r := w.sluice("run", "every.yaml", "--json")
	if r.code != 0 {
		t.Fatalf("run through every worker: exit %d", r.code)
	}
	run := decodeRun(t, r.stdout)
	for _, s := range run.Steps {
		if s.Status != "completed" {
			t.Errorf("step %s: %s (%s)", s.ID, s.Status, s.Decision)
		}
	}
	if len(run.Steps) != 6 {
		t.Errorf("steps %+v, want 6", run.Steps)
	}
	mu.Lock()
	if authorized != 1 {
		t.Errorf("the provider authorized %d charges, want 1: the broker did not fill the secret in", authorized)
	}
	mu.Unlock()

	up.cmd.Process.Signal(syscall.SIGINT)
	if code := up.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("up exit %d", code)
	}
	for pid := range workers {
		if stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && !strings.Contains(string(stat), ") Z ") {
			t.Errorf("worker %d outlived sluice up", pid)
		}
	}
}
