package natstls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate signed by it, and another CA that signed neither, into dir:
// ca.pem, server.pem, server-key.pem, client.pem, client-key.pem and
// other-ca.pem. Keys are 0600.
func pki(t *testing.T, dir string) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		write(name+".pem", "CERTIFICATE", der, 0o644)
		return c, k
	}
	ca, caKey := newCA("ca")
	newCA("other-ca")
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalPKCS8PrivateKey(k)
		write(name+".pem", "CERTIFICATE", der, 0o644)
		write(name+"-key.pem", "PRIVATE KEY", kb, 0o600)
	}
	leaf("server", 2, x509.ExtKeyUsageServerAuth)
	leaf("client", 3, x509.ExtKeyUsageClientAuth)
}

func TestLoadRefusesWhatCannotWork(t *testing.T) {
	dir := t.TempDir()
	pki(t, dir)
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
	pki(t, dir)
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
