// Command envserver serves the tools of one evaluation suite over MCP on
// standard input and output. Each Sluice evaluation suite runs it as an MCP
// worker (run: mcp), confined like every worker, with the suite's
// environment in the worker's file grant:
//
//	envserver SUITE ROOT
//
// ROOT holds state.json (the environment, read at each call and written
// back by the calls that change it), vectors.json (the text now standing in
// each injection vector) and read.log (one line per vector a tool returned).
// The server keeps nothing between calls, so the harness can put a fresh
// environment in place before every run.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// suites maps a suite's name to the function that adds its tools.
var suites = map[string]func(*mcp.Server, *Env){}

func main() {
	if len(os.Args) != 3 || suites[os.Args[1]] == nil {
		names := make([]string, 0, len(suites))
		for n := range suites {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: envserver SUITE ROOT (SUITE: %s)\n", strings.Join(names, ", "))
		os.Exit(2)
	}
	server := mcp.NewServer(&mcp.Implementation{Name: "sluice-eval-" + os.Args[1], Version: "1.0.0"}, nil)
	suites[os.Args[1]](server, &Env{root: os.Args[2]})
	if err := server.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		fmt.Fprintln(os.Stderr, "envserver:", err)
		os.Exit(1)
	}
}
