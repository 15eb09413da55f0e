package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/bus"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/engine"
)

// Snapshot is a private copy of the JetStream store of a deployment that
// no orchestrator runs on, opened by an embedded server of its own: what
// the read-only commands (sluice runs, trace, audit export and verify)
// read when there is no orchestrator to ask.
//
// A reader never locks the state directory and never writes to it: an
// orchestrator started meanwhile starts as if no reader were there, and a
// state directory that cannot be written to (a backup, a read-only mount)
// can be read. The copy is taken file by file. Should an orchestrator
// start and write while it is taken, a file may be copied in the middle of
// a write: JetStream recovers such a torn tail when it opens the copy (it
// drops the record that was cut), so the view is the store as it stood a
// moment before, never a mixture that does not open. The commands ask the
// orchestrator instead once its endpoint appears (cmd/sluice).
type Snapshot struct {
	dir string
	// deployment names the streams and buckets read.
	deployment string
	bus        *bus.Bus
	nc         *nats.Conn
}

// ErrNoState means the state directory does not exist: nothing has run
// with this configuration yet.
var ErrNoState = errors.New("nothing has run here yet")

// OpenSnapshot copies the deployment's JetStream store to a temporary
// directory and opens it. Close removes the copy.
func OpenSnapshot(d *config.Config) (*Snapshot, error) {
	if d.ExternalNATS != nil {
		return nil, errors.New("the store lives on the external NATS server: read it through a running orchestrator (sluice up)")
	}
	if _, err := os.Stat(d.State); err != nil {
		return nil, fmt.Errorf("no state directory %s: %w", d.State, ErrNoState)
	}
	dir, err := os.MkdirTemp("", "sluice-snapshot-")
	if err != nil {
		return nil, fmt.Errorf("copy the store: %w", err)
	}
	s := &Snapshot{dir: dir, deployment: d.Deployment}
	if err := copyTree(filepath.Join(d.State, "jetstream"), filepath.Join(dir, "jetstream")); err != nil {
		s.Close()
		return nil, fmt.Errorf("copy the store of %s: %w", d.State, err)
	}
	if s.bus, err = bus.Start(bus.Config{StoreDir: dir}); err != nil {
		s.Close()
		return nil, fmt.Errorf("open the copy of the store of %s: %w", d.State, err)
	}
	if s.nc, err = s.bus.Connect(); err != nil {
		s.Close()
		return nil, fmt.Errorf("open the copy of the store of %s: %w", d.State, err)
	}
	return s, nil
}

// Close shuts the copy's server down and removes the copy.
func (s *Snapshot) Close() {
	if s.nc != nil {
		s.nc.Close()
	}
	if s.bus != nil {
		s.bus.Shutdown()
	}
	os.RemoveAll(s.dir)
}

// ExportAudit writes the audit log of the copy, one JSON line per record,
// exactly as stored. When the deployment has a signing key (AuditKey) and
// records follow the last checkpoint — the orchestrator stopped without
// signing them, a crash — it signs a checkpoint in the copy first, so
// that the export ends with one; the deployment's own store is not
// changed (the next orchestrator signs its own).
func (s *Snapshot) ExportAudit(ctx context.Context, d *config.Config, getenv func(string) string, w io.Writer) (int, error) {
	key, _, err := AuditKey(d, getenv, false)
	if err != nil {
		return 0, err
	}
	if key == nil {
		l, err := audit.Open(ctx, s.nc, d.Prefix, audit.Options{Deployment: d.Deployment})
		if err != nil {
			return 0, err
		}
		return l.Export(ctx, w)
	}
	l, err := audit.Open(ctx, s.nc, d.Prefix, audit.Options{Deployment: d.Deployment, Signer: key})
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

// Unfinished lists the runs the copy's store keeps: held, interrupted, or
// running when their orchestrator stopped.
func (s *Snapshot) Unfinished(ctx context.Context) ([]engine.RunInfo, error) {
	return engine.Unfinished(ctx, s.nc, s.deployment)
}

// copyTree copies the regular files and directories under src to dst.
// A missing src copies nothing. Files that vanish while it walks (a
// compaction by an orchestrator that started meanwhile) are left out.
func copyTree(src, dst string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	err := filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case de.IsDir():
			return os.MkdirAll(to, 0o700)
		case de.Type().IsRegular():
			return copyFile(p, to)
		}
		return nil
	})
	return err
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Approvals lists the calls held for a person in the copy, oldest first,
// each flagged against the deployment's registries as they are now.
func (s *Snapshot) Approvals(ctx context.Context, d *config.Config) ([]engine.Approval, error) {
	set, err := LoadPolicy(d)
	if err != nil {
		return nil, err
	}
	e := engine.New(engine.Config{Conn: s.nc, Deployment: s.deployment, Policy: set, Replicas: 1})
	defer e.Close()
	return e.Approvals(ctx)
}
