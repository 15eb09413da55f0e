// Package mcp serves the tools of an MCP server as a Sluice worker's: the
// worker process starts the server (run: mcp, command: [...]) as its own
// child over stdio, after it has confined itself, so that the server has
// no more than the worker: its file grant, the files it needs to run, read
// only, and no network; or, when the manifest grants hosts, a network
// namespace whose only reach is the worker's proxy to the egress broker
// (launcher.go, proxy.go). What the server says is untrusted: its results
// become values labeled as the manifest says (capabilities.DecideMCPTool),
// a label it claims in a result's _meta can only raise that label, an MCP
// error is a tool failure, and a server that crashes, hangs or floods its
// output fails the call and is started again.
package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// Config is what a server is started from.
type Config struct {
	// Manifest is the worker's manifest, with its deployment's grants.
	Manifest *capabilities.Manifest
	// Path is the PATH the command is looked up in, and the only variable
	// the server's environment holds (with the proxy's, when the manifest
	// grants hosts).
	Path string
	// Self is this program: a server started from command: whose
	// manifest grants hosts is started by it, run again as a launcher
	// (launcher.go).
	Self string
	Log  *slog.Logger
}

// Server is one MCP server, started when first needed and again after it
// died.
type Server struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	live *process

	// For a server started from command: whose manifest grants hosts
	// (Prepare): its launcher, its proxy, the directory of the proxy's
	// certificate, and one call at a time (one holds the slot).
	launcher *launcher
	proxy    *proxy
	caDir    string
	one      chan struct{}
}

// process is one running server.
type process struct {
	// id is the server's process id, 0 for a server reached at url:.
	id      int
	session *sdk.ClientSession
	exited  chan struct{}
	once    sync.Once
	// stdio is the connection to a server started here, nil for a
	// server reached at url:.
	stdio *stdioConn
	// killGroup kills the server's process group; nil for a server
	// reached at url:.
	killGroup func()
}

func (p *process) pid() int { return p.id }

// New returns a server that is not started yet.
func New(cfg Config) *Server {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log}
}

// systemFiles are what a dynamically linked program reads to start:
// the system's libraries, the loader's cache and the TLS library's
// configuration (node reads it when it starts), and /dev/null. Those that exist are
// kept readable.
var systemFiles = []string{"/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache", "/etc/ssl/openssl.cnf", "/dev/null"}

// Keep returns what the server needs to read to run, read-only: its
// executable, the manifest's command_files, and the system's libraries;
// directories and single files apart. The worker keeps them readable
// when it confines itself, and so the server may read them; nothing else
// but the worker's file grant.
func Keep(m *capabilities.Manifest, path string) (dirs, files []string, err error) {
	if m.MCP.URL != "" {
		// A server reached at url: runs nothing here.
		return nil, nil, nil
	}
	exe, err := executable(m, path)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range slices.Concat([]string{exe}, m.MCP.Files, systemFiles) {
		fi, err := os.Stat(p)
		switch {
		case err != nil && slices.Contains(systemFiles, p):
			continue
		case err != nil:
			return nil, nil, fmt.Errorf("command_files: %w", err)
		case fi.IsDir():
			dirs = append(dirs, p)
		default:
			files = append(files, p)
		}
	}
	return dirs, files, nil
}

// executable finds the command's program, symbolic links resolved.
func executable(m *capabilities.Manifest, path string) (string, error) {
	name := m.MCP.Command[0]
	var exe string
	if strings.Contains(name, "/") {
		exe = name
		if !filepath.IsAbs(exe) {
			exe = filepath.Join(m.MCP.Dir, exe)
		}
	} else {
		for _, dir := range filepath.SplitList(path) {
			p := filepath.Join(dir, name)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				exe = p
				break
			}
		}
		if exe == "" {
			return "", fmt.Errorf("command %q: not found in PATH", name)
		}
	}
	real, err := filepath.EvalSymlinks(exe)
	if err != nil {
		return "", fmt.Errorf("command %q: %w", name, err)
	}
	return real, nil
}

