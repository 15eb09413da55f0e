package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/engine"
)

// reader is what the read-only commands read: the running orchestrator,
// through its API, or a private copy of the store when none runs. Neither
// locks the state directory or writes to it, so a reader never keeps an
// orchestrator from starting, and a read-only state directory (a backup)
// can be read.
type reader struct {
	dep    *config.Config
	getenv func(string) string
	client *api.Client            // a running orchestrator
	snap   *orchestrator.Snapshot // else a copy of the store
}

// openReader asks the orchestrator running on the state directory, or
// copies its store when none runs. An orchestrator that publishes its
// endpoint while the copy is taken is asked instead: its store may have
// changed under the copy.
func (c *cli) openReader(cfgFile string) (*reader, error) {
	dep, err := c.loadConfig(cfgFile)
	if err != nil {
		return nil, err
	}
	r := &reader{dep: dep, getenv: c.getenv}
	if r.client, err = api.Dial(dep.State); err == nil {
		return r, nil
	}
	snap, err := orchestrator.OpenSnapshot(dep)
	if err != nil {
		return nil, err
	}
	if r.client, err = api.Dial(dep.State); err == nil {
		snap.Close()
		return r, nil
	}
	r.client, r.snap = nil, snap
	return r, nil
}

func (r *reader) Close() {
	if r.client != nil {
		r.client.Close()
	}
	if r.snap != nil {
		r.snap.Close()
	}
}

// live says whether an orchestrator runs on the state directory.
func (r *reader) live() bool { return r.client != nil }

// export writes the audit log to path.
func (r *reader) export(ctx context.Context, path string) (int, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return 0, err
	}
	if r.client != nil {
		return r.client.Export(ctx, abs)
	}
	f, err := os.OpenFile(abs, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := r.snap.ExportAudit(ctx, r.dep, r.getenv, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// unfinished lists the runs the store keeps.
func (r *reader) unfinished(ctx context.Context) ([]engine.RunInfo, error) {
	if r.client != nil {
		return r.client.Unfinished(ctx)
	}
	return r.snap.Unfinished(ctx)
}

// runs reads the runs from the audit log, newest first, each with what
// the store says of it when it is unfinished: a run kept as running while
// no orchestrator runs was interrupted when its orchestrator stopped.
func (r *reader) runs(ctx context.Context) ([]*audit.Run, error) {
	tmp, err := os.CreateTemp("", "sluice-audit-*.jsonl")
	if err != nil {
		return nil, err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if _, err := r.export(ctx, tmp.Name()); err != nil {
		return nil, err
	}
	f, err := os.Open(tmp.Name())
	if err != nil {
		return nil, err
	}
	defer f.Close()
	runs, err := audit.ReadRuns(f)
	if err != nil {
		return nil, err
	}
	kept, err := r.unfinished(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string]engine.RunInfo{}
	for _, k := range kept {
		byID[k.ID] = k
	}
	for _, run := range runs {
		k, ok := byID[run.ID]
		if !ok {
			continue
		}
		switch {
		case k.Status == "running" && r.live():
			// It runs now.
		case k.Status == "running":
			run.Status, run.Resume = engine.StatusInterrupted, k.Resume
		default:
			run.Status, run.Resume = k.Status, k.Resume
		}
		run.StoppedAt = k.StoppedAt
	}
	return runs, nil
}

// resumeText says in words when a kept run goes on.
func resumeText(resume, id string) string {
	switch resume {
	case engine.ResumeOnStart:
		return "resumes when sluice up starts"
	case engine.ResumeOnRequest:
		return "kept: resumes only with sluice up --resume; sluice cancel " + id + " ends it"
	case engine.ResumeOnAnswer:
		return "resumes when its held call is answered"
	}
	return ""
}

// approvals lists the calls waiting for a person.
func (r *reader) approvals(ctx context.Context) ([]engine.Approval, error) {
	if r.client != nil {
		return r.client.Approvals(ctx)
	}
	return r.snap.Approvals(ctx, r.dep)
}
