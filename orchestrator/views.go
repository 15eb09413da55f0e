package orchestrator

import (
	"context"
	"fmt"
	"io"

	"github.com/sluicehq/sluice/orchestrator/audit"
)

// Runs reads the runs recorded in the audit log, newest first, each with
// its steps: what `sluice runs` and the web page show.
func (o *Orchestrator) Runs(ctx context.Context) ([]*audit.Run, error) {
	pr, pw := io.Pipe()
	exported := make(chan error, 1)
	go func() {
		_, err := o.audit.Export(ctx, pw)
		pw.CloseWithError(err)
		exported <- err
	}()
	runs, err := audit.ReadRuns(pr)
	// ReadRuns may stop before the end (a record it cannot read): closing
	// the reading side ends the export's pending write.
	pr.Close()
	if xerr := <-exported; err == nil && xerr != nil {
		err = xerr
	}
	if err != nil {
		return nil, fmt.Errorf("read runs from the audit log: %w", err)
	}
	return runs, nil
}
