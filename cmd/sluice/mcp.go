package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/orchestrator/mcpserver"
)

func mcpCommand() *command {
	return &command{
		name:  "mcp",
		usage: "mcp --tools TOOL,… [--flows FLOW.yaml,…] [--inspect MODEL] [--http 127.0.0.1:PORT [--stateless]] [--label trusted|untrusted] [--wait D] [--elicit=false] [--config FILE]",
		short: "serve tools and flows to an MCP client through the policy gate",
		long: `Serves the named tools and flows of the deployment to an external agent over MCP
(Claude Code, Cursor, any MCP client): over stdin and stdout by default, or
over streamable HTTP on a loopback address with --http. It starts the
embedded bus and the configured workers, as sluice run does, and stops them
when it ends; logs go to stderr.

--flows names flow files, as sluice run takes one (a path, from the working
directory), each checked as sluice lint checks it before anything starts.
Each is offered as a tool named after the flow's name:, whose arguments are
the flow's inputs (an input with a default is optional). A call starts a
run of the flow, recorded like any run, whose inputs carry the session's
context label (and the labels of the handles they name) instead of the
user's; its outputs come back as the call's result, or as a handle when
the flow calls a tool whose output is below the session's integrity. A run
held past --wait is told as held, and goes on when a person answers it:
the same call made again in the session waits for that run and returns its
outputs (a run still held when the session ends is kept as interrupted).

Each client connection is a session, recorded in the audit log as a run
("mcp:<client>", sluice runs and sluice trace show it). Every call goes
through the policy gate with the session's context label: it starts at
--label (trusted: the client is the person's own agent) and rises with
everything the client is shown. With --hide-untrusted (the default), a
result below the session's integrity comes back as a handle the client can
pass to later calls, or ask one narrow question about with inspect when
--inspect names a model worker; the client is not shown the value.

A call that policy holds waits for a person, up to --wait: through MCP
elicitation when the client supports it and the call carries only values
the client chose (the answer is recorded as given by elicitation:<client>;
--elicit=false turns this off), else with sluice approve or on the web page
of a sluice up on another state directory. When the wait ends first, the
client is told the call is held and was not made; the same call made again
later goes ahead once it was approved.

Over HTTP, every request must carry the bearer token written, with the
address, to <state>/run/mcp.json (mode 0600); requests from a browser page
of another origin and with a Host other than the address are refused.
With --stateless, HTTP is served in MCP's stateless mode (no
Mcp-Session-Id): every request is its own connection, so all requests are
one session, whose label rises with what any of them was shown; a client
cannot start again at --label by reconnecting, only by a new sluice mcp.

An external agent reads other things than Sluice shows it: Sluice cannot
see those, so its label is per session and starts at --label.

Exits 0 when the client disconnects (stdio) or on Ctrl-C, 1 when the
deployment cannot start, a tool is unknown or a flow does not load, 2 on a
usage error.

Examples:
  sluice mcp --tools web.fetch,payment.charge --inspect llm
  sluice mcp --tools files.read,email.send --http 127.0.0.1:8931
  sluice mcp --tools web.fetch --flows examples/travel/pay-direct.yaml --http 127.0.0.1:8931 --stateless
  claude mcp add sluice -- sluice mcp --config /path/sluice.yaml --tools web.fetch,payment.charge`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present, else the built-in defaults)")
			tools := fs.String("tools", "", "comma-separated `tools` to serve (worker.tool, as in flows)")
			flows := fs.String("flows", "", "comma-separated flow `files` to serve, each as a tool named after the flow")
			inspect := fs.String("inspect", "", "`worker` whose extract tool answers inspect questions about handles (a model worker, such as llm)")
			hide := fs.Bool("hide-untrusted", true, "send results below the session's integrity as handles")
			label := fs.String("label", "trusted", "what a client is taken to know when it connects: `trusted` or untrusted")
			httpAddr := fs.String("http", "", "serve streamable HTTP on this loopback `address` instead of stdio")
			stateless := fs.Bool("stateless", false, "with --http, serve MCP's stateless mode: every request is one session's")
			wait := fs.Duration("wait", 2*time.Minute, "how long a held call waits for a person within one tool call (0: until the client gives up)")
			elicit := fs.Bool("elicit", true, "ask the client's user to answer a held call (MCP elicitation) when the client supports it")
			verbose := fs.Bool("v", false, "log what happens (to stderr)")
			return func(c *cli, ctx context.Context, args []string) int {
				if len(args) > 0 {
					c.errorf("mcp takes no arguments (got %q); name the tools with --tools", args[0])
					return exitUsage
				}
				start := ifc.TrustedFrom()
				switch *label {
				case "trusted":
				case "untrusted":
					start = ifc.UntrustedFrom()
				default:
					c.errorf("--label %q: want trusted or untrusted", *label)
					return exitUsage
				}
				names, files := splitList(*tools), splitList(*flows)
				if len(names) == 0 && len(files) == 0 {
					c.errorf("mcp: name the tools to serve with --tools (for example --tools web.fetch,payment.charge), or flows with --flows")
					return exitUsage
				}
				if *stateless && *httpAddr == "" {
					c.errorf("mcp: --stateless is a mode of --http; over stdio the one client is one session")
					return exitUsage
				}
				if *httpAddr != "" {
					if err := mcpserver.CheckAddr(*httpAddr); err != nil {
						c.errorf("mcp: %v", err)
						return exitUsage
					}
				}
				if !*hide && !*stateless && start.Integrity() == ifc.Trusted {
					fmt.Fprintln(c.stderr, "sluice mcp: warning: with --hide-untrusted=false the client is shown untrusted results, and a client that reconnects starts again at --label trusted; consider --label untrusted")
				}
				return c.serveMCP(ctx, mcpOptions{config: *cfgFile, tools: names, flows: files, inspect: *inspect, hide: *hide,
					label: start, http: *httpAddr, stateless: *stateless, wait: *wait, elicit: *elicit, verbose: *verbose})
			}
		},
	}
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

