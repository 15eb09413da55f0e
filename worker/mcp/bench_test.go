package mcp

import (
	"context"
	"encoding/json"
	"os/exec"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sluicehq/sluice/worker"
)

// The text of each call: 256 characters, as in the bench's hop.
var benchText = func() string {
	b := make([]byte, 256)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return string(b)
}()

// BenchmarkMCPCall is one tool call as the worker serves it: the handler,
// the argument decoding, the SDK's round trip to the server over stdio
// and back, and the result turned into an output. BenchmarkMCPRawSDKCall is
// its baseline: the SDK's client calling the same server, nothing else.
func BenchmarkMCPCall(b *testing.B) {
	s := hostile(b)
	defer s.Close()
	h := s.Handlers()["echo"]
	args, _ := json.Marshal(map[string]string{"text": benchText})
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := h(ctx, worker.NewCall("echo", args, nil)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMCPRawSDKCall(b *testing.B) {
	ctx := context.Background()
	c := sdk.NewClient(&sdk.Implementation{Name: "bench", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &sdk.CommandTransport{Command: exec.Command(hostileBin)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close()
	args := map[string]any{"text": benchText}
	b.ResetTimer()
	for b.Loop() {
		if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: args}); err != nil {
			b.Fatal(err)
		}
	}
}
