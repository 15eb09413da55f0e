package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/internal/natstls"
	"github.com/sluicehq/sluice/internal/seal"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/worker"
	"github.com/sluicehq/sluice/worker/mcp"
)

func doctorCommand() *command {
	return &command{
		name:  "doctor",
		usage: "doctor [--config FILE]",
		short: "check this machine and configuration, and say which isolation layers are in force",
		long: `Prints one line per check — ok, warn or fail — with a hint where something
needs doing: the configuration, its manifests and policies, the state
directory, the bus, the secrets, the key that signs the audit log's
checkpoints (with its public key, for sluice audit verify --public-key),
and the isolation layers this kernel offers to worker processes (Landlock
for files, TCP and signals; the network seal; the user and network
namespace a stdio MCP server with grants.net runs in), saying why one is
not in force: the kernel lacks it, or a seccomp filter on this process (a
container runtime's profile, a unit's SystemCallFilter=) refuses its
system calls, which it names.

Exits 1 when a check fails.

Example:
  sluice doctor --config deploy/sluice.yaml`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			return func(c *cli, ctx context.Context, args []string) int {
				if len(args) > 0 {
					c.errorf("doctor takes no arguments")
					return exitUsage
				}
				return c.doctor(ctx, *cfgFile)
			}
		},
	}
}

