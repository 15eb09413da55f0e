package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/bus"
)

const (
	paymentDeployment = "workers:\n  - manifest: builtin:payment\n"
	oneStep           = "name: hop\nsteps:\n  - {id: balance, call: payment.balance}\n"
)

// coldRun is the timeline of one `sluice run -v`, read from the lines it
// prints as they arrive: "starting the bus…" once the deployment, its
// manifests, policies and the flow are loaded; "ready in …" once the bus,
// the audit log and every worker are up; the result on stdout once the run
// is over; then the exit, after the orchestrator and its workers stopped.
type coldRun struct {
	load, start, call, stop, total time.Duration
}

func runCold(sluiceBin, dir string) (coldRun, error) {
	cmd := exec.Command(sluiceBin, "run", "-v", "flow.yaml")
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return coldRun{}, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return coldRun{}, err
	}
	var starting, ready, result time.Time
	var log strings.Builder
	errDone, outDone := make(chan struct{}), make(chan struct{})
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return coldRun{}, err
	}
	go func() {
		defer close(errDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			now, line := time.Now(), sc.Text()
			switch {
			case starting.IsZero() && strings.HasPrefix(line, "starting the bus"):
				starting = now
			case ready.IsZero() && strings.HasPrefix(line, "ready in "):
				ready = now
			}
			log.WriteString(line + "\n")
		}
	}()
	go func() {
		defer close(outDone)
		r := bufio.NewReader(stdout)
		if _, err := r.ReadString('\n'); err == nil {
			result = time.Now()
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	<-errDone
	<-outDone
	err = cmd.Wait()
	end := time.Now()
	if err != nil {
		return coldRun{}, fmt.Errorf("sluice run: %v\n%s", err, log.String())
	}
	if starting.IsZero() || ready.IsZero() || result.IsZero() {
		return coldRun{}, fmt.Errorf("sluice run -v: expected lines not seen:\n%s", log.String())
	}
	return coldRun{load: starting.Sub(t0), start: ready.Sub(starting), call: result.Sub(ready),
		stop: end.Sub(result), total: end.Sub(t0)}, nil
}

// busAndAudit times, in this process, the first two parts of what `sluice
// run` starts: the embedded bus with JetStream on an empty state
// directory, then the orchestrator's connection and the audit stream.
func busAndAudit(dir string) (busStart, auditOpen time.Duration, err error) {
	state, err := os.MkdirTemp(dir, "state-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(state)
	t0 := time.Now()
	b, err := bus.Start(bus.Config{StoreDir: state})
	if err != nil {
		return 0, 0, err
	}
	defer b.Shutdown()
	t1 := time.Now()
	nc, err := b.Connect()
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := audit.Open(ctx, nc, "sluice"); err != nil {
		return 0, 0, err
	}
	return t1.Sub(t0), time.Since(t1), nil
}

// startup runs `sluice run -v` of a one-step flow from a cold start five
// times: a fresh process that loads its configuration, starts the
// embedded bus, the audit log and the payment worker process, runs the
// flow, and stops them. It prints the wall time and what it is spent on.
func startup(res *results, sluiceBin, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte(paymentDeployment), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "flow.yaml"), []byte(oneStep), 0o600); err != nil {
		return err
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
	var total, load, start, call, stop, busStart, auditOpen []float64
	for range 5 {
		r, err := runCold(sluiceBin, dir)
		if err != nil {
			return err
		}
		total, load, start = append(total, ms(r.total)), append(load, ms(r.load)), append(start, ms(r.start))
		call, stop = append(call, ms(r.call)), append(stop, ms(r.stop))
		b, a, err := busAndAudit(dir)
		if err != nil {
			return err
		}
		busStart, auditOpen = append(busStart, ms(b)), append(auditOpen, ms(a))
	}
	res.fig("startup_run", median(total), "ms")
	res.fig("startup_load", median(load), "ms")
	res.fig("startup_start", median(start), "ms")
	res.fig("startup_bus", median(busStart), "ms")
	res.fig("startup_audit_open", median(auditOpen), "ms")
	res.fig("startup_workers", max(0, median(start)-median(busStart)-median(auditOpen)), "ms")
	res.fig("startup_call", median(call), "ms")
	res.fig("startup_stop", median(stop), "ms")
	res.ratio("startup_run_vs_target_300ms", median(total)/300)
	return nil
}
