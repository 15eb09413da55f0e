package mcp

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/orchestrator/egress"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// counted is a test HTTP(S) server on loopback that counts the requests
// it receives and echoes the X-Token header it got.
type counted struct {
	*httptest.Server
	n      atomic.Int32
	tokens chan string
}

func newCounted(t *testing.T, secure bool) *counted {
	c := &counted{tokens: make(chan string, 16)}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.n.Add(1)
		c.tokens <- r.Header.Get("X-Token")
		io.WriteString(w, r.Method+" "+r.URL.Path+" token="+r.Header.Get("X-Token"))
	})
	if secure {
		c.Server = httptest.NewTLSServer(h)
	} else {
		c.Server = httptest.NewServer(h)
	}
	t.Cleanup(c.Close)
	return c
}

func (c *counted) hostport() string {
	return strings.TrimPrefix(strings.TrimPrefix(c.URL, "https://"), "http://")
}

const proxyToken = "tok-3f9a1c7e55d2"

// The proxy sends a server's plain and https requests through the real
// egress broker, as part of the call in flight: a granted host is
// reached, over TLS the proxy ends with a certificate of its own
// authority; the token the request names is filled in by the broker and
// its echo removed; a host not granted is refused with the broker's
// reason and reached by nothing; and without a call in flight nothing is
// sent at all.
func TestProxyThroughBroker(t *testing.T) {
	plain, secure, denied := newCounted(t, false), newCounted(t, true), newCounted(t, false)
	roots := x509.NewCertPool()
	roots.AddCert(secure.Certificate())
	b := egress.New(egress.Config{
		Grants:       map[string][]string{"net": {plain.hostport(), secure.hostport()}},
		Track:        func(worker, msgID, hostport string) bool { return msgID == "test-msg" },
		RootCAs:      roots,
		Secrets:      map[string]egress.Secret{"tok": egress.NewSecret("tok", []byte(proxyToken))},
		SecretGrants: map[string][]egress.SecretGrant{"net": {{Name: "tok", Hosts: []string{"127.0.0.1"}}}},
	})
	defer b.Close()
	p, err := newProxy(&capabilities.Manifest{Worker: "net"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go p.serve(ln)
	trust := x509.NewCertPool()
	if !trust.AppendCertsFromPEM(p.caPEM) {
		t.Fatal("the proxy's certificate does not parse")
	}
	proxyURL, _ := url.Parse("http://" + ln.Addr().String())
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: trust}}}
	get := func(u string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("X-Token", "{{secret:tok}}")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	// No call in flight: nothing is sent.
	if code, body := get(plain.URL + "/a"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no tool call in flight") {
		t.Fatalf("without a call: %d %q", code, body)
	}
	if plain.n.Load() != 0 {
		t.Fatal("a request outside a call reached the server")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	call := worker.NewCall("fetch", json.RawMessage(`{}`), func(ctx context.Context, req schemas.EgressRequest) (*schemas.EgressResponse, error) {
		body, _ := json.Marshal(req)
		return b.Do(ctx, "net", "test-msg", body), nil
	})
	p.now.Store(&inflight{ctx: ctx, call: call})

	for _, c := range []struct {
		name string
		srv  *counted
	}{{"plain", plain}, {"https through CONNECT", secure}} {
		code, body := get(c.srv.URL + "/page")
		if code != http.StatusOK || !strings.HasPrefix(body, "GET /page token=") || strings.Contains(body, proxyToken) {
			t.Fatalf("%s: %d %q: want the page, with the token's echo removed", c.name, code, body)
		}
		if c.srv.n.Load() != 1 {
			t.Fatalf("%s: the server received %d requests, want 1", c.name, c.srv.n.Load())
		}
		if got := <-c.srv.tokens; got != proxyToken {
			t.Fatalf("%s: the server received the token %q: want it filled in by the broker", c.name, got)
		}
	}

	// A host not granted: the broker's refusal, and no request sent.
	code, body := get(denied.URL + "/x")
	if code != http.StatusForbidden || !strings.Contains(body, denied.hostport()+" is not granted to worker net") {
		t.Fatalf("a host not granted: %d %q: want 403 naming the host and the worker", code, body)
	}
	if denied.n.Load() != 0 {
		t.Fatal("a host not granted received a request")
	}

	// A request in origin form is not a proxy's.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /page HTTP/1.1\r\nHost: "+plain.hostport()+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("origin form: %v %v: want 400", resp, err)
	}
	if plain.n.Load() != 1 {
		t.Fatal("a request in origin form was sent")
	}
}
