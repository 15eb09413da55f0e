package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// fiveEchoes is the flow of the flow figures: five steps in a chain, each
// echoing the text the step before it returned, so that every step waits
// for the one before it and reads its labeled output.
const fiveEchoes = `name: five
inputs:
  text: {type: string}
steps:
  - {id: s1, call: echo.echo, with: {text: "${inputs.text}"}}
  - {id: s2, call: echo.echo, with: {text: "${steps.s1.output.text}"}}
  - {id: s3, call: echo.echo, with: {text: "${steps.s2.output.text}"}}
  - {id: s4, call: echo.echo, with: {text: "${steps.s3.output.text}"}}
  - {id: s5, call: echo.echo, with: {text: "${steps.s4.output.text}"}}
outputs:
  text: "${steps.s5.output.text}"
`

// flowConcurrency are the numbers of runs at once of the flow figures.
var flowConcurrency = []int{16, 256}

// flowResult is what flow-child reports, per number of concurrent runs.
type flowResult struct {
	// IdleRSS is the resident memory of the orchestrator once started,
	// before any run, in MiB.
	IdleRSS float64 `json:"idle_rss"`
	// Steps per second and peak resident memory (MiB), one per run.
	Steps map[string][]float64 `json:"steps"`
	Peak  map[string][]float64 `json:"peak"`
}

// flowFigures runs the flow figures in a process of their own, so that the
// peak memory is the orchestrator's (and the goroutines that start its
// runs), not the bench's.
func flowFigures(res *results, o options) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "flow-child", "-sluice", o.sluice, "-runs", strconv.Itoa(o.runs), "-dur", o.dur.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return err
	}
	var fr flowResult
	if err := json.Unmarshal(out, &fr); err != nil {
		return fmt.Errorf("flow-child: %w: %q", err, out)
	}
	res.fig("flow_idle_rss", fr.IdleRSS, "MiB")
	for _, c := range flowConcurrency {
		k := strconv.Itoa(c)
		res.fig("flow_steps_"+k, median(fr.Steps[k]), "steps/s")
		res.fig("flow_peak_rss_"+k, median(fr.Peak[k]), "MiB")
	}
	return nil
}

// flowChild is the flow figures' process: an orchestrator with the echo
// worker, running C concurrent runs of the five-step flow over and over,
// for C = 16 and 256. It prints a flowResult as JSON.
func flowChild(args []string) error {
	fs := flag.NewFlagSet("flow-child", flag.ContinueOnError)
	sluiceBin := fs.String("sluice", "", "the sluice binary")
	runs := fs.Int("runs", 3, "runs of each figure")
	dur := fs.Duration("dur", 1500*time.Millisecond, "length of each loop")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sluice-bench-flow-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	orch, cfg, err := benchOrchestrator(ctx, *sluiceBin, dir)
	if err != nil {
		return err
	}
	defer orch.Close()
	five, err := runner(ctx, orch, cfg, "five.yaml", fiveEchoes)
	if err != nil {
		return err
	}
	fr := flowResult{IdleRSS: procStatus("self", "VmRSS"), Steps: map[string][]float64{}, Peak: map[string][]float64{}}
	if fr.IdleRSS == 0 {
		return errors.New("no /proc: memory not measured")
	}
	if _, err := measure(4, 300*time.Millisecond, five); err != nil {
		return err
	}
	for _, c := range flowConcurrency {
		k := strconv.Itoa(c)
		for range *runs {
			// Reset the peak (VmHWM) to the current resident size.
			_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
			s, err := measure(c, *dur, five)
			if err != nil {
				return err
			}
			fr.Steps[k] = append(fr.Steps[k], 5*s.rate)
			fr.Peak[k] = append(fr.Peak[k], procStatus("self", "VmHWM"))
		}
	}
	return json.NewEncoder(os.Stdout).Encode(fr)
}

// procStatus reads a memory field (VmRSS, VmHWM) of /proc/PID/status, in
// MiB; 0 where there is none.
func procStatus(pid, field string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
