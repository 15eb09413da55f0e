package email

import (
	"context"
	"encoding/json"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/internal/smtptest"
	"github.com/sluicehq/sluice/orchestrator/egress"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

func TestSendToOutbox(t *testing.T) {
	f := newFixture(t, map[string]any{"address": "me@home.example"}, nil)
	args := `{"to": "Ana Lúcia <ana@x.example>", "subject": "Olá, café?\nBcc: eve@evil.example", "body": "Amanhã às 10h.\nAté já — me"}`
	out, _, err := f.call("send", args, "run1/send")
	if err != nil {
		t.Fatal(err)
	}
	id := out["message_id"].(string)
	if !strings.HasSuffix(id, "@home.example") {
		t.Errorf("message id %q", id)
	}
	outbox := filepath.Join(f.state, "email", "outbox")
	emls, _ := filepath.Glob(filepath.Join(outbox, "*.eml"))
	if len(emls) != 1 {
		t.Fatalf("outbox holds %v", emls)
	}
	raw, _ := os.ReadFile(emls[0])
	m, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	dec := new(mime.WordDecoder)
	subject, _ := dec.DecodeHeader(m.Header.Get("Subject"))
	to, _ := m.Header.AddressList("To")
	if subject != "Olá, café? Bcc: eve@evil.example" || m.Header.Get("Bcc") != "" || len(to) != 1 || to[0].Address != "ana@x.example" ||
		to[0].Name != "Ana Lúcia" || m.Header.Get("From") != "<me@home.example>" || m.Header.Get("Message-Id") != "<"+id+">" {
		t.Errorf("header: %v (subject %q)", m.Header, subject)
	}
	if m.Header.Get("Content-Transfer-Encoding") != "quoted-printable" {
		t.Errorf("encoding %q", m.Header.Get("Content-Transfer-Encoding"))
	}
	body, _ := io.ReadAll(quotedprintable.NewReader(m.Body))
	if string(body) != "Amanhã às 10h.\r\nAté já — me" {
		t.Errorf("body %q", body)
	}

	// A retry sends nothing more and returns the same id.
	out, _, err = f.call("send", args, "run1/send")
	if err != nil || out["message_id"] != id {
		t.Fatalf("retry: %v %v", out, err)
	}
	if emls, _ := filepath.Glob(filepath.Join(outbox, "*.eml")); len(emls) != 1 {
		t.Fatalf("the retry wrote %v", emls)
	}
	// The same key with other arguments is refused.
	_, _, err = f.call("send", `{"to": "eve@evil.example", "subject": "x", "body": "y"}`, "run1/send")
	if err == nil || !strings.Contains(err.Error(), "idempotency key reused") {
		t.Fatalf("reused key: %v", err)
	}
	// Another key is another message.
	if out2, _, err := f.call("send", args, "run2/send"); err != nil || out2["message_id"] == id {
		t.Fatalf("second send: %v %v", out2, err)
	}
}

// A send that was cut short after its record was written is not repeated.
func TestSendInterrupted(t *testing.T) {
	f := newFixture(t, nil, nil)
	args := `{"to": "ana@x.example", "subject": "x", "body": "y"}`
	// What a worker that died in the middle of a send leaves behind: the
	// record, and maybe not even its content.
	keyFile := filepath.Join(f.state, "email", "outbox", "keys", messageName("run1/send")+".json")
	if err := os.WriteFile(keyFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := f.call("send", args, "run1/send")
	if err == nil || !strings.Contains(err.Error(), "may have gone out") {
		t.Fatalf("got %v", err)
	}
	if emls, _ := filepath.Glob(filepath.Join(f.state, "email", "outbox", "*.eml")); len(emls) != 0 {
		t.Fatalf("sent anyway: %v", emls)
	}
}

// Replicas and retries racing on one key send one message.
func TestSendConcurrent(t *testing.T) {
	f := newFixture(t, nil, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]int{}
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := worker.NewCall("send", json.RawMessage(`{"to": "ana@x.example", "subject": "x", "body": "y"}`), nil)
			out, err := f.handlers["send"](context.Background(), c)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if !strings.Contains(err.Error(), "under way") {
					t.Error(err)
				}
				return
			}
			ids[out.(map[string]any)["message_id"].(string)]++
		}()
	}
	wg.Wait()
	emls, _ := filepath.Glob(filepath.Join(f.state, "email", "outbox", "*.eml"))
	if len(emls) != 1 || len(ids) != 1 {
		t.Fatalf("outbox %v, ids %v", emls, ids)
	}
}

