package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/bus"
	"github.com/sluicehq/sluice/orchestrator/config"
)

// ExportAudit writes the audit log of a deployment that is not running,
// one JSON line per record, exactly as stored. It starts the embedded bus
// on the state directory for as long as it reads, and nothing else. (A
// running orchestrator exports through its API: see Export.) When the
// deployment has a signing key (AuditKey) and records follow the last
// checkpoint — the orchestrator stopped without signing them, a crash —
// it signs a checkpoint first, so that the export ends with one.
func ExportAudit(ctx context.Context, d *config.Config, getenv func(string) string, w io.Writer) (int, error) {
	if d.ExternalNATS != nil {
		return 0, errors.New("the audit log lives on the external NATS server: export it through a running orchestrator (sluice up)")
	}
	if _, err := os.Stat(d.State); err != nil {
		return 0, fmt.Errorf("no state directory %s: nothing has run here yet", d.State)
	}
	unlock, err := lockState(d.State)
	if err != nil {
		return 0, err
	}
	defer unlock()
	b, err := bus.Start(bus.Config{StoreDir: d.State})
	if err != nil {
		return 0, err
	}
	defer b.Shutdown()
	nc, err := b.Connect()
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	key, _, err := AuditKey(d, getenv, false)
	if err != nil {
		return 0, err
	}
	if key == nil {
		l, err := audit.Open(ctx, nc, d.Prefix)
		if err != nil {
			return 0, err
		}
		return l.Export(ctx, w)
	}
	l, err := audit.Open(ctx, nc, d.Prefix, audit.Options{Signer: key})
	if err != nil {
		return 0, err
	}
	defer l.Close(ctx)
	seq, err := l.Checkpoint(ctx)
	if err != nil {
		return 0, err
	}
	return l.ExportThrough(ctx, w, seq)
}

// Export writes the running orchestrator's audit log to path, through a
// checkpoint signed for it: records appended meanwhile are left for the
// next export.
func (o *Orchestrator) Export(ctx context.Context, path string) (int, error) {
	seq, err := o.audit.Checkpoint(ctx)
	if err != nil {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := o.audit.ExportThrough(ctx, f, seq)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}
