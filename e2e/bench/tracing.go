package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/config"
)

// hopSpanNames are the spans each traced hop makes: the run, its step, the
// call, the policy decision and the delivery to the worker.
var hopSpanNames = []string{"run hop", "step echo", "call echo.echo", "policy.decide", "deliver echo.echo"}

// tracingFigures measures what exporting traces adds to a hop: the
// one-step echo flow of the hop group at one caller, on two orchestrators,
// each in a process of its own (trace-child) on a fresh state directory,
// both alive at once: one exporting no traces, the other every span over
// OTLP/HTTP to a receiver on loopback in this process. Their loops
// alternate in pairs, off then on, then on then off, so that a change in
// the machine's load falls on both sides of a pair; the ratio is the
// median of the pairs' ratios, and the spread of those ratios is printed
// with it. Half the pairs are measured with the first process started
// traced, the other half on two new processes with the second started
// traced: two processes that do the same differ by a few per cent
// (the first one started was 2% slower in runs of this bench with
// neither traced), and the swap leaves that difference on both sides.
// The traced orchestrator exports full batches only (512 spans, about 100
// hops), during its own loops: none of its work is done while the
// untraced one is measured. The receiver checks that it got every span
// of every call the traced orchestrators made.
func tracingFigures(res *results, o options, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rcv, err := startSpanReceiver()
	if err != nil {
		return err
	}
	defer rcv.close()

	loop := max(o.dur/4, 100*time.Millisecond)
	pairs := 4 * o.runs
	var t tracingLoops
	for half, traced := range []int{1, 0} { // the process started second, then first, traced
		if err := t.measure(ctx, rcv, o, filepath.Join(dir, strconv.Itoa(half)), traced, loop, pairs/2+half*(pairs%2)); err != nil {
			return err
		}
	}
	res.fig("hop_p50_1_tracing_off", median(t.off), "us")
	res.fig("hop_p50_1_tracing_on", median(t.on), "us")
	// The CPU time the orchestrator's process spends on a hop (the
	// exporting goroutine, the garbage collector and the embedded bus
	// included; the worker's process not): less at the mercy of the
	// machine's load than the latency.
	res.fig("hop_cpu_1_tracing_off", median(t.cpuOff), "us")
	res.fig("hop_cpu_1_tracing_on", median(t.cpuOn), "us")
	// How many times a goroutine of that process was scheduled to run, a
	// hop: each is a round through the scheduler, on the same cores.
	res.fig("hop_goroutine_runs_1_tracing_off", median(t.runsOff), "runs")
	res.fig("hop_goroutine_runs_1_tracing_on", median(t.runsOn), "runs")
	ratios := slices.Sorted(slices.Values(t.ratios))
	q := func(p float64) float64 { return ratios[min(len(ratios)-1, int(p*float64(len(ratios))))] }
	fmt.Printf("# tracing: %d pairs of %s loops (the traced process started second, then first: medians %.3f and %.3f); "+
		"ratios of the pairs: min %.3f, p25 %.3f, p75 %.3f, max %.3f; "+
		"%d calls traced, every one's %d spans received in %d exports (%d while the untraced side was measured)\n",
		len(ratios), loop, t.halves[0], t.halves[1], ratios[0], q(0.25), q(0.75), ratios[len(ratios)-1],
		t.traced, len(hopSpanNames), rcv.exports.Load(), t.offExports)
	// The target: tracing adds at most 5% (ratio at most 1.05).
	res.ratio("hop_p50_1_tracing_on_vs_off", median(t.ratios))
	return nil
}

// tracingLoops gathers what the tracing group measures, over its halves.
type tracingLoops struct {
	off, on, ratios, cpuOff, cpuOn, runsOff, runsOn []float64
	halves                                          []float64 // the median ratio of each half
	offExports                                      int       // exports received while the untraced side was measured
	traced                                          int64     // calls the traced processes made
}

