package config

import (
	"encoding/json"
	"net/url"
	"strings"
	"time"

	"github.com/sluicehq/sluice/schemas"
)

// ExternalNATS is how the orchestrator uses an existing NATS server or
// cluster in operator mode (decentralized JWT authentication): it signs a
// user JWT for every worker process with the account's key, rather than
// changing the server's configuration.
type ExternalNATS struct {
	// URL of the server, or a comma-separated list of a cluster's servers.
	URL string
	// AccountSeed is where the seed of the account's key, or of one of its
	// signing keys, comes from.
	AccountSeed Secret
	// Creds is where the orchestrator's own user credentials (a .creds
	// file: a user JWT of the same account and its seed) come from.
	Creds Secret
	// CredentialTTL is how long each issued user JWT is valid; zero means
	// the default of one hour.
	CredentialTTL time.Duration
	// AccountSeedPos and CredsPos say where the two sources are configured,
	// for the errors found when they are read.
	AccountSeedPos, CredsPos schemas.Pos
}

// Bounds of nats.credential_ttl: long enough for a worker to start and
// serve calls, short enough that a leaked credential soon expires.
const (
	minCredentialTTL = time.Minute
	maxCredentialTTL = 24 * time.Hour
)

// parseNATS reads the nats key: "embedded" (or nothing), or an object
// naming an external server and the credentials to use it with.
func parseNATS(file string, doc *schemas.Document, raw json.RawMessage, dir string, ds *schemas.Diagnostics) (string, *ExternalNATS) {
	if len(raw) == 0 {
		return Embedded, nil
	}
	var str string
	if json.Unmarshal(raw, &str) == nil {
		switch {
		case str == Embedded || str == "":
			return Embedded, nil
		case strings.HasPrefix(str, "nats://") || strings.HasPrefix(str, "tls://"):
			ds.Add(file, doc.Pos("/nats"), "config_nats_credentials",
				"nats %q: an external server needs the account's key and the orchestrator's credentials: write nats: {url: %s, account_seed: {file: …}, creds: {file: …}} (see docs/operations.md)", str, str)
		default:
			ds.Add(file, doc.Pos("/nats"), "config_bad_nats", "nats %q: want embedded, or {url: nats://host:port, account_seed: …, creds: …}", str)
		}
		return str, nil
	}
	var v struct {
		URL           string `json:"url"`
		AccountSeed   Secret `json:"account_seed"`
		Creds         Secret `json:"creds"`
		CredentialTTL string `json:"credential_ttl"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		ds.Add(file, doc.Pos("/nats"), "config_bad_nats", "nats: %v", err)
		return "", nil
	}
	x := &ExternalNATS{URL: v.URL, AccountSeed: v.AccountSeed, Creds: v.Creds,
		AccountSeedPos: doc.Pos("/nats/account_seed"), CredsPos: doc.Pos("/nats/creds")}
	for _, s := range strings.Split(v.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Hostname() == "" {
			ds.Add(file, doc.Pos("/nats/url"), "config_bad_nats", "nats.url %q: want nats://host:port (or a comma-separated list of them)", s)
			break
		}
	}
	if v.CredentialTTL != "" {
		d, err := time.ParseDuration(v.CredentialTTL)
		switch {
		case err != nil:
			ds.Add(file, doc.Pos("/nats/credential_ttl"), "config_bad_nats", "nats.credential_ttl %q: not a duration (write 30m, 1h, …)", v.CredentialTTL)
		case d < minCredentialTTL || d > maxCredentialTTL:
			ds.Add(file, doc.Pos("/nats/credential_ttl"), "config_bad_nats", "nats.credential_ttl %s: must be between 1m and 24h", v.CredentialTTL)
		default:
			x.CredentialTTL = d
		}
	}
	for _, s := range []*Secret{&x.AccountSeed, &x.Creds} {
		if s.File != "" {
			s.File = abs(dir, s.File, "")
		}
	}
	return v.URL, x
}
