// Package natstls builds the TLS configuration of connections to an
// external NATS server from PEM files: the CA that signed the server's
// certificate, and the client certificate and key a server with
// `verify: true` asks for. The orchestrator, the API client and every
// worker process use it, so that they agree on what the files mean.
package natstls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Files names the PEM files. CA empty means the system's roots; Cert and
// Key go together (both or neither).
type Files struct {
	CA   string `json:"ca,omitempty"`
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
}

// Environment variables that hand the files to a worker process.
const (
	EnvCA   = "SLUICE_NATS_TLS_CA"
	EnvCert = "SLUICE_NATS_TLS_CERT"
	EnvKey  = "SLUICE_NATS_TLS_KEY"
)

// Env returns the variables that name f to a worker process; none when f
// is nil.
func (f *Files) Env() []string {
	if f == nil {
		return nil
	}
	var env []string
	for _, v := range [][2]string{{EnvCA, f.CA}, {EnvCert, f.Cert}, {EnvKey, f.Key}} {
		if v[1] != "" {
			env = append(env, v[0]+"="+v[1])
		}
	}
	return env
}

// FromEnv reads the files named by the environment; nil when none is.
func FromEnv(getenv func(string) string) *Files {
	f := &Files{CA: getenv(EnvCA), Cert: getenv(EnvCert), Key: getenv(EnvKey)}
	if *f == (Files{}) {
		return nil
	}
	return f
}

// Error is a problem with one of the files; Field is ca, cert or key.
type Error struct {
	Field string
	Err   error
}

func (e *Error) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Load reads the files once into a TLS configuration (TLS 1.2 or later),
// so that a connection reconnects without reading them again. A key that
// group or others may read is refused.
func Load(f Files) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, &Error{"ca", err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &Error{"ca", fmt.Errorf("%s holds no PEM certificate", f.CA)}
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.Cert == "" && f.Key == "":
		return cfg, nil
	case f.Cert == "":
		return nil, &Error{"cert", errors.New("a key needs its certificate: set cert as well")}
	case f.Key == "":
		return nil, &Error{"key", errors.New("a certificate needs its key: set key as well")}
	}
	st, err := os.Stat(f.Key)
	if err != nil {
		return nil, &Error{"key", err}
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, &Error{"key", fmt.Errorf("%s is readable by group or others (mode %04o); run chmod 600 %s", f.Key, st.Mode().Perm(), f.Key)}
	}
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		return nil, &Error{"cert", err}
	}
	keyPEM, err := os.ReadFile(f.Key)
	if err != nil {
		return nil, &Error{"key", err}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, &Error{"cert", fmt.Errorf("%s and %s: %v", f.Cert, f.Key, err)}
	}
	cfg.Certificates = []tls.Certificate{pair}
	return cfg, nil
}

// Explain adds to an error from connecting what in nats.tls to look at,
// when the error is the TLS handshake's; other errors are returned as
// they are.
func Explain(err error, f *Files) error {
	if err == nil {
		return nil
	}
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var alert tls.AlertError
	msg := err.Error()
	switch {
	case errors.As(err, &unknown) || strings.Contains(msg, "certificate signed by unknown authority"):
		if f == nil || f.CA == "" {
			return fmt.Errorf("%w (the server's certificate is not signed by a CA this system trusts: set nats.tls.ca)", err)
		}
		return fmt.Errorf("%w (the server's certificate is not signed by nats.tls.ca %s)", err, f.CA)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w (the server's certificate does not name the host of nats.url)", err)
	case errors.As(err, &invalid):
		return fmt.Errorf("%w (the server's certificate is not valid now, or not for a server)", err)
	case strings.Contains(msg, "secure connection required"):
		return fmt.Errorf("%w (the server requires TLS: set nats.tls)", err)
	case errors.As(err, &alert) || strings.Contains(msg, "tls error") || strings.Contains(msg, "tls: "):
		// A server that asks for a client certificate closes the
		// connection once the handshake is done: the client then sees an
		// alert, an EOF, a reset or a broken pipe, as timing has it.
		if f == nil || f.Cert == "" {
			return fmt.Errorf("%w (the server may ask for a client certificate: set nats.tls.cert and nats.tls.key)", err)
		}
		return fmt.Errorf("%w (the server refused the client certificate nats.tls.cert %s, or its CA)", err, f.Cert)
	}
	return err
}
