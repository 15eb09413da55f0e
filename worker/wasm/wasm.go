package wasm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// RunPrefix marks a manifest served by a WASM module: "wasm:PATH".
const RunPrefix = "wasm:"

// Exports a module may have.
const (
	// ExportCall is the reactor's entry point: it serves one call.
	ExportCall = "sluice_call"
	exportInit = "_initialize"
	exportMain = "_start"
)

// Defaults of [Config].
const (
	DefaultPool = 4
	// maxModule bounds the size of a module file.
	maxModule = 256 << 20
	// maxStderr is how much of a call's stderr reaches the log.
	maxStderr = 4 << 10
	// maxMessage bounds a guest's error message.
	maxMessage = 512
)

// Config of a WASM worker.
type Config struct {
	// Manifest is the worker's manifest, with the deployment's grants
	// added; its Run is "wasm:PATH", PATH relative to the manifest file.
	Manifest *capabilities.Manifest
	// CacheDir keeps compiled modules across restarts (wazero's
	// compilation cache); empty means in memory only. Nothing but this
	// worker may write there: what it holds is run as machine code.
	CacheDir string
	// Pool is how many instances are made ahead of time; 0 means
	// DefaultPool, a negative value none (every call instantiates).
	Pool int
	Log  *slog.Logger
}

// Module serves the tools of one manifest from one compiled module. It is
// safe for concurrent use: each call gets an instance of its own.
type Module struct {
	manifest *capabilities.Manifest
	log      *slog.Logger
	rt       wazero.Runtime
	cache    wazero.CompilationCache
	compiled wazero.CompiledModule
	reactor  bool
	modCfg   wazero.ModuleConfig
	memLimit uint64
	root     *os.Root
	pool     *pool
}

// ModulePath returns the module file of a manifest whose Run is
// "wasm:PATH": PATH, relative to the manifest's directory.
func ModulePath(m *capabilities.Manifest) (string, bool) {
	p, ok := strings.CutPrefix(m.Run, RunPrefix)
	if !ok || p == "" {
		return "", false
	}
	if !filepath.IsAbs(p) && !strings.HasPrefix(m.File, capabilities.BuiltinPrefix) {
		p = filepath.Join(filepath.Dir(m.File), p)
	}
	return p, true
}

// New compiles the manifest's module (or loads it from the cache), checks
// that it can serve, makes one instance to prove it, and starts filling
// the pool.
func New(ctx context.Context, cfg Config) (*Module, error) {
	mf := cfg.Manifest
	path, ok := ModulePath(mf)
	if !ok {
		return nil, fmt.Errorf("manifest %s: run %q is not wasm:PATH", mf.File, mf.Run)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin, err := readModule(path)
	if err != nil {
		return nil, err
	}
	m := &Module{manifest: mf, log: log, memLimit: uint64(mf.Limits.Memory)}
	if m.memLimit == 0 {
		m.memLimit = capabilities.DefaultMemory
	}
	ok = false
	defer func() {
		if !ok {
			m.Close(context.Background())
		}
	}()
	if cfg.CacheDir != "" {
		if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("wasm cache: %w", err)
		}
		if m.cache, err = wazero.NewCompilationCacheWithDir(cfg.CacheDir); err != nil {
			return nil, fmt.Errorf("wasm cache: %w", err)
		}
	} else {
		m.cache = wazero.NewCompilationCache()
	}
	// The memory limit is enforced by linearMemory, not by the runtime,
	// so that reaching it is told apart from other traps.
	rcfg := wazero.NewRuntimeConfig().
		WithCompilationCache(m.cache).
		WithCloseOnContextDone(true).
		WithCustomSections(false)
	m.rt = wazero.NewRuntimeWithConfig(ctx, rcfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, m.rt); err != nil {
		return nil, err
	}
	if err := instantiateHost(ctx, m.rt, log); err != nil {
		return nil, err
	}
	cctx := experimental.WithCompilationWorkers(ctx, runtime.GOMAXPROCS(0))
	if m.compiled, err = m.rt.CompileModule(cctx, bin); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrModule, path, err)
	}
	if err := m.check(path); err != nil {
		return nil, err
	}
	if m.modCfg, err = m.moduleConfig(); err != nil {
		return nil, err
	}
	first, err := m.instantiate(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: first instance: %v", ErrModule, path, m.describe(first, err))
	}
	m.pool = newPool(m, cfg.Pool, first)
	ok = true
	return m, nil
}

