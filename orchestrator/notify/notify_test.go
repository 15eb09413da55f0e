package notify

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// received is what one local server got.
type received struct {
	mu   sync.Mutex
	reqs []*http.Request
	body []string
}

func (r *received) server(t *testing.T, status func(n int) int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, req)
		r.body = append(r.body, string(b))
		n := len(r.reqs)
		r.mu.Unlock()
		w.WriteHeader(status(n))
		io.WriteString(w, `{}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func ok(int) int { return http.StatusOK }

// Each kind speaks its protocol to a local server: a JSON webhook with a
// bearer token, an ntfy topic with its Title and Click headers, a Slack
// incoming webhook's {"text"}, and a Matrix room message PUT with the
// access token and a transaction id. None carries an argument value. A
// server that answers 503 is tried again; one that answers 400 is not.
func TestEachKindSpeaksItsProtocol(t *testing.T) {
	var hook, ntfy, slack, matrix, flaky, broken received
	hookSrv, ntfySrv, slackSrv, matrixSrv := hook.server(t, ok), ntfy.server(t, ok), slack.server(t, ok), matrix.server(t, ok)
	flakySrv := flaky.server(t, func(n int) int {
		if n == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	brokenSrv := broken.server(t, func(int) int { return http.StatusBadRequest })
	n := New([]Target{
		{Kind: Webhook, URL: hookSrv.URL + "/hook", Token: "tok-hook"},
		{Kind: Ntfy, URL: ntfySrv.URL + "/sluice-approvals"},
		{Kind: Slack, URL: slackSrv.URL + "/services/T/B/X"},
		{Kind: Matrix, URL: matrixSrv.URL, Room: "!room:example.org", Token: "tok-matrix"},
		{Kind: Slack, URL: flakySrv.URL},
		{Kind: Webhook, URL: brokenSrv.URL},
	}, nil)
	n.backoff = time.Millisecond
	n.SetLink("http://127.0.0.1:8088/approvals")
	n.Held(Held{Approval: "A1", Run: "R1", Flow: "book-hotel", Step: "pay", Tool: "payment.charge", Created: time.Unix(0, 0)})
	n.Wait()

	if len(hook.reqs) != 1 || hook.reqs[0].Header.Get("Authorization") != "Bearer tok-hook" || hook.reqs[0].Method != http.MethodPost {
		t.Fatalf("webhook: %d requests", len(hook.reqs))
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(hook.body[0]), &ev); err != nil || ev["approval_id"] != "A1" || ev["tool"] != "payment.charge" ||
		ev["link"] != "http://127.0.0.1:8088/approvals" || ev["event"] != "held" {
		t.Fatalf("webhook body %s", hook.body[0])
	}
	if len(ntfy.reqs) != 1 || ntfy.reqs[0].URL.Path != "/sluice-approvals" || ntfy.reqs[0].Header.Get("Click") != "http://127.0.0.1:8088/approvals" ||
		!strings.Contains(ntfy.reqs[0].Header.Get("Title"), "payment.charge") || !strings.Contains(ntfy.body[0], "approval A1") {
		t.Fatalf("ntfy: %v %q", ntfy.reqs, ntfy.body)
	}
	var sl map[string]string
	if len(slack.reqs) != 1 || json.Unmarshal([]byte(slack.body[0]), &sl) != nil || !strings.Contains(sl["text"], "payment.charge in step pay") {
		t.Fatalf("slack: %q", slack.body)
	}
	if len(matrix.reqs) != 1 || matrix.reqs[0].Method != http.MethodPut ||
		!strings.HasPrefix(matrix.reqs[0].URL.EscapedPath(), "/_matrix/client/v3/rooms/%21room:example.org/send/m.room.message/sluice-A1-") ||
		matrix.reqs[0].Header.Get("Authorization") != "Bearer tok-matrix" {
		t.Fatalf("matrix: %s %s", matrix.reqs[0].Method, matrix.reqs[0].URL.EscapedPath())
	}
	var mx map[string]string
	if json.Unmarshal([]byte(matrix.body[0]), &mx) != nil || mx["msgtype"] != "m.text" || !strings.Contains(mx["body"], "approval A1") {
		t.Fatalf("matrix body %q", matrix.body)
	}
	if len(flaky.reqs) != 2 {
		t.Fatalf("a target that answered 503 was tried %d times, want 2", len(flaky.reqs))
	}
	if len(broken.reqs) != 1 {
		t.Fatalf("a target that answered 400 was tried %d times, want 1", len(broken.reqs))
	}
}

// Without a page, the message says how to answer from the command line.
func TestTextWithoutALink(t *testing.T) {
	txt := Text(Held{Approval: "A1", Run: "R", Flow: "f", Step: "s", Tool: "t.x"}, "")
	if !strings.Contains(txt, "sluice approvals") {
		t.Fatal(txt)
	}
}
