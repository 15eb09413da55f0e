// Command mcpnet is a stdio MCP server that uses the network, as a server
// wrapped with grants.net does: its tool fetch GETs a URL through the
// HTTP(S) proxy its environment names (HTTPS_PROXY for https, HTTP_PROXY
// for http), trusting the certificates SSL_CERT_FILE names, with the
// header Authorization: Bearer {{secret:tok}}, and answers the status and
// the body; its tool direct GETs a URL with no proxy at all. Go's
// ProxyFromEnvironment never proxies a loopback host, and the tests' hosts
// are on loopback: the proxy is read from the environment here.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type urlIn struct {
	URL string `json:"url"`
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

// get GETs u, through the proxy of the environment or none.
func get(u string, proxied bool) string {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if proxied {
		tr.Proxy = func(r *http.Request) (*url.URL, error) {
			v := os.Getenv("HTTP_PROXY")
			if r.URL.Scheme == "https" {
				v = os.Getenv("HTTPS_PROXY")
			}
			if v == "" {
				return nil, nil
			}
			return url.Parse(v)
		}
	}
	c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return "fetch failed: " + err.Error()
	}
	req.Header.Set("Authorization", "Bearer {{secret:tok}}")
	resp, err := c.Do(req)
	if err != nil {
		return "fetch failed: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return fmt.Sprintf("status %d: %s", resp.StatusCode, b)
}

func main() {
	s := mcp.NewServer(&mcp.Implementation{Name: "net", Version: "1.0.0"}, nil)
	yes := true
	hints := &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: &yes}
	mcp.AddTool(s, &mcp.Tool{Name: "fetch", Description: "GET a URL through the proxy.", Annotations: hints},
		func(_ context.Context, _ *mcp.CallToolRequest, in urlIn) (*mcp.CallToolResult, any, error) {
			return text(get(in.URL, true)), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "direct", Description: "GET a URL with no proxy.", Annotations: hints},
		func(_ context.Context, _ *mcp.CallToolRequest, in urlIn) (*mcp.CallToolResult, any, error) {
			return text(get(in.URL, false)), nil, nil
		})
	if err := s.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		log.Fatal(err)
	}
}
