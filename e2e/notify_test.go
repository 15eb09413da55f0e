package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// inbox is a local server that speaks a notifier's protocol and keeps what
// it was sent.
type inbox struct {
	mu   sync.Mutex
	msgs []string // method, path, authorization, headers and body
}

func (b *inbox) serve(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.msgs = append(b.msgs, strings.Join([]string{r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization"),
			r.Header.Get("Title"), r.Header.Get("Click"), string(body)}, "\n"))
		b.mu.Unlock()
		io.WriteString(w, `{"event_id": "$1"}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func (b *inbox) wait(t *testing.T, what string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		b.mu.Lock()
		if len(b.msgs) > 0 {
			m := b.msgs[0]
			b.mu.Unlock()
			return m
		}
		b.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%s was never notified", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A call held by sluice up is told to every configured notifier, each in
// its own protocol: the tool, the step, the approval and a link to the
// page without its key; never an argument's value, nor the key. The
// tokens are read from secrets and sent only to their own notifier.
func TestHeldCallsAreNotified(t *testing.T) {
	host := site(t, map[string]string{"/poisoned": poisonedPage})
	var hook, ntfy, slack, matrix inbox
	hookURL, ntfyURL, slackURL, matrixURL := hook.serve(t), ntfy.serve(t), slack.serve(t), matrix.serve(t)
	t.Setenv("HOOK_TOKEN", "tok-hook-1")
	t.Setenv("SLACK_URL", slackURL+"/services/T0/B0/secretpath")
	t.Setenv("MATRIX_TOKEN", "tok-matrix-1")
	w := newWorkspace(t, map[string]string{"answers.yaml": answers, "book.yaml": bookFlow,
		"sluice.yaml": deployment(host, "hijackable") + `notify:
  - {kind: webhook, url: "` + hookURL + `/hook", token_secret: hook_token}
  - {kind: ntfy, url: "` + ntfyURL + `/approvals"}
  - {kind: slack, url_secret: slack_url}
  - {kind: matrix, url: "` + matrixURL + `", room: "!ops:example.org", token_secret: matrix_token}
secrets:
  hook_token: {env: HOOK_TOKEN}
  slack_url: {env: SLACK_URL}
  matrix_token: {env: MATRIX_TOKEN}
`})
	up := upAndReady(t, w)
	page := up.waitLine(t, "web page: ", time.Second)
	r := w.sluice("run", "book.yaml", "--input", "url=http://"+host+"/poisoned", "--wait=false", "--json")
	if r.code != 4 {
		t.Fatalf("run: exit %d, want 4 (held)\n%s", r.code, r.stderr)
	}
	run := decodeRun(t, r.stdout)
	id := run.Steps[run.step(t, "pay")].ApprovalID
	link := strings.SplitN(page, "/?key=", 2)[0] + "/approvals"
	key := strings.SplitN(page, "key=", 2)[1]
	for name, b := range map[string]*inbox{"webhook": &hook, "ntfy": &ntfy, "slack": &slack, "matrix": &matrix} {
		m := b.wait(t, name)
		if !strings.Contains(m, id) || !strings.Contains(m, "payment.charge") || !strings.Contains(m, link) {
			t.Errorf("%s was sent %q; want the approval %s, the tool and the link %s", name, m, id, link)
		}
		if strings.Contains(m, "acct_attacker") || strings.Contains(m, key) {
			t.Errorf("%s was sent an argument's value or the page's key: %q", name, m)
		}
		for other, tok := range map[string]string{"webhook": "tok-hook-1", "matrix": "tok-matrix-1"} {
			if other != name && strings.Contains(m, tok) {
				t.Errorf("%s was sent %s's token", name, other)
			}
		}
	}
	if m := hook.wait(t, "webhook"); !strings.HasPrefix(m, "POST\n/hook\nBearer tok-hook-1\n") || !strings.Contains(m, `"event":"held"`) {
		t.Errorf("webhook: %q", m)
	}
	if m := ntfy.wait(t, "ntfy"); !strings.HasPrefix(m, "POST\n/approvals\n\nSluice: payment.charge waits for your approval\n"+link+"\n") {
		t.Errorf("ntfy: %q", m)
	}
	if m := slack.wait(t, "slack"); !strings.HasPrefix(m, "POST\n/services/T0/B0/secretpath\n") || !strings.Contains(m, `{"text":"Sluice holds a call`) {
		t.Errorf("slack: %q", m)
	}
	if m := matrix.wait(t, "matrix"); !strings.HasPrefix(m, "PUT\n/_matrix/client/v3/rooms/%21ops:example.org/send/m.room.message/sluice-"+id) ||
		!strings.Contains(m, "Bearer tok-matrix-1") || !strings.Contains(m, `"msgtype":"m.text"`) {
		t.Errorf("matrix: %q", m)
	}
}

// A notifier that names a secret the configuration does not have is an
// error at its position.
func TestNotifierNamingAnUnknownSecret(t *testing.T) {
	w := newWorkspace(t, map[string]string{"sluice.yaml": "workers:\n  - manifest: builtin:payment\nnotify:\n  - {kind: slack, url_secret: nope}\n"})
	r := w.sluice("lint")
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, `sluice.yaml:4:`) || !strings.Contains(r.stdout+r.stderr, `no secret "nope"`) {
		t.Fatalf("lint: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
