package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/sluicehq/sluice/internal/natstls/tlstest"
)

// startTLSNATSServer runs a NATS server in this process, in operator mode
// (the accounts of m preloaded, JetStream on), on 127.0.0.1, that speaks
// only TLS and verifies client certificates against pkiDir/ca.pem. It
// returns the client URL.
func startTLSNATSServer(t *testing.T, m operatorMode, pkiDir string) string {
	t.Helper()
	op, err := jwt.DecodeOperatorClaims(m.operatorJWT)
	if err != nil {
		t.Fatal(err)
	}
	res := &server.MemAccResolver{}
	_ = res.Store(m.accPub, m.accJWT)
	_ = res.Store(m.sysPub, m.sysJWT)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: filepath.Join(pkiDir, "server.pem"),
		KeyFile: filepath.Join(pkiDir, "server-key.pem"), CaFile: filepath.Join(pkiDir, "ca.pem"), Verify: true, Timeout: 5})
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(&server.Options{ServerName: "sluice-tls", Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(), TrustedOperators: []*jwt.OperatorClaims{op},
		SystemAccount: m.sysPub, AccountResolver: res,
		TLS: true, TLSVerify: true, TLSConfig: tc, TLSTimeout: 5})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatal("the TLS NATS server is not ready")
	}
	return s.ClientURL()
}

// sluice up against a NATS server that speaks only TLS and verifies client
// certificates: with nats.tls naming the CA, the client certificate and
// its key, the orchestrator, every worker and the command line connect,
// and a flow runs (the web worker's call and the API request went over
// TLS: the server takes nothing else). The wrong CA, no client
// certificate, and a key others may read each stop sluice up with a
// non-zero exit and an error that says what to fix.
func TestExternalNATSServerWithTLS(t *testing.T) {
	m := newOperatorMode(t)
	host := site(t, map[string]string{"/hotel": honestPage})
	w := newWorkspace(t, map[string]string{"fetch.yaml": fetchFlow})
	tlstest.WritePKI(t, w.path("nats"))
	url := startTLSNATSServer(t, m, w.path("nats"))
	if err := os.WriteFile(w.path("nats/account.nk"), m.signingSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.path("nats/orchestrator.creds"), m.orchestratorCred, 0o600); err != nil {
		t.Fatal(err)
	}
	deployment := func(tls string) string {
		return fmt.Sprintf(`nats:
  url: %s
  account_seed: {file: nats/account.nk}
  creds: {file: nats/orchestrator.creds}
  tls: %s
workers:
  - manifest: builtin:web
    grants: {net: [%q]}
`, url, tls, host)
	}

	w.write("sluice.yaml", deployment("{ca: nats/ca.pem, cert: nats/client.pem, key: nats/client-key.pem}"))
	up := upAndReady(t, w)
	r := w.sluice("run", "fetch.yaml", "--input", "url=http://"+host+"/hotel", "--json")
	if r.code != 0 {
		t.Fatalf("sluice run: exit %d", r.code)
	}
	if run := decodeRun(t, r.stdout); run.Status != "completed" || run.Outputs["title"] != "Hotel Lisboa" {
		t.Fatalf("fetch: %+v", run)
	}
	if d := w.sluice("doctor"); !strings.Contains(d.stdout, "bus tls") {
		t.Errorf("doctor does not report nats.tls:\n%s", d.stdout)
	}
	up.cmd.Process.Signal(syscall.SIGINT)
	if code := up.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("sluice up exited %d after SIGINT", code)
	}

	for _, tc := range []struct {
		name, tls string
		want      []string
	}{
		{"another CA", "{ca: nats/other-ca.pem, cert: nats/client.pem, key: nats/client-key.pem}",
			[]string{"certificate signed by unknown authority", "not signed by nats.tls.ca", "other-ca.pem"}},
		{"no client certificate", "{ca: nats/ca.pem}",
			[]string{"set nats.tls.cert and nats.tls.key"}},
		{"a key others may read", "{ca: nats/ca.pem, cert: nats/client.pem, key: nats/open-key.pem}",
			[]string{"sluice.yaml:5:", "nats.tls.key", "readable by group or others"}},
		{"no CA file", "{ca: nats/missing.pem, cert: nats/client.pem, key: nats/client-key.pem}",
			[]string{"sluice.yaml:5:", "nats.tls.ca", "missing.pem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, _ := os.ReadFile(w.path("nats/client-key.pem"))
			if err := os.WriteFile(w.path("nats/open-key.pem"), key, 0o644); err != nil {
				t.Fatal(err)
			}
			w.write("sluice.yaml", deployment(tc.tls))
			r := w.sluice("up")
			if r.code != 1 {
				t.Fatalf("sluice up exited %d, want 1", r.code)
			}
			for _, s := range tc.want {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr does not say %q:\n%s", s, r.stderr)
				}
			}
			if strings.Contains(r.stderr, "BEGIN PRIVATE KEY") {
				t.Errorf("the key is in the error")
			}
		})
	}
}
