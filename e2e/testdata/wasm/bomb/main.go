//go:build wasip1

// Command bomb allocates memory until it is stopped.
package main

import (
	"encoding/json"

	"github.com/sluicehq/sluice/worker/wasm/guest"
)

func init() { guest.Serve(handle) }

func main() {}

var keep [][]byte

func handle(tool string, args json.RawMessage) (any, error) {
	if tool == "echo" {
		return args, nil
	}
	// Each allocation is past the tests' memory limit (64 MiB), so the
	// first one is refused before any slow work.
	for {
		b := make([]byte, 256<<20)
		for i := range b {
			b[i] = 1
		}
		keep = append(keep, b)
	}
}
