package wasm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
	"github.com/sluicehq/sluice/worker/wasm"
)

// Every call runs in an instance that served no call before: what one
// call leaves in package variables is gone in the next, sequentially and
// concurrently, for reactors (pooled) and commands alike. The time limit is
// out of reach: sixteen concurrent instantiations on a loaded machine under
// the race detector take long, and that must not change the outcome.
func TestEveryCallGetsAFreshInstance(t *testing.T) {
	limits := "limits: {" + unreachable + "}\n"
	mod := newModule(t, manifest(t, reactorWasm, reactorTools, limits), 2)
	for i := range 3 {
		out, err := call(t, mod, "remember", fmt.Sprintf(`{"text": "secret %d"}`, i), nil)
		if err != nil {
			t.Fatal(err)
		}
		if out["previous"] != "" || out["calls"] != 1.0 {
			t.Fatalf("call %d saw state of an earlier call: %v", i, out)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			out, err := call(t, mod, "remember", fmt.Sprintf(`{"text": "%d"}`, i), nil)
			if err == nil && (out["previous"] != "" || out["calls"] != 1.0) {
				err = fmt.Errorf("call %d saw state of another call: %v", i, out)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	cmd := newModule(t, manifest(t, commandWasm, []string{"echo", "loop", "exit"}, limits), 2)
	for range 3 {
		out, err := call(t, cmd, "echo", `{"text": "hi"}`, nil)
		if err != nil {
			t.Fatal(err)
		}
		if out["text"] != "hi" || out["calls"] != 1.0 {
			t.Fatalf("command output %v", out)
		}
	}
}

// unreachable is a time limit no call in these tests comes near (the test
// binary's own timeout ends first): a test whose outcome is not the time
// limit sets it, so that how fast the machine is cannot change the outcome.
const unreachable = "timeout: 10m"

// cancelOnLog is a log handler that cancels a call when its guest logs,
// and keeps nothing.
type cancelOnLog struct{ cancel context.CancelFunc }

func (h cancelOnLog) Enabled(context.Context, slog.Level) bool { return true }
func (h cancelOnLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h cancelOnLog) WithGroup(string) slog.Handler            { return h }
func (h cancelOnLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "guest log" {
		h.cancel()
	}
	return nil
}

// Each misbehaving guest is stopped with an error that names the limit or
// the failure, and the module serves the next call.
//
// No guest's outcome depends on the machine's speed. The time limit is met
// by a module that loops in its first instruction (hand-assembled: its
// instantiation and call take microseconds, far inside the limit); the Go
// guests run under a time limit they cannot reach, so the limit each meets
// is the one under test: the memory bomb asks for twice its memory limit
// in one allocation, before any slow work, and the Go guest's endless loop
// is stopped by its caller once it has said it is looping.
func TestHostileGuestsAreContained(t *testing.T) {
	limits := "limits: {" + unreachable + ", memory: 32MiB, max_output: 64KiB}\n"
	reactor := newModule(t, manifest(t, reactorWasm, reactorTools, limits), 1)
	command := newModule(t, manifest(t, commandWasm, []string{"echo", "loop", "exit"}, limits), 1)

	t.Run("time limit", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "loop.wasm")
		if err := os.WriteFile(p, tiny(false, 1, true, loopForever), 0o644); err != nil {
			t.Fatal(err)
		}
		mod := newModule(t, manifest(t, p, []string{"run"}, "limits: {timeout: 500ms}\n"), 1)
		// The second call shows the module serves on: a fresh instance,
		// stopped again.
		for range 2 {
			_, err := call(t, mod, "run", `{}`, nil)
			var re *schemas.ReplyError
			if !errors.Is(err, wasm.ErrTimeout) || !errors.As(err, &re) || re.Code != schemas.CodeFailed ||
				!strings.Contains(re.Message, "ran past its time limit of 500ms") {
				t.Fatalf("error %v, want the time limit of 500ms", err)
			}
		}
	})
	t.Run("endless loop stopped by its caller", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		log := slog.New(cancelOnLog{cancel: cancel})
		c := &worker.Call{Tool: "loop", Args: json.RawMessage(`{}`), Msg: "m-loop", Log: log}
		_, err := reactor.Call(ctx, c)
		var re *schemas.ReplyError
		if !errors.Is(err, wasm.ErrTimeout) || !errors.As(err, &re) || !strings.Contains(re.Message, "the call was cancelled") {
			t.Errorf("error %v, want the call cancelled", err)
		}
		if out, err := call(t, reactor, "echo", `{"text": "still here"}`, nil); err != nil || out["text"] != "still here" {
			t.Fatalf("the next call: %v, %v", out, err)
		}
	})
	for _, tc := range []struct {
		name, tool string
		mod        *wasm.Module
		kind       error
		code       string
		message    string
	}{
		{"memory bomb", "bomb", reactor, wasm.ErrMemory, schemas.CodeFailed, "memory limit of 32MiB"},
		{"flood of output", "flood", reactor, wasm.ErrOutput, schemas.CodeTooLarge, "limit of 64KiB"},
		{"output over the limit", "big", reactor, wasm.ErrOutput, schemas.CodeTooLarge, "limit of 64KiB"},
		{"panic caught by the guest package", "panic", reactor, nil, schemas.CodeFailed, "panic: the guest gave up"},
		{"panic in a goroutine", "crash", reactor, wasm.ErrTrap, schemas.CodeFailed, "trapped: wasm error: unreachable"},
		{"exit", "exit", reactor, wasm.ErrExit, schemas.CodeFailed, "exited with status 3"},
		{"exit in a command", "exit", command, wasm.ErrExit, schemas.CodeFailed, "exited with status 3"},
		{"tool error", "fail", reactor, nil, schemas.CodeFailed, "no rate for XYZ"},
		{"forged error code", "forge", reactor, nil, schemas.CodeFailed, "forged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := call(t, tc.mod, tc.tool, `{"n": 100000}`, nil)
			if err == nil {
				t.Fatal("the call succeeded")
			}
			if tc.kind != nil && !errors.Is(err, tc.kind) {
				t.Errorf("error %v is not %v", err, tc.kind)
			}
			var re *schemas.ReplyError
			if !errors.As(err, &re) || re.Code != tc.code || !strings.Contains(re.Message, tc.message) {
				t.Errorf("reply error %+v, want code %s and a message with %q", re, tc.code, tc.message)
			}
			if out, err := call(t, tc.mod, "echo", `{"text": "still here"}`, nil); err != nil || out["text"] != "still here" {
				t.Fatalf("the next call: %v, %v", out, err)
			}
		})
	}
}

