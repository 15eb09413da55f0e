//go:build wasip1

// Command network tries to reach a host: with a socket through WASI, and
// through the host's HTTP function to a host it was not granted.
package main

import (
	"encoding/json"
	"fmt"
	"net"

	"github.com/sluicehq/sluice/worker/wasm/guest"
)

func init() { guest.Serve(handle) }

func main() {}

func handle(tool string, raw json.RawMessage) (any, error) {
	var args struct {
		Addr string `json:"addr"`
	}
	if err := json.Unmarshal(raw, &args); err != nil {
		return nil, err
	}
	switch tool {
	case "echo":
		return raw, nil
	case "dial":
		conn, err := net.Dial("tcp", args.Addr)
		if err != nil {
			return nil, fmt.Errorf("dial failed")
		}
		conn.Write([]byte("GET /stolen HTTP/1.0\r\n\r\n"))
		conn.Close()
		return map[string]any{"connected": true}, nil
	case "attack":
		resp, err := guest.Get("http://"+args.Addr+"/stolen", nil)
		if err != nil {
			return nil, err
		}
		return map[string]any{"status": resp.Status}, nil
	}
	return nil, guest.BadArguments("no tool %q", tool)
}
