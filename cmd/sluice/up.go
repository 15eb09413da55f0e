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

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/web"
)

func upCommand() *command {
	return &command{
		name:  "up",
		usage: "up [--config FILE] [--http ADDR|off] [-q]",
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
the bus, the state directory, the subject prefix or the secrets, is refused
(the problems are logged) and the running one kept. Every reload is logged
and recorded in the audit log.

It also serves a web page on this machine only (a loopback address): the
runs, each as a graph of its steps coloured by their labels, and the held
calls with Approve and Deny buttons. Its address, which carries a key to
the page, is printed and written to <state>/run/web.url (mode 0600).
Answers given there are recorded as by web:<OS user>.

Examples:
  sluice up
  sluice up --http 127.0.0.1:8080
  sluice up --config deploy/sluice.yaml --http=off`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			quiet := fs.Bool("q", false, "log warnings and errors only")
			httpAddr := fs.String("http", "127.0.0.1:0", "serve the web page on this loopback `address` (port 0: any free port); off: no web page")
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
					LoadDeployment: reread})
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
				}
				pids := orch.Pids()
				var workers []string
				for name, ps := range pids {
					workers = append(workers, fmt.Sprintf("%s %v", name, ps))
				}
				slices.Sort(workers)
				fmt.Fprintf(c.stderr, "sluice is up in %s: state %s, bus %s\n  configuration: %s %s\n  workers: %s\n  web page: %s\n  reload the configuration with sluice reload or SIGHUP\n  stop with Ctrl-C\n",
					time.Since(start).Round(time.Millisecond), dep.State, orch.ClientURL(), configName(dep.File), orch.Fingerprint(),
					strings.Join(workers, ", "), page)
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
