package egress

import (
	"context"
	"encoding/json"
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
