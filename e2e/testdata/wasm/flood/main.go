//go:build wasip1

// Command flood writes to stdout forever.
package main

import (
	"encoding/json"
	"os"
	"strings"

	"github.com/sluicehq/sluice/worker/wasm/guest"
)

func init() { guest.Serve(handle) }

func main() {}

func handle(tool string, args json.RawMessage) (any, error) {
	if tool == "echo" {
		return args, nil
	}
	line := []byte(`{"output": "` + strings.Repeat("A", 4096) + `"}` + "\n")
	for {
		os.Stdout.Write(line)
	}
}
