package orchestrator

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/schemas"
)

// Running says which configuration the orchestrator runs now.
func (o *Orchestrator) Running() api.ConfigReply { return o.running(o.current.Load()) }

func (o *Orchestrator) running(eff *Effective) api.ConfigReply {
	return api.ConfigReply{File: eff.Deployment.File, Dir: eff.Deployment.Dir, Fingerprint: eff.Fingerprint, PID: os.Getpid()}
}

// Reload reads the configuration file the orchestrator was started with
// again, with its policy files, and puts the new policies in force at
// once for every run that starts from then on (a run under way keeps the
// set it started with). It refuses, keeping what runs, a configuration
// that does not load, and one that changes what only a new sluice up can:
// the workers (their set, manifests, grants, config blocks, replicas), the
// bus, the state directory, the subject prefix, the working directory or
// the secrets (Restart). Every reload, applied, unchanged or refused, is
// appended to the audit log before it takes effect, with the fingerprint
// in force and the one read; who names who asked.
func (o *Orchestrator) Reload(ctx context.Context, who string) api.ReloadReply {
	o.reloadMu.Lock()
	defer o.reloadMu.Unlock()
	old := o.current.Load()
	rep := api.ReloadReply{File: old.Deployment.File, Old: old.Fingerprint}
	d, err := o.loadDeployment()
	var eff *Effective
	if err == nil {
		eff, err = LoadEffective(d)
	}
	if eff != nil {
		rep.New = eff.Fingerprint
	}
	switch {
	case err != nil:
		rep.Status = api.ReloadRefused
		if ds, ok := schemas.AsDiagnostics(err); ok {
			rep.Diagnostics = ds
			rep.Error = ds[0].Error()
			if len(ds) > 1 {
				rep.Error += fmt.Sprintf(" (and %d more)", len(ds)-1)
			}
		} else {
			rep.Error = err.Error()
		}
	case len(Restart(old, eff)) > 0:
		rep.Status = api.ReloadRefused
		rep.Restart = Restart(old, eff)
		rep.Error = "changes what a running orchestrator cannot change in place: " + strings.Join(rep.Restart, "; ") +
			"; restart sluice up to apply them"
	case eff.Fingerprint == old.Fingerprint:
		rep.Status = api.ReloadUnchanged
	default:
		rep.Status = api.ReloadApplied
	}
	rec := audit.Record{Kind: audit.KindConfigReload, User: who, Status: rep.Status, Error: rep.Error,
		File: old.Deployment.File, OldFingerprint: rep.Old, NewFingerprint: rep.New}
	if err := o.audit.Append(ctx, rec); err != nil {
		o.log.Error("configuration reload not recorded in the audit log; nothing was changed", "who", who, "err", err)
		return api.ReloadReply{Status: api.ReloadRefused, File: rep.File, Old: rep.Old, New: rep.New,
			Error: fmt.Sprintf("the reload could not be recorded in the audit log, so nothing was changed: %v", err)}
	}
	switch rep.Status {
	case api.ReloadApplied:
		o.current.Store(eff)
		o.engine.SetPolicy(eff.Policy)
		rep.Kept = o.engine.RunsKeeping(eff.Policy)
		o.endpoint.Fingerprint = eff.Fingerprint
		if err := api.Rewrite(eff.Deployment.State, o.endpoint); err != nil {
			o.log.Warn("configuration reloaded, but its fingerprint not written to the endpoint file; the config request has it", "err", err)
		}
		o.log.Info("configuration reloaded", "who", who, "file", orDefaults(rep.File), "old", rep.Old, "new", rep.New,
			"runs_kept", len(rep.Kept))
	case api.ReloadUnchanged:
		o.log.Info("configuration reloaded: unchanged", "who", who, "file", orDefaults(rep.File), "fingerprint", rep.Old)
	default:
		o.log.Warn("configuration reload refused; the old one stays in force", "who", who, "file", orDefaults(rep.File),
			"old", rep.Old, "new", rep.New, "err", rep.Error)
	}
	return rep
}

func (o *Orchestrator) loadDeployment() (*config.Config, error) {
	if o.cfg.LoadDeployment != nil {
		return o.cfg.LoadDeployment()
	}
	d := o.cfg.Deployment
	if d.File == "" {
		return config.Default(d.Dir), nil
	}
	return config.Load(d.File)
}

func orDefaults(file string) string {
	if file == "" {
		return "built-in defaults"
	}
	return file
}
