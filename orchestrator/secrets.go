package orchestrator

import (
	"bytes"
	"fmt"
	"os"
	"slices"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/egress"
)

// minSecretLen is the shortest secret accepted: a shorter one could not be
// told apart from ordinary text when the broker removes its echoes.
const minSecretLen = 8

// loadSecrets reads every configured secret that the egress broker may fill
// in: from the environment, or from a file that only its owner may read.
// The audit signing key is not one of them (AuditKey reads it).
func loadSecrets(c *config.Config, getenv func(string) string) (map[string]egress.Secret, error) {
	out := map[string]egress.Secret{}
	names := make([]string, 0, len(c.Secrets))
	for n := range c.Secrets {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		if name == AuditKeySecret {
			continue
		}
		v, err := readSecret(name, c.Secrets[name], getenv)
		if err != nil {
			return nil, err
		}
		if len(v) < minSecretLen {
			return nil, fmt.Errorf("secret %s: shorter than %d bytes", name, minSecretLen)
		}
		out[name] = egress.NewSecret(name, v)
	}
	return out, nil
}

// withoutSecrets returns getenv, except that a variable a secret or a NATS
// credential of d is read from reads as unset: whatever the supervisor
// passes on to workers from the environment, it is never one of those,
// even if a secret were kept in PATH.
func withoutSecrets(d *config.Config, getenv func(string) string) func(string) string {
	if getenv == nil {
		return nil
	}
	hidden := map[string]bool{}
	for _, s := range d.Secrets {
		hidden[s.Env] = true
	}
	if x := d.ExternalNATS; x != nil {
		hidden[x.AccountSeed.Env], hidden[x.Creds.Env] = true, true
	}
	return func(name string) string {
		if hidden[name] {
			return ""
		}
		return getenv(name)
	}
}

// readSecret reads the value of one secret: from the environment, or from
// a file that only its owner may read.
func readSecret(name string, s config.Secret, getenv func(string) string) ([]byte, error) {
	switch {
	case s.Env != "":
		if getenv == nil || getenv(s.Env) == "" {
			return nil, fmt.Errorf("secret %s: environment variable %s is not set", name, s.Env)
		}
		return []byte(getenv(s.Env)), nil
	case s.File != "":
		v, err := readPrivateFile(s.File)
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", name, err)
		}
		return bytes.TrimRight(v, "\r\n"), nil
	}
	return nil, nil
}

// readPrivateFile reads a file that must not be readable by group or
// others.
func readPrivateFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by group or others (mode %04o); run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	return os.ReadFile(path)
}

// secretGrants collects, by worker, the secrets each may have filled in.
// A grant of a secret that is not configured is an error.
func secretGrants(ms map[string]*capabilities.Manifest, secrets map[string]egress.Secret) (map[string][]egress.SecretGrant, error) {
	out := map[string][]egress.SecretGrant{}
	for name, m := range ms {
		for _, g := range m.Grants.Secrets {
			if g.Name == AuditKeySecret {
				return nil, fmt.Errorf("worker %s is granted secret %s: the key that signs the audit log is the orchestrator's alone", name, g.Name)
			}
			if _, ok := secrets[g.Name]; !ok {
				return nil, fmt.Errorf("worker %s is granted secret %s, which is not configured under secrets: in sluice.yaml", name, g.Name)
			}
			out[name] = append(out[name], egress.SecretGrant{Name: g.Name, Hosts: g.Hosts})
		}
	}
	return out, nil
}
