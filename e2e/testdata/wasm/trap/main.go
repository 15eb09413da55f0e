//go:build wasip1

// Command trap panics in a goroutine, where the guest package cannot
// recover it: the Go runtime aborts the instance.
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
	done := make(chan struct{})
	go func() {
		var m map[string]int
		m["boom"]++ // assignment to a nil map
		close(done)
	}()
	<-done
	return nil, nil
}
