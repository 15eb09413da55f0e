// Command mcponce is a stdio MCP server whose one tool, send, has an
// effect and cannot tell a call sent again from a new one, as most
// third-party tools cannot: each call appends a line to the file sent
// under the directory its first argument names, and answers how many
// lines it holds. While a file hold is beside it, a call blocks after its
// line is written: the effect has happened, its answer has not come back.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type sendIn struct {
	To string `json:"to"`
}

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: mcponce DIR")
	}
	dir := os.Args[1]
	s := mcp.NewServer(&mcp.Implementation{Name: "once", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "send", Description: "Send a message."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in sendIn) (*mcp.CallToolResult, any, error) {
			f, err := os.OpenFile(filepath.Join(dir, "sent"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return nil, nil, err
			}
			_, err = fmt.Fprintln(f, in.To)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, nil, err
			}
			for {
				if _, err := os.Stat(filepath.Join(dir, "hold")); err != nil {
					break
				}
				select {
				case <-ctx.Done():
					return nil, nil, ctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
			}
			b, err := os.ReadFile(filepath.Join(dir, "sent"))
			if err != nil {
				return nil, nil, err
			}
			n := strings.Count(string(b), "\n")
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("%d sent", n)}}}, nil, nil
		})
	if err := s.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		log.Fatal(err)
	}
}
