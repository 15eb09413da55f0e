package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/orchestrator/audit"
)

func auditCommand() *command {
	return &command{
		name:  "audit",
		usage: "audit export [--out FILE] | audit verify [FILE] [--config FILE]",
		short: "export the audit log as JSON lines, or verify its chain",
		long: `Every record of the audit log carries the hash of the one before it.

'audit export' writes the log, one JSON line per record exactly as stored,
to --out or to standard output. 'audit verify FILE' checks an export: a
record that was changed, dropped or reordered breaks the chain, and the
line where it breaks is named. Without FILE, verify exports the log of this
state directory and checks it.

Both work on the running orchestrator (sluice up) when there is one, and
otherwise open the state directory themselves.

Examples:
  sluice audit export --out audit.jsonl
  sluice audit verify audit.jsonl`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			out := fs.String("out", "", "write the export to `file` (default: standard output)")
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			return func(c *cli, ctx context.Context, args []string) int {
				if len(args) == 0 || (args[0] != "export" && args[0] != "verify") {
					c.errorf("audit: say export or verify")
					return exitUsage
				}
				switch {
				case args[0] == "export" && len(args) == 1:
					return c.auditExport(ctx, *cfgFile, *out)
				case args[0] == "verify" && len(args) <= 2:
					file := ""
					if len(args) == 2 {
						file = args[1]
					}
					return c.auditVerify(ctx, *cfgFile, file)
				}
				c.errorf("audit: too many arguments")
				return exitUsage
			}
		},
	}
}

// exportTo writes the deployment's audit log to path.
func (c *cli) exportTo(ctx context.Context, cfgFile, path string) (int, error) {
	dep, err := c.loadConfig(cfgFile)
	if err != nil {
		return 0, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return 0, err
	}
	if client, err := api.Dial(dep.State); err == nil {
		defer client.Close()
		return client.Export(ctx, abs)
	}
	f, err := os.OpenFile(abs, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := orchestrator.ExportAudit(ctx, dep, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

func (c *cli) auditExport(ctx context.Context, cfgFile, out string) int {
	path := out
	if path == "" {
		tmp, err := os.CreateTemp("", "sluice-audit-*.jsonl")
		if err != nil {
			c.errorf("audit export: %v", err)
			return exitFailure
		}
		tmp.Close()
		defer os.Remove(tmp.Name())
		path = tmp.Name()
	}
	n, err := c.exportTo(ctx, cfgFile, path)
	if err != nil {
		c.errorf("audit export: %v", err)
		return exitFailure
	}
	if out == "" {
		f, err := os.Open(path)
		if err != nil {
			c.errorf("audit export: %v", err)
			return exitFailure
		}
		defer f.Close()
		io.Copy(c.stdout, f)
		return exitOK
	}
	fmt.Fprintf(c.stderr, "%d records written to %s\n", n, out)
	return exitOK
}

func (c *cli) auditVerify(ctx context.Context, cfgFile, file string) int {
	if file == "" {
		tmp, err := os.CreateTemp("", "sluice-audit-*.jsonl")
		if err != nil {
			c.errorf("audit verify: %v", err)
			return exitFailure
		}
		tmp.Close()
		defer os.Remove(tmp.Name())
		if _, err := c.exportTo(ctx, cfgFile, tmp.Name()); err != nil {
			c.errorf("audit verify: %v", err)
			return exitFailure
		}
		file = tmp.Name()
	}
	f, err := os.Open(file)
	if err != nil {
		c.errorf("audit verify: %v", err)
		return exitFailure
	}
	defer f.Close()
	n, err := audit.Verify(f)
	if err != nil {
		c.errorf("audit verify: %v", err)
		return exitFailure
	}
	fmt.Fprintf(c.stdout, "ok: %d records, the chain is intact\n", n)
	return exitOK
}