// measure starts two trace-child processes under dir, the one started
// traced-th (0 or 1) exporting to rcv, and measures pairs pairs of loops
// of them, then stops them and checks that rcv received every span of the
// traced one's calls.
func (t *tracingLoops) measure(ctx context.Context, rcv *spanReceiver, o options, dir string, traced int, loop time.Duration, pairs int) error {
	var kids [2]*traceKid // off, on
	for started := range 2 {
		role, endpoint := 0, ""
		if started == traced {
			role, endpoint = 1, rcv.url
		}
		prof := ""
		if o.traceProfile != "" {
			prof = fmt.Sprintf("%s-%s-%s.pprof", o.traceProfile, []string{"off", "on"}[role], filepath.Base(dir))
		}
		k, err := startTraceKid(ctx, o.sluice, filepath.Join(dir, []string{"off", "on"}[role]), endpoint, prof)
		if err != nil {
			return fmt.Errorf("tracing %s: %w", []string{"off", "on"}[role], err)
		}
		defer k.kill()
		kids[role] = k
	}
	// Warm both up, unmeasured.
	for _, k := range kids {
		if _, err := k.loop(300 * time.Millisecond); err != nil {
			return err
		}
		if _, err := k.ask("profile"); err != nil {
			return err
		}
	}
	var ratios []float64
	for i := range pairs {
		order := []int{0, 1}
		if i%2 == 1 {
			order = []int{1, 0}
		}
		var p50, cpu, runs [2]float64
		for _, j := range order {
			before := rcv.exports.Load()
			s, err := kids[j].loop(loop)
			if err != nil {
				return err
			}
			if j == 0 {
				// An export the traced process posts while the other is
				// measured would take its time from the untraced side.
				t.offExports += int(rcv.exports.Load() - before)
			}
			p50[j], cpu[j], runs[j] = s.P50, s.CPU, s.Runs
		}
		t.off, t.on = append(t.off, p50[0]), append(t.on, p50[1])
		t.cpuOff, t.cpuOn = append(t.cpuOff, cpu[0]), append(t.cpuOn, cpu[1])
		t.runsOff, t.runsOn = append(t.runsOff, runs[0]), append(t.runsOn, runs[1])
		ratios = append(ratios, p50[1]/p50[0])
		// Between pairs, off the clock: count the spans received.
		if err := rcv.decode(); err != nil {
			return err
		}
	}
	t.ratios = append(t.ratios, ratios...)
	t.halves = append(t.halves, median(ratios))
	// Stopping the traced orchestrator flushes its last spans.
	var calls [2]int64
	for i, k := range kids {
		var err error
		if calls[i], err = k.stop(); err != nil {
			return err
		}
	}
	if err := rcv.decode(); err != nil {
		return err
	}
	t.traced += calls[1]
	for _, name := range hopSpanNames {
		if got := rcv.spans[name]; got != t.traced {
			return fmt.Errorf("tracing on: %d spans %q received at %s, want one for each of the %d calls made "+
				"(fewer: the traced orchestrator's warning says whether its queue was full and dropped spans)", got, name, rcv.url, t.traced)
		}
	}
	return nil
}

// spanReceiver is an OTLP/HTTP trace receiver on 127.0.0.1. It keeps each
// export's body as it came and answers 200; decode, called between loops,
// counts the spans by name.
type spanReceiver struct {
	url     string
	srv     *http.Server
	exports atomic.Int64

	mu     sync.Mutex
	bodies [][]byte
	bad    error
	spans  map[string]int64 // decode's alone
}

func startSpanReceiver() (*spanReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &spanReceiver{url: "http://" + ln.Addr().String(), spans: map[string]int64{}}
	ok, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, err := io.ReadAll(req.Body)
		r.mu.Lock()
		switch {
		case err != nil:
			r.bad = cmp(r.bad, err)
		case req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf":
			r.bad = cmp(r.bad, fmt.Errorf("an export to %s as %q, want /v1/traces as application/x-protobuf", req.URL.Path, req.Header.Get("Content-Type")))
		default:
			r.bodies = append(r.bodies, b)
		}
		r.mu.Unlock()
		r.exports.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(ok)
	})}
	go r.srv.Serve(ln)
	return r, nil
}

// decode counts the spans of the exports received since the last call.
func (r *spanReceiver) decode() error {
	r.mu.Lock()
	bodies, bad := r.bodies, r.bad
	r.bodies = nil
	r.mu.Unlock()
	if bad != nil {
		return bad
	}
	for _, b := range bodies {
		var ex coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &ex); err != nil {
			return fmt.Errorf("an export received: %w", err)
		}
		for _, rs := range ex.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					r.spans[s.GetName()]++
				}
			}
		}
	}
	return nil
}

func (r *spanReceiver) close() { r.srv.Close() }

// traceKid is a trace-child process, told what to do on its stdin and
// answering on its stdout, one JSON line for each line it was sent.
type traceKid struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startTraceKid(ctx context.Context, sluiceBin, dir, endpoint, profile string) (*traceKid, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "trace-child", "-sluice", sluiceBin, "-dir", dir, "-endpoint", endpoint, "-cpuprofile", profile)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	k := &traceKid{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	if _, err := k.ask("ready"); err != nil {
		k.kill()
		return nil, err
	}
	return k, nil
}

// traceReply is trace-child's answer to a line.
type traceReply struct {
	P50   float64 `json:"p50,omitempty"`  // µs
	CPU   float64 `json:"cpu,omitempty"`  // µs of this process's CPU time per call of the loop
	Runs  float64 `json:"runs,omitempty"` // goroutines scheduled to run in this process per call of the loop (about)
	Calls int64   `json:"calls"`          // calls completed since the start
	Err   string  `json:"error,omitempty"`
}

