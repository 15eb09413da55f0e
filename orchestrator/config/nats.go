package config

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/natstls"
	"github.com/sluicehq/sluice/schemas"
)

// ExternalNATS is how the orchestrator uses an existing NATS server or
// cluster in operator mode (decentralized JWT authentication): it signs a
// user JWT for every worker process with the account's key, rather than
// changing the server's configuration.
type ExternalNATS struct {
	// URL of the server, or a comma-separated list of a cluster's servers
	// (nats.urls is written this way).
	URL string
	// Replicas of every JetStream stream and bucket the orchestrator
	// keeps: 1 on one server, 3 on a cluster of three or more.
	Replicas int
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
	// TLS names the PEM files of nats.tls (absolute paths), for the
	// orchestrator's connections, the API client's and every worker's;
	// nil when nats.tls is not set.
	TLS *natstls.Files
	// TLSPos says where nats.tls and each of its keys are configured, for
	// the errors found when the files are read.
	TLSPos map[string]schemas.Pos
}

// Bounds of nats.credential_ttl: long enough for a worker to start and
// serve calls, short enough that a leaked credential soon expires.
const (
	minCredentialTTL = time.Minute
	maxCredentialTTL = 24 * time.Hour
)

// Bounds of nats.replicas, as JetStream allows them.
const (
	minReplicas = 1
	maxReplicas = 5
)

// Replicas is how many copies of each JetStream stream and bucket the
// orchestrator keeps: nats.replicas on an external server or cluster, 1
// on the embedded server.
func (c *Config) Replicas() int {
	if c.ExternalNATS == nil || c.ExternalNATS.Replicas < minReplicas {
		return minReplicas
	}
	return c.ExternalNATS.Replicas
}

// parseNATS reads the nats key: "embedded" (or nothing), or an object
// naming an external server and the credentials to use it with.
func parseNATS(file string, doc *schemas.Document, raw json.RawMessage, dir string, ds *schemas.Diagnostics) (string, *ExternalNATS) {
	if len(raw) == 0 {
		return Embedded, nil
	}
	var str string
	if json.Unmarshal(raw, &str) == nil {
		return natsString(file, doc, str, ds), nil
	}
	var v natsObject
	if err := json.Unmarshal(raw, &v); err != nil {
		ds.Add(file, doc.Pos("/nats"), "config_bad_nats", "nats: %v", err)
		return "", nil
	}
	x := &ExternalNATS{AccountSeed: v.AccountSeed, Creds: v.Creds, Replicas: minReplicas,
		AccountSeedPos: doc.Pos("/nats/account_seed"), CredsPos: doc.Pos("/nats/creds")}
	x.URL = v.servers(file, doc, ds)
	v.limits(x, file, doc, ds)
	for _, s := range []*Secret{&x.AccountSeed, &x.Creds} {
		if s.File != "" {
			s.File = abs(dir, s.File, "")
		}
	}
	if v.TLS != nil {
		x.TLS = &natstls.Files{CA: abs(dir, v.TLS.CA, ""), Cert: abs(dir, v.TLS.Cert, ""), Key: abs(dir, v.TLS.Key, "")}
		x.TLSPos = map[string]schemas.Pos{"": doc.Pos("/nats/tls")}
		for _, k := range []string{"ca", "cert", "key"} {
			x.TLSPos[k] = doc.Pos("/nats/tls/" + k)
		}
		switch {
		case *x.TLS == (natstls.Files{}):
			ds.Add(file, x.TLSPos[""], "config_bad_nats", "nats.tls: name the CA that signed the server's certificate (ca: FILE), and the client certificate (cert: FILE, key: FILE) if the server asks for one")
		case x.TLS.Cert != "" && x.TLS.Key == "":
			ds.Add(file, x.TLSPos["cert"], "config_bad_nats", "nats.tls: cert needs its key: set key: FILE as well")
		case x.TLS.Key != "" && x.TLS.Cert == "":
			ds.Add(file, x.TLSPos["key"], "config_bad_nats", "nats.tls: key needs its certificate: set cert: FILE as well")
		}
	}
	return x.URL, x
}

// natsString reads nats: as a string: only "embedded" is one; a URL alone
// lacks the credentials an external server needs.
func natsString(file string, doc *schemas.Document, str string, ds *schemas.Diagnostics) string {
	switch {
	case str == Embedded || str == "":
		return Embedded
	case strings.HasPrefix(str, "nats://") || strings.HasPrefix(str, "tls://"):
		ds.Add(file, doc.Pos("/nats"), "config_nats_credentials",
			"nats %q: an external server needs the account's key and the orchestrator's credentials: write nats: {url: %s, account_seed: {file: …}, creds: {file: …}} (see docs/operations.md)", str, str)
	default:
		ds.Add(file, doc.Pos("/nats"), "config_bad_nats", "nats %q: want embedded, or {url: nats://host:port, account_seed: …, creds: …}", str)
	}
	return str
}

// natsObject is nats: written as an object: an external server.
type natsObject struct {
	URL           string   `json:"url"`
	URLs          []string `json:"urls"`
	Replicas      *int     `json:"replicas"`
	AccountSeed   Secret   `json:"account_seed"`
	Creds         Secret   `json:"creds"`
	CredentialTTL string   `json:"credential_ttl"`
	TLS           *struct {
		CA   string `json:"ca"`
		Cert string `json:"cert"`
		Key  string `json:"key"`
	} `json:"tls"`
}

// servers checks url or urls (one of them) and returns the servers as
// one comma-separated URL.
func (v *natsObject) servers(file string, doc *schemas.Document, ds *schemas.Diagnostics) string {
	switch {
	case v.URL != "" && len(v.URLs) > 0:
		ds.Add(file, doc.Pos("/nats/urls"), "config_bad_nats", "nats: give url (one server) or urls (a cluster's servers), not both")
		return ""
	case v.URL == "" && len(v.URLs) == 0:
		ds.Add(file, doc.Pos("/nats"), "config_bad_nats", "nats: name the server with url: nats://host:port, or a cluster's servers with urls: [nats://host:port, …]")
	case len(v.URLs) > 0:
		for i, s := range v.URLs {
			if !goodURL(s) {
				ds.Add(file, doc.Pos("/nats/urls/"+strconv.Itoa(i)), "config_bad_nats", "nats.urls[%d] %q: want nats://host:port", i, s)
			}
		}
		return strings.Join(v.URLs, ",")
	default:
		for _, s := range strings.Split(v.URL, ",") {
			if !goodURL(s) {
				ds.Add(file, doc.Pos("/nats/url"), "config_bad_nats", "nats.url %q: want nats://host:port (or a cluster's servers as urls: [nats://host:port, …])", s)
				break
			}
		}
	}
	return v.URL
}

// limits checks replicas and credential_ttl and sets them on x.
func (v *natsObject) limits(x *ExternalNATS, file string, doc *schemas.Document, ds *schemas.Diagnostics) {
	if v.Replicas != nil {
		if n := *v.Replicas; n < minReplicas || n > maxReplicas {
			ds.Add(file, doc.Pos("/nats/replicas"), "config_bad_nats", "nats.replicas %d: must be between %d and %d (3 on a cluster of three servers)", n, minReplicas, maxReplicas)
		} else {
			x.Replicas = n
		}
	}
	if v.CredentialTTL == "" {
		return
	}
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

// goodURL says whether s is the URL of one NATS server.
func goodURL(s string) bool {
	u, err := url.Parse(strings.TrimSpace(s))
	return err == nil && (u.Scheme == "nats" || u.Scheme == "tls") && u.Hostname() != ""
}