func readModule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("wasm module: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxModule+1)); err != nil {
		return nil, fmt.Errorf("wasm module: %w", err)
	}
	if buf.Len() > maxModule {
		return nil, fmt.Errorf("%w: %s is larger than 256 MiB", ErrModule, path)
	}
	return buf.Bytes(), nil
}

// check refuses a module that imports anything but WASI and the sluice
// host functions, that has no entry point, or whose memory starts above
// the limit.
func (m *Module) check(path string) error {
	allowed := map[string]bool{fnHTTP: true, fnHTTPResult: true, fnLog: true}
	var bad []string
	for _, f := range m.compiled.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch {
		case mod == wasi_snapshot_preview1.ModuleName:
		case mod == HostModule && allowed[name]:
		default:
			bad = append(bad, mod+"."+name)
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return fmt.Errorf("%w: %s imports %s; a tool may import only %s and %s.{http,http_result,log}",
			ErrModule, path, strings.Join(bad, ", "), wasi_snapshot_preview1.ModuleName, HostModule)
	}
	if len(m.compiled.ImportedMemories()) > 0 {
		return fmt.Errorf("%w: %s imports a memory; it must define its own", ErrModule, path)
	}
	exports := m.compiled.ExportedFunctions()
	_, hasCall := exports[ExportCall]
	_, hasInit := exports[exportInit]
	_, hasMain := exports[exportMain]
	switch {
	case hasCall && hasInit:
		m.reactor = true
	case hasCall:
		return fmt.Errorf("%w: %s exports %s but not %s: build it with -buildmode=c-shared", ErrModule, path, ExportCall, exportInit)
	case hasMain:
	default:
		return fmt.Errorf("%w: %s exports neither %s (a reactor) nor %s (a command)", ErrModule, path, ExportCall, exportMain)
	}
	for _, mem := range m.compiled.ExportedMemories() {
		if min := uint64(mem.Min()) * 65536; min > m.memLimit {
			return fmt.Errorf("%w: %s needs %d MiB of memory to start; limits.memory is %d MiB",
				ErrModule, path, min>>20, m.memLimit>>20)
		}
	}
	return nil
}

// moduleConfig is the sandbox every instance gets: no arguments but the
// program name, no environment, fake clocks, crypto/rand, and a file
// system only when the manifest grants a root.
func (m *Module) moduleConfig() (wazero.ModuleConfig, error) {
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithArgs(m.manifest.Worker).
		WithRandSource(rand.Reader)
	if m.reactor {
		cfg = cfg.WithStartFunctions(exportInit)
	} else {
		cfg = cfg.WithStartFunctions()
	}
	if g := m.manifest.Grants.Files; g != nil {
		// A relative root is relative to the working directory (the
		// directory of sluice.yaml), as for every worker's confinement.
		root, err := os.OpenRoot(g.Root)
		if err != nil {
			return nil, fmt.Errorf("grants.files: %w", err)
		}
		m.root = root
		var fsys experimentalsys.FS = &rootFS{root: root}
		if !g.Write {
			fsys = &sysfs.ReadFS{FS: fsys}
		}
		cfg = cfg.WithFSConfig(wazero.NewFSConfig().(sysfs.FSConfig).WithSysFSMount(fsys, "/"))
	}
	return cfg, nil
}

