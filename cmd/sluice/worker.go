package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/internal/natstls"
	"github.com/sluicehq/sluice/internal/seal"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
	"github.com/sluicehq/sluice/worker/calendar"
	"github.com/sluicehq/sluice/worker/email"
	"github.com/sluicehq/sluice/worker/files"
	"github.com/sluicehq/sluice/worker/llm"
	"github.com/sluicehq/sluice/worker/mcp"
	"github.com/sluicehq/sluice/worker/payment"
	"github.com/sluicehq/sluice/worker/wasm"
	"github.com/sluicehq/sluice/worker/web"
)

// builtins are the workers shipped in the binary, by the name their
// manifests give in `run: builtin:NAME`.
func builtins() map[string]worker.Builtin {
	return map[string]worker.Builtin{
		"web":      web.New,
		"payment":  payment.New,
		"llm":      llm.New,
		"files":    files.New,
		"calendar": calendar.New,
		"email":    email.New,
	}
}

func workerCommand() *command {
	return &command{
		name:  "worker",
		usage: "worker [discover] --manifest FILE|builtin:NAME",
		short: "serve one worker's tools (started by the orchestrator)",
		long: `Runs one worker process: connects to the bus with the worker's own
credentials and serves the tools its manifest names, and nothing else. The
orchestrator starts workers itself; run one by hand to place it on another
machine.

For a run: mcp manifest with command: the worker starts the MCP server as its
own child, once it has confined itself; when the manifest grants hosts, the
server runs in a network namespace of its own, and reaches them through the
worker's HTTP(S) proxy, each request through the egress broker, one call at a
time (this needs user namespaces). With url: the worker reaches the server over
streamable HTTP, each request through the egress broker, as part of a call.
"sluice worker discover" starts that server the same way (a url: server is
asked directly, at its granted host:port only), lists its tools, and writes
them beside the manifest (NAME.tools.json for NAME.yaml): lint and the
orchestrator read them there, and the worker refuses a server whose name,
version or tools no longer match.

Environment:
  SLUICE_NATS_URL       the bus, e.g. nats://127.0.0.1:4222
  SLUICE_NATS_CREDS     file holding the worker's nkey seed, or a .creds file (user JWT
                        and seed) on an external server (read once, then removed)
  SLUICE_NATS_TOKEN     a token instead of SLUICE_NATS_CREDS
  SLUICE_NATS_TLS_CA, SLUICE_NATS_TLS_CERT, SLUICE_NATS_TLS_KEY
                        PEM files of nats.tls (an external server): the CA, and the
                        client certificate and key (read once, before the worker is
                        confined)
  SLUICE_STATE          the state directory (default .sluice)
  SLUICE_SUBJECT_PREFIX the first token of the deployment's subjects (default sluice;
                        a deployment's name when sluice.yaml names one)
  SLUICE_WORKER_CONFIG  the worker's config block, as JSON
  SLUICE_WORKER_GRANTS  the deployment's grants for this worker, as JSON

Examples:
  sluice worker --manifest builtin:payment
  sluice worker --manifest tools/weather.yaml
  sluice worker discover --manifest tools/files-mcp.yaml`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			ref := fs.String("manifest", "", "the worker's `manifest`: a file or builtin:NAME")
			return func(c *cli, ctx context.Context, args []string) int {
				discover := len(args) == 1 && args[0] == "discover"
				if *ref == "" || (len(args) > 0 && !discover) {
					c.errorf("worker: give exactly [discover] --manifest FILE|builtin:NAME")
					return exitUsage
				}
				if discover {
					return c.discover(ctx, *ref)
				}
				log := slog.New(slog.NewJSONHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
				if err := c.runWorker(ctx, *ref, log); err != nil {
					log.Error("worker stopped", "err", err.Error())
					return exitFailure
				}
				return exitOK
			}
		},
	}
}