type mcpOptions struct {
	config, inspect, http            string
	tools, flows                     []string
	hide, elicit, verbose, stateless bool
	label                            ifc.Label
	wait                             time.Duration
}

func (c *cli) serveMCP(ctx context.Context, o mcpOptions) int {
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	log := c.logger(level, false)
	dep, err := c.loadConfig(o.config)
	if err != nil {
		c.report(err)
		return exitFailure
	}
	orch, err := orchestrator.New(orchestrator.Config{Deployment: dep, Log: log, Getenv: c.getenv})
	if err != nil {
		c.report(err)
		return exitFailure
	}
	var plans []*flow.Plan
	for _, f := range o.flows {
		p, err := orch.LoadFlow(f)
		if err != nil {
			c.report(err)
			return exitFailure
		}
		plans = append(plans, p)
	}
	srv, err := mcpserver.New(mcpserver.Config{Catalog: orch.Catalog(), Tools: o.tools, Flows: plans, Model: o.inspect,
		HideUntrusted: o.hide, Label: o.label, WaitTimeout: o.wait, Elicit: o.elicit, Stateless: o.stateless,
		Version: mcpVersion(), Log: log})
	if err != nil {
		c.errorf("%v", err)
		return exitFailure
	}
	fmt.Fprintf(c.stderr, "sluice mcp: starting the bus and %d workers…\n", len(dep.Workers))
	if err := orch.Start(ctx); err != nil {
		orch.Close()
		c.report(err)
		return exitFailure
	}
	defer orch.Close()
	srv.SetEngine(orch.Engine(), orch.Decide)
	if o.http == "" {
		fmt.Fprintf(c.stderr, "sluice mcp: serving %s on stdio\n", served(o))
		in, _ := c.stdin.(io.ReadCloser)
		if in == nil {
			in = io.NopCloser(c.stdin)
		}
		if err := srv.ServeStdio(ctx, in, nopCloser{c.stdout}); err != nil {
			c.errorf("mcp: %v", err)
			return exitFailure
		}
		return exitOK
	}
	h, err := srv.ListenHTTP(o.http)
	if err != nil {
		c.errorf("mcp: %v", err)
		return exitFailure
	}
	file := filepath.Join(dep.State, "run", "mcp.json")
	if err := writeMCPEndpoint(file, h); err != nil {
		c.errorf("mcp: %v", err)
		return exitFailure
	}
	defer os.Remove(file)
	fmt.Fprintf(c.stderr, "sluice mcp: serving %s at http://%s/ (its bearer token is in %s)\n", served(o), h.Addr, file)
	if err := srv.Serve(ctx, h); err != nil {
		c.errorf("mcp: %v", err)
		return exitFailure
	}
	return exitOK
}

// served names what is served: the tools, and the flow files.
func served(o mcpOptions) string {
	all := slices.Clone(o.tools)
	for _, f := range o.flows {
		all = append(all, "flow "+f)
	}
	return strings.Join(all, ", ")
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// writeMCPEndpoint writes the address and token of an HTTP front door,
// readable by its owner only.
func writeMCPEndpoint(file string, h *mcpserver.HTTP) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	b := fmt.Appendf(nil, "{\"url\": \"http://%s/\", \"token\": \"%s\"}\n", h.Addr, h.Token)
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

func mcpVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}
