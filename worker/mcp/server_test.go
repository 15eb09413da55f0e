package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

var hostileBin string

func TestMain(m *testing.M) {
	// This test binary, run again: as a launcher, or as a server the
	// launcher starts (launcher_test.go).
	if os.Getenv(LauncherEnv) == "1" {
		os.Exit(Launch(os.NewFile(3, "worker"), os.Stderr))
	}
	if what := os.Getenv("MCP_TEST_PROBE"); what != "" {
		os.Exit(probe(what))
	}
	dir, err := os.MkdirTemp("", "mcp-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hostileBin = filepath.Join(dir, "mcphostile")
	cmd := exec.Command("go", "build", "-o", hostileBin, "../../e2e/testdata/mcphostile")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the hostile MCP server:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// hostile serves the hostile test server with every tool granted, and a
// short timeout and output limit.
func hostile(t testing.TB) *Server { return hostileWithin(t, "2s") }

// hostileWithin is the hostile server with the given time limit per call.
func hostileWithin(t testing.TB, timeout string) *Server {
	t.Helper()
	return serve(t, "hostile", timeout, hostileBin)
}

// discovered writes the manifest src to file, discovers its server's
// tools into the manifest's cache, and loads it as a worker does.
func discovered(t testing.TB, file, src string) *capabilities.Manifest {
	t.Helper()
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := capabilities.LoadMCP(file)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Discover(context.Background(), Config{Manifest: m, Path: os.Getenv("PATH")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(d)
	if err := os.WriteFile(capabilities.CachePath(file), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if m, err = capabilities.Load(file); err != nil {
		t.Fatal(err)
	}
	return m
}

// serve serves the MCP server command as worker name, with every tool
// granted, the timeout given and a short output limit.
func serve(t testing.TB, name, timeout string, command ...string) *Server {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, name+".yaml")
	command = slices.Clone(command)
	for i, a := range command {
		command[i] = strconv.Quote(a)
	}
	src := "worker: " + name + "\nrun: mcp\ncommand: [" + strings.Join(command, ", ") + "]\ntools:\n  \"*\": {}\nlimits: {timeout: " + timeout + ", max_output: 64KiB}\n"
	s := New(Config{Manifest: discovered(t, file, src), Path: os.Getenv("PATH")})
	t.Cleanup(s.Close)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func call(s *Server, tool, args string) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Manifest.Limits.Timeout)
	defer cancel()
	return s.Handlers()[tool](ctx, worker.NewCall(tool, json.RawMessage(args), nil))
}

func replyCode(err error) string {
	var re *schemas.ReplyError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}

// Each way the server fails fails one call, and the next call is served
// by the server started again. Only the hanging server is given a short
// time limit: the others must fail for what they did, not for the time a
// busy machine takes to make an 8 MiB answer.
func TestServerContained(t *testing.T) {
	patient, quick := hostileWithin(t, "2m"), hostile(t)
	for _, c := range []struct {
		s               *Server
		tool, code, msg string
	}{
		{patient, "crash", schemas.CodeFailed, "exited or broke the connection"},
		{quick, "hang", schemas.CodeFailed, "did not answer within 2s"},
		{patient, "flood", schemas.CodeTooLarge, "exceeds the limit"},
		{patient, "fail", schemas.CodeFailed, "reported an error"},
	} {
		s := c.s
		start := time.Now()
		_, err := call(s, c.tool, "{}")
		if replyCode(err) != c.code || !strings.Contains(fmt.Sprint(err), c.msg) {
			t.Fatalf("%s: %v: want %s with %q", c.tool, err, c.code, c.msg)
		}
		if d := time.Since(start); d > 3*time.Minute {
			t.Errorf("%s took %s", c.tool, d)
		}
		out, err := call(s, "echo", `{"text": "again"}`)
		if err != nil {
			t.Fatalf("echo after %s: %v", c.tool, err)
		}
		if !strings.Contains(fmt.Sprint(out), "again") {
			t.Fatalf("echo after %s: %#v", c.tool, out)
		}
	}
}

// A server whose tools changed since they were discovered is refused.
func TestServerChangedIsRefused(t *testing.T) {
	s := hostile(t)
	s.Close()
	d := *s.cfg.Manifest.Discovery
	d.Server.Version = "6.6.5"
	m := *s.cfg.Manifest
	m.Discovery = &d
	s2 := New(Config{Manifest: &m, Path: os.Getenv("PATH")})
	defer s2.Close()
	if err := s2.Start(context.Background()); !errors.Is(err, ErrChanged) {
		t.Fatalf("start: %v, want ErrChanged", err)
	}
}

// A call's object of arguments is sent as it came, not decoded and
// encoded again; anything else is refused as before, as bad arguments.
func TestArguments(t *testing.T) {
	a, err := arguments(worker.NewCall("echo", json.RawMessage(` {"text": "a", "n": 1e2} `), nil))
	if raw, ok := a.(json.RawMessage); err != nil || !ok || string(raw) != `{"text": "a", "n": 1e2}` {
		t.Fatalf("an object: %#v, %v", a, err)
	}
	for _, bad := range []string{`[1]`, `"x"`, `{"text": `} {
		if _, err := arguments(worker.NewCall("echo", json.RawMessage(bad), nil)); replyCode(err) != schemas.CodeBadArguments {
			t.Errorf("%s: %v, want %s", bad, err, schemas.CodeBadArguments)
		}
	}
	if a, err := arguments(worker.NewCall("echo", json.RawMessage(`null`), nil)); err != nil || a.(map[string]any) != nil {
		t.Fatalf("null: %#v, %v", a, err)
	}
}
