package mcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// A server reached at url: (streamable HTTP) has no process of the
// worker's: each request the MCP client makes is sent through the egress
// broker, as part of the tool call it serves, so the broker checks the
// destination against the worker's grants (by name, and by address after
// DNS), fills in the {{secret:NAME}} of the manifest's headers for their
// hosts only, strips what the server echoes of them, and records the host
// the call reached: the output is labeled with it.

// callKey carries the tool call a request to the server serves.
type callKey struct{}

func withCall(ctx context.Context, call *worker.Call) context.Context {
	return context.WithValue(ctx, callKey{}, call)
}

// egressTransport sends each HTTP request through the egress broker, as
// part of the tool call in the request's context. A request outside a
// call (the SDK's end of a session when the worker stops) is not sent.
type egressTransport struct {
	m *capabilities.Manifest
}

func (t egressTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	call, _ := req.Context().Value(callKey{}).(*worker.Call)
	if call == nil {
		return nil, errors.New("no tool call in flight: the request is not sent")
	}
	er := schemas.EgressRequest{Method: req.Method, URL: req.URL.String(), Headers: map[string]string{}}
	for k, v := range req.Header {
		if len(v) > 0 {
			er.Headers[k] = v[0]
		}
	}
	for k, v := range t.m.MCP.Headers {
		er.Headers[k] = v
	}
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		er.Body = b
	}
	resp, err := call.HTTP(req.Context(), er)
	if err != nil {
		hp, _ := t.m.MCP.HostPort()
		if errors.Is(err, worker.ErrNoEgress) {
			return nil, fmt.Errorf("the MCP server at %s: worker %s has no network grant (grants.net must name %s)", t.m.MCP.URL, t.m.Worker, hp)
		}
		return nil, fmt.Errorf("the MCP server at %s, through the egress broker: %w", t.m.MCP.URL, err)
	}
	out := &http.Response{StatusCode: resp.Status, Status: fmt.Sprintf("%d %s", resp.Status, http.StatusText(resp.Status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Request: req,
		Body: io.NopCloser(bytes.NewReader(resp.Body)), ContentLength: int64(len(resp.Body))}
	for k, v := range resp.Headers {
		out.Header.Set(k, v)
	}
	return out, nil
}

// directTransport is what `sluice worker discover` reaches a url: server
// with: from the process of the person who runs it, to the granted
// host:port only, with the manifest's headers but those that name a
// secret (only the broker fills secrets in). As at the broker, a name
// that resolves to an address that is not public is refused; an address
// is reached only where the URL names it literally (or names localhost).
type directTransport struct {
	m *capabilities.Manifest
	// resolve looks a name up; nil is the system's resolver.
	resolve func(ctx context.Context, host string) ([]netip.Addr, error)
}

// public reports whether a is an address on the public internet, by the
// standard library's classes and the shared address space (RFC 6598).
func public(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate() && !netip.MustParsePrefix("100.64.0.0/10").Contains(a)
}

func (t directTransport) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	literal := host == "localhost"
	if _, err := netip.ParseAddr(host); err == nil {
		literal = true
	}
	resolve := t.resolve
	if resolve == nil {
		resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	ips, err := resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	for _, ip := range ips {
		if !literal && !public(ip) {
			return nil, fmt.Errorf("%s resolves to %s, which is not a public address: name the address itself in the URL and grants.net to reach it", host, ip)
		}
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("%s: no address", host)
	}
	return d.DialContext(ctx, network, net.JoinHostPort(ips[0].String(), port))
}

func (t directTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	hp, err := t.m.MCP.HostPort()
	if err != nil {
		return nil, err
	}
	port := req.URL.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[req.URL.Scheme]
	}
	if got := strings.ToLower(req.URL.Hostname()) + ":" + port; got != hp && "["+strings.ToLower(req.URL.Hostname())+"]:"+port != hp {
		return nil, fmt.Errorf("%s is not the server's host:port %s", got, hp)
	}
	granted := false
	for _, g := range t.m.Grants.Net {
		granted = granted || g == hp
	}
	if !granted {
		return nil, fmt.Errorf("%s is not in worker %s's grants.net", hp, t.m.Worker)
	}
	req = req.Clone(req.Context())
	for k, v := range t.m.MCP.Headers {
		if !strings.Contains(v, "{{secret:") {
			req.Header.Set(k, v)
		}
	}
	tr := &http.Transport{Proxy: nil, DialContext: t.dial, TLSHandshakeTimeout: 10 * time.Second, MaxResponseHeaderBytes: 64 << 10}
	defer tr.CloseIdleConnections()
	return tr.RoundTrip(req)
}

// connectHTTP opens a session with the server at the manifest's url,
// over rt.
func (s *Server) connectHTTP(ctx context.Context, rt http.RoundTripper) (*process, error) {
	m := s.cfg.Manifest
	client := sdk.NewClient(&sdk.Implementation{Name: "sluice", Version: "1"}, &sdk.ClientOptions{Capabilities: &sdk.ClientCapabilities{}})
	tctx, cancel := context.WithTimeout(ctx, m.Limits.Timeout)
	defer cancel()
	cs, err := client.Connect(tctx, &sdk.StreamableClientTransport{Endpoint: m.MCP.URL,
		HTTPClient: &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		// Only answers to the worker's own requests, each within a call:
		// no stream held open between calls, no retries behind a call's
		// back.
		DisableStandaloneSSE: true, MaxRetries: -1,
		MaxEventSize: int(maxLine(m)),
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("the MCP server at %s did not initialize: %w", m.MCP.URL, err)
	}
	return &process{session: cs, exited: make(chan struct{})}, nil
}
