package egress

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sluicehq/sluice/schemas"
)

// selfSigned returns a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

type mailbox struct {
	mu       sync.Mutex
	auth     []string
	from     string
	to       []string
	data     string
	password string
}

type session struct{ m *mailbox }

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		s.m.mu.Lock()
		defer s.m.mu.Unlock()
		s.m.auth = append(s.m.auth, user)
		if pass != s.m.password {
			return errors.New("bad password")
		}
		return nil
	}), nil
}
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.m.mu.Lock()
	s.m.from = from
	s.m.mu.Unlock()
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.m.mu.Lock()
	s.m.to = append(s.m.to, to)
	s.m.mu.Unlock()
	return nil
}
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.m.mu.Lock()
	s.m.data = string(b)
	s.m.mu.Unlock()
	return err
}
func (s *session) Reset()        {}
func (s *session) Logout() error { return nil }

// Mail goes out through the broker, which holds the password: the server
// gets it over TLS, the worker never does.
func TestSMTP(t *testing.T) {
	const password = "mail-pass-6b2e9f14"
	cert, pool := selfSigned(t)
	m := &mailbox{password: password}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{m}, nil }))
	srv.Domain = "mail.test"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	host := ln.Addr().String()
	b := New(Config{
		Grants:       map[string][]string{"email": {host}, "web": {host}},
		Track:        func(string, string, string) bool { return true },
		Secrets:      map[string]Secret{"mail_pw": NewSecret("mail_pw", []byte(password))},
		SecretGrants: map[string][]SecretGrant{"email": {{Name: "mail_pw", Hosts: []string{"127.0.0.1"}}}},
		RootCAs:      pool,
	})
	send := func(worker string, headers map[string]string, body string) *schemas.EgressResponse {
		req, _ := json.Marshal(schemas.EgressRequest{Method: "SMTP", URL: "smtp://" + host, Headers: headers, Body: []byte(body)})
		return b.Do(context.Background(), worker, "m", req)
	}
	headers := map[string]string{"Mail-From": "me@home.example", "Rcpt-To": "ana@x.example, bo@y.example",
		"Auth-Username": "me", "Auth-Password": "{{secret:mail_pw}}"}
	resp := send("email", headers, "Subject: hi\r\n\r\nhello\r\n")
	if resp.Error != nil || resp.Status != 250 {
		t.Fatalf("send: %+v", resp.Error)
	}
	m.mu.Lock()
	if m.from != "me@home.example" || len(m.to) != 2 || !strings.Contains(m.data, "hello") || len(m.auth) != 1 {
		t.Errorf("server got from %q to %v data %q auth %v", m.from, m.to, m.data, m.auth)
	}
	m.mu.Unlock()

	for _, tc := range []struct {
		name, worker, want string
		headers            map[string]string
		body               string
	}{
		{"worker without the secret", "web", "not granted to worker web", headers, "x"},
		{"secret in the message", "email", "may not be put in a message",
			map[string]string{"Mail-From": "a@b", "Rcpt-To": "c@d"}, "pw {{secret:mail_pw}}"},
		{"wrong password", "email", "bad password", map[string]string{"Mail-From": "a@b", "Rcpt-To": "c@d",
			"Auth-Username": "me", "Auth-Password": "not-the-password"}, "x"},
		{"no recipient", "email", "needs Mail-From and Rcpt-To", map[string]string{"Mail-From": "a@b"}, "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := send(tc.worker, tc.headers, tc.body)
			if r.Error == nil || !strings.Contains(r.Error.Message, tc.want) || strings.Contains(r.Error.Message, password) {
				t.Fatalf("got %+v, want %q", r.Error, tc.want)
			}
		})
	}
	// A server that offers no TLS never gets the password.
	plain := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{m}, nil }))
	plain.AllowInsecureAuth = true
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	go plain.Serve(ln2)
	defer plain.Close()
	b.cfg.Grants["email"] = append(b.cfg.Grants["email"], ln2.Addr().String())
	req, _ := json.Marshal(schemas.EgressRequest{Method: "SMTP", URL: "smtp://" + ln2.Addr().String(), Headers: headers, Body: []byte("x")})
	if r := b.Do(context.Background(), "email", "m", req); r.Error == nil || !strings.Contains(r.Error.Message, "no TLS") {
		t.Fatalf("plain server: %+v", r.Error)
	}
}
