package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/bus"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/engine"
)

// Offline is a deployment's store opened for writing by a command while
// no orchestrator runs on it: it holds the state directory's lock, as an
// orchestrator does, so that none starts meanwhile. sluice cancel uses it
// when there is no orchestrator to ask.
type Offline struct {
	engine *engine.Engine
	audit  *audit.Log
	close  func()
}

// OpenOffline locks the state directory and opens its store and audit log.
func OpenOffline(ctx context.Context, d *config.Config, getenv func(string) string) (*Offline, error) {
	if d.ExternalNATS != nil {
		return nil, errors.New("the store lives on the external NATS server: do this through a running orchestrator (sluice up)")
	}
	if _, err := os.Stat(d.State); err != nil {
		return nil, fmt.Errorf("no state directory %s: %w", d.State, ErrNoState)
	}
	unlock, err := lockState(d.State)
	if err != nil {
		return nil, err
	}
	b, err := bus.Start(bus.Config{StoreDir: d.State})
	if err != nil {
		unlock()
		return nil, err
	}
	stop := func() { b.Shutdown(); unlock() }
	nc, err := b.Connect()
	if err != nil {
		stop()
		return nil, err
	}
	key, _, err := AuditKey(d, getenv, true)
	if err != nil {
		nc.Close()
		stop()
		return nil, err
	}
	l, err := audit.Open(ctx, nc, d.Prefix, audit.Options{Deployment: d.Deployment, Signer: key})
	if err != nil {
		nc.Close()
		stop()
		return nil, err
	}
	e := engine.New(engine.Config{Conn: nc, Deployment: d.Deployment, Audit: l, Replicas: d.Replicas()})
	return &Offline{engine: e, audit: l, close: func() {
		e.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = l.Close(ctx)
		cancel()
		_ = nc.Drain()
		stop()
	}}, nil
}

// Unfinished lists the runs the store keeps.
func (o *Offline) Unfinished(ctx context.Context) ([]engine.RunInfo, error) {
	return o.engine.Unfinished(ctx)
}

// Cancel ends a run for good (engine.Engine.Cancel).
func (o *Offline) Cancel(ctx context.Context, id, who string) (*engine.RunInfo, error) {
	return o.engine.Cancel(ctx, id, who)
}

// Close signs a checkpoint over what was recorded, and releases the store
// and the lock.
func (o *Offline) Close() { o.close() }
