// Command bench measures Sluice beside its raw baselines, on this machine,
// in one run. It is run by `make bench` only (it has no tests, so `make
// test` never runs it):
//
//	go run ./e2e/bench [-sluice BIN] [-runs 3] [-dur 1.5s] [-state .sluice]
//
// It prints one line per figure, `name value unit`, one per comparison,
// `ratio NAME VALUE` (ours over raw; lower is better), and writes the same
// as JSON to STATE/bench.json. Each figure is the median of -runs runs.
// docs/performance.md says what each figure measures.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/ifc/expr"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/engine"
	"github.com/sluicehq/sluice/orchestrator/flow"
)

const (
	rawUser, rawPass = "bench", "bench-password"
	rawSubject       = "bench.echo"
	payloadSize      = 256
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "respond" {
		if err := respond(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "respond:", err)
			os.Exit(1)
		}
		return
	}
	sluiceBin := flag.String("sluice", "", "the sluice binary (default: build ./cmd/sluice)")
	runs := flag.Int("runs", 3, "runs of each figure; the medians are printed")
	dur := flag.Duration("dur", 1500*time.Millisecond, "length of each measured loop (at most 3s)")
	state := flag.String("state", ".sluice", "state directory; bench.json is written there")
	gobench := flag.String("gobench", "", "output of `go test -bench` to read the policy figures from (default: run them)")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of one extra loop of mediated calls at 16 callers to `file`")
	flag.Parse()
	if *dur > 3*time.Second {
		*dur = 3 * time.Second
	}
	if err := run(*sluiceBin, *runs, *dur, *state, *gobench); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// results keeps the figures in the order they were printed.
type results struct {
	Runs    int                `json:"runs"`
	Figures []figure           `json:"figures"`
	Ratios  map[string]float64 `json:"ratios"`
	NotDone []string           `json:"not_done"`
}

type figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

func (r *results) fig(name string, v float64, unit string) {
	r.Figures = append(r.Figures, figure{name, v, unit})
	fmt.Printf("%s %s %s\n", name, num(v), unit)
}

func (r *results) ratio(name string, v float64) {
	if r.Ratios == nil {
		r.Ratios = map[string]float64{}
	}
	r.Ratios[name] = v
	fmt.Printf("ratio %s %.2f\n", name, v)
}

func num(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func run(sluiceBin string, runs int, dur time.Duration, state, gobench string) error {
	tmp, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if sluiceBin == "" {
		sluiceBin = filepath.Join(tmp, "sluice")
		cmd := exec.Command("go", "build", "-o", sluiceBin, "./cmd/sluice")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build sluice: %w", err)
		}
	}
	if sluiceBin, err = filepath.Abs(sluiceBin); err != nil {
		return err
	}
	res := &results{Runs: runs}
	fmt.Printf("# medians of %d runs; loops of %s; loopback only\n", runs, dur)

	if err := hop(res, sluiceBin, filepath.Join(tmp, "hop"), runs, dur); err != nil {
		return fmt.Errorf("hop: %w", err)
	}
	if err := policyFigures(res, gobench); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	labelFigures(res)
	if err := startup(res, sluiceBin, filepath.Join(tmp, "cold")); err != nil {
		return fmt.Errorf("startup: %w", err)
	}
	res.NotDone = append(res.NotDone, []string{"scale_mem_per_held_run", "scale_list_approvals"}...)
	fmt.Printf("# not measured yet: %s\n", strings.Join(res.NotDone, ", "))

	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	out := filepath.Join(state, "bench.json")
	if err := os.WriteFile(out, append(b, '\n'), 0o600); err != nil {
		return err
	}
	fmt.Printf("# written to %s\n", out)
	return nil
}

var cpuProfile string

const deployment = "workers:\n  - manifest: builtin:payment\n"
const oneStep = "name: hop\nsteps:\n  - {id: balance, call: payment.balance}\n"

// stats of one measured loop.
type stats struct{ p50, p99, rate float64 } // µs, µs, calls/s

