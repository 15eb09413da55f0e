// Command command is a test guest of package wasm written without the
// guest package: a WASI command that reads the call envelope on stdin and
// writes the reply envelope on stdout, the contract any language can meet.
//
//	GOOS=wasip1 GOARCH=wasm go build -o command.wasm ./testdata/command
package main

import (
	"encoding/json"
	"io"
	"os"
)

var calls int

func main() {
	calls++
	in, _ := io.ReadAll(os.Stdin)
	var call struct {
		Tool string          `json:"tool"`
		Args json.RawMessage `json:"args"`
	}
	if err := json.Unmarshal(in, &call); err != nil {
		os.Exit(1)
	}
	switch call.Tool {
	case "echo":
		var args struct {
			Text string `json:"text"`
		}
		json.Unmarshal(call.Args, &args)
		json.NewEncoder(os.Stdout).Encode(map[string]any{"output": map[string]any{"text": args.Text, "calls": calls}})
	case "loop":
		for {
		}
	case "exit":
		os.Exit(3)
	default:
		json.NewEncoder(os.Stdout).Encode(map[string]any{"error": map[string]any{"code": "bad_arguments", "message": "unknown tool"}})
	}
}
