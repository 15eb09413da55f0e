package main

import "github.com/modelcontextprotocol/go-sdk/mcp"

// untrustedClaim reports whether a result claims the untrusted label in
// _meta.ifc, as a ThirdParty answer does.
func untrustedClaim(res *mcp.CallToolResult) bool {
	ifc, _ := res.Meta["ifc"].(map[string]any)
	return ifc["integrity"] == "untrusted"
}
