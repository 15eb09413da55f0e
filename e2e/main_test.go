package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/orchestrator"
)

var (
	sluiceBin string
	rogueBin  string
	// hostileMCPBin is a stdio MCP server that misbehaves in every way
	// the MCP tests check (testdata/mcphostile).
	hostileMCPBin string
	// mcpHTTPBin is a streamable HTTP MCP server on 127.0.0.1
	// (testdata/mcphttp).
	mcpHTTPBin string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sluiceBin = filepath.Join(dir, "sluice")
	rogueBin = filepath.Join(dir, "rogue")
	hostileMCPBin = filepath.Join(dir, "mcphostile")
	mcpHTTPBin = filepath.Join(dir, "mcphttp")
	for _, b := range []struct{ out, pkg string }{{sluiceBin, "../cmd/sluice"}, {rogueBin, "./testdata/rogue"}, {hostileMCPBin, "./testdata/mcphostile"},
		{mcpHTTPBin, "./testdata/mcphttp"}} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", b.pkg, ":", err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// workspace is a directory with the files of one scenario.
type workspace struct {
	t   *testing.T
	dir string
}

func newWorkspace(t *testing.T, files map[string]string) *workspace {
	t.Helper()
	w := &workspace{t: t, dir: t.TempDir()}
	for name, content := range files {
		w.write(name, content)
	}
	return w
}

func (w *workspace) write(name, content string) {
	w.t.Helper()
	p := filepath.Join(w.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// writePrivate writes a secret (a key, a credential) readable by its
// owner alone, as sluice requires of one.
func (w *workspace) writePrivate(name, content string) {
	w.t.Helper()
	w.write(name, content)
	if err := os.Chmod(w.path(name), 0o600); err != nil {
		w.t.Fatal(err)
	}
}

// startOrchestrators starts `sluice up` with each configuration of names
// (NAME.yaml), one after the other, each once it is ready, and returns
// them and their orchestrator ids by name.
func (w *workspace) startOrchestrators(names ...string) (ups map[string]*process, ids map[string]string) {
	w.t.Helper()
	ups, ids = map[string]*process{}, map[string]string{}
	for _, name := range names {
		up := w.start("up", "--config", name+".yaml", "--http", "off")
		up.waitLine(w.t, "stop with Ctrl-C", 2*time.Minute)
		line := up.waitLine(w.t, "orchestrator ", time.Second)
		ids[name], _, _ = strings.Cut(line, ":")
		ups[name] = up
	}
	return ups, ids
}

func (w *workspace) path(name string) string { return filepath.Join(w.dir, name) }

// ledger returns the lines of the payment ledger (none if it does not exist).
func (w *workspace) ledger() []string {
	w.t.Helper()
	b, err := os.ReadFile(w.path(".sluice/payment/ledger.jsonl"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		w.t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

type result struct {
	code           int
	stdout, stderr string
}

// sluice runs the binary in the workspace and waits for it.
func (w *workspace) sluice(args ...string) result {
	w.t.Helper()
	return w.sluiceEnv(nil, args...)
}

// sluiceEnv is sluice with the environment env (the test's when nil).
func (w *workspace) sluiceEnv(env []string, args ...string) result {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sluiceBin, args...)
	cmd.Dir = w.dir
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			w.t.Fatalf("sluice %v: %v", args, err)
		}
		r.code = ee.ExitCode()
	}
	w.t.Cleanup(func() {
		if w.t.Failed() {
			w.t.Logf("sluice %s\nexit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	})
	return r
}

// process is a sluice command running in the background.
type process struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	mu     sync.Mutex
	lines  []string
	done   chan struct{}
	err    error
}

func (w *workspace) start(args ...string) *process {
	w.t.Helper()
	return w.startEnv(nil, args...)
}

// startEnv is start with variables added to the test's environment.
func (w *workspace) startEnv(env []string, args ...string) *process {
	w.t.Helper()
	p := &process{cmd: exec.Command(sluiceBin, args...), done: make(chan struct{})}
	p.cmd.Dir = w.dir
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.run(w.t, args)
	return p
}

// run starts p's command, gathers its stderr lines as they come, and at
// the test's end kills it if it still runs and, when the test failed,
// logs what it printed.
func (p *process) run(t *testing.T, args []string) {
	t.Helper()
	p.cmd.Stdout = &p.stdout
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
		io.Copy(io.Discard, stderr)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("sluice %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.stdout.String(), strings.Join(p.stderrLines(), "\n"))
		}
	})
}

func (p *process) stderrLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// waitLine waits for a stderr line with the prefix and returns it.
func (p *process) waitLine(t *testing.T, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, l := range p.stderrLines() {
			if s, ok := strings.CutPrefix(strings.TrimSpace(l), prefix); ok {
				return s
			}
		}
		select {
		case <-p.done:
			t.Fatalf("process exited before printing %q", prefix)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no line %q within %s", prefix, timeout)
	return ""
}

func (p *process) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("process did not exit within %s", timeout)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatal(p.err)
	return -1
}

// site serves pages on 127.0.0.1 and returns its host:port.
func site(t *testing.T, pages map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, ok := pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, page)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// startOrchestrator runs an orchestrator in the test process with real
// worker processes (the built binary unless cfg says otherwise) and stops
// it when the test ends.
func startOrchestrator(t *testing.T, cfg orchestrator.Config) *orchestrator.Orchestrator {
	t.Helper()
	if cfg.Executable == "" {
		cfg.Executable = sluiceBin
	}
	orch, err := orchestrator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := orch.Start(ctx); err != nil {
		orch.Close()
		t.Fatal(err)
	}
	t.Cleanup(orch.Close)
	return orch
}
