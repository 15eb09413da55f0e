package egress

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/smtptest"
	"github.com/sluicehq/sluice/schemas"
)

// Mail goes out through the broker, which holds the password: the server
// gets it over TLS, the worker never does.
func TestSMTP(t *testing.T) {
	const password = "mail-pass-6b2e9f14"
	srv := smtptest.Start(t, password)
	host := srv.Addr
	b := New(Config{
		Grants:       map[string][]string{"email": {host}, "web": {host}},
		Track:        func(string, string, string) bool { return true },
		Secrets:      map[string]Secret{"mail_pw": NewSecret("mail_pw", []byte(password))},
		SecretGrants: map[string][]SecretGrant{"email": {{Name: "mail_pw", Hosts: []string{"127.0.0.1"}}}},
		RootCAs:      srv.Pool,
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
	if got := srv.Received(); got.From != "me@home.example" || len(got.To) != 2 || len(got.Data) != 1 ||
		!strings.Contains(got.Data[0], "hello") || len(got.Auths) != 1 || !got.TLS {
		t.Errorf("server got %+v", got)
	}

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
	plain := smtptest.StartPlain(t, password)
	b.cfg.Grants["email"] = append(b.cfg.Grants["email"], plain.Addr)
	req, _ := json.Marshal(schemas.EgressRequest{Method: "SMTP", URL: "smtp://" + plain.Addr, Headers: headers, Body: []byte("x")})
	if r := b.Do(context.Background(), "email", "m", req); r.Error == nil || !strings.Contains(r.Error.Message, "no TLS") {
		t.Fatalf("plain server: %+v", r.Error)
	}
	if got := plain.Received(); len(got.Auths) != 0 {
		t.Fatalf("the plain server got a password: %v", got.Auths)
	}
}

// The rule: in the clear only to a server on loopback, or where the
// configuration says insecure_plaintext.
func TestPlaintextAllowed(t *testing.T) {
	for _, tc := range []struct {
		remote   string
		insecure bool
		want     bool
	}{
		{"127.0.0.1", false, true},
		{"127.0.0.53", false, true},
		{"::1", false, true},
		{"::ffff:127.0.0.1", false, true},
		{"93.184.216.34", false, false},
		{"10.0.0.25", false, false},
		{"192.168.1.1", false, false},
		{"2001:db8::25", false, false},
		{"::ffff:10.0.0.25", false, false},
		{"93.184.216.34", true, true},
		{"10.0.0.25", true, true},
	} {
		if got := plaintextAllowed(netip.MustParseAddr(tc.remote), tc.insecure, netip.Addr.IsLoopback); got != tc.want {
			t.Errorf("plaintextAllowed(%s, insecure %v) = %v", tc.remote, tc.insecure, got)
		}
	}
}

// A mail server that is not on loopback and offers no STARTTLS gets
// nothing of the message: not the envelope, not the message, not the
// password. The server runs on 127.0.0.1; the broker is told to judge its
// address as it judges a remote one (the same code, with loopback not
// exempt).
func TestSMTPRequiresTLSToARemoteServer(t *testing.T) {
	const password = "mail-pass-91c4d7"
	const canary = "canary-body-5e0b13a7"
	plain := smtptest.StartPlain(t, password)
	starttls := smtptest.Start(t, password)
	implicit := smtptest.StartImplicitTLS(t, password)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(starttls.CertPEM)
	pool.AppendCertsFromPEM(implicit.CertPEM)
	b := New(Config{
		Grants:       map[string][]string{"email": {plain.Addr, starttls.Addr, implicit.Addr}},
		Track:        func(string, string, string) bool { return true },
		Secrets:      map[string]Secret{"mail_pw": NewSecret("mail_pw", []byte(password))},
		SecretGrants: map[string][]SecretGrant{"email": {{Name: "mail_pw", Hosts: []string{"127.0.0.1"}}}},
		RootCAs:      pool,
	})
	b.isLoopback = func(netip.Addr) bool { return false }
	send := func(url string, headers map[string]string) *schemas.EgressResponse {
		h := map[string]string{"Mail-From": "me@home.example", "Rcpt-To": "ana@x.example"}
		for k, v := range headers {
			h[k] = v
		}
		req, _ := json.Marshal(schemas.EgressRequest{Method: "SMTP", URL: url, Headers: h,
			Body: []byte("Subject: " + canary + "\r\n\r\n" + canary + "\r\n")})
		return b.Do(context.Background(), "email", "m", req)
	}

	// The attack: a server (or someone between) that offers no STARTTLS.
	for _, tc := range []struct {
		name    string
		headers map[string]string
	}{
		{"no credentials", nil},
		{"with credentials", map[string]string{"Auth-Username": "me", "Auth-Password": "{{secret:mail_pw}}"}},
		{"insecure_plaintext false", map[string]string{schemas.SMTPInsecurePlaintext: "false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := send("smtp://"+plain.Addr, tc.headers)
			if r.Error == nil || !strings.Contains(r.Error.Message, "only over TLS") {
				t.Fatalf("sent in the clear to a remote server: status %d, error %+v", r.Status, r.Error)
			}
			if strings.Contains(r.Error.Message, canary) || strings.Contains(r.Error.Message, password) {
				t.Fatalf("the refusal carries the message or the password: %s", r.Error.Message)
			}
			if got := plain.Received(); got.From != "" || len(got.To) != 0 || len(got.Data) != 0 || len(got.Auths) != 0 {
				t.Fatalf("the plain server received %+v", got)
			}
		})
	}
	if r := send("smtp://"+plain.Addr, map[string]string{schemas.SMTPInsecurePlaintext: "yes"}); r.Error == nil ||
		!strings.Contains(r.Error.Message, "must be true or false") || len(plain.Received().Data) != 0 {
		t.Fatalf("bad Insecure-Plaintext value: %+v", r.Error)
	}

	// Controls: STARTTLS and implicit TLS go out, over TLS.
	for _, srv := range []struct {
		url string
		s   *smtptest.Server
	}{{"smtp://" + starttls.Addr, starttls}, {"smtps://" + implicit.Addr, implicit}} {
		r := send(srv.url, map[string]string{"Auth-Username": "me", "Auth-Password": "{{secret:mail_pw}}"})
		if got := srv.s.Received(); r.Error != nil || len(got.Data) != 1 || !got.TLS || len(got.Auths) != 1 || !strings.Contains(got.Data[0], canary) {
			t.Fatalf("%s: error %+v, server got %+v", srv.url, r.Error, got)
		}
	}
	// Insecure-Plaintext: true, as the configuration says in so many
	// words, sends in the clear.
	if r := send("smtp://"+plain.Addr, map[string]string{schemas.SMTPInsecurePlaintext: "true"}); r.Error != nil {
		t.Fatalf("insecure_plaintext: %+v", r.Error)
	}
	if got := plain.Received(); len(got.Data) != 1 || got.TLS || !strings.Contains(got.Data[0], canary) {
		t.Fatalf("insecure_plaintext: the plain server got %+v", got)
	}
	// Where STARTTLS is offered but fails (a certificate not trusted), it is
	// not given up for plaintext, even with Insecure-Plaintext.
	untrusting := New(Config{Grants: map[string][]string{"email": {starttls.Addr}}, Track: b.cfg.Track})
	untrusting.isLoopback = b.isLoopback
	req, _ := json.Marshal(schemas.EgressRequest{Method: "SMTP", URL: "smtp://" + starttls.Addr,
		Headers: map[string]string{"Mail-From": "me@home.example", "Rcpt-To": "bo@x.example", schemas.SMTPInsecurePlaintext: "true"},
		Body:    []byte("x")})
	if r := untrusting.Do(context.Background(), "email", "m", req); r.Error == nil || !strings.Contains(r.Error.Message, "certificate") {
		t.Fatalf("failed STARTTLS: %+v", r.Error)
	}
	if got := starttls.Received(); len(got.Data) != 1 || slices.Contains(got.To, "bo@x.example") {
		t.Fatalf("a failed STARTTLS fell back to plaintext: %+v", got)
	}
}

// On loopback, a server that offers no TLS gets the message in the clear,
// by the production rule; the password still never goes.
func TestSMTPPlaintextOnLoopback(t *testing.T) {
	plain := smtptest.StartPlain(t, "pw")
	b := New(Config{Grants: map[string][]string{"email": {plain.Addr}}, Track: func(string, string, string) bool { return true }})
	req, _ := json.Marshal(schemas.EgressRequest{Method: "SMTP", URL: "smtp://" + plain.Addr,
		Headers: map[string]string{"Mail-From": "me@home.example", "Rcpt-To": "ana@x.example"}, Body: []byte("Subject: hi\r\n\r\nhello\r\n")})
	if r := b.Do(context.Background(), "email", "m", req); r.Error != nil || r.Status != 250 {
		t.Fatalf("loopback: %+v", r.Error)
	}
	if got := plain.Received(); len(got.Data) != 1 || got.TLS {
		t.Fatalf("server got %+v", got)
	}
}