func (c *cli) runWorker(ctx context.Context, ref string, log *slog.Logger) error {
	m, err := capabilities.Load(ref)
	if err != nil {
		return err
	}
	if g := c.getenv("SLUICE_WORKER_GRANTS"); g != "" {
		var grants capabilities.Grants
		if err := json.Unmarshal([]byte(g), &grants); err != nil {
			return fmt.Errorf("SLUICE_WORKER_GRANTS: %w", err)
		}
		if m, err = m.WithGrants(grants); err != nil {
			return err
		}
	}
	state := c.getenv("SLUICE_STATE")
	if state == "" {
		state = ".sluice"
	}
	cfg := json.RawMessage(c.getenv("SLUICE_WORKER_CONFIG"))
	if len(cfg) == 0 {
		cfg = json.RawMessage("{}")
	}
	log = log.With("worker", m.Worker)
	var handlers map[string]worker.Handler
	// Directories a built-in worker still needs once confined.
	keep := &worker.Confinement{}
	var server *mcp.Server
	switch {
	case m.Run == capabilities.RunMCP:
		// The server is started once the process is confined, so that
		// it has no more than the worker.
		cfg := mcp.Config{Manifest: m, Path: c.getenv("PATH"), Log: log}
		if cfg.Self, err = os.Executable(); err != nil {
			return err
		}
		dirs, files, err := mcp.Keep(m, cfg.Path)
		if err != nil {
			return fmt.Errorf("worker %s: %w", m.Worker, err)
		}
		keep.RO, keep.ROFiles = append(keep.RO, dirs...), append(keep.ROFiles, files...)
		server = mcp.New(cfg)
		defer server.Close()
		// A server with network grants: its launcher and proxy, before
		// the worker is confined and sealed.
		rw, err := server.Prepare()
		if err != nil {
			return fmt.Errorf("worker %s: %w", m.Worker, err)
		}
		keep.RW = append(keep.RW, rw...)
		handlers = server.Handlers()
	case strings.HasPrefix(m.Run, capabilities.BuiltinPrefix):
		name := strings.TrimPrefix(m.Run, capabilities.BuiltinPrefix)
		build, ok := builtins()[name]
		if !ok {
			return fmt.Errorf("manifest %s: no built-in worker %q", ref, name)
		}
		if handlers, err = build(worker.Env{State: state, Config: cfg, Log: log, Manifest: m, Keep: keep}); err != nil {
			return fmt.Errorf("worker %s: %w", m.Worker, err)
		}
	case strings.HasPrefix(m.Run, wasm.RunPrefix):
		// Compiled (or read from the cache) before the process is
		// confined; every call then runs in a fresh instance.
		mod, err := newWasmWorker(ctx, m, state, cfg, log)
		if err != nil {
			return fmt.Errorf("worker %s: %w", m.Worker, err)
		}
		defer mod.Close(context.Background())
		handlers = mod.Handlers()
	default:
		return fmt.Errorf("manifest %s: run %q: want builtin:NAME, wasm:PATH or mcp", ref, m.Run)
	}
	subjects := schemas.Subjects{Prefix: c.getenv("SLUICE_SUBJECT_PREFIX")}
	nc, err := worker.Connect(worker.ConnectConfig{URL: c.getenv("SLUICE_NATS_URL"), CredsFile: c.getenv("SLUICE_NATS_CREDS"),
		Token: c.getenv("SLUICE_NATS_TOKEN"), TLS: natstls.FromEnv(c.getenv), Worker: m.Worker, Subjects: subjects, Log: log})
	if err != nil {
		return err
	}
	defer nc.Close()
	// From here on the worker serves calls: confine it to the bus, its
	// file grant and what its builtin keeps first.
	roots, err := confine(m, keep, nc.ConnectedUrl(), log)
	if err != nil {
		return err
	}
	// On the embedded bus, the connection just made is the only socket a
	// worker ever needs: no other can be opened from here on.
	switch sealed, err := seal.FromEnv(roots); {
	case errors.Is(err, seal.ErrUnsupported):
		log.Warn("the network is not sealed: " + err.Error())
	case err != nil:
		return err
	case sealed:
		log.Info("worker sealed off the network: its bus connection is its only socket")
	}
	if server != nil {
		if err := server.Start(ctx); err != nil {
			return fmt.Errorf("worker %s: %w", m.Worker, err)
		}
	}
	svc := &worker.Service{Manifest: m, Handlers: handlers, Subjects: subjects, Log: log}
	return svc.Serve(ctx, nc)
}

// confine restricts the worker process to the bus's port, its file grant
// and the directories its builtin keeps (worker.Env.Keep), where the
// kernel offers Landlock.
//
// It returns the directories the worker may still reach.
func confine(m *capabilities.Manifest, keep *worker.Confinement, busURL string, log *slog.Logger) ([]string, error) {
	c := worker.Confinement{RO: keep.RO, RW: keep.RW, ROFiles: keep.ROFiles}
	if u, err := url.Parse(busURL); err == nil {
		if p, err := strconv.ParseUint(u.Port(), 10, 16); err == nil {
			c.NATSPort = uint16(p)
		}
	}
	if f := m.Grants.Files; f != nil {
		if f.Write {
			c.RW = append(c.RW, f.Root)
		} else {
			c.RO = append(c.RO, f.Root)
		}
	}
	abi, err := worker.Confine(c)
	if err != nil {
		return nil, err
	}
	if abi == 0 {
		log.Warn("the kernel offers no Landlock: this worker is isolated by its bus permissions only")
	} else {
		log.Info("worker confined", "landlock_abi", abi, "bus_port", c.NATSPort)
	}
	return slices.Concat(c.RO, c.RW, c.ROFiles), nil
}

