package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/orchestrator/api"
)

const (
	scaleDeployment = "workers:\n  - manifest: builtin:payment\npolicies: [hold.yaml]\n"
	// holdPolicy holds every payment for a person.
	holdPolicy = `rules:
  - name: hold-every-charge
    when: tool.name == "payment.charge"
    action: approve
    reason: every payment of the scale benchmark waits for a person
`
	chargeFlow = `name: held
steps:
  - id: pay
    call: payment.charge
    with: {amount: 1, currency: EUR, payee: acct_bench}
`
	// exitHeld is the exit code of `sluice run` when a call is held.
	exitHeld = 4
	// submitters submit runs at once.
	submitters = 4
	// targetMiB is the memory target for 10,000 held runs (issue 12).
	targetMiB = 200
)

var scaleNames = []string{"scale_held_runs", "scale_submit", "scale_rss", "scale_mem_per_held_run", "scale_list_approvals"}

// scale holds n runs at approval at once in one `sluice up`, held by a
// policy that sends every payment to a person: the first submitted with
// `sluice run --wait=false`, the others through the API that command uses
// (api.Client.Run, as the evaluation submits its runs), so that what is
// timed is the orchestrator holding runs, not n processes of the CLI
// starting. It prints the resident memory of the orchestrator process with
// the n runs held, the memory each held run adds, and the wall time of
// `sluice approvals --json` listing them.
func scale(res *results, sluiceBin, dir string, n int) error {
	if n <= 0 {
		res.notDone("skipped (-scale 0)", scaleNames...)
		return nil
	}
	if err := exec.Command(sluiceBin, "approvals", "--help").Run(); err != nil {
		res.notDone("this sluice has no `approvals` command to list held calls", scaleNames...)
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, src := range map[string]string{"sluice.yaml": scaleDeployment, "hold.yaml": holdPolicy, "flow.yaml": chargeFlow} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			return err
		}
	}
	up, err := startUp(sluiceBin, dir)
	if err != nil {
		return err
	}
	defer up.stop()
	pid := strconv.Itoa(up.cmd.Process.Pid)
	// One run first, so that what the first run sets up is not counted
	// against each held run.
	if err := submitHeld(sluiceBin, dir); err != nil {
		return err
	}
	rss0 := procStatus(pid, "VmRSS")
	if rss0 == 0 {
		res.notDone("no /proc to read the orchestrator's memory from", scaleNames...)
		return nil
	}
	client, err := api.Dial(filepath.Join(dir, ".sluice"))
	if err != nil {
		return fmt.Errorf("the API of sluice up: %w", err)
	}
	defer client.Close()
	flow, err := filepath.Abs(filepath.Join(dir, "flow.yaml"))
	if err != nil {
		return err
	}
	t := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, submitters)
	for range submitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := next.Add(1); k <= int64(n-1); k = next.Add(1) {
				if err := submitHeldAPI(client, flow); err != nil {
					errs <- err
					return
				}
				// A line now and then, since this is the longest group.
				if (k+1)%1000 == 0 {
					fmt.Printf("# scale: %d of %d runs submitted (%s)\n", k+1, n, short(time.Since(t)))
				}
			}
		}()
	}
	wg.Wait()
	submit := time.Since(t)
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	rss := procStatus(pid, "VmRSS")
	var lists []float64
	for range 3 {
		t := time.Now()
		held, err := listApprovals(sluiceBin, dir)
		if err != nil {
			return err
		}
		lists = append(lists, float64(time.Since(t).Microseconds())/1e3)
		if held < n {
			return fmt.Errorf("sluice approvals lists %d held calls, want %d", held, n)
		}
	}
	res.fig("scale_held_runs", float64(n), "runs")
	res.fig("scale_submit", float64(n)/submit.Seconds(), "runs/s")
	res.fig("scale_rss", rss, "MiB")
	res.fig("scale_mem_per_held_run", (rss-rss0)*1024/float64(n-1), "KiB")
	res.fig("scale_list_approvals", median(lists), "ms")
	res.ratio(fmt.Sprintf("scale_rss_vs_target_%dMiB", targetMiB), rss/targetMiB)
	return nil
}

type upProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startUp starts `sluice up` in dir and waits until it says it is up.
func startUp(sluiceBin, dir string) (*upProcess, error) {
	cmd := exec.Command(sluiceBin, "up", "--http=off", "-q")
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	u := &upProcess{cmd: cmd, done: make(chan struct{})}
	ready := make(chan struct{})
	var log bytes.Buffer
	go func() {
		defer close(u.done)
		sc := bufio.NewScanner(stderr)
		up := false
		for sc.Scan() {
			if !up && strings.HasPrefix(sc.Text(), "sluice is up") {
				up = true
				close(ready)
			}
			if log.Len() < 64<<10 {
				log.WriteString(sc.Text() + "\n")
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case <-ready:
		return u, nil
	case <-u.done:
		return nil, fmt.Errorf("sluice up exited:\n%s", log.String())
	case <-time.After(30 * time.Second):
		u.stop()
		return nil, errors.New("sluice up: not up after 30s")
	}
}

// stop interrupts sluice up, as Ctrl-C does, and kills it if it has not
// stopped within 10s.
func (u *upProcess) stop() {
	_ = u.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-u.done:
	case <-time.After(10 * time.Second):
		_ = u.cmd.Process.Kill()
		<-u.done
	}
}

// submitHeld submits the flow to sluice up and expects it held.
func submitHeld(sluiceBin, dir string) error {
	cmd := exec.Command(sluiceBin, "run", "--wait=false", "flow.yaml")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == exitHeld {
		return nil
	}
	return fmt.Errorf("sluice run --wait=false: want exit code %d (held), got %v:\n%s", exitHeld, err, out)
}

// submitHeldAPI submits the flow through the API, not waiting, and
// expects it held.
func submitHeldAPI(c *api.Client, flow string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := c.Run(ctx, api.RunRequest{Flow: flow}, nil)
	if err != nil {
		return fmt.Errorf("submit a run: %w", err)
	}
	if rep.Error != "" {
		return fmt.Errorf("submit a run: %s", rep.Error)
	}
	var r struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(rep.Result, &r); err != nil || r.Status != "held" {
		return fmt.Errorf("submit a run: want it held, got %s", rep.Result)
	}
	return nil
}

// listApprovals runs `sluice approvals --json` and counts what it lists.
func listApprovals(sluiceBin, dir string) (int, error) {
	cmd := exec.Command(sluiceBin, "approvals", "--json")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("sluice approvals --json: %w", err)
	}
	var list []json.RawMessage
	if err := json.Unmarshal(out, &list); err != nil {
		return 0, fmt.Errorf("sluice approvals --json: %w", err)
	}
	return len(list), nil
}