// A tool gets its call's idempotency key, so that a side effect it makes
// elsewhere happens once however often the call is sent.
func TestGuestGetsTheIdempotencyKey(t *testing.T) {
	mod := newModule(t, manifest(t, reactorWasm, reactorTools, ""), 1)
	c := worker.NewCall("key", json.RawMessage(`{}`), nil)
	c.IdempotencyKey = "run-1/pay/2/0"
	out, err := mod.Call(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if err := json.Unmarshal(out.(json.RawMessage), &v); err != nil || v["key"] != "run-1/pay/2/0" {
		t.Fatalf("the guest read %s (%v), want the call's key", out, err)
	}
}

// The guest runs with no arguments but its name, no environment, fake
// clocks, crypto-random bytes and no file system.
func TestSandboxIsClosedByDefault(t *testing.T) {
	mod := newModule(t, manifest(t, reactorWasm, reactorTools, ""), 1)
	a, err := call(t, mod, "sandbox", `{}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := call(t, mod, "sandbox", `{}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a["args"]) != "[guest]" || len(a["env"].([]any)) != 0 {
		t.Errorf("args %v, env %v: want [guest] and none", a["args"], a["env"])
	}
	if !strings.HasPrefix(a["now"].(string), "2022-01-01T00:00") {
		t.Errorf("the guest read the real clock: %v", a["now"])
	}
	if a["fs"] != true {
		t.Error("the guest could read a file system it was not granted")
	}
	if a["random"] == b["random"] {
		t.Errorf("two instances drew the same random bytes %v", a["random"])
	}
}

// HTTP goes through the call's egress client; without a grant, or when the
// broker refuses, the guest gets the refusal and nothing is sent.
func TestHTTPGoesThroughTheEgressClient(t *testing.T) {
	mod := newModule(t, manifest(t, reactorWasm, reactorTools, ""), 1)
	var got []schemas.EgressRequest
	broker := func(_ context.Context, req schemas.EgressRequest) (*schemas.EgressResponse, error) {
		got = append(got, req)
		if strings.Contains(req.URL, "evil") {
			return &schemas.EgressResponse{Error: &schemas.ReplyError{Code: schemas.CodeEgress, Message: "evil.example:443 is not granted"}}, nil
		}
		return &schemas.EgressResponse{Status: 200, Body: []byte(`{"rate": 1.5}`)}, nil
	}
	out, err := call(t, mod, "fetch", `{"url": "https://rates.example/latest"}`, broker)
	if err != nil {
		t.Fatal(err)
	}
	if out["status"] != 200.0 || out["body"] != `{"rate": 1.5}` {
		t.Errorf("output %v", out)
	}
	if len(got) != 1 || got[0].Method != "GET" || got[0].URL != "https://rates.example/latest" {
		t.Errorf("broker saw %+v", got)
	}
	_, err = call(t, mod, "fetch", `{"url": "https://evil.example/"}`, broker)
	var re *schemas.ReplyError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "not granted") {
		t.Errorf("refused request: %v", err)
	}
	_, err = call(t, mod, "fetch", `{"url": "https://rates.example/"}`, nil)
	if !errors.As(err, &re) || !strings.Contains(re.Message, "no network grant") {
		t.Errorf("request without a grant: %v", err)
	}
}

