package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// mcpToken is the secret the streamable HTTP server wants in its
// Authorization header; only the egress broker ever holds it.
const mcpToken = "tok-3f9a1c-never-in-a-worker"

// mcpHTTP is the streamable HTTP MCP server of testdata/mcphttp, running
// on 127.0.0.1: its URL, and the requests it has received.
type mcpHTTP struct {
	url   string
	lines chan string
	seen  []string
}

func startMCPHTTP(t *testing.T) *mcpHTTP {
	t.Helper()
	cmd := exec.Command(mcpHTTPBin, mcpToken)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	s := &mcpHTTP{lines: make(chan string, 1024)}
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "http://127.0.0.1:") {
		t.Fatalf("mcphttp: first line %q: want its URL on 127.0.0.1", sc.Text())
	}
	s.url = sc.Text()
	go func() {
		defer close(s.lines)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	return s
}

// requests returns how many requests to /mcp the server has received:
// it asks for /probe, and counts every line until the probe's, so that
// every request made before is counted.
func (s *mcpHTTP) requests(t *testing.T) int {
	t.Helper()
	resp, err := http.Get(s.url + "/probe")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.After(time.Minute)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				t.Fatal("mcphttp exited")
			}
			if l == "request GET /probe" {
				n := 0
				for _, r := range s.seen {
					if strings.HasSuffix(r, " /mcp") {
						n++
					}
				}
				return n
			}
			s.seen = append(s.seen, l)
		case <-deadline:
			t.Fatal("mcphttp did not show the probe within a minute")
		}
	}
}

