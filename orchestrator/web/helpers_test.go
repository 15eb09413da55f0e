package web

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/engine"
)

// backend is an in-memory Backend that records every answer.
type backend struct {
	mu        sync.Mutex
	runs      []*audit.Run
	approvals []engine.Approval
	decided   []decision
	decideErr error
}

type decision struct {
	ID     string
	Answer engine.Answer
}

func (b *backend) Runs(context.Context) ([]*audit.Run, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.runs, nil
}

func (b *backend) Approvals(context.Context) ([]engine.Approval, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.approvals, nil
}

func (b *backend) Decide(_ context.Context, id string, a engine.Answer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.decideErr != nil {
		return b.decideErr
	}
	b.decided = append(b.decided, decision{id, a})
	return nil
}

func (b *backend) answers() []decision {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]decision(nil), b.decided...)
}

const (
	runID      = "01JD6Z4W8X2F3K5N7Q9R1T3V5X"
	approvalID = "01JD6Z4W8X2F3K5N7Q9R1T3V5Y"
	callHash   = "5f1d0c6a9e3b7d2c4a8f6e1b0d9c7a5e3f2b1a0c9d8e7f6a5b4c3d2e1f0a9b8c"
	pageSource = "web:127.0.0.1:8123"
)

// heldPayment is the travel flow's payment, held because a web page
// chose its arguments.
func heldPayment(payee string) *backend {
	web := ifc.UntrustedFrom(pageSource, "tool:web.fetch", "tool:llm.extract")
	user := ifc.TrustedFrom(ifc.SourceFlow)
	pay := web.Join(user)
	return &backend{
		runs: []*audit.Run{{ID: runID, Flow: "book-hotel", Started: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Status: "running",
			Steps: []audit.StepTrace{
				{ID: "offers", Tool: "web.fetch", Label: ptr(ifc.TrustedFrom(ifc.SourceUser)), Decision: "allow", Status: "completed",
					OutputLabel: ptr(ifc.UntrustedFrom(pageSource, "tool:web.fetch")), Calls: 1},
				{ID: "pick", Tool: "llm.extract", Label: ptr(ifc.UntrustedFrom(pageSource, "tool:web.fetch")), Decision: "allow", Status: "completed", Calls: 1},
				{ID: "pay", Tool: "payment.charge", Label: &pay, Decision: "approve", Rules: []string{"untrusted-payment (default.yaml:3:5)"},
					Reasons: []string{"argument payee is untrusted"}, Status: "held",
					ArgLabels: map[string]ifc.Label{"payee": web, "currency": user}},
			}}},
		approvals: []engine.Approval{{ID: approvalID, RunID: runID, Flow: "book-hotel", Step: "pay", Tool: "payment.charge",
			Args:      map[string]any{"amount": 5, "currency": "EUR", "payee": payee},
			ArgLabels: map[string]ifc.Label{"amount": web, "currency": user, "payee": web},
			Label:     pay, Rules: []string{"untrusted-payment (default.yaml:3:5)"}, Reasons: []string{"argument payee is untrusted"},
			Hash: callHash, Status: engine.ApprovalPending, Created: time.Date(2025, 1, 2, 3, 4, 6, 0, time.UTC)}},
	}
}

func ptr[T any](v T) *T { return &v }

// client talks to a Server as its page does: with the key's cookie, the
// served Host, and the page's Origin on POST.
type client struct {
	t    *testing.T
	s    *Server
	http *http.Client
	key  *http.Cookie
}

func start(t *testing.T, b Backend) *client {
	t.Helper()
	s, err := New(Config{Backend: b, User: "alice", Refresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	c := &client{t: t, s: s, http: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
	resp := c.do(http.MethodGet, strings.TrimPrefix(s.URL(), "http://"+s.Addr()), nil, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("open the key URL: %d", resp.StatusCode)
	}
	for _, ck := range resp.Cookies() {
		c.key = ck
	}
	if c.key == nil {
		t.Fatal("the key URL set no cookie")
	}
	return c
}

type response struct {
	*http.Response
	body string
}

// do sends a request; edit may change it before it is sent.
func (c *client) do(method, path string, form url.Values, edit func(*http.Request)) response {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, "http://"+c.s.Addr()+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodPost {
		req.Header.Set("Origin", "http://"+c.s.Addr())
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	if c.key != nil {
		req.AddCookie(c.key)
	}
	if edit != nil {
		edit(req)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return response{resp, string(b)}
}

func (c *client) get(path string) response {
	c.t.Helper()
	r := c.do(http.MethodGet, path, nil, nil)
	if r.StatusCode != http.StatusOK {
		c.t.Fatalf("GET %s: %d %s", path, r.StatusCode, r.body)
	}
	return r
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="(csrf|hash)" value="([^"]*)">`)

// form returns the hidden fields of the first form on page whose action
// is action.
func form(t *testing.T, page, action string) url.Values {
	t.Helper()
	i := strings.Index(page, `action="`+action+`"`)
	if i < 0 {
		t.Fatalf("no form posting to %s on the page", action)
	}
	end := strings.Index(page[i:], "</form>")
	v := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(page[i:i+end], -1) {
		v.Set(m[1], unescapeAttr(m[2]))
	}
	return v
}

func unescapeAttr(s string) string {
	return strings.NewReplacer("&#43;", "+", "&amp;", "&", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">").Replace(s)
}

var errStale = errors.New("the call changed since it was shown")
