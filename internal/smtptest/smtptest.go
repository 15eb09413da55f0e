// Package smtptest runs a real SMTP server on loopback for tests, with
// STARTTLS (a self-signed certificate for 127.0.0.1) and AUTH PLAIN, and
// records what it was sent.
package smtptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Server is a running SMTP server.
type Server struct {
	// Addr is its host:port on 127.0.0.1.
	Addr string
	// CertPEM is its certificate, for clients that trust files; Pool
	// holds the same certificate for Go clients. Both are empty for a
	// server without TLS.
	CertPEM []byte
	Pool    *x509.CertPool

	password string
	mu       sync.Mutex
	got      Received
	refuse   bool
}

// Received is what the server was sent.
type Received struct {
	// Auths are "user:password" of each AUTH, and TLS whether the last
	// AUTH or message came over TLS.
	Auths []string
	TLS   bool
	From  string
	To    []string
	Data  []string
}

// Start runs a server with STARTTLS that accepts password for any user.
// It stops when the test ends.
func Start(t testing.TB, password string) *Server {
	t.Helper()
	s := &Server{password: password}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &session{s, c}, nil }))
	srv.Domain = "mail.test"
	var cert tls.Certificate
	s.CertPEM, cert = selfSigned(t)
	s.Pool = x509.NewCertPool()
	s.Pool.AppendCertsFromPEM(s.CertPEM)
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.serve(t, srv)
	return s
}

// StartImplicitTLS runs a server that speaks TLS from the start (smtps),
// with a certificate for 127.0.0.1 and AUTH PLAIN.
func StartImplicitTLS(t testing.TB, password string) *Server {
	t.Helper()
	s := &Server{password: password}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &session{s, c}, nil }))
	srv.Domain = "mail.test"
	var cert tls.Certificate
	s.CertPEM, cert = selfSigned(t)
	s.Pool = x509.NewCertPool()
	s.Pool.AppendCertsFromPEM(s.CertPEM)
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv.TLSConfig)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s.Addr = ln.Addr().String()
	return s
}

// StartPlain runs a server that offers no TLS and takes AUTH in the
// clear: a client must refuse to send it a password.
func StartPlain(t testing.TB, password string) *Server {
	t.Helper()
	s := &Server{password: password}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &session{s, c}, nil }))
	srv.AllowInsecureAuth = true
	s.serve(t, srv)
	return s
}

func (s *Server) serve(t testing.TB, srv *smtp.Server) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s.Addr = ln.Addr().String()
}

// Received returns a copy of what the server was sent so far.
func (s *Server) Received() Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.got
	r.Auths = append([]string(nil), r.Auths...)
	r.To = append([]string(nil), r.To...)
	r.Data = append([]string(nil), r.Data...)
	return r
}

// RefuseRecipients makes the server refuse (or accept again) every
// recipient.
func (s *Server) RefuseRecipients(refuse bool) {
	s.mu.Lock()
	s.refuse = refuse
	s.mu.Unlock()
}

// selfSigned returns a certificate for 127.0.0.1, as PEM and as a key pair.
func selfSigned(t testing.TB) ([]byte, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

type session struct {
	s *Server
	c *smtp.Conn
}

func (x *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (x *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		x.s.mu.Lock()
		defer x.s.mu.Unlock()
		x.s.got.Auths = append(x.s.got.Auths, user+":"+pass)
		_, x.s.got.TLS = x.c.TLSConnectionState()
		if pass != x.s.password {
			return errors.New("bad password")
		}
		return nil
	}), nil
}

func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	x.s.got.From = from
	return nil
}

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	if x.s.refuse {
		return &smtp.SMTPError{Code: 550, Message: "no such user"}
	}
	x.s.got.To = append(x.s.got.To, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	x.s.got.Data = append(x.s.got.Data, string(b))
	_, x.s.got.TLS = x.c.TLSConnectionState()
	return err
}

func (x *session) Reset()        {}
func (x *session) Logout() error { return nil }