// newWasmWorker compiles a WASM worker's module, with wazero's compilation
// cache under <state>/wasm-cache. Its config block may set only pool, the
// number of instances made ahead of time (default wasm.DefaultPool).
func newWasmWorker(ctx context.Context, m *capabilities.Manifest, state string, raw json.RawMessage, log *slog.Logger) (*wasm.Module, error) {
	var cfg struct {
		Pool int `json:"pool"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("config: a WASM worker takes only pool: %w", err)
	}
	if cfg.Pool < 0 || cfg.Pool > 64 {
		return nil, fmt.Errorf("config: pool %d: want 1 to 64 instances made ahead of time (0 for the default)", cfg.Pool)
	}
	return wasm.New(ctx, wasm.Config{Manifest: m, CacheDir: filepath.Join(state, "wasm-cache"), Pool: cfg.Pool, Log: log})
}

// discover starts a run: mcp manifest's server, confined as its worker
// would be (its file grant and what it needs to run, read-only; no
// network), lists its tools and writes them beside the manifest.
func (c *cli) discover(ctx context.Context, ref string) int {
	m, err := capabilities.LoadMCP(ref)
	if err != nil {
		c.errorf("worker discover: %v", err)
		return exitFailure
	}
	if m.MCP == nil {
		c.errorf("worker discover: %s: run is %q; only run: mcp manifests have tools to discover", ref, m.Run)
		return exitUsage
	}
	if g := c.getenv("SLUICE_WORKER_GRANTS"); g != "" {
		var grants capabilities.Grants
		if err := json.Unmarshal([]byte(g), &grants); err != nil {
			c.errorf("worker discover: SLUICE_WORKER_GRANTS: %v", err)
			return exitFailure
		}
		if m, err = m.WithGrants(grants); err != nil {
			c.errorf("worker discover: %v", err)
			return exitFailure
		}
	}
	cfg := mcp.Config{Manifest: m, Path: c.getenv("PATH"),
		Log: slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	dirs, files, err := mcp.Keep(m, cfg.Path)
	if err != nil {
		c.errorf("worker discover: %s: %v", ref, err)
		return exitFailure
	}
	// The cache is written by this process, before it is confined: the
	// listing is read into memory first, by a child confined apart. A
	// server reached at url: is asked from here, at its granted
	// host:port only.
	discover := func() (*capabilities.Discovery, error) { return c.discoverConfined(ctx, m, dirs, files, cfg) }
	if m.MCP.URL != "" {
		discover = func() (*capabilities.Discovery, error) { return mcp.Discover(ctx, cfg) }
	}
	d, err := discover()
	if err != nil {
		c.errorf("worker discover: %s: %v", ref, err)
		return exitFailure
	}
	if c.getenv(discoverChild) != "" {
		b, _ := json.Marshal(d)
		c.stdout.Write(b)
		return exitOK
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		c.errorf("worker discover: %v", err)
		return exitFailure
	}
	if err := os.WriteFile(m.MCP.Cache, append(b, '\n'), 0o644); err != nil {
		c.errorf("worker discover: %v", err)
		return exitFailure
	}
	fmt.Fprintf(c.stdout, "%s: %s %s lists %d tools; written to %s\n", ref, d.Server.Name, d.Server.Version, len(d.Tools), m.MCP.Cache)
	servable := capabilities.Servable(d)
	for _, t := range d.Tools {
		short, ok := servable[t.Name]
		name := show(t.Name)
		if ok && short != t.Name {
			name += " (served as " + short + ")"
		}
		granted := "not served (a Sluice tool name is lowercase letters, digits and _, with - read as _, and no other tool's)"
		if r, rok := m.MCP.Rule(short); ok && rok {
			tool := m.MCP.Decide(m.Worker+"."+short, r, t.Annotations)
			granted = fmt.Sprintf("privileged=%v egress=%v output %s", tool.Privileged, tool.Egress, tool.OutputLabel.Integrity())
		} else if ok {
			granted = "not granted (no rule in the manifest)"
		}
		fmt.Fprintf(c.stdout, "  %s: %s\n", name, granted)
	}
	return exitOK
}

// discoverChild is set in the environment of the process that lists an
// MCP server's tools for "sluice worker discover".
const discoverChild = "SLUICE_DISCOVER_CHILD"

// discoverConfined lists the server's tools from a child process of this
// binary that confines itself first (the file grant and what the server
// needs to run, read-only; sealed off the network), so that the server it
// starts has no more than a worker's; this process, which writes the
// cache, is not confined.
func (c *cli) discoverConfined(ctx context.Context, m *capabilities.Manifest, dirs, files []string, cfg mcp.Config) (*capabilities.Discovery, error) {
	if c.getenv(discoverChild) == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, exe, "worker", "discover", "--manifest", m.File)
		cmd.Env = append(os.Environ(), discoverChild+"=1")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			// The child's last line is its error; the lines before it
			// are what the server wrote to its standard error.
			lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
			last := strings.TrimPrefix(lines[len(lines)-1], "sluice: worker discover: "+m.File+": ")
			for _, l := range lines[:len(lines)-1] {
				fmt.Fprintln(c.stderr, l)
			}
			return nil, errors.New(last)
		}
		var d capabilities.Discovery
		if err := json.Unmarshal(out.Bytes(), &d); err != nil {
			return nil, fmt.Errorf("the listing: %w", err)
		}
		return &d, nil
	}
	conf := worker.Confinement{RO: dirs, ROFiles: files}
	if f := m.Grants.Files; f != nil {
		conf.RO = append(conf.RO, f.Root)
	}
	if _, err := worker.Confine(conf); err != nil {
		return nil, err
	}
	if err := seal.Network(); err != nil && !errors.Is(err, seal.ErrUnsupported) {
		return nil, err
	}
	return mcp.Discover(ctx, cfg)
}