// measure runs call from c goroutines for d and returns the latency
// percentiles of every call and the calls per second.
func measure(c int, d time.Duration, call func() error) (stats, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		lat   []time.Duration
		first error
	)
	start := time.Now()
	deadline := start.Add(d)
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				t := time.Now()
				if err := call(); err != nil {
					mu.Lock()
					first = cmp(first, err)
					mu.Unlock()
					return
				}
				local = append(local, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	if first != nil {
		return stats{}, first
	}
	if len(lat) == 0 {
		return stats{}, errors.New("no calls completed")
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / 1e3
	}
	return stats{pct(0.50), pct(0.99), float64(len(lat)) / wall.Seconds()}, nil
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// hop measures a mediated tool call (the engine runs a one-step flow
// calling payment.balance in the payment worker process: labels, the
// policy gate and the audit record included) beside a raw NATS
// request/reply to an echo responder in another process over loopback TCP,
// the requester in this process.
func hop(res *results, sluiceBin, dir string, runs int, dur time.Duration) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	dep, err := config.Parse("sluice.yaml", []byte(deployment), dir)
	if err != nil {
		return err
	}
	orch, err := orchestrator.New(orchestrator.Config{Deployment: dep, Executable: sluiceBin})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := orch.Start(ctx); err != nil {
		orch.Close()
		return err
	}
	defer orch.Close()
	plan, err := flow.Load("hop.yaml", []byte(oneStep), flow.Catalog(mustManifests(dep)), mustEnv())
	if err != nil {
		return err
	}
	mediated := func() error {
		r, err := orch.Run(ctx, plan, nil, engine.Options{})
		if err != nil {
			return err
		}
		if r.Status != engine.StatusCompleted {
			b, _ := json.Marshal(r)
			return fmt.Errorf("run not completed: %s", b)
		}
		return nil
	}

	// The raw baseline: its own NATS server in this process, with
	// password auth, listening on loopback.
	srv, err := server.NewServer(&server.Options{ServerName: "bench-raw", Host: "127.0.0.1", Port: -1,
		NoSigs: true, NoLog: true, Users: []*server.User{{Username: rawUser, Password: rawPass}}})
	if err != nil {
		return err
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(5 * time.Second) {
		return errors.New("raw NATS server not ready")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	resp := exec.Command(self, "respond", srv.ClientURL())
	resp.Stderr = os.Stderr
	stdin, err := resp.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := resp.StdoutPipe()
	if err != nil {
		return err
	}
	if err := resp.Start(); err != nil {
		return err
	}
	defer func() { stdin.Close(); resp.Wait() }()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		return fmt.Errorf("responder: %q %v", line, err)
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.UserInfo(rawUser, rawPass))
	if err != nil {
		return err
	}
	defer nc.Close()
	payload := make([]byte, payloadSize)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	raw := func() error {
		m, err := nc.Request(rawSubject, payload, 5*time.Second)
		if err != nil {
			return err
		}
		if len(m.Data) != payloadSize {
			return fmt.Errorf("raw reply of %d bytes", len(m.Data))
		}
		return nil
	}

	// Warm both paths up, then alternate them run by run.
	for _, f := range []func() error{mediated, raw} {
		if _, err := measure(4, 300*time.Millisecond, f); err != nil {
			return err
		}
	}
	type key struct {
		path string
		c    int
	}
	all := map[key][]stats{}
	for range runs {
		for _, c := range []int{1, 16} {
			for _, p := range []struct {
				name string
				f    func() error
			}{{"hop", mediated}, {"raw", raw}} {
				s, err := measure(c, dur, p.f)
				if err != nil {
					return fmt.Errorf("%s at %d: %w", p.name, c, err)
				}
				all[key{p.name, c}] = append(all[key{p.name, c}], s)
			}
		}
	}
	if err := flowFigures(res, ctx, orch, dep, runs, dur); err != nil {
		return fmt.Errorf("flow: %w", err)
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		_, err = measure(16, dur, mediated)
		pprof.StopCPUProfile()
		f.Close()
		if err != nil {
			return err
		}
		fmt.Printf("# CPU profile of mediated calls at 16 callers: %s\n", cpuProfile)
	}
	med := func(k key, f func(stats) float64) float64 {
		var xs []float64
		for _, s := range all[k] {
			xs = append(xs, f(s))
		}
		return median(xs)
	}
	p50 := func(s stats) float64 { return s.p50 }
	p99 := func(s stats) float64 { return s.p99 }
	rate := func(s stats) float64 { return s.rate }
	for _, c := range []int{1, 16} {
		h, r := key{"hop", c}, key{"raw", c}
		res.fig(fmt.Sprintf("hop_p50_%d", c), med(h, p50), "us")
		res.fig(fmt.Sprintf("hop_p99_%d", c), med(h, p99), "us")
		res.fig(fmt.Sprintf("hop_calls_%d", c), med(h, rate), "calls/s")
		res.fig(fmt.Sprintf("raw_p50_%d", c), med(r, p50), "us")
		res.fig(fmt.Sprintf("raw_p99_%d", c), med(r, p99), "us")
		res.fig(fmt.Sprintf("raw_calls_%d", c), med(r, rate), "calls/s")
	}
	for _, c := range []int{1, 16} {
		h, r := key{"hop", c}, key{"raw", c}
		res.ratio(fmt.Sprintf("hop_p50_%d", c), med(h, p50)/med(r, p50))
		res.ratio(fmt.Sprintf("hop_p99_%d", c), med(h, p99)/med(r, p99))
		// Throughput as a ratio "ours over raw" would be higher-is-better;
		// invert it so that lower is better like every other ratio.
		res.ratio(fmt.Sprintf("hop_time_per_call_%d", c), med(r, rate)/med(h, rate))
	}
	return nil
}

func mustManifests(dep *config.Config) flow.Catalog {
	ms, err := dep.Manifests()
	if err != nil {
		panic(err)
	}
	return flow.Catalog(ms)
}

func mustEnv() *expr.Env {
	env, err := expr.NewEnv()
	if err != nil {
		panic(err)
	}
	return env
}

// respond is the raw responder process: it echoes every request on
// rawSubject until its stdin closes.
func respond(url string) error {
	nc, err := nats.Connect(url, nats.UserInfo(rawUser, rawPass))
	if err != nil {
		return err
	}
	defer nc.Close()
	sub, err := nc.Subscribe(rawSubject, func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		return err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+([0-9.]+) ns/op`)

// policyFigures reads BenchmarkDecide and BenchmarkBareCEL of ifc/policy,
// from gobench or by running them, and prints their medians.
func policyFigures(res *results, gobench string) error {
	var out []byte
	var err error
	if gobench != "" {
		out, err = os.ReadFile(gobench)
	} else {
		cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^(BenchmarkDecide|BenchmarkBareCEL)$", "-count", "5", "./ifc/policy")
		cmd.Stderr = os.Stderr
		out, err = cmd.Output()
	}
	if err != nil {
		return err
	}
	ns := map[string][]float64{}
	for _, l := range strings.Split(string(out), "\n") {
		m := benchLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[3], 64)
		ns[m[1]] = append(ns[m[1]], v)
	}
	bare := median(ns["BenchmarkBareCEL"])
	if bare == 0 {
		return errors.New("no BenchmarkBareCEL result")
	}
	res.fig("cel_bare", bare, "ns")
	for _, n := range []int{1, 20, 100} {
		d := median(ns[fmt.Sprintf("BenchmarkDecide/rules=%d", n)])
		if d == 0 {
			return fmt.Errorf("no BenchmarkDecide/rules=%d result", n)
		}
		res.fig(fmt.Sprintf("policy_%d", n), d, "ns")
	}
	for _, n := range []int{1, 20, 100} {
		res.ratio(fmt.Sprintf("policy_%d", n), median(ns[fmt.Sprintf("BenchmarkDecide/rules=%d", n)])/bare)
	}
	// The WASM figures come from the benchmarks of worker/wasm, when
	// their output is at hand (make bench runs them).
	call, raw := median(ns["BenchmarkCallWarm"]), median(ns["BenchmarkRawWarm"])
	if call > 0 && raw > 0 {
		res.fig("wasm_call_warm", call/1e3, "us")
		res.fig("wasm_raw_warm", raw/1e3, "us")
		res.ratio("wasm_warm", call/raw)
	} else {
		res.NotDone = append(res.NotDone, "wasm_call_warm (give -gobench with the worker/wasm benchmarks)")
	}
	return nil
}

// labelFigures measures deriving the label of a step argument from its
// expression's reads, and one join of two labels.
func labelFigures(res *results) {
	env := mustEnv()
	tmpl, err := env.Compile("${steps.fetch.output.title} for ${inputs.amount} ${inputs.currency}")
	if err != nil {
		panic(err)
	}
	web := ifc.UntrustedFrom("web:flights.example")
	user := ifc.TrustedFrom("user")
	lookup := func(p expr.Path) ifc.Label {
		if len(p) > 0 && p[0] == "steps" {
			return web
		}
		return user
	}
	var sink ifc.Label
	for _, b := range []struct {
		name string
		f    func()
	}{
		{"label_derive", func() { sink = tmpl.Label(lookup) }},
		{"label_join", func() { sink = ifc.Join(web, user) }},
	} {
		var xs []float64
		for range 3 {
			r := testing.Benchmark(func(tb *testing.B) {
				for tb.Loop() {
					b.f()
				}
			})
			xs = append(xs, float64(r.NsPerOp()))
		}
		res.fig(b.name, median(xs), "ns")
	}
	_ = sink
}

// startup runs `sluice run` of a one-step flow from a cold start five
// times: a fresh process that starts the embedded bus and the worker
// process, runs the flow, and stops them.
func startup(res *results, sluiceBin, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte(deployment), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "flow.yaml"), []byte(oneStep), 0o600); err != nil {
		return err
	}
	var xs []float64
	for range 5 {
		cmd := exec.Command(sluiceBin, "run", "flow.yaml")
		cmd.Dir = dir
		t := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("sluice run: %v\n%s", err, out)
		}
		xs = append(xs, float64(time.Since(t).Microseconds())/1e3)
	}
	res.fig("startup_run", median(xs), "ms")
	res.ratio("startup_run_vs_target_300ms", median(xs)/300)
	return nil
}

const fiveSteps = `name: five
steps:
  - {id: s1, call: payment.balance}
  - {id: s2, call: payment.balance}
  - {id: s3, call: payment.balance}
  - {id: s4, call: payment.balance}
  - {id: s5, call: payment.balance}
`

// flowFigures runs C concurrent runs of a 5-step flow (five independent
// payment.balance steps; an output carries the payment secrecy tag, which
// the payment tool's clearance refuses, so no step reads another) for
// C = 16 and 256: steps per second, and the peak
// resident memory of this process, which is the orchestrator, while they
// ran (VmHWM, reset before each loop).
func flowFigures(res *results, ctx context.Context, orch *orchestrator.Orchestrator, dep *config.Config, runs int, dur time.Duration) error {
	plan, err := flow.Load("five.yaml", []byte(fiveSteps), flow.Catalog(mustManifests(dep)), mustEnv())
	if err != nil {
		return err
	}
	five := func() error {
		r, err := orch.Run(ctx, plan, nil, engine.Options{})
		if err != nil {
			return err
		}
		if r.Status != engine.StatusCompleted || len(r.Steps) != 5 {
			b, _ := json.Marshal(r)
			return fmt.Errorf("run not completed: %s", b)
		}
		for _, s := range r.Steps {
			if s.Status != engine.StatusCompleted {
				return fmt.Errorf("step %s: %s", s.ID, s.Status)
			}
		}
		return nil
	}
	for _, c := range []int{16, 256} {
		var rates, peaks []float64
		for range runs {
			_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
			s, err := measure(c, dur, five)
			if err != nil {
				return err
			}
			rates = append(rates, 5*s.rate)
			peaks = append(peaks, peakRSS())
		}
		res.fig(fmt.Sprintf("flow_steps_%d", c), median(rates), "steps/s")
		res.fig(fmt.Sprintf("flow_peak_rss_%d", c), median(peaks), "MiB")
	}
	return nil
}

// peakRSS is VmHWM of this process in MiB (0 where /proc is missing).
func peakRSS() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
