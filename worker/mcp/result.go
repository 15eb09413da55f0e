package mcp

import (
	"encoding/json"
	"fmt"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/worker"
)

// Result turns what an MCP server answered into a tool's output: its
// structuredContent when it has one, else {"text": …}, the text of its
// content blocks (a block of another kind is named, not included). A
// result marked isError is a tool failure. A label the server claims in
// _meta.ifc is joined in (see [MetaLabel]): it can raise the output's
// label, never lower it.
func Result(res *sdk.CallToolResult, label ifc.Label) (any, error) {
	if res.IsError {
		return nil, worker.Failed("the MCP server reported an error: %s", clip(text(res.Content)))
	}
	var out any = map[string]any{"text": text(res.Content)}
	if res.StructuredContent != nil {
		out = res.StructuredContent
	}
	if l, ok := MetaLabel(res.Meta, label); ok {
		return worker.Labeled{Output: out, Labels: map[string]ifc.Label{"": l}}, nil
	}
	return out, nil
}

func text(content []sdk.Content) string {
	var parts []string
	for _, c := range content {
		switch c := c.(type) {
		case *sdk.TextContent:
			parts = append(parts, c.Text)
		case *sdk.ImageContent:
			parts = append(parts, fmt.Sprintf("[image %s, not shown]", c.MIMEType))
		case *sdk.AudioContent:
			parts = append(parts, fmt.Sprintf("[audio %s, not shown]", c.MIMEType))
		case *sdk.ResourceLink:
			// A link is never fetched by itself.
			parts = append(parts, fmt.Sprintf("[resource link %s, not fetched]", c.URI))
		case *sdk.EmbeddedResource:
			if c.Resource != nil && c.Resource.Text != "" {
				parts = append(parts, c.Resource.Text)
			} else {
				parts = append(parts, "[embedded resource, not shown]")
			}
		}
	}
	return strings.Join(parts, "\n")
}

// MetaLabel reads the label a server claims for a result in _meta.ifc,
// {"integrity": "trusted"|"untrusted", "secrecy": [tags]} (github's MCP
// server says "low" and "high" for integrity; they are read the same),
// and returns what to join into the output's label, and whether there is
// anything to join. The claim can only raise: its integrity counts only
// when untrusted, and the tool's own integrity is kept otherwise; its
// secrecy tags are added. A claim that cannot be read counts as
// untrusted.
func MetaLabel(meta map[string]any, tool ifc.Label) (ifc.Label, bool) {
	raw, ok := meta["ifc"]
	if !ok {
		return ifc.Label{}, false
	}
	var claim struct {
		Integrity string   `json:"integrity"`
		Secrecy   []string `json:"secrecy"`
	}
	b, err := json.Marshal(raw)
	if err == nil {
		err = json.Unmarshal(b, &claim)
	}
	integrity := tool.Integrity()
	var secrecy []string
	switch {
	case err != nil:
		integrity = ifc.Untrusted
	default:
		switch strings.ToLower(claim.Integrity) {
		case "", "trusted", "high":
		default:
			// "untrusted", "low", or anything else: the worst case.
			integrity = ifc.Untrusted
		}
		for _, tag := range claim.Secrecy {
			if tag = strings.TrimSpace(tag); tag != "" {
				secrecy = append(secrecy, tag)
			}
		}
	}
	if integrity == tool.Integrity() && len(secrecy) == 0 {
		return ifc.Label{}, false
	}
	return ifc.New(integrity, secrecy, nil), true
}
