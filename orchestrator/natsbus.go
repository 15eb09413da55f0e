package orchestrator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/internal/natstls"
	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/orchestrator/bus"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/internal/fault"
	"github.com/sluicehq/sluice/schemas"
)

// Bus is what the orchestrator needs of the bus: the embedded server
// (bus.Start) or an external one in operator mode (bus.Dial).
type Bus interface {
	// Connect opens a connection as the orchestrator.
	Connect(opts ...nats.Option) (*nats.Conn, error)
	// ClientURL is the URL worker processes connect to.
	ClientURL() string
	// AddUser issues a credential with the given permissions, as the
	// contents of the file handed to one process: an nkey seed (embedded)
	// or a .creds file (external).
	AddUser(name string, p capabilities.Permissions) (creds []byte, remove func(), err error)
	// HasInterest reports whether a worker serves subject. On an external
	// server it sends a request there, so subject must be a probe.
	HasInterest(subject string) bool
	// Shutdown stops the embedded server, or leaves the external one.
	Shutdown()
}

var (
	_ Bus = (*bus.Bus)(nil)
	_ Bus = (*bus.External)(nil)
)

// readyProbe is the tool name waitReady asks each worker for: no tool can
// have it (tool names start with a letter), so a worker that receives the
// request answers unknown_tool without running anything.
const readyProbe = "_ready"

// startBus starts the embedded server, or connects to the external one
// named in sluice.yaml with the credentials it names. The embedded
// server's failures to write the state directory go to o.fault.
func (o *Orchestrator) startBus(ctx context.Context, d *config.Config, onViolation func(bus.Violation)) (Bus, error) {
	x := d.ExternalNATS
	if x == nil {
		o.fault = fault.New(d.State)
		b, err := bus.Start(bus.Config{StoreDir: d.State, Log: o.log.With("component", "nats"), OnViolation: onViolation,
			OnWriteError: o.writeFailed})
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	seed, err := readNATSSource(d, x.AccountSeed, "nats.account_seed", x.AccountSeedPos, o.cfg.Getenv)
	if err != nil {
		return nil, err
	}
	creds, err := readNATSSource(d, x.Creds, "nats.creds", x.CredsPos, o.cfg.Getenv)
	if err != nil {
		return nil, err
	}
	tlsConfig, err := loadNATSTLS(d, x)
	if err != nil {
		return nil, err
	}
	e, err := bus.Dial(ctx, bus.ExternalConfig{URL: x.URL, AccountSeed: seed, Creds: creds, CredentialTTL: x.CredentialTTL,
		TLS: tlsConfig})
	if err != nil {
		return nil, natstls.Explain(err, x.TLS)
	}
	o.log.Info("using an external NATS server", "url", x.URL, "credential_ttl", e.CredentialTTL(), "tls", x.TLS != nil)
	return e, nil
}

// natsTLS is the nats.tls of d's external server, or nil.
func natsTLS(d *config.Config) *natstls.Files {
	if d.ExternalNATS == nil {
		return nil
	}
	return d.ExternalNATS.TLS
}

// loadNATSTLS reads the files of nats.tls; nil when it is not set. Errors
// point at the key in sluice.yaml that names the file.
func loadNATSTLS(d *config.Config, x *config.ExternalNATS) (*tls.Config, error) {
	if x.TLS == nil {
		return nil, nil
	}
	c, err := natstls.Load(*x.TLS)
	if err != nil {
		var ds schemas.Diagnostics
		pos := x.TLSPos[""]
		var fe *natstls.Error
		if errors.As(err, &fe) {
			if p, ok := x.TLSPos[fe.Field]; ok && p.Line > 0 {
				pos = p
			}
		}
		ds.Add(d.File, pos, "config_nats_tls", "nats.tls.%v", err)
		return nil, ds.Err()
	}
	return c, nil
}

// writeFailed is told by the embedded server that it could not write
// stream to the state directory. Every write waited for, and every write
// after it, fails at once with the cause: the server refuses them until it
// restarts.
func (o *Orchestrator) writeFailed(stream, cause string) {
	if o.fault.Err() != nil {
		return
	}
	err := fault.NewError(fault.What(stream), o.fault.Dir(), cause)
	o.fault.Fail(err)
	o.log.Error("the state directory cannot be written: every run fails until space is freed and the orchestrator restarted",
		"err", err.Error(), "stream", stream, "detail", cause)
}

// readNATSSource reads the account seed or the orchestrator's creds: from
// the environment, or from a file only its owner may read. Errors point at
// the key in sluice.yaml.
func readNATSSource(d *config.Config, s config.Secret, key string, pos schemas.Pos, getenv func(string) string) ([]byte, error) {
	fail := func(format string, args ...any) error {
		var ds schemas.Diagnostics
		ds.Add(d.File, pos, "config_nats_credentials", "%s: %s", key, fmt.Sprintf(format, args...))
		return ds.Err()
	}
	if s.Env != "" {
		if getenv == nil || getenv(s.Env) == "" {
			return nil, fail("environment variable %s is not set", s.Env)
		}
		return []byte(getenv(s.Env)), nil
	}
	st, err := os.Stat(s.File)
	if err != nil {
		return nil, fail("%v", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fail("%s is readable by group or others (mode %04o); run chmod 600 %s", s.File, st.Mode().Perm(), s.File)
	}
	b, err := os.ReadFile(s.File)
	if err != nil {
		return nil, fail("%v", err)
	}
	return b, nil
}

// renewClientCreds keeps the API client credential under the state
// directory valid on an external server, where it expires: a new one is
// issued every half TTL until the orchestrator stops.
func (o *Orchestrator) renewClientCreds(ttl time.Duration) {
	defer o.wg.Done()
	t := time.NewTicker(ttl / 2)
	defer t.Stop()
	for {
		select {
		case <-o.stopViolations:
			return
		case <-t.C:
		}
		creds, _, err := o.bus.AddUser("client", api.ClientPermissions(o.subjects))
		if err == nil {
			o.reloadMu.Lock()
			_, err = api.Publish(o.cfg.Deployment.State, o.endpoint, creds)
			o.reloadMu.Unlock()
		}
		if err != nil {
			o.log.Error("renew the API client credential", "err", err)
		}
	}
}
