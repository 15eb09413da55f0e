package mcp

import (
	"encoding/json"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// decodedResult carries a tools/call result that the worker's transport
// decoded itself (decodeResult) through the SDK's call: it is the error of
// the response the SDK is handed, and the SDK returns a response's error
// as it is, without decoding a result (its decoder allocates 32 KiB twice
// for each tools/call result). The call takes it back with errors.As.
type decodedResult struct{ res *sdk.CallToolResult }

func (*decodedResult) Error() string { return "a tools/call result decoded by the worker's transport" }

// decodeResponse decodes the result of a response to a tools/call
// request, if decodeResult can, and returns the response the SDK is
// handed: the result in a decodedResult, or r as it came.
func decodeResponse(r *jsonrpc.Response) *jsonrpc.Response {
	if r.Error != nil {
		return r
	}
	res, ok := decodeResult(r.Result)
	if !ok {
		return r
	}
	return &jsonrpc.Response{ID: r.ID, Error: &decodedResult{res: res}}
}

// decodeResult decodes a tools/call result as the go-sdk's client does
// (CallToolResult.UnmarshalJSON), for the results servers send for the
// most part: an object of content, text blocks only, structuredContent,
// isError, _meta and a resultType of complete, each member once.
// Anything else (another member or kind of block, a member twice, a value
// of another type, too deep) is not decoded (false): the SDK decodes it,
// and gives its error. FuzzDecodeResultAsTheSDK holds it to the SDK's
// decoding.
func decodeResult(data []byte) (*sdk.CallToolResult, bool) {
	var w map[string]json.RawMessage
	if len(data) == 0 || data[0] != '{' || deeper(data, maxDepth) ||
		json.Unmarshal(data, &w) != nil || members(data) != len(w) {
		return nil, false
	}
	// The SDK's content is never nil: empty when the member is missing.
	res := &sdk.CallToolResult{Content: []sdk.Content{}}
	for k, v := range w {
		switch k {
		case "content":
			if string(v) == "null" {
				continue
			}
			var blocks []json.RawMessage
			if v[0] != '[' || json.Unmarshal(v, &blocks) != nil {
				return nil, false
			}
			for _, b := range blocks {
				text, ok := textBlock(b)
				if !ok {
					return nil, false
				}
				res.Content = append(res.Content, &sdk.TextContent{Text: text})
			}
		case "structuredContent":
			if string(v) != "null" && json.Unmarshal(v, &res.StructuredContent) != nil {
				return nil, false
			}
		case "isError":
			switch string(v) {
			case "true":
				res.IsError = true
			case "false":
			default:
				return nil, false
			}
		case "resultType":
			// Final, as when the member is missing: the SDK keeps it
			// where only NeedsInput reads it.
			if string(v) != `"complete"` {
				return nil, false
			}
		case "_meta":
			if string(v) == "null" {
				continue
			}
			var meta map[string]any
			if v[0] != '{' || json.Unmarshal(v, &meta) != nil {
				return nil, false
			}
			res.Meta = meta
		default:
			return nil, false
		}
	}
	return res, true
}

// textBlock reads a content block of type text, with its text or
// without: {"type":"text","text":"..."}, each member once.
func textBlock(b json.RawMessage) (string, bool) {
	var w map[string]json.RawMessage
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &w) != nil || members(b) != len(w) ||
		string(w["type"]) != `"text"` {
		return "", false
	}
	var text string
	for k, v := range w {
		switch k {
		case "type":
		case "text":
			if v[0] != '"' || json.Unmarshal(v, &text) != nil {
				return "", false
			}
		default:
			return "", false
		}
	}
	return text, true
}

// members counts the members of the JSON object data, which is valid:
// a member name and its value are parted by the object's only colons
// outside strings and nested values.
func members(data []byte) int {
	n, depth, str, esc := 0, 0, false, false
	for _, b := range data {
		switch {
		case str && esc:
			esc = false
		case str && b == '\\':
			esc = true
		case str:
			str = b != '"'
		case b == '"':
			str = true
		case b == '{' || b == '[':
			depth++
		case b == '}' || b == ']':
			depth--
		case b == ':' && depth == 1:
			n++
		}
	}
	return n
}
