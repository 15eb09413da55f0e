package config

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/schemas"
)

func TestNATS(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		src      string
		want     string        // Config.NATS
		ttl      time.Duration // of ExternalNATS, when external
		replicas int           // Config.Replicas(); 0 means 1
		wantCode string        // the one diagnostic expected, if any
		wantLine int
		wantCol  int
	}{
		{name: "default", src: "state: s\n", want: Embedded},
		{name: "embedded", src: "nats: embedded\n", want: Embedded},
		{name: "external", src: `nats:
  url: nats://127.0.0.1:4222
  account_seed: {file: nats/account.nk}
  creds: {env: SLUICE_ORCH_CREDS}
`, want: "nats://127.0.0.1:4222"},
		{name: "cluster and ttl", src: `nats:
  url: "nats://a:4222, tls://b:4222"
  account_seed: {env: ACCOUNT_SEED}
  creds: {file: /etc/sluice/orchestrator.creds}
  credential_ttl: 15m
`, want: "nats://a:4222, tls://b:4222", ttl: 15 * time.Minute},
		{name: "cluster as a list, three replicas", src: `nats:
  urls: [nats://a:4222, nats://b:4222, nats://c:4222]
  account_seed: {env: ACCOUNT_SEED}
  creds: {file: orchestrator.creds}
  replicas: 3
`, want: "nats://a:4222,nats://b:4222,nats://c:4222", replicas: 3},
		{name: "url and urls", src: `nats:
  url: nats://a:4222
  urls: [nats://b:4222]
  account_seed: {env: A}
  creds: {env: C}
`, wantCode: "config_bad_nats", wantLine: 3, wantCol: 9},
		{name: "neither url nor urls", src: `nats:
  account_seed: {env: A}
  creds: {env: C}
`, wantCode: "config_bad_nats", wantLine: 2, wantCol: 3},
		{name: "bad url in the list", src: `nats:
  urls:
    - nats://a:4222
    - http://b:4222
  account_seed: {env: A}
  creds: {env: C}
`, wantCode: "config_bad_nats", wantLine: 4, wantCol: 7},
		{name: "empty list", src: `nats:
  urls: []
  account_seed: {env: A}
  creds: {env: C}
`, wantCode: schemas.CodeSchemaMismatch, wantLine: 2, wantCol: 9},
		{name: "too many replicas", src: `nats:
  urls: [nats://a:4222, nats://b:4222, nats://c:4222]
  account_seed: {env: A}
  creds: {env: C}
  replicas: 7
`, wantCode: "config_bad_nats", wantLine: 5, wantCol: 13},
		{name: "no replicas", src: `nats:
  url: nats://a:4222
  account_seed: {env: A}
  creds: {env: C}
  replicas: 0
`, wantCode: "config_bad_nats", wantLine: 5, wantCol: 13},
		{name: "replicas not a number", src: `nats:
  url: nats://a:4222
  account_seed: {env: A}
  creds: {env: C}
  replicas: three
`, wantCode: schemas.CodeSchemaMismatch, wantLine: 5, wantCol: 13},
		{name: "url without credentials", src: "state: s\nnats: nats://127.0.0.1:4222\n",
			wantCode: "config_nats_credentials", wantLine: 2, wantCol: 7},
		{name: "neither embedded nor a url", src: "nats: local\n", wantCode: "config_bad_nats", wantLine: 1, wantCol: 7},
		{name: "bad url", src: `nats:
  url: http://127.0.0.1:4222
  account_seed: {env: A}
  creds: {env: C}
`, wantCode: "config_bad_nats", wantLine: 2, wantCol: 8},
		{name: "bad ttl", src: `nats:
  url: nats://127.0.0.1:4222
  account_seed: {env: A}
  creds: {env: C}
  credential_ttl: 10s
`, wantCode: "config_bad_nats", wantLine: 5, wantCol: 19},
		{name: "missing creds", src: `nats:
  url: nats://127.0.0.1:4222
  account_seed: {env: A}
`, wantCode: schemas.CodeSchemaMissing, wantLine: 2, wantCol: 3},
		{name: "unknown key", src: `nats:
  url: nats://127.0.0.1:4222
  account_seed: {env: A}
  creds: {env: C}
  seed_file: x
`, wantCode: schemas.CodeSchemaUnknown, wantLine: 5, wantCol: 3},
		{name: "tls with a cert and no key", src: `nats:
  url: tls://127.0.0.1:4222
  account_seed: {env: A}
  creds: {env: C}
  tls: {ca: ca.pem, cert: client.pem}
`, wantCode: "config_bad_nats", wantLine: 5, wantCol: 27},
		{name: "tls empty", src: `nats:
  url: tls://127.0.0.1:4222
  account_seed: {env: A}
  creds: {env: C}
  tls: {}
`, wantCode: "config_bad_nats", wantLine: 5, wantCol: 8},
		{name: "tls with an unknown key", src: `nats:
  url: tls://127.0.0.1:4222
  account_seed: {env: A}
  creds: {env: C}
  tls: {ca: ca.pem, verify: true}
`, wantCode: schemas.CodeSchemaUnknown, wantLine: 5, wantCol: 21},
		{name: "source with both env and file", src: `nats:
  url: nats://127.0.0.1:4222
  account_seed: {env: A, file: a.nk}
  creds: {env: C}
`, wantCode: schemas.CodeSchemaMismatch, wantLine: 3, wantCol: 17},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("sluice.yaml", []byte(tc.src+"workers: []\n"), dir)
			if tc.wantCode != "" {
				ds, ok := schemas.AsDiagnostics(err)
				if !ok || len(ds) != 1 {
					t.Fatalf("got %v, want one %s diagnostic", err, tc.wantCode)
				}
				if d := ds[0]; d.Code != tc.wantCode || d.Line != tc.wantLine || d.Col != tc.wantCol {
					t.Fatalf("got %s at %d:%d (%s), want %s at %d:%d", d.Code, d.Line, d.Col, d.Message, tc.wantCode, tc.wantLine, tc.wantCol)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.NATS != tc.want {
				t.Errorf("NATS = %q, want %q", c.NATS, tc.want)
			}
			if want := max(tc.replicas, 1); c.Replicas() != want {
				t.Errorf("Replicas() = %d, want %d", c.Replicas(), want)
			}
			if (c.ExternalNATS != nil) != (tc.want != Embedded) {
				t.Fatalf("ExternalNATS = %+v", c.ExternalNATS)
			}
			if x := c.ExternalNATS; x != nil {
				if x.CredentialTTL != tc.ttl {
					t.Errorf("CredentialTTL = %s, want %s", x.CredentialTTL, tc.ttl)
				}
				if f := x.AccountSeed.File; f != "" && !filepath.IsAbs(f) {
					t.Errorf("account seed file %q is not absolute", f)
				}
				if x.AccountSeedPos.Line != 3 || x.CredsPos.Line != 4 {
					t.Errorf("positions: %+v %+v", x.AccountSeedPos, x.CredsPos)
				}
			}
		})
	}
}

// nats.tls: the paths are made absolute, relative to the directory of
// sluice.yaml, and each key's position is kept for the errors found when
// the files are read.
func TestNATSTLS(t *testing.T) {
	dir := t.TempDir()
	c, err := Parse("sluice.yaml", []byte(`nats:
  url: tls://127.0.0.1:4222
  account_seed: {env: A}
  creds: {env: C}
  tls:
    ca: nats/ca.pem
    cert: /etc/nats/client.pem
    key: nats/client-key.pem
workers: []
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	x := c.ExternalNATS
	if x.TLS == nil || x.TLS.CA != filepath.Join(dir, "nats/ca.pem") || x.TLS.Cert != "/etc/nats/client.pem" ||
		x.TLS.Key != filepath.Join(dir, "nats/client-key.pem") {
		t.Fatalf("TLS = %+v", x.TLS)
	}
	if x.TLSPos["ca"] != (schemas.Pos{Line: 6, Col: 9}) || x.TLSPos["key"] != (schemas.Pos{Line: 8, Col: 10}) {
		t.Errorf("positions %+v", x.TLSPos)
	}
}
