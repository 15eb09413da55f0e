package natstls

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/internal/natstls/tlstest"
)

func TestLoadRefusesWhatCannotWork(t *testing.T) {
	dir := t.TempDir()
	tlstest.WritePKI(t, dir)
	p := func(name string) string { return filepath.Join(dir, name) }
	if err := os.WriteFile(p("open-key.pem"), mustRead(t, p("client-key.pem")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files Files
		field string
		want  string
	}{
		{"no CA file", Files{CA: p("nope.pem")}, "ca", "no such file"},
		{"a CA that is not PEM", Files{CA: p("client-key.pem")}, "ca", "holds no PEM certificate"},
		{"a cert without its key", Files{CA: p("ca.pem"), Cert: p("client.pem")}, "key", "set key as well"},
		{"a key without its cert", Files{Key: p("client-key.pem")}, "cert", "set cert as well"},
		{"a key others may read", Files{Cert: p("client.pem"), Key: p("open-key.pem")}, "key", "readable by group or others (mode 0644)"},
		{"a key of another certificate", Files{Cert: p("server.pem"), Key: p("client-key.pem")}, "cert", "private key does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.files)
			var fe *Error
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("err %v, want %s: …%s…", err, tc.field, tc.want)
			}
		})
	}
	c, err := Load(Files{CA: p("ca.pem"), Cert: p("client.pem"), Key: p("client-key.pem")})
	if err != nil || c.RootCAs == nil || len(c.Certificates) != 1 {
		t.Fatalf("Load: %+v %v", c, err)
	}
}

func TestEnvRoundTrip(t *testing.T) {
	f := &Files{CA: "/etc/nats/ca.pem", Cert: "/etc/nats/c.pem", Key: "/etc/nats/k.pem"}
	env := map[string]string{}
	for _, kv := range f.Env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if got := FromEnv(func(k string) string { return env[k] }); got == nil || *got != *f {
		t.Fatalf("FromEnv(Env()) = %+v, want %+v", got, f)
	}
	if FromEnv(func(string) string { return "" }) != nil || (*Files)(nil).Env() != nil {
		t.Fatal("no files should mean no variables and no TLS")
	}
}

// Against a real nats-server that verifies client certificates: the
// files connect; the wrong CA, and no client certificate, are refused,
// and the error says which key of nats.tls to look at.
func TestVerifiedClientCertificates(t *testing.T) {
	dir := t.TempDir()
	tlstest.WritePKI(t, dir)
	p := func(name string) string { return filepath.Join(dir, name) }
	serverTLS, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: p("server.pem"), KeyFile: p("server-key.pem"),
		CaFile: p("ca.pem"), Verify: true, Timeout: 5})
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		TLS: true, TLSVerify: true, TLSConfig: serverTLS, TLSTimeout: 5})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	url := s.ClientURL()
	connect := func(f Files) error {
		c, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(url, nats.Secure(c), nats.MaxReconnects(0), nats.Timeout(10*time.Second))
		if err == nil {
			nc.Close()
		}
		return Explain(err, &f)
	}
	if err := connect(Files{CA: p("ca.pem"), Cert: p("client.pem"), Key: p("client-key.pem")}); err != nil {
		t.Fatalf("with the right files: %v", err)
	}
	err = connect(Files{CA: p("other-ca.pem"), Cert: p("client.pem"), Key: p("client-key.pem")})
	t.Logf("another CA: %v", err)
	if err == nil ||
		!strings.Contains(err.Error(), "not signed by nats.tls.ca") {
		t.Errorf("with another CA: %v", err)
	}
	err = connect(Files{CA: p("ca.pem")})
	t.Logf("no client certificate: %v", err)
	if err == nil || !strings.Contains(err.Error(), "set nats.tls.cert and nats.tls.key") {
		t.Errorf("without a client certificate: %v", err)
	}
	// Without TLS at all, the server says TLS is required.
	nc, err := nats.Connect(url, nats.MaxReconnects(0))
	if err == nil {
		nc.Close()
	}
	err = Explain(err, nil)
	t.Logf("no TLS: %v", err)
	if err == nil || !strings.Contains(err.Error(), "nats.tls") {
		t.Errorf("without TLS: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