// Mail goes out through the real egress broker to a real SMTP server: the
// worker writes a placeholder, the broker fills the password in over TLS.
func TestSendOverSMTP(t *testing.T) {
	const password = "mail-pw-3f9a1c"
	srv := smtptest.Start(t, password)
	host := srv.Addr

	broker := egress.New(egress.Config{
		Grants:       map[string][]string{"email": {host}},
		Track:        func(string, string, string) bool { return true },
		Secrets:      map[string]egress.Secret{"mail_pw": egress.NewSecret("mail_pw", []byte(password))},
		SecretGrants: map[string][]egress.SecretGrant{"email": {{Name: "mail_pw", Hosts: []string{"127.0.0.1"}}}},
		RootCAs:      srv.Pool,
	})
	var seen []schemas.EgressRequest
	var mu sync.Mutex
	m, _ := capabilities.Load("builtin:email")
	m, _ = m.WithGrants(capabilities.Grants{Net: []string{host}})
	f := newFixture(t, map[string]any{"address": "me@home.example",
		"smtp": map[string]any{"url": "smtp://" + host, "username": "me", "password": "{{secret:mail_pw}}"}}, m)
	f.egress = func(ctx context.Context, req schemas.EgressRequest) (*schemas.EgressResponse, error) {
		mu.Lock()
		seen = append(seen, req)
		mu.Unlock()
		b, _ := json.Marshal(req)
		return broker.Do(ctx, "email", "m1", b), nil
	}
	out, _, err := f.call("send", `{"to": "ana@x.example", "subject": "Lunch", "body": "At noon?"}`, "run1/send")
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.Received(); len(got.Auths) != 1 || got.Auths[0] != "me:"+password || got.From != "me@home.example" || len(got.To) != 1 ||
		got.To[0] != "ana@x.example" || len(got.Data) != 1 || !strings.Contains(got.Data[0], "Subject: Lunch") ||
		!strings.Contains(got.Data[0], "Message-Id: <"+out["message_id"].(string)+">") {
		t.Errorf("server got %+v", got)
	}
	// The worker asked with the placeholder; it never held the password.
	for _, r := range seen {
		b, _ := json.Marshal(r)
		if strings.Contains(string(b), password) || r.Headers["Auth-Password"] != "{{secret:mail_pw}}" {
			t.Errorf("request %s", b)
		}
	}
	// A retry does not send again; nothing else is on disk but the record.
	if _, _, err := f.call("send", `{"to": "ana@x.example", "subject": "Lunch", "body": "At noon?"}`, "run1/send"); err != nil {
		t.Fatal(err)
	}
	if got := srv.Received(); len(got.Data) != 1 {
		t.Errorf("the retry sent again: %d messages", len(got.Data))
	}
	srv.RefuseRecipients(true)
	if emls, _ := filepath.Glob(filepath.Join(f.state, "email", "outbox", "*.eml")); len(emls) != 0 {
		t.Errorf("smtp mode wrote to the outbox: %v", emls)
	}

	// A refused recipient fails the call, and a retry may try again.
	_, _, err = f.call("send", `{"to": "nobody@x.example", "subject": "x", "body": "y"}`, "run2/send")
	if err == nil || !strings.Contains(err.Error(), "550") || strings.Contains(err.Error(), password) {
		t.Fatalf("refused recipient: %v", err)
	}
	srv.RefuseRecipients(false)
	if _, _, err := f.call("send", `{"to": "nobody@x.example", "subject": "x", "body": "y"}`, "run2/send"); err != nil {
		t.Fatalf("retry after a refusal: %v", err)
	}
}

// The worker asks the broker for plaintext only where its configuration
// says insecure_plaintext: true; the broker on loopback then sends in the
// clear to a server that offers no TLS.
func TestSendInsecurePlaintext(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		srv := smtptest.StartPlain(t, "pw")
		broker := egress.New(egress.Config{Grants: map[string][]string{"email": {srv.Addr}}, Track: func(string, string, string) bool { return true }})
		m, _ := capabilities.Load("builtin:email")
		m, _ = m.WithGrants(capabilities.Grants{Net: []string{srv.Addr}})
		smtp := map[string]any{"url": "smtp://" + srv.Addr}
		if insecure {
			smtp["insecure_plaintext"] = true
		}
		f := newFixture(t, map[string]any{"address": "me@home.example", "smtp": smtp}, m)
		var seen []schemas.EgressRequest
		f.egress = func(ctx context.Context, req schemas.EgressRequest) (*schemas.EgressResponse, error) {
			seen = append(seen, req)
			b, _ := json.Marshal(req)
			return broker.Do(ctx, "email", "m1", b), nil
		}
		if _, _, err := f.call("send", `{"to": "ana@x.example", "subject": "x", "body": "y"}`, "run1/send"); err != nil {
			t.Fatal(err)
		}
		if got := srv.Received(); len(got.Data) != 1 || got.TLS {
			t.Errorf("insecure %v: server got %+v", insecure, got)
		}
		if v, ok := seen[0].Headers[schemas.SMTPInsecurePlaintext]; ok != insecure || (ok && v != "true") {
			t.Errorf("insecure %v: headers %v", insecure, seen[0].Headers)
		}
	}
}
