package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// writeState writes state as the environment of a new temporary directory,
// and returns the directory.
func writeState(t *testing.T, state any) string {
	t.Helper()
	root := t.TempDir()
	b, err := json.Marshal(state)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "state.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return root
}

// serve serves a suite's tools over an in-memory MCP connection, on the
// environment in root, and returns the client's side.
func serve(t *testing.T, suite, root string) *mcp.ClientSession {
	t.Helper()
	server := mcp.NewServer(&mcp.Implementation{Name: "sluice-eval-" + suite, Version: "1.0.0"}, nil)
	suites[suite](server, &Env{root: root})
	st, ct := mcp.NewInMemoryTransports()
	ctx := context.Background()
	ss, err := server.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close(); _ = ss.Close() })
	return cs
}

// callTool calls a tool and fails the test when the call itself fails (a
// tool's failure is a result with IsError).
func callTool(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

// untrustedClaim reports whether a result claims the untrusted label in
// _meta.ifc, as a ThirdParty answer does.
func untrustedClaim(res *mcp.CallToolResult) bool {
	ifc, _ := res.Meta["ifc"].(map[string]any)
	return ifc["integrity"] == "untrusted"
}
