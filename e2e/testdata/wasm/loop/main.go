//go:build wasip1

// Command loop spins forever in its attack tool.
package main

import (
	"encoding/json"

	"github.com/sluicehq/sluice/worker/wasm/guest"
)

func init() { guest.Serve(handle) }

func main() {}

func handle(tool string, args json.RawMessage) (any, error) {
	if tool == "echo" {
		return args, nil
	}
	n := 0
	for {
		n++
	}
}
