package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/audit"
)

func auditCommand() *command {
	return &command{
		name:  "audit",
		usage: "audit export [--out FILE] | audit verify [FILE] [--public-key KEY] [--config FILE]",
		short: "export the audit log as JSON lines, or verify its chain and signatures",
		long: `Every record of the audit log carries the hash of the one before it, and
the orchestrator signs checkpoints of the chain (Ed25519): records of kind
checkpoint that say how many records precede them and carry the hash of
the last. It signs one when a run finishes, a second after any record no
checkpoint covers yet, when it shuts down, and for each export.

'audit export' writes the log, one JSON line per record exactly as stored,
to --out or to standard output, through a checkpoint signed for it: the
last line is a checkpoint.

'audit verify FILE' checks an export. It fails, naming the line, when a
record was changed, dropped, added or reordered (the chain breaks); when
the chain was recomputed after a change (a checkpoint's signature fails);
when the export does not end with a checkpoint (its tail was cut off, or
its last checkpoint removed); and when a checkpoint is signed by another
key. An export cut right after a checkpoint is the log as it stood when
that checkpoint was signed: verify prints how many records it holds and
when its last checkpoint was signed.

An export may also start with a checkpoint, when the head of the log was
dropped under audit.max_age or audit.max_size in sluice.yaml: the
orchestrator drops records only up to a signed checkpoint, whose count
and signature vouch for the records before it. verify then says how many
records were dropped and when that checkpoint was signed, and still fails
on anything changed after it. An export that starts with any other record
is refused.

The key: --public-key KEY (ed25519:BASE64, as 'sluice doctor' prints it;
repeat it for a log signed by an older key too). Without it, verify uses
this deployment's own key (the secret audit_signing_key, else
<state>/audit-signing.key). Take the key from 'sluice doctor' when you
check an export elsewhere: a key read from the export itself proves
nothing.

Without FILE, verify exports the log of this state directory and checks it.
Both work on the running orchestrator (sluice up) when there is one, and
otherwise on a private copy of the store: they never lock the state
directory or write to it, so a read-only backup can be exported and
verified. (A checkpoint they sign over records the orchestrator left
unsigned, after a crash, is signed in the copy only.)

Examples:
  sluice audit export --out audit.jsonl
  sluice audit verify audit.jsonl
  sluice audit verify audit.jsonl --public-key ed25519:q83v…=`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			out := fs.String("out", "", "write the export to `file` (default: standard output)")
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			var keys []ed25519.PublicKey
			fs.Func("public-key", "check checkpoints against `key` (ed25519:BASE64, as sluice doctor prints it; repeatable; default: this deployment's key)", func(s string) error {
				k, err := audit.ParsePublicKey(s)
				if err == nil {
					keys = append(keys, k)
				}
				return err
			})
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
					return c.auditVerify(ctx, *cfgFile, file, keys)
				}
				c.errorf("audit: too many arguments")
				return exitUsage
			}
		},
	}
}

// exportTo writes the deployment's audit log to path: through the running
// orchestrator, or from a private copy of the store (openReader).
func (c *cli) exportTo(ctx context.Context, cfgFile, path string) (int, error) {
	r, err := c.openReader(cfgFile)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	return r.export(ctx, path)
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

func (c *cli) auditVerify(ctx context.Context, cfgFile, file string, keys []ed25519.PublicKey) int {
	if len(keys) == 0 {
		dep, err := c.loadConfig(cfgFile)
		if err != nil {
			c.errorf("audit verify: %v", err)
			return exitFailure
		}
		key, _, err := orchestrator.AuditKey(dep, c.getenv, false)
		if err != nil {
			c.errorf("audit verify: %v", err)
			return exitFailure
		}
		if key == nil {
			c.errorf("audit verify: this deployment has no signing key yet (sluice up creates one): pass the key the log was signed with, --public-key KEY, as sluice doctor prints it where the log was written")
			return exitUsage
		}
		keys = append(keys, key.Public().(ed25519.PublicKey))
	}
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
	v, err := audit.Verify(f, keys...)
	if err != nil {
		c.errorf("audit verify: %v", err)
		return exitFailure
	}
	start := ""
	if v.Dropped > 0 {
		start = fmt.Sprintf(", starts after %d dropped records at a checkpoint signed %s", v.Dropped, v.Start.Format(time.RFC3339))
	}
	fmt.Fprintf(c.stdout, "ok: %d records%s, the chain is intact and ends with a checkpoint signed %s by %s\n",
		v.Records, start, v.Signed.Format(time.RFC3339), v.Key)
	return exitOK
}
