package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice/orchestrator/api"
)

func reloadCommand() *command {
	return &command{
		name:  "reload",
		usage: "reload [--config FILE] [--json]",
		short: "load the running orchestrator's configuration and policies again",
		long: `Tells the orchestrator running on the state directory (sluice up) to read
the configuration file it was started with again, with every policy file it
names, and to put them in force at once: every run that starts from then on
is decided by the new policies. A run under way (a held one included)
keeps the policies it started with, so no run is decided partly by one set
and partly by the other; the runs that do are listed. sluice up does the
same on SIGHUP.

A reload is refused, and the running configuration stays in force, when the
files do not load (the problems are printed with file:line:col, as sluice
lint prints them), or when they change what only a new sluice up can change:
the workers (which run, their manifests, grants, config blocks and
replicas), the bus, the state directory, the deployment's name, the subject
prefix, the secrets,
the notifiers or telemetry.otlp_endpoint. Restart sluice up to apply those.

Every reload, applied, unchanged or refused, is recorded in the audit log
(a config_reload record) with the fingerprint of the configuration in force
before and of the one read.

--config only says where to find the state directory; the orchestrator
always reloads its own file.

Exits 0 when the configuration was applied or was already in force, 1 when
the reload was refused or no orchestrator runs.

Examples:
  sluice reload
  sluice reload --config deploy/sluice.yaml
  kill -HUP <pid of sluice up>`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			cfgFile := fs.String("config", "", "configuration `file` whose state directory the orchestrator runs on (default ./sluice.yaml if present)")
			asJSON := fs.Bool("json", false, "print the outcome as one JSON object")
			return func(c *cli, ctx context.Context, args []string) int {
				if len(args) > 0 {
					c.errorf("reload takes no arguments")
					return exitUsage
				}
				dep, err := c.loadConfig(*cfgFile)
				if err != nil {
					c.report(err)
					return exitFailure
				}
				client, err := api.Dial(dep.State)
				if err != nil {
					c.errorf("reload: %v", err)
					return exitFailure
				}
				defer client.Close()
				ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				defer cancel()
				rep, err := client.Reload(ctx, "cli:"+osUser())
				if err != nil {
					c.errorf("reload: %v", err)
					return exitFailure
				}
				if *cfgFile != "" && !sameFile(*cfgFile, rep.File) {
					fmt.Fprintf(c.stderr, "note: the orchestrator (pid %d) reloads the file it was started with, %s, not %s;\n"+
						"restart sluice up --config %s to run that one\n", client.Endpoint.PID, configName(rep.File), *cfgFile, *cfgFile)
				}
				if *asJSON {
					b, _ := json.MarshalIndent(rep, "", "  ")
					fmt.Fprintln(c.stdout, string(b))
				}
				switch rep.Status {
				case api.ReloadApplied:
					if !*asJSON {
						fmt.Fprintf(c.stdout, "reloaded %s: %s → %s\nruns that start from now on are decided by it\n",
							configName(rep.File), rep.Old, rep.New)
						if len(rep.Kept) > 0 {
							fmt.Fprintf(c.stdout, "%d run(s) under way keep the policies they started with: %s\n", len(rep.Kept), strings.Join(rep.Kept, ", "))
						}
					}
					return exitOK
				case api.ReloadUnchanged:
					if !*asJSON {
						fmt.Fprintf(c.stdout, "reloaded %s: unchanged, %s\n", configName(rep.File), rep.Old)
					}
					return exitOK
				}
				if !*asJSON {
					c.report(rep.Diagnostics)
				}
				msg := rep.Error
				if len(rep.Diagnostics) > 0 {
					msg = fmt.Sprintf("%d problem(s) above", len(rep.Diagnostics))
				}
				c.errorf("reload of %s refused: %s\nthe orchestrator (pid %d) keeps running %s; the refusal is recorded in the audit log",
					configName(rep.File), msg, client.Endpoint.PID, rep.Old)
				return exitFailure
			}
		},
	}
}

// sameFile says whether two names of a configuration file name the same
// file; relative ones are taken from the current directory.
func sameFile(a, b string) bool {
	if b == "" {
		return false
	}
	x, err1 := filepath.Abs(a)
	y, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && x == y
}