// command builds the server's process: the manifest's argv, with
// {{files.root}} as the file grant's root, in the manifest's directory,
// with an environment of PATH and the manifest's env alone (no
// credentials, no secrets), in a
// process group of its own, killed if the worker dies.
func (s *Server) command() (*exec.Cmd, error) {
	m := s.cfg.Manifest
	exe, err := executable(m, s.cfg.Path)
	if err != nil {
		return nil, err
	}
	root := func(where, a string) (string, error) {
		if !strings.Contains(a, capabilities.FilesRootArg) {
			return a, nil
		}
		if m.Grants.Files == nil {
			return "", fmt.Errorf("%s: %s names the file grant's root, and worker %s has no file grant", where, capabilities.FilesRootArg, m.Worker)
		}
		root, err := filepath.Abs(m.Grants.Files.Root)
		if err != nil {
			return "", err
		}
		return strings.ReplaceAll(a, capabilities.FilesRootArg, root), nil
	}
	args := slices.Clone(m.MCP.Command[1:])
	for i, a := range args {
		if args[i], err = root("command", a); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(exe, args...)
	cmd.Dir = m.MCP.Dir
	cmd.Env = []string{"PATH=" + s.cfg.Path}
	for _, k := range slices.Sorted(maps.Keys(m.MCP.Env)) {
		v, err := root("env "+k, m.MCP.Env[k])
		if err != nil {
			return nil, err
		}
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if s.launcher != nil {
		// After the manifest's: these win.
		cmd.Env = append(cmd.Env, proxyEnv(s.launcher.port, filepath.Join(s.caDir, caFile))...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd, nil
}

// maxLine bounds one message from the server: the worker's reply limit,
// and room for the envelope.
func maxLine(m *capabilities.Manifest) int64 { return m.Limits.MaxOutput + 64<<10 }

// start starts the server and opens its MCP session.
func (s *Server) start(ctx context.Context) (*process, error) {
	if s.cfg.Manifest.MCP.URL != "" {
		return s.connectHTTP(ctx, egressTransport{m: s.cfg.Manifest})
	}
	cmd, err := s.command()
	if err != nil {
		return nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	p, err := s.spawn(cmd, inR, outW)
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	// One message from the server is bounded (maxLine): a server that
	// floods its output cannot make the worker hold more.
	t := newStdio(outR, inW, maxLine(s.cfg.Manifest))
	p.stdio = t.conn
	client := sdk.NewClient(&sdk.Implementation{Name: "sluice", Version: "1"},
		// No roots, sampling or elicitation: a server never reaches a
		// model or a person through Sluice, and its roots are its
		// command line.
		&sdk.ClientOptions{Capabilities: &sdk.ClientCapabilities{}})
	tctx, cancel := context.WithTimeout(ctx, s.cfg.Manifest.Limits.Timeout)
	defer cancel()
	cs, err := client.Connect(tctx, t, nil)
	if err != nil {
		p.kill()
		return nil, fmt.Errorf("the MCP server did not initialize: %w", err)
	}
	p.session = cs
	return p, nil
}

// spawn starts cmd with stdin and stdout as its standard input and
// output: from this process, or, for a server with network grants, from
// its launcher.
func (s *Server) spawn(cmd *exec.Cmd, stdin, stdout *os.File) (*process, error) {
	stderr := &stderrLog{log: s.log, left: 16 << 10}
	if s.launcher != nil {
		errR, errW, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		pid, exited, err := s.launcher.start(cmd, stdin, stdout, errW)
		errW.Close()
		if err != nil {
			errR.Close()
			return nil, fmt.Errorf("start the MCP server: %w", err)
		}
		go func() {
			io.Copy(stderr, errR)
			errR.Close()
		}()
		return &process{id: pid, exited: exited, killGroup: func() { s.launcher.kill(pid) }}, nil
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	var err error
	onThread(func() { err = cmd.Start() })
	if err != nil {
		return nil, fmt.Errorf("start the MCP server: %w", err)
	}
	pid := cmd.Process.Pid
	p := &process{id: pid, exited: make(chan struct{}),
		killGroup: func() { onThread(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) }) }}
	go func() {
		err := cmd.Wait()
		s.log.Warn("the MCP server exited", "pid", pid, "err", errString(err))
		close(p.exited)
	}()
	return p, nil
}

// kill stops the server's whole process group and waits for it.
func (p *process) kill() {
	if p.session != nil {
		go p.session.Close()
	}
	if p.killGroup == nil {
		// A session with a server reached at url: ends; its HTTP
		// requests are the calls'.
		p.once.Do(func() { close(p.exited) })
		return
	}
	p.killGroup()
	<-p.exited
}

func (p *process) dead() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Start starts the server and checks that it is the one discovered: the
// same name and version, and the same tools, schemas and annotations for
// every tool the manifest grants. A server that changed is refused until
// its tools are discovered, and reviewed, again.
//
// A server reached at url: is not asked until the first call: each of
// its requests goes through the egress broker as part of a call.
func (s *Server) Start(ctx context.Context) error {
	if s.cfg.Manifest.MCP.URL != "" {
		return nil
	}
	_, err := s.process(ctx)
	return err
}

func (s *Server) process(ctx context.Context) (*process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live != nil && !s.live.dead() {
		return s.live, nil
	}
	s.live = nil
	p, err := s.start(ctx)
	if err != nil {
		return nil, err
	}
	d, err := list(ctx, p.session, s.cfg.Manifest)
	if err == nil {
		err = sameTools(s.cfg.Manifest, d)
	}
	if err != nil {
		p.kill()
		return nil, err
	}
	s.live = p
	s.log.Info("MCP server started", "pid", p.pid(), "server", d.Server.Name, "version", d.Server.Version)
	return p, nil
}

// drop stops p if it is still the live server.
func (s *Server) drop(p *process) {
	s.mu.Lock()
	if s.live == p {
		s.live = nil
	}
	s.mu.Unlock()
	p.kill()
}

// Close stops the server, and its launcher and proxy.
func (s *Server) Close() {
	s.mu.Lock()
	p := s.live
	s.live = nil
	s.mu.Unlock()
	if p != nil {
		p.kill()
	}
	if s.launcher != nil {
		s.launcher.close()
		os.RemoveAll(s.caDir)
	}
}

// Discover starts the server of m, lists its tools and stops it.
func Discover(ctx context.Context, cfg Config) (*capabilities.Discovery, error) {
	s := New(cfg)
	start := s.start
	if cfg.Manifest.MCP.URL != "" {
		start = func(ctx context.Context) (*process, error) {
			return s.connectHTTP(ctx, directTransport{m: cfg.Manifest})
		}
	}
	p, err := start(ctx)
	if err != nil {
		return nil, err
	}
	defer p.kill()
	return list(ctx, p.session, cfg.Manifest)
}

// list asks the server for its name, version and tools.
func list(ctx context.Context, cs *sdk.ClientSession, m *capabilities.Manifest) (*capabilities.Discovery, error) {
	ctx, cancel := context.WithTimeout(ctx, m.Limits.Timeout)
	defer cancel()
	d := &capabilities.Discovery{Manifest: m.MCP.Hash}
	if ir := cs.InitializeResult(); ir != nil && ir.ServerInfo != nil {
		d.Server = capabilities.ServerInfo{Name: ir.ServerInfo.Name, Version: ir.ServerInfo.Version}
	}
	for t, err := range cs.Tools(ctx, nil) {
		if err != nil {
			return nil, fmt.Errorf("tools/list: %w", err)
		}
		dt := capabilities.DiscoveredTool{Name: t.Name, Description: t.Description}
		var err error
		if dt.InputSchema, err = canonical(t.InputSchema); err != nil {
			return nil, fmt.Errorf("tool %s: input schema: %w", t.Name, err)
		}
		if t.OutputSchema != nil {
			if dt.OutputSchema, err = canonical(t.OutputSchema); err != nil {
				return nil, fmt.Errorf("tool %s: output schema: %w", t.Name, err)
			}
		}
		if a := t.Annotations; a != nil {
			dt.Annotations = &capabilities.Annotations{Destructive: a.DestructiveHint, OpenWorld: a.OpenWorldHint}
			// The SDK cannot tell a missing readOnlyHint from false;
			// both are the worst case.
			if a.ReadOnlyHint {
				dt.Annotations.ReadOnly = &a.ReadOnlyHint
			}
		}
		d.Tools = append(d.Tools, dt)
	}
	slices.SortFunc(d.Tools, func(a, b capabilities.DiscoveredTool) int { return strings.Compare(a.Name, b.Name) })
	return d, nil
}

// canonical is v as JSON with its object keys sorted.
func canonical(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}

// ErrChanged means the running server is not the one discovered.
var ErrChanged = errors.New("the MCP server changed since its tools were discovered")

// sameTools compares what the running server says with the discovery the
// manifest was loaded with, for the tools the manifest grants.
func sameTools(m *capabilities.Manifest, now *capabilities.Discovery) error {
	was := m.Discovery
	if was == nil {
		return nil
	}
	hint := "run `sluice worker discover --manifest " + m.File + "` and review the tools"
	if now.Server != was.Server {
		return fmt.Errorf("%w: it reports %s %s, discovered as %s %s: %s", ErrChanged, now.Server.Name, now.Server.Version, was.Server.Name, was.Server.Version, hint)
	}
	byName := func(d *capabilities.Discovery, name string) ([]byte, bool) {
		for _, t := range d.Tools {
			if t.Name == name {
				b, _ := json.Marshal(t)
				return b, true
			}
		}
		return nil, false
	}
	for _, short := range m.ToolNames() {
		name := m.MCP.ServerName(short)
		a, _ := byName(was, name)
		b, ok := byName(now, name)
		if !ok {
			return fmt.Errorf("%w: it no longer lists tool %s: %s", ErrChanged, name, hint)
		}
		if !bytes.Equal(a, b) {
			return fmt.Errorf("%w: tool %s has another description, schema or annotations: %s", ErrChanged, name, hint)
		}
	}
	return nil
}

// Handlers serves each tool the manifest grants by calling the server.
func (s *Server) Handlers() map[string]worker.Handler {
	out := map[string]worker.Handler{}
	for name, t := range s.cfg.Manifest.Tools {
		server := s.cfg.Manifest.MCP.ServerName(name)
		out[name] = func(ctx context.Context, call *worker.Call) (any, error) { return s.call(ctx, call, server, t) }
	}
	return out
}

func (s *Server) call(ctx context.Context, call *worker.Call, name string, t *capabilities.Tool) (any, error) {
	// A server reached at url: is sent each request as part of this call.
	ctx = withCall(ctx, call)
	if s.proxy != nil {
		// A server with network grants serves one call at a time: each
		// request through its proxy is this call's, and no other's.
		select {
		case s.one <- struct{}{}:
		case <-ctx.Done():
			return nil, worker.Failed("%s: the MCP server serves one call at a time, and the calls before this one took its %s", t.Name, s.cfg.Manifest.Limits.Timeout)
		}
		s.proxy.now.Store(&inflight{ctx: ctx, call: call})
		defer func() {
			s.proxy.now.Store(nil)
			<-s.one
		}()
	}
	p, err := s.process(ctx)
	if err != nil {
		return nil, worker.Failed("%s: %v", t.Name, err)
	}
	args, err := arguments(call)
	if err != nil {
		return nil, err
	}
	res, err := p.session.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
	if dr := (*decodedResult)(nil); errors.As(err, &dr) {
		// The result, decoded by the worker's transport.
		res, err = dr.res, nil
	}
	if err == nil {
		return Result(res, t.OutputLabel)
	}
	switch {
	case p.stdio != nil && p.stdio.exceeded():
		s.drop(p)
		return nil, &schemas.ReplyError{Code: schemas.CodeTooLarge,
			Message: fmt.Sprintf("%s: the MCP server's answer exceeds the limit of %d bytes; it was stopped", t.Name, s.cfg.Manifest.Limits.MaxOutput)}
	case ctx.Err() != nil:
		// A server that does not answer in time may never answer: it
		// is stopped, and started again for the next call.
		s.drop(p)
		return nil, worker.Failed("%s: the MCP server did not answer within %s; it was stopped", t.Name, s.cfg.Manifest.Limits.Timeout)
	}
	var rpc *jsonrpc.Error
	if errors.As(err, &rpc) && rpc.Code != codeRejected {
		// The server answered, with an MCP error: a tool failure.
		return nil, worker.Failed("%s: the MCP server answered with an error: %s", t.Name, clip(rpc.Message))
	}
	// Anything else is the connection lost: the server exited, or wrote
	// what is not MCP. It is stopped, and started again for the next call.
	s.drop(p)
	if u := s.cfg.Manifest.MCP.URL; u != "" {
		return nil, worker.Failed("%s: the session with the MCP server at %s broke during the call (%s); the next call opens another",
			t.Name, u, clip(err.Error()))
	}
	return nil, worker.Failed("%s: the MCP server exited or broke the connection during the call (%s); it is started again for the next one",
		t.Name, clip(err.Error()))
}

// arguments are the call's arguments as the server is sent them: an
// object as it came, checked and compacted by the SDK's encoder, without
// a map decoded and encoded again; anything else decoded as an object,
// for its error.
func arguments(call *worker.Call) (any, error) {
	if a := bytes.TrimSpace(call.Args); len(a) > 0 && a[0] == '{' && json.Valid(a) {
		return json.RawMessage(a), nil
	}
	var args map[string]any
	if err := call.Decode(&args); err != nil {
		return nil, err
	}
	return args, nil
}

// codeRejected is the code of the SDK's error for a request its transport
// could not send (jsonrpc2.ErrRejected): a url: server's request the
// egress broker refused, or that failed on the way. Not an answer of the
// server's.
const codeRejected = -32005

// stderrLog puts the first bytes the server writes to its standard error
// into the worker's log, and drops the rest.
type stderrLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	left int
}

func (w *stderrLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.left <= 0 {
		return len(p), nil
	}
	b := p[:min(len(p), w.left)]
	w.left -= len(b)
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.log.Warn("MCP server stderr", "line", clip(l))
	}
	return len(p), nil
}

// clip shortens what a server said for a log line or an error message.
func clip(s string) string {
	const max = 300
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// spawner is the one OS thread that starts the servers and signals them.
//
// Where the kernel's Landlock has no TSYNC (ABI < 8), the worker's threads
// are each restricted on their own, and so each is a domain of its own: a
// child is in the domain of the thread that forked it, and a thread of
// another domain may not signal it (Landlock's signal scope). Starting and
// killing every server from one thread keeps them in one domain; that
// thread never exits, so Pdeathsig (which follows the forking thread)
// fires only when the worker dies.
var spawner = sync.OnceValue(func() chan func() {
	jobs := make(chan func())
	go func() {
		runtime.LockOSThread()
		for f := range jobs {
			f()
		}
	}()
	return jobs
})

// onThread runs f on the spawner thread and waits for it.
func onThread(f func()) {
	done := make(chan struct{})
	spawner() <- func() {
		defer close(done)
		f()
	}
	<-done
}