// instantiate makes an instance that has served no call. A reactor runs
// its initialization (the Go runtime and package init) here; a command's
// _start waits for the call.
func (m *Module) instantiate(ctx context.Context) (*instance, error) {
	inst := &instance{io: newCallIO(int(m.maxOutput()), maxStderr)}
	ctx = experimental.WithMemoryAllocator(ctx, experimental.MemoryAllocatorFunc(func(_, _ uint64) experimental.LinearMemory {
		inst.mem = &linearMemory{limit: m.memLimit}
		return inst.mem
	}))
	ctx, cancel := context.WithTimeout(ctx, m.initTimeout())
	defer cancel()
	mod, err := m.instantiateModule(ctx, inst)
	if err != nil {
		return inst, err
	}
	inst.mod = mod
	name := exportMain
	if m.reactor {
		name = ExportCall
	}
	inst.entry = mod.ExportedFunction(name)
	// What initialization wrote is not part of any call.
	inst.io.stdout.reset()
	m.logStderr(nil, inst, nil)
	return inst, nil
}

// minInitTimeout is the least time an instance has to initialize. An
// instance is made ahead of its call, so its initialization (the Go
// runtime, package init) is not part of the call's time limit; it is
// bounded all the same, by the time limit or this, whichever is longer, so
// that a tool with a short limit still starts on a loaded machine.
const minInitTimeout = 30 * time.Second

func (m *Module) initTimeout() time.Duration { return max(m.timeout(), minInitTimeout) }

func (m *Module) timeout() time.Duration {
	if t := m.manifest.Limits.Timeout; t > 0 {
		return t
	}
	return capabilities.DefaultTimeout
}

// instantiateModule instantiates the compiled module with inst's I/O. A
// memory whose declared minimum is over the limit makes wazero panic
// (the allocator refuses it); that is an error like any other.
func (m *Module) instantiateModule(ctx context.Context, inst *instance) (mod api.Module, err error) {
	defer func() {
		if p := recover(); p != nil {
			mod, err = nil, fmt.Errorf("instantiate: %v", p)
		}
	}()
	return m.rt.InstantiateModule(ctx, m.compiled,
		m.modCfg.WithStdin(&inst.io.stdin).WithStdout(&inst.io.stdout).WithStderr(&inst.io.stderr))
}

func (m *Module) maxOutput() int64 {
	n := m.manifest.Limits.MaxOutput
	if n <= 0 || n > schemas.MaxReply {
		n = schemas.MaxReply
	}
	return n
}

// Handlers returns a handler for every tool of the manifest, for
// worker.Service.
func (m *Module) Handlers() map[string]worker.Handler {
	out := map[string]worker.Handler{}
	for name := range m.manifest.Tools {
		out[name] = m.Call
	}
	return out
}