func (k *traceKid) ask(line string) (traceReply, error) {
	if _, err := fmt.Fprintln(k.in, line); err != nil {
		return traceReply{}, fmt.Errorf("trace-child: %w", err)
	}
	if !k.out.Scan() {
		return traceReply{}, fmt.Errorf("trace-child: no answer to %q: %v", line, k.out.Err())
	}
	var r traceReply
	if err := json.Unmarshal(k.out.Bytes(), &r); err != nil {
		return r, fmt.Errorf("trace-child: %w: %q", err, k.out.Bytes())
	}
	if r.Err != "" {
		return r, errors.New("trace-child: " + r.Err)
	}
	return r, nil
}

// loop has the child run its hop for d at one caller.
func (k *traceKid) loop(d time.Duration) (traceReply, error) {
	return k.ask("loop " + d.String())
}

// goroutineRuns is about how many times a goroutine of this process was
// scheduled to run: the count of the scheduler's latencies, which the
// runtime records for one in 8 of each goroutine's runs, times 8.
func goroutineRuns() uint64 {
	m := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(m)
	if m[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0
	}
	var n uint64
	for _, c := range m[0].Value.Float64Histogram().Counts {
		n += c
	}
	return 8 * n
}

// processCPU is the CPU time this process has used, in all its threads.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// stop closes the child's orchestrator (which exports the spans it still
// holds) and returns the calls it made.
func (k *traceKid) stop() (int64, error) {
	r, err := k.ask("stop")
	if err != nil {
		return 0, err
	}
	k.in.Close()
	return r.Calls, k.cmd.Wait()
}

func (k *traceKid) kill() {
	if k.cmd.ProcessState == nil {
		k.cmd.Process.Kill()
		k.cmd.Wait()
	}
}

// traceChild is one orchestrator of the tracing figures, in a process of
// its own: the echo worker and the hop's flow, exporting every span to
// -endpoint when it is set and nothing otherwise. It reads lines on stdin
// — `ready`, `profile` (start the CPU profile, when -cpuprofile is set),
// `loop DURATION` (run the hop at one caller for that long), `stop` (end
// the profile, close the orchestrator) — and answers each with a
// traceReply.
func traceChild(args []string) error {
	fs := flag.NewFlagSet("trace-child", flag.ContinueOnError)
	sluiceBin := fs.String("sluice", "", "the sluice binary")
	dir := fs.String("dir", "", "state directory")
	endpoint := fs.String("endpoint", "", "OTLP/HTTP base URL to export traces to (empty: none)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the measured loops to `file`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	getenv := func(k string) string {
		switch k {
		case "OTEL_EXPORTER_OTLP_ENDPOINT":
			return *endpoint
		case "OTEL_BSP_SCHEDULE_DELAY":
			// Spans go in full batches only (the last at stop): an
			// export the delay set off while the other process is
			// measured would take its CPU time from the untraced side.
			return "600000"
		}
		return ""
	}
	dep, err := writeEcho(*dir)
	if err != nil {
		return err
	}
	cfg, err := config.Parse("sluice.yaml", []byte(dep), *dir)
	if err != nil {
		return err
	}
	cmd, err := echoCommand()
	if err != nil {
		return err
	}
	orch, err := orchestrator.New(orchestrator.Config{Deployment: cfg, Executable: *sluiceBin, WorkerCommand: cmd, Getenv: getenv})
	if err != nil {
		return err
	}
	if err := orch.Start(ctx); err != nil {
		orch.Close()
		return err
	}
	closeOrch := sync.OnceFunc(func() { orch.Close() })
	defer closeOrch()
	hop, err := runner(ctx, orch, cfg, "hop.yaml", oneEcho)
	if err != nil {
		return err
	}
	var calls atomic.Int64
	counted := func() error {
		err := hop()
		if err == nil {
			calls.Add(1)
		}
		return err
	}
	var prof *os.File
	if *cpuProfile != "" {
		if prof, err = os.Create(*cpuProfile); err != nil {
			return err
		}
		defer prof.Close()
	}
	enc := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var r traceReply
		line := in.Text()
		switch {
		case line == "ready":
		case line == "profile":
			// From here to stop: the measured loops, and what the
			// process does between them (its exports among it).
			if prof != nil {
				if err := pprof.StartCPUProfile(prof); err != nil {
					return err
				}
			}
		case line == "stop":
			if prof != nil {
				pprof.StopCPUProfile()
			}
			closeOrch()
			r.Calls = calls.Load()
			return enc.Encode(r)
		case len(line) > 5 && line[:5] == "loop ":
			d, err := time.ParseDuration(line[5:])
			if err != nil {
				return err
			}
			cpu0, runs0 := processCPU(), goroutineRuns()
			s, err := measure(1, d, counted)
			if s.calls > 0 {
				r.CPU = float64(processCPU()-cpu0) / float64(s.calls) / 1e3
				r.Runs = float64(goroutineRuns()-runs0) / float64(s.calls)
			}
			if err != nil {
				r.Err = err.Error()
			}
			r.P50 = s.p50
		default:
			return fmt.Errorf("trace-child: %q: want ready, loop DURATION or stop", line)
		}
		r.Calls = calls.Load()
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return in.Err()
}
