package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/config"
)

// tracingFigures measures what exporting traces adds to a hop: the
// one-step echo flow of the hop group at one caller, on an orchestrator
// with tracing off and on another exporting every span over OTLP/HTTP to
// a receiver on loopback (which reads each export and answers 200), the
// two alternated run by run, each on a fresh state directory.
func tracingFigures(res *results, o options, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var exports atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		exports.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	endpoint := "http://" + ln.Addr().String()

	var off, on []float64
	for i := range o.runs + 1 {
		for _, traced := range []bool{false, true} {
			getenv := func(string) string { return "" }
			if traced {
				getenv = func(k string) string {
					if k == "OTEL_EXPORTER_OTLP_ENDPOINT" {
						return endpoint
					}
					return ""
				}
			}
			p50, err := tracedHop(ctx, o, filepath.Join(dir, fmt.Sprintf("%d-%v", i, traced)), getenv)
			if err != nil {
				return fmt.Errorf("tracing %v: %w", traced, err)
			}
			if i == 0 {
				continue // the warm-up
			}
			if traced {
				on = append(on, p50)
			} else {
				off = append(off, p50)
			}
		}
	}
	if exports.Load() == 0 {
		return fmt.Errorf("tracing on: no span was exported to %s", endpoint)
	}
	res.fig("hop_p50_1_tracing_off", median(off), "us")
	res.fig("hop_p50_1_tracing_on", median(on), "us")
	// The target: tracing adds at most 5% (ratio at most 1.05).
	res.ratio("hop_p50_1_tracing_on_vs_off", median(on)/median(off))
	return nil
}

// tracedHop starts the echo orchestrator with getenv as its environment
// and returns the hop's p50 at one caller, in µs.
func tracedHop(ctx context.Context, o options, dir string, getenv func(string) string) (float64, error) {
	dep, err := writeEcho(dir)
	if err != nil {
		return 0, err
	}
	cfg, err := config.Parse("sluice.yaml", []byte(dep), dir)
	if err != nil {
		return 0, err
	}
	cmd, err := echoCommand()
	if err != nil {
		return 0, err
	}
	orch, err := orchestrator.New(orchestrator.Config{Deployment: cfg, Executable: o.sluice, WorkerCommand: cmd, Getenv: getenv})
	if err != nil {
		return 0, err
	}
	if err := orch.Start(ctx); err != nil {
		orch.Close()
		return 0, err
	}
	defer orch.Close()
	call, err := runner(ctx, orch, cfg, "hop.yaml", oneEcho)
	if err != nil {
		return 0, err
	}
	if _, err := measure(1, 300*time.Millisecond, call); err != nil {
		return 0, err
	}
	s, err := measure(1, o.dur, call)
	if err != nil {
		return 0, err
	}
	return s.p50, nil
}
