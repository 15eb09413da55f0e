package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/internal/display"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/engine"
	"github.com/sluicehq/sluice/orchestrator/web"
)

func upCommand() *command {
	return &command{
		name:  "up",
		usage: "up [--config FILE] [--http ADDR|off] [--resume] [-q]",
		short: "run the orchestrator, the bus and every worker until stopped",
		long: `Starts the orchestrator with its embedded NATS server (JetStream state under
the state directory), or on the external server named by nats: in sluice.yaml
(docs/operations.md), and every configured worker as its own process, each
with credentials of its own; restarts workers that die; stops everything on
SIGINT or SIGTERM, leaving no worker behind.

While it runs, 'sluice run' submits runs to it and 'sluice approve' answers
its held calls. Where it is reachable is written to <state>/run/api.json,
with the configuration file it runs and that configuration's fingerprint (a
hash of the settings, every policy file and every worker's manifest, grants
and config block): 'sluice run' refuses to submit a run when the
configuration it would use has another fingerprint.

SIGHUP, like 'sluice reload', loads the configuration file and its policy
files again and puts the new policies in force for the runs that start from
then on; a configuration that does not load, or that changes the workers,
the bus, the state directory, the deployment's name, the subject prefix,
the secrets or
telemetry.otlp_endpoint, is refused
(the problems are logged) and the running one kept. Every reload is logged
and recorded in the audit log.

Runs a previous orchestrator left unfinished: a run that was running when
it stopped (stopped or crashed) is resumed, and so is a held run whose call
was answered meanwhile; a run a person interrupted (Ctrl-C on sluice run)
is kept and resumed only with --resume. Each run resumed is announced with
one line on standard error (its id, flow, and where it stopped), and each
interrupted run kept with another; a completed call is never made again.
A run ended with sluice cancel is never resumed.

On an external server, several orchestrators of one deployment may run at
once, each with its own state directory: each prints its id, drives the
runs it holds a lease on, takes over within 10 s the runs of one that
stopped or died, and answers clients in one queue group with the others
(docs/operations.md, "Several orchestrators").

It also serves a web page on this machine only (a loopback address): the
runs, each as a graph of its steps coloured by their labels, and the held
calls with Approve and Deny buttons. Its address, which carries a key to
the page, is printed and written to <state>/run/web.url (mode 0600).
Answers given there are recorded as by web:<OS user>. The same server
serves /metrics in the Prometheus text format to a scraper that sends the
key as a bearer token (Authorization: Bearer <key>); see
docs/observability.md.

Traces of every run go over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or telemetry.otlp_endpoint in
sluice.yaml) names a receiver; otherwise none are sent. sluice run does
the same for the runs it starts itself.

Examples:
  sluice up
  sluice up --http 127.0.0.1:8080
  sluice up --resume
  sluice up --config deploy/sluice.yaml --http=off`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			quiet := fs.Bool("q", false, "log warnings and errors only")
			httpAddr := fs.String("http", "127.0.0.1:0", "serve the web page on this loopback `address` (port 0: any free port); off: no web page")
			resume := fs.Bool("resume", false, "also resume the runs a person interrupted (Ctrl-C on sluice run)")
			natsURLs := fs.String("nats", "", "use these NATS `servers` (nats://host:port, comma-separated) instead of those in sluice.yaml's nats section, which names the credentials")
			return func(c *cli, ctx context.Context, args []string) int {
				if len(args) > 0 {
					c.errorf("up takes no arguments")
					return exitUsage
				}
				level := slog.LevelInfo
				if *quiet {
					level = slog.LevelWarn
				}
				log := c.logger(level, false)
				dep, err := c.loadConfig(*cfgFile)
				if err != nil {
					c.report(err)
					return exitFailure
				}
				if *natsURLs != "" {
					if dep.ExternalNATS == nil {
						c.errorf("up --nats %s: an external server needs the account's key and the orchestrator's credentials: "+
							"write them in sluice.yaml as nats: {urls: […], account_seed: {file: …}, creds: {file: …}} (docs/operations.md)", *natsURLs)
						return exitUsage
					}
					for _, u := range strings.Split(*natsURLs, ",") {
						if !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
							c.errorf("up --nats: %q: want nats://host:port or tls://host:port", u)
							return exitUsage
						}
					}
					dep.ExternalNATS.URL = *natsURLs
				}
				// A reload reads the same file again, with the same --nats.
				reread := func() (*config.Config, error) {
					d := config.Default(dep.Dir)
					if dep.File != "" {
						var err error
						if d, err = config.Load(dep.File); err != nil {
							return nil, err
						}
					}
					if *natsURLs != "" && d.ExternalNATS != nil {
						d.ExternalNATS.URL = *natsURLs
					}
					return d, nil
				}
				hup := make(chan os.Signal, 1)
				signal.Notify(hup, syscall.SIGHUP)
				defer signal.Stop(hup)
				orch, err := orchestrator.New(orchestrator.Config{Deployment: dep, Log: log, Getenv: c.getenv, ResumeRuns: true,
					LoadDeployment: reread, ResumeInterrupted: *resume})
				if err != nil {
					c.report(err)
					return exitFailure
				}
				var webCfg *web.Config
				if *httpAddr != "off" {
					webCfg = &web.Config{Addr: *httpAddr, Backend: orch, User: osUser(), Log: log.With("component", "web"),
						URLFile: filepath.Join(dep.State, "run", "web.url")}
					if err := webCfg.Validate(); err != nil {
						c.errorf("up --http: %v", err)
						return exitUsage
					}
				}
				slowStartNote(c.stderr, orch, dep)
				start := time.Now()
				if err := orch.Start(ctx); err != nil {
					orch.Close()
					c.report(err)
					return exitFailure
				}
				page := "off"
				var srv *web.Server
				if webCfg != nil {
					if srv, err = web.New(*webCfg); err != nil {
						orch.Close()
						c.errorf("up: %v", err)
						return exitFailure
					}
					page = srv.URL()
					// Notifications link to the page without its key: a
					// notifier is outside Sluice.
					orch.SetApprovalLink("http://" + srv.Addr() + "/approvals")
				}
				c.announceRuns(ctx, orch)
				pids := orch.Pids()
				var workers []string
				for name, ps := range pids {
					workers = append(workers, fmt.Sprintf("%s %v", name, ps))
				}
				slices.Sort(workers)
				shared := ""
				if id := orch.ID(); id != "" {
					shared = fmt.Sprintf("  orchestrator %s: shares the deployment's runs with the others on the bus\n", id)
				}
				fmt.Fprintf(c.stderr, "sluice is up in %s: state %s, bus %s\n  configuration: %s %s\n  workers: %s\n  web page: %s\n%s  reload the configuration with sluice reload or SIGHUP\n  stop with Ctrl-C\n",
					time.Since(start).Round(time.Millisecond), dep.State, orch.ClientURL(), configName(dep.File), orch.Fingerprint(),
					strings.Join(workers, ", "), page, shared)
			serve:
				for {
					select {
					case <-ctx.Done():
						break serve
					case <-hup:
						// The orchestrator logs the outcome; the problems of
						// a configuration that does not load are shown here,
						// as no client asked.
						if rep := orch.Reload(ctx, "signal:SIGHUP"); len(rep.Diagnostics) > 0 {
							c.report(rep.Diagnostics)
						}
					}
				}
				fmt.Fprintln(c.stderr, "stopping…")
				if srv != nil {
					stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					if err := srv.Shutdown(stopCtx); err != nil {
						log.Warn("stop the web page", "err", err)
					}
					cancel()
				}
				orch.Close()
				fmt.Fprintln(c.stderr, "stopped")
				return exitOK
			}
		},
	}
}

