// Command mcphttp is an MCP server over streamable HTTP, written with the
// go-sdk, listening on 127.0.0.1 only: lookup returns structured content,
// whoami says whether the request carried the bearer token given as its
// one argument. It prints its URL on the first line of its standard
// output, then one line per HTTP request it receives, so that a test can
// tell whether anything reached it. It stops when its standard input
// closes.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type lookupIn struct {
	City string `json:"city"`
}

type lookupOut struct {
	City        string  `json:"city"`
	Temperature float64 `json:"temperature"`
}

type whoamiOut struct {
	Authorized bool `json:"authorized"`
}

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: mcphttp TOKEN")
	}
	token := os.Args[1]
	server := mcp.NewServer(&mcp.Implementation{Name: "weather-http", Version: "1.0.0"}, nil)
	no := false
	mcp.AddTool(server, &mcp.Tool{Name: "lookup", Description: "the temperature in a city",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: &no}},
		func(_ context.Context, _ *mcp.CallToolRequest, in lookupIn) (*mcp.CallToolResult, lookupOut, error) {
			return nil, lookupOut{City: in.City, Temperature: 21.5}, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "whoami", Description: "whether the request carried the token",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, whoamiOut, error) {
			return nil, whoamiOut{Authorized: req.Extra != nil && req.Extra.Header.Get("Authorization") == "Bearer "+token}, nil
		})
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	var mu sync.Mutex
	fmt.Printf("http://%s\n", ln.Addr())
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			fmt.Printf("request %s %s\n", r.Method, r.URL.Path)
			mu.Unlock()
			handler.ServeHTTP(w, r)
		}))
	}()
	_, _ = io.Copy(io.Discard, os.Stdin)
}
