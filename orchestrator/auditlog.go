package orchestrator

import (
	"context"
	"io"
	"os"

	"github.com/sluicehq/sluice/orchestrator/config"
)

// ExportAudit writes the audit log of a deployment that is not running,
// one JSON line per record, exactly as stored. It reads a private copy of
// the store (Snapshot): it neither locks the state directory nor writes
// to it. (A running orchestrator exports through its API: see Export.)
func ExportAudit(ctx context.Context, d *config.Config, getenv func(string) string, w io.Writer) (int, error) {
	s, err := OpenSnapshot(d)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	return s.ExportAudit(ctx, d, getenv, w)
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
