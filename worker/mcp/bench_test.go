package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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

// BenchmarkMCPServers is BenchmarkMCPCall against three servers: a go-sdk
// server (the hostile test server's echo), the reference
// server-everything's echo (node; skipped where it is not installed), and
// mcpfixed, fixed answers and no SDK (what a call costs apart from its
// server). Beside the time, each reports the CPU time per call of this
// process (the worker's side: handler, client, transport) and of the
// server's (Linux: /proc). The timeout is long: node may take seconds to
// start on a busy machine.
func BenchmarkMCPServers(b *testing.B) {
	b.Run("gosdk", func(b *testing.B) { benchServer(b, serve(b, "gosdk", "20s", hostileBin), "text") })
	b.Run("everything", func(b *testing.B) {
		script, err := filepath.Abs("../../examples/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
		if err != nil {
			b.Fatal(err)
		}
		node, err := exec.LookPath("node")
		if err != nil {
			b.Skip("node is not installed")
		}
		if _, err := os.Stat(script); err != nil {
			b.Skip("@modelcontextprotocol/server-everything is not installed: make mcp-servers")
		}
		benchServer(b, serve(b, "everything", "20s", node, script, "stdio"), "message")
	})
	b.Run("fixed", func(b *testing.B) {
		bin := filepath.Join(b.TempDir(), "mcpfixed")
		if out, err := exec.Command("go", "build", "-o", bin, "../../e2e/testdata/mcpfixed").CombinedOutput(); err != nil {
			b.Fatalf("build mcpfixed: %v: %s", err, out)
		}
		benchServer(b, serve(b, "fixed", "20s", bin), "text")
	})
}

func benchServer(b *testing.B, s *Server, arg string) {
	h := s.Handlers()["echo"]
	args, _ := json.Marshal(map[string]string{arg: benchText})
	ctx := context.Background()
	if _, err := h(ctx, worker.NewCall("echo", args, nil)); err != nil {
		b.Fatal(err)
	}
	pid := s.live.pid()
	self0, server0 := cpuTime(b, "self"), cpuTime(b, strconv.Itoa(pid))
	b.ResetTimer()
	for b.Loop() {
		if _, err := h(ctx, worker.NewCall("echo", args, nil)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64((cpuTime(b, "self")-self0).Microseconds())/n, "worker-cpu-us/op")
	b.ReportMetric(float64((cpuTime(b, strconv.Itoa(pid))-server0).Microseconds())/n, "server-cpu-us/op")
}

// cpuTime is the user and system CPU time of process pid ("self": this
// one) so far, from /proc (in clock ticks, 100 a second on Linux).
func cpuTime(b *testing.B, pid string) time.Duration {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	// The fields after the command's name, which is in parentheses.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%s/stat: %q", pid, stat)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
