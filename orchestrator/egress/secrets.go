package egress

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Secret is a named secret value. Its String and LogValue never show the
// value, so it cannot reach a log line by accident.
type Secret struct {
	name  string
	value []byte
}

// NewSecret wraps a secret value.
func NewSecret(name string, value []byte) Secret {
	return Secret{name: name, value: bytes.Clone(value)}
}

func (s Secret) String() string { return "[secret " + s.name + "]" }

// Value returns a copy of the secret's value, for the orchestrator's
// check of what workers return.
func (s Secret) Value() []byte { return bytes.Clone(s.value) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// SecretGrant lets a worker's requests carry a secret, to Hosts only.
type SecretGrant struct {
	Name  string
	Hosts []string
}

var placeholderRE = regexp.MustCompile(`\{\{secret:([A-Za-z0-9_.-]+)\}\}`)

// substitution is what filling the placeholders of one request did.
type substitution struct {
	used []Secret
}

// fill replaces {{secret:NAME}} in s. Each secret must be granted to the
// worker for host, and configured.
func (b *Broker) fill(worker, host, s string, sub *substitution) (string, error) {
	var err error
	out := placeholderRE.ReplaceAllStringFunc(s, func(m string) string {
		name := placeholderRE.FindStringSubmatch(m)[1]
		sec, e := b.secretFor(worker, name, host)
		if e != nil {
			if err == nil {
				err = e
			}
			return m
		}
		if !slices.ContainsFunc(sub.used, func(x Secret) bool { return x.name == name }) {
			sub.used = append(sub.used, sec)
		}
		return string(sec.value)
	})
	return out, err
}

func (b *Broker) secretFor(worker, name, host string) (Secret, error) {
	var grant *SecretGrant
	for i, g := range b.cfg.SecretGrants[worker] {
		if g.Name == name {
			grant = &b.cfg.SecretGrants[worker][i]
		}
	}
	if grant == nil {
		return Secret{}, fmt.Errorf("secret %s is not granted to worker %s", name, worker)
	}
	if !slices.Contains(grant.Hosts, host) {
		return Secret{}, fmt.Errorf("secret %s may be sent only to %s, not to %s", name, strings.Join(grant.Hosts, ", "), host)
	}
	sec, ok := b.cfg.Secrets[name]
	if !ok {
		return Secret{}, fmt.Errorf("secret %s is not configured (add it under secrets: in sluice.yaml)", name)
	}
	return sec, nil
}

// allowedFor reports whether every secret in used may go to host.
func (b *Broker) allowedFor(worker, host string, used []Secret) bool {
	for _, s := range used {
		if _, err := b.secretFor(worker, s.name, host); err != nil {
			return false
		}
	}
	return true
}

// forms returns the encodings in which a response could echo a secret.
func forms(v []byte) [][]byte {
	out := [][]byte{v}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		out = append(out, []byte(enc.EncodeToString(v)))
	}
	h := hex.EncodeToString(v)
	out = append(out, []byte(h), []byte(strings.ToUpper(h)),
		[]byte(url.QueryEscape(string(v))), []byte(url.PathEscape(string(v))))
	// Longest first, so that a form containing another is removed whole.
	slices.SortFunc(out, func(a, b []byte) int { return len(b) - len(a) })
	return slices.CompactFunc(out, bytes.Equal)
}

// Redacted replaces an echoed secret.
const Redacted = "[redacted]"

// scrub removes every echo of the used secrets from b, in every form of
// forms. A secret shorter than 4 bytes is too short to look for safely and
// is not sent at all (see fill's caller).
func scrub(b []byte, used []Secret) []byte {
	for _, s := range used {
		for _, f := range forms(s.value) {
			if len(f) > 0 {
				b = bytes.ReplaceAll(b, f, []byte(Redacted))
			}
		}
	}
	return b
}

func containsSecret(s string, used []Secret) bool {
	return !bytes.Equal(scrub([]byte(s), used), []byte(s))
}

func scrub2(s string, used []Secret) string { return string(scrub([]byte(s), used)) }