// announceRuns says which runs the orchestrator resumed, and which runs a
// person interrupted it keeps without resuming them: one line each.
func (c *cli) announceRuns(ctx context.Context, orch *orchestrator.Orchestrator) {
	resumed := map[string]bool{}
	for _, r := range orch.Resumed() {
		resumed[r.ID] = true
		var where string
		switch {
		case r.Status == engine.StatusHeld:
			where = "its held call was answered"
		case len(r.StoppedAt) > 0:
			where = "stopped at step " + display.List(r.StoppedAt)
		default:
			where = "stopped where its orchestrator ended without a word (a crash); completed calls are not made again"
		}
		fmt.Fprintf(c.stderr, "resuming run %s (%s): %s\n", show(r.ID), show(r.Flow), where)
	}
	kept, err := orch.Unfinished(ctx)
	if err != nil {
		fmt.Fprintf(c.stderr, "could not list the unfinished runs: %v\n", err)
		return
	}
	for _, r := range kept {
		if resumed[r.ID] || r.Status != engine.StatusInterrupted {
			continue
		}
		where := ""
		if len(r.StoppedAt) > 0 {
			where = " at step " + display.List(r.StoppedAt)
		}
		fmt.Fprintf(c.stderr, "kept, not resumed: run %s (%s), interrupted by a person%s; sluice up --resume resumes it, sluice cancel %s ends it\n",
			show(r.ID), show(r.Flow), where, show(r.ID))
	}
}