type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) records(t *testing.T) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// stderr and the log host function reach the worker's log, bounded and
// tagged with the call; a guest's line is at most a warning.
func TestGuestLogsAreBounded(t *testing.T) {
	var lb logBuffer
	log := slog.New(slog.NewJSONHandler(&lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mod := newModule(t, manifest(t, reactorWasm, reactorTools, ""), 1)
	for _, tool := range []string{"stderr", "log"} {
		c := &worker.Call{Tool: tool, Args: json.RawMessage(`{}`), Msg: "m-" + tool, Log: log.With("msg_id", "m-"+tool)}
		if _, err := mod.Call(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	var stderr, lines []map[string]any
	for _, r := range lb.records(t) {
		switch r["msg"] {
		case "guest stderr":
			stderr = append(stderr, r)
		case "guest log":
			lines = append(lines, r)
		}
	}
	if len(stderr) != 1 || len(stderr[0]["text"].(string)) > 4<<10 || stderr[0]["dropped_bytes"].(float64) < 90_000 || stderr[0]["msg_id"] != "m-stderr" {
		t.Errorf("stderr records: %v", stderr)
	}
	if len(lines) != 2 || lines[0]["text"] != "hello from the guest" || lines[0]["level"] != "INFO" || lines[1]["level"] != "WARN" || lines[1]["msg_id"] != "m-log" {
		t.Errorf("log records: %v", lines)
	}
}

// grants.files mounts that root and nothing else: read-only unless write,
// and neither ".." nor a symbolic link leads out of it.
func TestFileGrantIsConfinedToItsRoot(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "in.txt"), []byte("inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(filepath.Dir(root), "outside.txt")
	if err := os.WriteFile(outside, []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(outside) })

	ro := newModule(t, manifest(t, reactorWasm, reactorTools, fmt.Sprintf("grants: {files: {root: %q}}\n", root)), 1)
	if out, err := call(t, ro, "read", `{"path": "in.txt"}`, nil); err != nil || out["content"] != "inside" {
		t.Errorf("read in the root: %v, %v", out, err)
	}
	if out, err := call(t, ro, "read", `{"path": "/in.txt"}`, nil); err != nil || out["content"] != "inside" {
		t.Errorf("read by absolute path: %v, %v", out, err)
	}
	if _, err := call(t, ro, "write", `{"path": "new.txt", "text": "x"}`, nil); err == nil {
		t.Error("wrote to a read-only root")
	}
	if _, err := call(t, ro, "read", `{"path": "../outside.txt"}`, nil); err == nil {
		t.Error("read outside the root with ..")
	}

	rw := newModule(t, manifest(t, reactorWasm, reactorTools, fmt.Sprintf("grants: {files: {root: %q, write: true}}\n", root)), 1)
	if _, err := call(t, rw, "write", `{"path": "new.txt", "text": "written"}`, nil); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "new.txt")); err != nil || string(b) != "written" {
		t.Errorf("written file: %q, %v", b, err)
	}
	if out, err := call(t, rw, "symlink", `{"path": "`+outside+`"}`, nil); err == nil {
		t.Errorf("a symbolic link led out of the root: %v", out)
	}
	if _, err := os.Lstat(filepath.Join(root, "escape")); err == nil {
		// The link may exist; following it must not leave the root.
		if _, err := call(t, rw, "read", `{"path": "escape/etc/hostname"}`, nil); err == nil {
			t.Error("read through a link out of the root")
		}
	}
}

// Function bodies for tiny: no locals, then the instructions and end.
var (
	trapAtOnce  = []byte{0x00, 0x00, 0x0b}                         // unreachable
	loopForever = []byte{0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b} // loop; br 0; end
)

// tiny returns a hand-assembled command module whose _start runs body. It
// may import env.socket, and its memory of minPages may be left
// unexported.
func tiny(withImport bool, minPages uint32, exportMemory bool, body []byte) []byte {
	section := func(id byte, content []byte) []byte {
		return append([]byte{id, byte(len(content))}, content...)
	}
	b := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	b = append(b, section(0x01, []byte{0x01, 0x60, 0x00, 0x00})...) // type 0: () -> ()
	start := byte(0)
	if withImport {
		b = append(b, section(0x02, []byte{0x01, 0x03, 'e', 'n', 'v', 0x06, 's', 'o', 'c', 'k', 'e', 't', 0x00, 0x00})...)
		start = 1
	}
	b = append(b, section(0x03, []byte{0x01, 0x00})...) // one function of type 0
	mem := []byte{0x01, 0x00}
	for v := minPages; ; { // LEB128
		c := byte(v & 0x7f)
		if v >>= 7; v != 0 {
			mem = append(mem, c|0x80)
			continue
		}
		mem = append(mem, c)
		break
	}
	b = append(b, section(0x05, mem)...)
	exp := []byte{0x01, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, start}
	if exportMemory {
		exp[0] = 0x02
		exp = append(exp, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00)
	}
	b = append(b, section(0x07, exp)...)
	b = append(b, section(0x0a, append([]byte{0x01, byte(len(body))}, body...))...)
	return b
}

// A module that is not Go-built also runs: a trap is reported as one.
func TestTrapIsReported(t *testing.T) {
	p := filepath.Join(t.TempDir(), "trap.wasm")
	if err := os.WriteFile(p, tiny(false, 1, true, trapAtOnce), 0o644); err != nil {
		t.Fatal(err)
	}
	mod := newModule(t, manifest(t, p, []string{"run"}, ""), 1)
	for range 2 {
		_, err := call(t, mod, "run", `{}`, nil)
		if !errors.Is(err, wasm.ErrTrap) || !strings.Contains(err.Error(), "wasm error: unreachable") {
			t.Fatalf("error %v, want a trap", err)
		}
	}
}

// Modules that cannot serve are refused when the worker starts, with the
// reason.
func TestUnusableModulesAreRefused(t *testing.T) {
	dir := t.TempDir()
	imports := filepath.Join(dir, "imports.wasm")
	if err := os.WriteFile(imports, tiny(true, 1, true, trapAtOnce), 0o644); err != nil {
		t.Fatal(err)
	}
	hidden := filepath.Join(dir, "hidden.wasm")
	if err := os.WriteFile(hidden, tiny(false, 1024, false, trapAtOnce), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, module, extra, want string }{
		{"undeclared import", imports, "", "imports env.socket"},
		{"memory limit below the module's minimum", reactorWasm, "limits: {memory: 1MiB}\n", "limits.memory is 1 MiB"},
		{"missing file", filepath.Join(dir, "none.wasm"), "", "no such file"},
		{"unexported memory above the limit", hidden, "limits: {memory: 1MiB}\n", "memory limit of 1MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := wasm.New(context.Background(), wasm.Config{Manifest: manifest(t, tc.module, []string{"run"}, tc.extra), CacheDir: cacheDir})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}

// A tool's output is checked against its output_schema when it has one.
func TestOutputSchemaIsChecked(t *testing.T) {
	m := manifest(t, reactorWasm, reactorTools, "")
	tool, _ := m.Tool("echo")
	sch, err := schemas.Compile(map[string]any{"type": "object", "required": []any{"nope"}})
	if err != nil {
		t.Fatal(err)
	}
	tool.Output = sch
	mod := newModule(t, m, 1)
	if _, err := call(t, mod, "echo", `{}`, nil); !errors.Is(err, wasm.ErrReply) {
		t.Fatalf("error %v, want an output schema failure", err)
	}
	if names := slices.Sorted(func(yield func(string) bool) {
		for n := range mod.Handlers() {
			if !yield(n) {
				return
			}
		}
	}); !slices.Equal(names, slices.Sorted(slices.Values(reactorTools))) {
		t.Errorf("handlers %v", names)
	}
}
