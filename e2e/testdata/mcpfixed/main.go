// Command mcpfixed is the least a stdio MCP server can be: fixed answers
// to initialize and tools/list, one tool, echo, whose structured output
// is its arguments, and an error for any other request. No SDK: worker/mcp's
// benchmarks measure with it what a call costs apart from its server.
package main

import (
	"bufio"
	"encoding/json"
	"os"
)

func main() {
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := bufio.NewWriter(os.Stdout)
	for {
		line, err := in.ReadBytes('\n')
		if err != nil {
			return
		}
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Arguments json.RawMessage `json:"arguments"`
			} `json:"params"`
		}
		if json.Unmarshal(line, &m) != nil || len(m.ID) == 0 {
			// Not a request: a notification, or not JSON-RPC.
			continue
		}
		var res string
		switch m.Method {
		case "initialize":
			res = `{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"fixed","version":"1"}}`
		case "tools/list":
			res = `{"tools":[{"name":"echo","inputSchema":{"type":"object"}}]}`
		case "tools/call":
			res = `{"content":[{"type":"text","text":"echo"}],"structuredContent":` + string(m.Params.Arguments) + `}`
		default:
			out.WriteString(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"error":{"code":-32601,"message":"method not found"}}` + "\n")
			out.Flush()
			continue
		}
		out.WriteString(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":` + res + "}\n")
		out.Flush()
	}
}
