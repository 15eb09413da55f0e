package mcp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// httpServer is a streamable HTTP MCP server on 127.0.0.1 with one tool,
// auth, which answers with the Authorization header it received.
func httpServer(t *testing.T) *httptest.Server {
	t.Helper()
	s := sdk.NewServer(&sdk.Implementation{Name: "h", Version: "1"}, nil)
	type out struct {
		Header string `json:"header"`
	}
	sdk.AddTool(s, &sdk.Tool{Name: "auth"}, func(_ context.Context, req *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, out, error) {
		return nil, out{Header: req.Extra.Header.Get("Authorization")}, nil
	})
	ts := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	t.Cleanup(ts.Close)
	return ts
}

func urlManifest(t *testing.T, src string) *capabilities.Manifest {
	t.Helper()
	file := filepath.Join(t.TempDir(), "h.yaml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := capabilities.LoadMCP(file)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Every request of a url: server's session goes through the call's
// egress (the broker), with the manifest's headers as written (the broker
// fills their secrets in), and names the call it serves; none is sent
// outside a call.
func TestHTTPServerGoesThroughEgress(t *testing.T) {
	ts := httpServer(t)
	hp := strings.TrimPrefix(ts.URL, "http://")
	m := urlManifest(t, "worker: h\nrun: mcp\nurl: "+ts.URL+"/mcp\nheaders: {Authorization: \"Bearer {{secret:k}}\"}\ntools:\n  \"*\": {}\ngrants: {net: [\""+hp+"\"]}\n")

	var mu sync.Mutex
	var seen []schemas.EgressRequest
	// The broker's stand-in performs the request, with the secret filled.
	broker := func(ctx context.Context, req schemas.EgressRequest) (*schemas.EgressResponse, error) {
		mu.Lock()
		seen = append(seen, req)
		mu.Unlock()
		hreq, err := http.NewRequestWithContext(ctx, req.Method, req.URL, strings.NewReader(string(req.Body)))
		if err != nil {
			return nil, err
		}
		for k, v := range req.Headers {
			hreq.Header.Set(k, strings.ReplaceAll(v, "{{secret:k}}", "s3cret"))
		}
		resp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out := &schemas.EgressResponse{Status: resp.StatusCode, Headers: map[string]string{}, Body: b}
		for k, v := range resp.Header {
			out.Headers[k] = v[0]
		}
		return out, nil
	}
	s := New(Config{Manifest: m})
	defer s.Close()
	ctx := withCall(context.Background(), worker.NewCall("auth", json.RawMessage(`{}`), broker))
	p, err := s.start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.session.CallTool(ctx, &sdk.CallToolParams{Name: "auth", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(res.StructuredContent); !strings.Contains(string(got), "Bearer s3cret") {
		t.Fatalf("the server saw %s: want the secret the broker filled in", got)
	}
	mu.Lock()
	n := len(seen)
	for _, r := range seen {
		if r.Headers["Authorization"] != "Bearer {{secret:k}}" {
			t.Errorf("a request carried Authorization %q: want the placeholder alone", r.Headers["Authorization"])
		}
	}
	mu.Unlock()
	if n < 2 {
		t.Fatalf("%d requests went through egress: want initialize and the call at least", n)
	}

	// Through a call as the worker serves it; then the broker refuses,
	// and the call fails, naming the server; the next call opens another
	// session.
	tool := &capabilities.Tool{Name: "h.auth"}
	if _, err := s.call(context.Background(), worker.NewCall("auth", json.RawMessage(`{}`), broker), "auth", tool); err != nil {
		t.Fatalf("a call: %v", err)
	}
	refuse := func(context.Context, schemas.EgressRequest) (*schemas.EgressResponse, error) {
		return &schemas.EgressResponse{Error: &schemas.ReplyError{Code: schemas.CodeFailed, Message: "refused by the broker"}}, nil
	}
	_, err = s.call(context.Background(), worker.NewCall("auth", json.RawMessage(`{}`), refuse), "auth", tool)
	if err == nil || !strings.Contains(err.Error(), "the session with the MCP server at "+ts.URL+"/mcp broke during the call") ||
		!strings.Contains(err.Error(), "refused by the broker") {
		t.Fatalf("a call the broker refuses: %v", err)
	}
	if _, err := s.call(context.Background(), worker.NewCall("auth", json.RawMessage(`{}`), broker), "auth", tool); err != nil {
		t.Fatalf("the call after: %v", err)
	}

	// Outside a call, nothing is sent.
	_, err = egressTransport{m: m}.RoundTrip(httptest.NewRequest("POST", ts.URL+"/mcp", nil))
	if err == nil || !strings.Contains(err.Error(), "no tool call in flight") {
		t.Fatalf("a request outside a call: %v", err)
	}
	// A worker without a network grant: the error names grants.net.
	_, err = egressTransport{m: m}.RoundTrip(httptest.NewRequest("POST", ts.URL+"/mcp", nil).WithContext(
		withCall(context.Background(), worker.NewCall("auth", nil, nil))))
	if err == nil || !strings.Contains(err.Error(), "no network grant (grants.net must name "+hp+")") {
		t.Fatalf("a request without egress: %v", err)
	}
}

// Discovery reaches a url: server directly, at its granted host:port
// only, and refuses a name that resolves to an address that is not
// public.
func TestDirectTransport(t *testing.T) {
	ts := httpServer(t)
	hp := strings.TrimPrefix(ts.URL, "http://")
	port := hp[strings.LastIndexByte(hp, ':')+1:]
	m := urlManifest(t, "worker: h\nrun: mcp\nurl: "+ts.URL+"/mcp\ntools:\n  \"*\": {}\ngrants: {net: [\""+hp+"\"]}\n")
	d, err := Discover(context.Background(), Config{Manifest: m})
	if err != nil || d.Server.Name != "h" || len(d.Tools) != 1 {
		t.Fatalf("discover: %+v %v", d, err)
	}
	ungranted := urlManifest(t, "worker: h\nrun: mcp\nurl: "+ts.URL+"/mcp\ntools:\n  \"*\": {}\n")
	if _, err := Discover(context.Background(), Config{Manifest: ungranted}); err == nil || !strings.Contains(err.Error(), "grants.net") {
		t.Fatalf("discover without the grant: %v", err)
	}
	// A name (not the address itself) that resolves to loopback is
	// refused; the address itself is reached.
	named := urlManifest(t, "worker: h\nrun: mcp\nurl: http://internal.example:"+port+"/mcp\ntools:\n  \"*\": {}\ngrants: {net: [\"internal.example:"+port+"\"]}\n")
	tr := directTransport{m: named, resolve: func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}}
	if _, err := tr.dial(context.Background(), "tcp", "internal.example:"+port); err == nil || !strings.Contains(err.Error(), "not a public address") {
		t.Fatalf("a name that resolves to loopback: %v", err)
	}
	c, err := tr.dial(context.Background(), "tcp", hp)
	if err != nil {
		t.Fatalf("the address itself: %v", err)
	}
	c.Close()
	for a, want := range map[string]bool{"8.8.8.8": true, "127.0.0.1": false, "10.1.2.3": false, "100.64.0.1": false,
		"169.254.169.254": false, "::1": false, "fd00::1": false, "2001:4860:4860::8888": true, "::ffff:127.0.0.1": false} {
		if got := public(netip.MustParseAddr(a)); got != want {
			t.Errorf("public(%s) = %v, want %v", a, got, want)
		}
	}
}