func (c *cli) doctor(ctx context.Context, cfgFile string) int {
	failed := false
	line := func(status, what, detail string) {
		if status == "fail" {
			failed = true
		}
		// A detail of several lines (every problem of a file) stays in
		// its column.
		detail = strings.ReplaceAll(strings.TrimRight(detail, "\n"), "\n", "\n"+strings.Repeat(" ", 29))
		fmt.Fprintf(c.stdout, "%-4s  %-22s %s\n", status, what, detail)
	}
	dep, err := c.loadConfig(cfgFile)
	if err != nil {
		line("fail", "configuration", err.Error())
		return exitFailure
	}
	if dep.File == "" {
		line("ok", "configuration", "built-in defaults (no sluice.yaml here)")
	} else {
		line("ok", "configuration", dep.File)
	}
	eff, effErr := orchestrator.LoadEffective(dep)
	if _, err := orchestrator.New(orchestrator.Config{Deployment: dep, Getenv: c.getenv}); err != nil {
		line("fail", "manifests and policies", fmt.Sprintf("%v (run sluice lint for positions)", firstLine(err)))
	} else {
		line("ok", "manifests and policies", fmt.Sprintf("%d workers, %d policy files besides the default", len(dep.Workers), len(dep.Policies)))
	}
	if err := os.MkdirAll(dep.State, 0o700); err != nil {
		line("fail", "state directory", err.Error())
	} else if f, err := os.CreateTemp(dep.State, ".doctor-*"); err != nil {
		line("fail", "state directory", fmt.Sprintf("%s is not writable: %v", dep.State, err))
	} else {
		f.Close()
		os.Remove(f.Name())
		line("ok", "state directory", dep.State)
	}
	if x := dep.ExternalNATS; x != nil {
		line("ok", "bus", fmt.Sprintf("external NATS at %s in operator mode; each worker gets a user JWT valid for %s", x.URL, orDefault(x.CredentialTTL)))
		line("warn", "bus refusals", "an external server keeps its permission refusals in its own log, not in Sluice's audit log")
		if x.TLS != nil {
			if _, err := natstls.Load(*x.TLS); err != nil {
				line("fail", "bus tls", "nats.tls."+err.Error())
			} else {
				line("ok", "bus tls", fmt.Sprintf("CA %s, client certificate %s", orNone(x.TLS.CA, "the system's roots"), orNone(x.TLS.Cert, "none")))
			}
		}
	}
	if client, err := api.Dial(dep.State); err == nil {
		line("ok", "orchestrator", fmt.Sprintf("running (pid %d), bus %s", client.Endpoint.PID, client.Endpoint.URL))
		c.doctorDrift(ctx, client, dep.File, eff, effErr, line)
		client.Close()
	} else if dep.ExternalNATS != nil {
		line("ok", "orchestrator", "not running")
	} else if ln, err := net.Listen("tcp", "127.0.0.1:0"); err != nil {
		line("fail", "bus", fmt.Sprintf("cannot listen on 127.0.0.1: %v", err))
	} else {
		ln.Close()
		line("ok", "bus", "no orchestrator running; the embedded NATS server can listen on 127.0.0.1")
	}
	names := make([]string, 0, len(dep.Secrets))
	for n := range dep.Secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := dep.Secrets[n]
		switch {
		case s.Env != "" && c.getenv(s.Env) == "":
			line("fail", "secret "+n, fmt.Sprintf("environment variable %s is not set", s.Env))
		case s.File != "":
			st, err := os.Stat(s.File)
			switch {
			case err != nil:
				line("fail", "secret "+n, err.Error())
			case st.Mode().Perm()&0o077 != 0:
				line("fail", "secret "+n, fmt.Sprintf("%s is readable by group or others: chmod 600 %s", s.File, filepath.Clean(s.File)))
			default:
				line("ok", "secret "+n, "from file "+s.File)
			}
		default:
			line("ok", "secret "+n, "from environment variable "+s.Env)
		}
	}
	switch key, from, err := orchestrator.AuditKey(dep, c.getenv, false); {
	case err != nil:
		line("fail", "audit signing key", err.Error())
	case key == nil:
		line("ok", "audit signing key", fmt.Sprintf("none yet: sluice up creates %s (mode 0600), or set the secret %s", from, orchestrator.AuditKeySecret))
	default:
		line("ok", "audit signing key", fmt.Sprintf("%s (from %s); sluice audit verify --public-key checks exports against it",
			audit.PublicKeyString(key.Public().(ed25519.PublicKey)), from))
	}
	for _, w := range dep.Workers {
		if strings.HasPrefix(w.Manifest, "builtin:") {
			continue
		}
		if m, err := capabilities.Load(w.Manifest); err == nil && strings.HasPrefix(m.Run, "wasm:") {
			cache := filepath.Join(dep.State, "wasm-cache")
			if err := os.MkdirAll(cache, 0o700); err != nil {
				line("fail", "wasm cache", fmt.Sprintf("%s: %v", cache, err))
			} else {
				line("ok", "wasm cache", cache+" (compiled modules are kept here across restarts)")
			}
			break
		}
	}
	line("ok", "bus permissions", "each worker has a NATS user of its own: its own calls, replies, its own egress subject")
	switch abi, err := worker.LandlockProbe(); {
	case abi == 0:
		line("warn", "landlock", landlockWhyNot(err)+": workers are not confined to their files and the bus port")
	case abi < 4:
		line("warn", "landlock", fmt.Sprintf("ABI %d: workers are confined to their files; TCP and signals are not restricted (needs ABI 4 and 6)", abi))
	case abi < 6:
		line("ok", "landlock", fmt.Sprintf("ABI %d: workers confined to their files and the bus port; signals not restricted (needs ABI 6)", abi))
	default:
		line("ok", "landlock", fmt.Sprintf("ABI %d: workers confined to their files, the bus port, and their own signals", abi))
	}
	doctorNamespace(dep, line)
	switch ok, why := seal.Available(); {
	case dep.ExternalNATS != nil:
		line("warn", "network seal", "not applied on an external NATS server: workers keep the right to reconnect, so Landlock's port rule is what limits their sockets")
	case !ok && why == seal.ErrUnsupported.Error():
		line("warn", "network seal", why+": workers may open sockets besides the bus connection")
	case !ok:
		line("fail", "network seal", why+"; workers seal themselves off the network once connected to the bus, and cannot start without it")
	default:
		line("ok", "network seal", "seccomp: once connected to the bus, a worker can open no other socket (no UDP, no TCP to other hosts)")
	}
	if failed {
		return exitFailure
	}
	return exitOK
}

