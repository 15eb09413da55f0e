package engine

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/orchestrator/internal/telemetry"
)

// hopFlow is the hop of make bench on the test worker: one call of t.echo
// (which returns its arguments) with a 256-character text from the run's
// inputs.
const hopFlow = `name: hop
inputs:
  text: {type: string}
steps:
  - {id: echo, call: t.echo, with: {text: "${inputs.text}"}}
outputs:
  text: "${steps.echo.output.text}"
`

// BenchmarkHop runs the hop's one-step flow through Engine.Run, one run at
// a time: labels, the policy decision, the audit records and the run's
// durable state on an embedded bus, the call to the worker (served in this
// process) and its reply. Its allocations per run, and its CPU time per
// run (cpu-us/op: user and system time of the whole process, which a
// loaded machine skews less than the wall time), are the orchestrator's,
// its bus's and the worker's together.
//
// traced is the same hop with its spans exported over OTLP/HTTP, 512 at a
// time, to a receiver on loopback in this process that reads and drops
// them: what tracing adds to a hop is the difference, in allocations
// exactly.
func BenchmarkHop(b *testing.B) {
	for _, traced := range []bool{false, true} {
		name := "off"
		if traced {
			name = "traced"
		}
		b.Run(name, func(b *testing.B) { benchmarkHop(b, traced) })
	}
}

func benchmarkHop(b *testing.B, traced bool) {
	if traced {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/x-protobuf")
		}))
		defer srv.Close()
		// Full batches only, as the bench's tracing group exports.
		shutdown, on, err := telemetry.Setup(telemetry.Config{Endpoint: srv.URL, Getenv: func(k string) string {
			return map[string]string{"OTEL_BSP_SCHEDULE_DELAY": "600000", "OTEL_BSP_MAX_QUEUE_SIZE": "1000000"}[k]
		}})
		if err != nil || !on {
			b.Fatalf("tracing on: %v %v", on, err)
		}
		defer shutdown(context.Background())
	}
	h := newHarness(b, "", nil)
	p := h.plan(hopFlow)
	text := strings.Repeat("abcdefghijklmnopqrstuvwxyz", 10)[:256]
	inputs := map[string]any{"text": text}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := func() {
		r, err := h.engine.Run(ctx, p, inputs, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if r.Status != StatusCompleted || r.Outputs["text"] != text {
			b.Fatalf("run %s: %+v", r.Status, r)
		}
	}
	for range 50 {
		run()
	}
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		run()
	}
	b.ReportMetric(float64((cpuTime(b)-start).Microseconds())/float64(b.N), "cpu-us/op")
}

// cpuTime is the CPU time, user and system, the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
