package e2e

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// mcpNetBin builds testdata/mcpnet once: a stdio MCP server whose tools
// GET a URL through the proxy of its environment, or with none.
var mcpNetBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "sluice-e2e-mcpnet-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "mcpnet")
	out, err := exec.Command("go", "build", "-o", bin, "./testdata/mcpnet").CombinedOutput()
	if err != nil {
		return "", &buildError{string(out)}
	}
	return bin, nil
})

type buildError struct{ out string }

func (e *buildError) Error() string { return "build testdata/mcpnet: " + e.out }

const mcpNetToken = "tok-91c2e0d4b8a7f3"

// A stdio MCP server with a network grant, served by the shipped binary:
// its request to the granted host (https, on loopback) goes through the
// worker's proxy and the egress broker, which fills its token in (the
// server sees only the placeholder, and the echo of it removed) and
// labels the step's output with the host; a host not granted is refused
// by the broker and receives nothing; and the server cannot reach that
// host on its own, without the proxy.
func TestMCPStdioServerNetwork(t *testing.T) {
	bin, err := mcpNetBin()
	if err != nil {
		t.Fatal(err)
	}
	var grantedN, otherN atomic.Int32
	tokens := make(chan string, 8)
	granted := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		grantedN.Add(1)
		tokens <- r.Header.Get("Authorization")
		io.WriteString(w, "granted page; you sent: "+r.Header.Get("Authorization"))
	}))
	defer granted.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherN.Add(1)
		io.WriteString(w, "other page")
	}))
	defer other.Close()
	hostport := strings.TrimPrefix(granted.URL, "https://")

	w := newWorkspace(t, map[string]string{
		"sluice.yaml": "workers:\n  - manifest: net.yaml\nsecrets:\n  tok: {file: token}\n",
		"token":       mcpNetToken,
		"net.yaml": "worker: net\nrun: mcp\ncommand: [" + bin + "]\ntools:\n  \"*\": {}\n" +
			"grants:\n  net: [\"" + hostport + "\"]\n  secrets: [{name: tok, hosts: [\"127.0.0.1\"]}]\nlimits: {timeout: 30s}\n",
		"fetch.yaml": `name: fetch
inputs: {granted: {type: string}, other: {type: string}}
steps:
  - {id: granted, call: net.fetch, with: {url: "${inputs.granted}"}}
  - {id: other, call: net.fetch, with: {url: "${inputs.other}"}}
  - {id: direct, call: net.direct, with: {url: "${inputs.other}"}}
outputs: {granted: "${steps.granted.output.text}", other: "${steps.other.output.text}", direct: "${steps.direct.output.text}"}
`,
		// The broker, in the orchestrator, trusts the test server's
		// certificate.
		"server-ca.pem": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: granted.Certificate().Raw})),
	})
	if err := os.Chmod(w.path("token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := w.sluice("worker", "discover", "--manifest", "net.yaml"); r.code != 0 || !strings.Contains(r.stdout, "net 1.0.0 lists 2 tools") {
		t.Fatalf("discover: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	env := append(os.Environ(), "SSL_CERT_FILE="+w.path("server-ca.pem"))
	r := w.sluiceEnv(env, "run", "fetch.yaml", "--input", "granted="+granted.URL+"/page", "--input", "other="+other.URL+"/page", "--json")
	if r.code != 0 {
		t.Fatalf("run: exit %d", r.code)
	}
	run := decodeMCPRun(t, r)

	// The granted host, reached through the broker: once, with the token
	// filled in there; the server read back only what holds no token.
	out, _ := run.Outputs["granted"].(string)
	if !strings.HasPrefix(out, "status 200: granted page") || strings.Contains(out, mcpNetToken) {
		t.Fatalf("granted: %q: want the page, without the token", out)
	}
	if n := grantedN.Load(); n != 1 {
		t.Fatalf("the granted host received %d requests, want 1", n)
	}
	if got := <-tokens; got != "Bearer "+mcpNetToken {
		t.Fatalf("the granted host received Authorization %q: want the token, filled in by the broker", got)
	}
	wantLabel(t, run.step(t, "granted"), "untrusted", nil, []string{"tool:net.fetch", "web:" + hostport})

	// Another host: the broker refuses, the proxy says why, and nothing
	// reaches it; nor does a request without the proxy.
	otherHP := strings.TrimPrefix(other.URL, "http://")
	if out, _ := run.Outputs["other"].(string); !strings.HasPrefix(out, "status 403") || !strings.Contains(out, otherHP+" is not granted to worker net") {
		t.Fatalf("other: %q: want 403 naming the host", out)
	}
	if out, _ := run.Outputs["direct"].(string); !strings.HasPrefix(out, "fetch failed") {
		t.Fatalf("direct: %q: want the request failed", out)
	}
	if n := otherN.Load(); n != 0 {
		t.Fatalf("the host not granted received %d requests", n)
	}
	for _, part := range []string{r.stdout, r.stderr} {
		if strings.Contains(part, mcpNetToken) {
			t.Fatal("the token shows in the run's output")
		}
	}
	for _, rec := range checkAudit(t, w) {
		if b, _ := json.Marshal(rec); strings.Contains(string(b), mcpNetToken) {
			t.Fatal("the token is in the audit log")
		}
	}
}

// Where no user namespace can be made, a stdio server with a network
// grant is not started at all (rather than with the network, or without
// its namespace): the worker fails at start, saying why, and the run
// fails with it. The limit is set to 0 in a user namespace of the test's
// own, which the sluice it runs there inherits.
func TestMCPStdioServerNetworkNoNamespace(t *testing.T) {
	bin, err := mcpNetBin()
	if err != nil {
		t.Fatal(err)
	}
	w := newWorkspace(t, map[string]string{
		"sluice.yaml": "workers:\n  - manifest: net.yaml\n",
		"net.yaml":    "worker: net\nrun: mcp\ncommand: [" + bin + "]\ntools:\n  \"*\": {}\ngrants:\n  net: [\"127.0.0.1:9\"]\n",
		"f.yaml":      "name: f\nsteps:\n  - {id: s, call: net.fetch, with: {url: \"http://127.0.0.1:9/\"}}\n",
	})
	if r := w.sluice("worker", "discover", "--manifest", "net.yaml"); r.code != 0 {
		t.Fatalf("discover: exit %d", r.code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", `echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" "$@"`, sluiceBin, "run", "f.yaml")
	cmd.Dir = w.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 ||
		!strings.Contains(string(out), "worker net: this system refuses to create a user namespace, which a stdio MCP server with grants.net runs in") {
		t.Fatalf("run where no user namespace can be made: %v: want it failed, saying why\n%s", err, out)
	}

	// sluice doctor says so beforehand, naming the worker that cannot
	// start, and fails; where a namespace can be made, it says ok.
	if r := w.sluice("doctor"); r.code != 0 || !regexp.MustCompile(`(?m)^ok +user namespaces +a stdio MCP server with grants.net runs in a user and network namespace`).MatchString(r.stdout) {
		t.Fatalf("doctor where namespaces can be made: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	cmd = exec.CommandContext(ctx, "sh", "-c", `echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" "$@"`, sluiceBin, "doctor")
	cmd.Dir = w.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}}
	out, err = cmd.CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 1 ||
		!regexp.MustCompile(`(?m)^fail +user namespaces +this system refuses to create a user namespace.*; worker net cannot start$`).Match(out) {
		t.Fatalf("doctor where no user namespace can be made: %v: want it failed, naming the worker\n%s", err, out)
	}
}
