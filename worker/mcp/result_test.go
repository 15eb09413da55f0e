package mcp

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

func TestResult(t *testing.T) {
	untrusted := ifc.UntrustedFrom(ifc.ToolSource("docs.read"))
	for _, c := range []struct {
		name string
		res  *sdk.CallToolResult
		want any
	}{
		{"structured content wins", &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: `{"content":"x"}`}},
			StructuredContent: map[string]any{"content": "x"}}, map[string]any{"content": "x"}},
		{"else the text", &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "a"}, &sdk.TextContent{Text: "b"}}},
			map[string]any{"text": "a\nb"}},
		{"other blocks are named, not fetched", &sdk.CallToolResult{Content: []sdk.Content{&sdk.ImageContent{MIMEType: "image/png", Data: []byte{1}},
			&sdk.ResourceLink{URI: "https://evil.example/x"}}},
			map[string]any{"text": "[image image/png, not shown]\n[resource link https://evil.example/x, not fetched]"}},
		{"no content", &sdk.CallToolResult{}, map[string]any{"text": ""}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Result(c.res, untrusted)
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %#v, %v; want %#v", got, err, c.want)
			}
		})
	}
	_, err := Result(&sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: "no such file"}}}, untrusted)
	var re *schemas.ReplyError
	if !errors.As(err, &re) || re.Code != schemas.CodeFailed {
		t.Fatalf("isError: %v: want a tool failure", err)
	}
}

// A label a server claims in _meta can raise the output's label, never
// lower it.
func TestMetaLabel(t *testing.T) {
	trusted := ifc.TrustedFrom(ifc.ToolSource("t.t"))
	untrusted := ifc.UntrustedFrom(ifc.ToolSource("t.t"))
	for _, c := range []struct {
		name      string
		meta      map[string]any
		tool      ifc.Label
		raises    bool
		integrity ifc.Integrity
		secrecy   []string
	}{
		{"no claim", nil, trusted, false, 0, nil},
		{"other _meta keys", map[string]any{"progress": 1}, trusted, false, 0, nil},
		{"a claim of trusted cannot lower", map[string]any{"ifc": map[string]any{"integrity": "trusted"}}, untrusted, false, 0, nil},
		{"untrusted raises a trusted tool's output", map[string]any{"ifc": map[string]any{"integrity": "untrusted"}}, trusted, true, ifc.Untrusted, nil},
		{"github's low is untrusted", map[string]any{"ifc": map[string]any{"integrity": "low"}}, trusted, true, ifc.Untrusted, nil},
		{"secrecy is added", map[string]any{"ifc": map[string]any{"integrity": "high", "secrecy": []any{"repo:private"}}}, untrusted, true, ifc.Untrusted, []string{"repo:private"}},
		{"an unreadable claim is the worst case", map[string]any{"ifc": "trust me"}, trusted, true, ifc.Untrusted, nil},
		{"an unknown integrity is the worst case", map[string]any{"ifc": map[string]any{"integrity": "trusted-by-root"}}, trusted, true, ifc.Untrusted, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, ok := MetaLabel(c.meta, c.tool)
			if ok != c.raises {
				t.Fatalf("raises %v, want %v", ok, c.raises)
			}
			if !ok {
				return
			}
			if l.Integrity() != c.integrity || !slices.Equal(l.Secrecy(), c.secrecy) {
				t.Fatalf("label %v, want %v %v", l, c.integrity, c.secrecy)
			}
			// Joined as the orchestrator does, it never lowers.
			j := ifc.Join(c.tool, l)
			if c.tool.Integrity() == ifc.Untrusted && j.Integrity() != ifc.Untrusted {
				t.Fatal("the claim lowered the label")
			}
		})
	}
	out, err := Result(&sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "x"}},
		Meta: sdk.Meta{"ifc": map[string]any{"secrecy": []any{"bank"}}}}, untrusted)
	if l, ok := out.(worker.Labeled); err != nil || !ok || !l.Labels[""].HasSecrecy("bank") {
		t.Fatalf("Result with a claim: %#v, %v: want the whole output labeled bank", out, err)
	}
}
