package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/internal/seal"
	"github.com/sluicehq/sluice/orchestrator/supervisor"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// The echo worker answers every call with its arguments. It exists for the
// benchmarks only: the bench binary serves it (`bench echo-worker`), and
// the orchestrators of the bench start it through Config.WorkerCommand,
// with the credentials, environment and supervision of any worker.
// `sluice worker` has no such built-in worker, so no deployment runs it.
const echoManifest = `# The echo worker of the benchmarks (e2e/bench): returns its arguments.
worker: echo
run: builtin:echo
tools:
  echo:
    description: Return the text unchanged.
    input_schema: echo.json
    output_schema: echo.output.json
    output_label: {integrity: trusted, secrecy: []}
    clearance: {integrity: untrusted, secrecy: []}
limits: {timeout: 10s, max_output: 64KiB}
`

const echoSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "echo.echo %s",
  "type": "object",
  "properties": {"text": {"type": "string", "maxLength": 65536}},
  "required": ["text"],
  "additionalProperties": false
}
`

// writeEcho writes the echo manifest and its schemas into dir and returns
// a deployment (sluice.yaml) that runs the echo worker and nothing else.
func writeEcho(dir string) (deployment string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	files := map[string]string{
		"echo.yaml":        echoManifest,
		"echo.json":        fmt.Sprintf(echoSchema, "arguments"),
		"echo.output.json": fmt.Sprintf(echoSchema, "output"),
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("workers:\n  - manifest: %q\n", filepath.Join(dir, "echo.yaml")), nil
}

// echoCommand starts the echo worker's processes: this binary, in
// echo-worker mode.
func echoCommand() (func(supervisor.Worker) *exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return func(w supervisor.Worker) *exec.Cmd {
		return exec.Command(self, "echo-worker", w.Ref)
	}, nil
}

// echoWorker is the echo worker process. Like `sluice worker`, it connects
// with the credentials the supervisor handed it, confines itself to the bus
// where the kernel offers Landlock, seals itself off the network when told
// to (SLUICE_SEAL_NETWORK), and serves through worker.Service.
func echoWorker(args []string) error {
	if len(args) != 1 {
		return errors.New("want the manifest")
	}
	m, err := capabilities.Load(args[0])
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("worker", m.Worker)
	subjects := schemas.Subjects{Prefix: os.Getenv("SLUICE_SUBJECT_PREFIX")}
	nc, err := worker.Connect(worker.ConnectConfig{URL: os.Getenv("SLUICE_NATS_URL"), CredsFile: os.Getenv("SLUICE_NATS_CREDS"),
		Worker: m.Worker, Subjects: subjects, Log: log})
	if err != nil {
		return err
	}
	defer nc.Close()
	var c worker.Confinement
	if u, err := url.Parse(nc.ConnectedUrl()); err == nil {
		if p, err := strconv.ParseUint(u.Port(), 10, 16); err == nil {
			c.NATSPort = uint16(p)
		}
	}
	if _, err := worker.Confine(c); err != nil {
		return err
	}
	if os.Getenv("SLUICE_SEAL_NETWORK") == "1" {
		if err := seal.Network(); err != nil && !errors.Is(err, seal.ErrUnsupported) {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	svc := &worker.Service{Manifest: m, Subjects: subjects, Log: log,
		Handlers: map[string]worker.Handler{"echo": func(_ context.Context, call *worker.Call) (any, error) {
			if len(call.Args) == 0 {
				return nil, errors.New("no arguments")
			}
			return call.Args, nil
		}}}
	return svc.Serve(ctx, nc)
}
