package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/engine"
	"github.com/sluicehq/sluice/orchestrator/lease"
)

// HomeFile is where, in the state directory, the id of the orchestrators
// started on it is kept: a lease left by an earlier one on the same state
// directory is taken at once (orchestrator/lease).
const HomeFile = "orchestrator-home"

// openLeases opens the leases that let several orchestrators share the
// deployment's runs on an external bus (docs/operations.md, "Several
// orchestrators"). On the embedded bus there is one orchestrator by
// construction, and no lease is kept. eng is the engine once it exists:
// the leases' hooks reach it through it.
func (o *Orchestrator) openLeases(ctx context.Context, d *config.Config, eng *atomic.Pointer[engine.Engine]) error {
	if d.ExternalNATS == nil {
		return nil
	}
	home, err := homeID(d.State)
	if err != nil {
		return err
	}
	o.id = audit.NewID()
	l, err := lease.Open(ctx, lease.Config{Conn: o.nc, Deployment: d.Deployment, Replicas: d.Replicas(), Owner: o.id, Home: home,
		Log: o.log.With("component", "lease"),
		Expired: func(run, from string) {
			// Taken only once this orchestrator has resumed what it
			// resumes on start, its workers ready.
			if e := eng.Load(); e != nil && o.ready.Load() {
				o.log.Info("lease of a run expired or released; taking it over", "run_id", run, "from", from)
				e.TakeOver(run)
			}
		},
		Lost: func(run string) {
			if e := eng.Load(); e != nil {
				e.LeaseLost(run)
			}
		}})
	if err != nil {
		return err
	}
	o.leases = l
	if err := o.openResults(ctx, d); err != nil {
		return err
	}
	o.log.Info("orchestrator sharing the deployment's runs", "orchestrator", o.id)
	return nil
}

// homeID reads the id of the state directory's orchestrators, creating it
// the first time.
func homeID(state string) (string, error) {
	path := filepath.Join(state, HomeFile)
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("orchestrator id: %w", err)
	}
	id := audit.NewID()
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("orchestrator id: %w", err)
	}
	return id, nil
}

// ID is this orchestrator's id, new at each start, when it shares the
// deployment's runs with others; "" on the embedded bus.
func (o *Orchestrator) ID() string { return o.id }
