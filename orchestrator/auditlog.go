package orchestrator

import (
	"context"
	"os"
)

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