// A url: manifest reaches a streamable HTTP MCP server through the egress
// broker: with its host:port granted, the flow's calls reach it, the
// token in its header is filled in by the broker (the worker never holds
// it, and no output shows it), and every output is untrusted, from the
// host the call reached. Without the grant, the worker cannot reach it,
// and the error says so.
func TestMCPStreamableHTTPServer(t *testing.T) {
	srv := startMCPHTTP(t)
	hostport := strings.TrimPrefix(srv.url, "http://")
	manifest := func(grants string) string {
		return "worker: weather\nrun: mcp\nurl: " + srv.url + "/mcp\n" +
			"headers: {Authorization: \"Bearer {{secret:mcp_token}}\"}\n" +
			"tools:\n  \"*\": {}\n" + grants + "limits: {timeout: 20s}\n"
	}
	granted := "grants:\n  net: [\"" + hostport + "\"]\n  secrets: [{name: mcp_token, hosts: [\"127.0.0.1\"]}]\n"
	w := newWorkspace(t, map[string]string{
		"sluice.yaml":  "workers:\n  - manifest: weather.yaml\nsecrets:\n  mcp_token: {file: token}\n",
		"token":        mcpToken,
		"weather.yaml": manifest(granted),
		"weather-flow.yaml": `name: weather
inputs: {city: {type: string}}
steps:
  - {id: l, call: weather.lookup, with: {city: "${inputs.city}"}}
  - {id: who, call: weather.whoami, with: {}}
outputs: {temperature: "${steps.l.output.temperature}", authorized: "${steps.who.output.authorized}"}
`,
	})
	if err := os.Chmod(w.path("token"), 0o600); err != nil {
		t.Fatal(err)
	}

	r := w.sluice("worker", "discover", "--manifest", "weather.yaml")
	if r.code != 0 || !strings.Contains(r.stdout, "weather-http 1.0.0 lists 2 tools") ||
		// Read-only and closed-world by its hints, yet egress: every call
		// sends its arguments to the server.
		!strings.Contains(r.stdout, "lookup: privileged=false egress=true output untrusted") {
		t.Fatalf("discover: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := w.sluice("lint", "weather-flow.yaml"); r.code != 0 {
		t.Fatalf("lint: exit %d", r.code)
	}
	r = w.sluice("run", "weather-flow.yaml", "--input", "city=Lisbon", "--json")
	if r.code != 0 {
		t.Fatalf("run: exit %d", r.code)
	}
	run := decodeMCPRun(t, r)
	if run.Outputs["temperature"] != 21.5 || run.Outputs["authorized"] != true {
		t.Fatalf("outputs %v: want 21.5, and the token filled in by the broker", run.Outputs)
	}
	for _, id := range []string{"l", "who"} {
		wantLabel(t, run.step(t, id), "untrusted", nil, []string{"tool:weather." + map[string]string{"l": "lookup", "who": "whoami"}[id], "web:" + hostport})
	}
	if n := srv.requests(t); n == 0 {
		t.Fatal("the server received no request, yet the run completed")
	}
	if strings.Contains(r.stdout+r.stderr, mcpToken) {
		t.Fatal("the token shows in the run's output")
	}
	for _, rec := range checkAudit(t, w) {
		if b, _ := json.Marshal(rec); strings.Contains(string(b), mcpToken) {
			t.Fatal("the token is in the audit log")
		}
	}

	// Without the grant: no request reaches the server.
	for _, c := range []struct{ grants, want string }{
		{"", "has no network grant"},
		{"grants:\n  net: [\"127.0.0.1:1\"]\n", hostport + " is not granted to worker weather"},
	} {
		w.write("weather.yaml", manifest(c.grants))
		if r := w.sluice("worker", "discover", "--manifest", "weather.yaml"); r.code == 0 || !strings.Contains(r.stderr, "grants.net") {
			t.Fatalf("discover without the grant: exit %d: want it refused, naming grants.net", r.code)
		}
		// The cache of the granted manifest, for this text: lint passes,
		// and the worker meets the broker's refusal.
		cache, _ := os.ReadFile(w.path("weather.tools.json"))
		w.write("weather.tools.json", rehash(t, string(cache), w.path("weather.yaml")))
		before := srv.requests(t)
		r := w.sluice("run", "weather-flow.yaml", "--input", "city=Lisbon", "--json")
		run := decodeMCPRun(t, r)
		if s := run.step(t, "l"); r.code != 1 || s.Status != "failed" || !strings.Contains(s.Error, c.want) {
			t.Fatalf("run with grants %q: exit %d, step %+v: want the call failed with %q", c.grants, r.code, s, c.want)
		}
		if n := srv.requests(t); n != before {
			t.Fatalf("with grants %q, %d requests reached the server", c.grants, n-before)
		}
	}
}

// rehash returns the discovery cache with the hash of the manifest now at
// file: the same tools, for a manifest whose text changed.
func rehash(t *testing.T, cache, file string) string {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal([]byte(cache), &d); err != nil {
		t.Fatalf("cache: %v", err)
	}
	sum := sha256.Sum256(src)
	d["manifest"] = hex.EncodeToString(sum[:])
	b, _ := json.Marshal(d)
	return string(b)
}

// The mistakes a url: manifest can hold are each reported at their place,
// by lint and by discover, and nothing runs.
func TestMCPURLManifestErrors(t *testing.T) {
	for _, c := range []struct{ name, manifest, want string }{
		{"command and url", "worker: w\nrun: mcp\ncommand: [x]\nurl: http://127.0.0.1:1/mcp\ntools:\n  \"*\": {}\n",
			"w.yaml:4:6: url: a server is started from command: or reached at url:, not both"},
		{"neither", "worker: w\nrun: mcp\ntools:\n  \"*\": {}\n",
			"w.yaml:2:6: run: mcp needs command: (a stdio server) or url: (a streamable HTTP server)"},
		{"egress false", "worker: w\nrun: mcp\nurl: http://127.0.0.1:1/mcp\ntools:\n  lookup: {egress: false}\n",
			"w.yaml:5:20: tool lookup: egress: false: the tools of a server reached at url: send their arguments to it"},
		{"env for a url: server", "worker: w\nrun: mcp\nurl: http://127.0.0.1:1/mcp\nenv: {A: b}\ntools:\n  \"*\": {}\n",
			"w.yaml:4:6: env is for a server started from command:; this one is reached at url:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorkspace(t, map[string]string{"w.yaml": c.manifest, "sluice.yaml": "workers:\n  - manifest: w.yaml\n",
				"f.yaml": "name: f\nsteps:\n  - {id: s, call: w.lookup, with: {}}\n"})
			for _, args := range [][]string{{"lint", "f.yaml"}, {"worker", "discover", "--manifest", "w.yaml"}} {
				r := w.sluice(args...)
				if r.code == 0 || !strings.Contains(r.stdout+r.stderr, c.want) {
					t.Fatalf("sluice %v: exit %d: want %q", args, r.code, c.want)
				}
			}
		})
	}
}