// doctorNamespace says whether a stdio MCP server with network grants can
// run here, in the user and network namespace of its own it needs, and
// fails when one of the deployment's workers has such a server.
func doctorNamespace(dep *config.Config, line func(status, what, detail string)) {
	var needs []string
	for _, w := range dep.Workers {
		if strings.HasPrefix(w.Manifest, "builtin:") {
			continue
		}
		m, err := capabilities.Load(w.Manifest)
		if err != nil || m.MCP == nil {
			continue
		}
		if m, err = m.WithGrants(w.Grants); err == nil && mcp.NeedsNamespace(m) {
			needs = append(needs, m.Worker)
		}
	}
	self, err := os.Executable()
	if err == nil {
		err = mcp.ProbeNamespace(self)
	}
	switch {
	case err == nil:
		line("ok", "user namespaces", "a stdio MCP server with grants.net runs in a user and network namespace of its own, its only network the worker's proxy")
	case len(needs) > 0:
		line("fail", "user namespaces", fmt.Sprintf("%v; worker %s cannot start", err, strings.Join(needs, ", ")))
	default:
		line("warn", "user namespaces", fmt.Sprintf("%v; no worker here needs one", err))
	}
}

// doctorDrift compares what the running orchestrator runs with the
// configuration on disk.
func (c *cli) doctorDrift(ctx context.Context, client *api.Client, file string, eff *orchestrator.Effective, effErr error, line func(status, what, detail string)) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	running, err := client.Config(ctx)
	switch {
	case err != nil:
		line("fail", "configuration drift", fmt.Sprintf("cannot ask the orchestrator (pid %d) what it runs: %v", client.Endpoint.PID, err))
	case eff == nil || effErr != nil:
		line("fail", "configuration drift", fmt.Sprintf("the orchestrator (pid %d) runs %s %s; %s on disk does not load, so a reload would be refused (run sluice lint)",
			running.PID, configName(running.File), running.Fingerprint, configName(file)))
	case eff.Fingerprint != running.Fingerprint:
		line("fail", "configuration drift", fmt.Sprintf("the orchestrator (pid %d) runs %s %s, but %s on disk is %s: apply it with sluice reload (or restart sluice up)",
			running.PID, configName(running.File), running.Fingerprint, configName(file), eff.Fingerprint))
	default:
		line("ok", "configuration drift", fmt.Sprintf("none: the orchestrator runs %s", running.Fingerprint))
	}
}

// landlockWhyNot says why worker.LandlockProbe found no Landlock, from
// the error of its probe and whether a seccomp filter is on this process
// (a container runtime's profile, systemd's SystemCallFilter=).
func landlockWhyNot(err error) string {
	filtered := ""
	if b, rerr := os.ReadFile("/proc/self/status"); rerr == nil && strings.Contains(string(b), "\nSeccomp:\t2") {
		filtered = "a seccomp filter on this process (a container runtime's profile, or a unit's SystemCallFilter=)"
	}
	switch {
	case errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES):
		return fmt.Sprintf("refused (%v) by %s: allow landlock_create_ruleset, landlock_add_rule and landlock_restrict_self",
			err, orNone(filtered, "a seccomp filter on this process"))
	case errors.Is(err, syscall.EOPNOTSUPP):
		return "built into this kernel but not enabled: add landlock to the lsm= boot parameter"
	case errors.Is(err, syscall.ENOSYS) && filtered != "":
		return fmt.Sprintf("not offered (%v): this kernel has none, or %s refuses the Landlock calls as unknown", err, filtered)
	default:
		return "not offered by this kernel"
	}
}

func firstLine(err error) string {
	s := err.Error()
	for i, r := range s {
		if r == '\n' {
			return s[:i] + " …"
		}
	}
	return s
}

func orDefault(d time.Duration) time.Duration {
	if d == 0 {
		return time.Hour
	}
	return d
}

// orNone is s, or what an empty s means.
func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}