// envelope is what a tool reads on stdin. IdempotencyKey is the call's:
// the same for every try of one call (a retry, a call resumed after a
// restart), so that a tool with side effects can make them once.
type envelope struct {
	Tool           string          `json:"tool"`
	Args           json.RawMessage `json:"args"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
}

// Call runs one call in an instance that has served no call before, and
// closes the instance afterwards. It is a worker.Handler.
func (m *Module) Call(ctx context.Context, c *worker.Call) (any, error) {
	t, ok := m.manifest.Tool(c.Tool)
	if !ok {
		return nil, &schemas.ReplyError{Code: schemas.CodeUnknownTool, Message: fmt.Sprintf("worker %s has no tool %q", m.manifest.Worker, c.Tool)}
	}
	in, err := json.Marshal(envelope{Tool: c.Tool, Args: c.Args, IdempotencyKey: c.IdempotencyKey})
	if err != nil {
		return nil, worker.BadArguments("arguments are not JSON")
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout())
	defer cancel()
	inst, err := m.pool.get(ctx)
	if err != nil {
		return nil, m.describe(inst, err)
	}
	defer inst.close()
	log := c.Log
	if log == nil {
		log = m.log
	}
	log = log.With("tool", c.Tool)
	ctx, stop := context.WithCancel(withState(ctx, &callState{call: c, log: log}))
	defer stop()
	inst.io.stdin.Reset(in)
	inst.io.stdout.onOverflow = stop
	_, err = inst.entry.Call(ctx)
	if err != nil && inst.exitCode(err) == 0 && !inst.io.stdout.overflowed.Load() {
		err = nil // a command that returns from main, or calls exit(0)
	}
	m.logStderr(log, inst, err)
	if err != nil || inst.io.stdout.overflowed.Load() {
		return nil, m.describe(inst, err)
	}
	out, err := m.reply(inst.io.stdout.buf.Bytes())
	if err != nil {
		return nil, err
	}
	if t.Output != nil {
		if _, err := t.Output.ValidateJSON(out); err != nil {
			return nil, failf(ErrReply, "the output of %s does not match its output_schema", t.Name)
		}
	}
	return out, nil
}

// exitCode returns the guest's exit status for an *sys.ExitError, and -1
// for any other error.
func (i *instance) exitCode(err error) int64 {
	var ee *sys.ExitError
	if errors.As(err, &ee) {
		return int64(ee.ExitCode())
	}
	return -1
}

// describe turns the failure of an instantiation or a call into the error
// the caller gets: which limit was reached, or how the guest failed.
func (m *Module) describe(inst *instance, err error) error {
	switch {
	case inst != nil && inst.mem != nil && inst.mem.hit.Load():
		return failf(ErrMemory, "the tool exceeded its memory limit of %s", size(m.memLimit))
	case inst != nil && inst.io.stdout.overflowed.Load():
		return failf(ErrOutput, "the tool's output exceeds the limit of %s", size(uint64(m.maxOutput())))
	case errors.Is(err, context.DeadlineExceeded):
		return failf(ErrTimeout, "the tool ran past its time limit of %s", m.timeout())
	case errors.Is(err, context.Canceled):
		return failf(ErrTimeout, "the call was cancelled")
	}
	var ee *sys.ExitError
	if errors.As(err, &ee) {
		return failf(ErrExit, "the tool exited with status %d (its stderr is in the worker's log)", ee.ExitCode())
	}
	// A trap: wazero's message starts with the cause ("wasm error:
	// unreachable"), then a stack trace that is of no use to the caller.
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return failf(ErrTrap, "the tool trapped: %s", bounded(msg))
}

// reply decodes the guest's stdout: {"output": …} or
// {"error": {"code": …, "message": …}}.
func (m *Module) reply(b []byte) (json.RawMessage, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, failf(ErrReply, "the tool wrote no reply")
	}
	var r struct {
		Output json.RawMessage `json:"output"`
		Error  *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&r); err != nil || dec.More() {
		return nil, failf(ErrReply, "the tool's reply is not one JSON object")
	}
	switch {
	case r.Error != nil && r.Output != nil:
		return nil, failf(ErrReply, "the tool's reply has both output and error")
	case r.Error != nil:
		code := r.Error.Code
		if code != schemas.CodeBadArguments {
			code = schemas.CodeFailed
		}
		return nil, &schemas.ReplyError{Code: code, Message: bounded(r.Error.Message)}
	case r.Output == nil:
		return nil, failf(ErrReply, "the tool's reply has neither output nor error")
	}
	return r.Output, nil
}

// logStderr writes what the guest wrote to stderr to the worker's log, as
// one record, at most maxStderr bytes.
func (m *Module) logStderr(log *slog.Logger, inst *instance, callErr error) {
	w := &inst.io.stderr
	if w.buf.Len() == 0 {
		return
	}
	if log == nil {
		log = m.log
	}
	level := slog.LevelInfo
	if callErr != nil {
		level = slog.LevelWarn
	}
	log.Log(context.Background(), level, "guest stderr", "text", printableLines(w.buf.Bytes()), "dropped_bytes", w.dropped)
	w.reset()
}

// Close stops the pool and releases the runtime.
func (m *Module) Close(ctx context.Context) error {
	if m.pool != nil {
		m.pool.close()
	}
	var errs []error
	if m.rt != nil {
		errs = append(errs, m.rt.Close(ctx))
	}
	if m.cache != nil {
		errs = append(errs, m.cache.Close(ctx))
	}
	if m.root != nil {
		errs = append(errs, m.root.Close())
	}
	return errors.Join(errs...)
}

// bounded cuts a guest-written message to maxMessage bytes of printable
// UTF-8.
func bounded(s string) string {
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return printable([]byte(s))
}

func printableLines(b []byte) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for i, l := range lines {
		lines[i] = printable([]byte(l))
	}
	return strings.Join(lines, "\n")
}

func size(n uint64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
