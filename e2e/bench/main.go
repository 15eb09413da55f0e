// Command bench measures Sluice beside its raw baselines, on this machine,
// in one run. It is run by `make bench` only: `make test` runs only its
// tests of the estimate (timing_test.go), never the bench:
//
//	go run ./e2e/bench [-sluice BIN] [-runs 3] [-dur 1.5s] [-state .sluice]
//	                   [-gobench FILE] [-gocount 3] [-cpuprofile FILE] [-memprofile FILE] [-traceprofile PREFIX] [-scale 10000]
//	                   [-only gobench,hop,mcp,flow,agent,plan,tracing,jetstream,policy,labels,startup,scale,js-scale]
//
// It prints one line per figure, `name value unit`, one per comparison,
// `ratio NAME VALUE` (ours over raw; lower is better), and writes the same
// as JSON to STATE/bench.json. Each figure is the median of -runs runs.
// docs/performance.md says what each figure measures. Before the first
// group it prints how long the groups will take, and as each group starts
// and ends a `#` line with its time; bench.json keeps the times for the
// next run's estimate.
//
// The same binary is also each helper process of the bench, by its first
// argument: `respond URL` (the raw echo responder), `echo-worker MANIFEST`
// (the echo worker, started by an orchestrator's supervisor),
// `mcp-echo-server` (the same echo as an MCP server over stdio, started by
// a run: mcp worker), `flow-child` (an orchestrator alone in its process,
// for the flow figures and their memory) and `trace-child` (an
// orchestrator alone in its process, exporting traces or not, for the
// tracing figures).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/ifc/expr"
)

// helpers are the modes of this binary other than the bench itself.
var helpers = map[string]func(args []string) error{
	"respond":         respond,
	"echo-worker":     echoWorker,
	"mcp-echo-server": mcpEchoServer,
	"flow-child":      flowChild,
	"trace-child":     traceChild,
}

func main() {
	if len(os.Args) >= 2 {
		if h, ok := helpers[os.Args[1]]; ok {
			if err := h(os.Args[2:]); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
				os.Exit(1)
			}
			return
		}
	}
	sluiceBin := flag.String("sluice", "", "the sluice binary (default: build ./cmd/sluice)")
	runs := flag.Int("runs", 3, "runs of each figure; the medians are printed")
	dur := flag.Duration("dur", 1500*time.Millisecond, "length of each measured loop (at most 3s)")
	state := flag.String("state", ".sluice", "state directory; bench.json is written there")
	gobench := flag.String("gobench", "", "the Go benchmarks' output: the gobench group writes it there (default STATE/gobench.txt); without that group, the policy group reads it from there (default: runs the policy benchmarks)")
	goCount := flag.Int("gocount", 3, "-count of the Go benchmarks (their medians are printed)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of one extra loop of mediated calls at 16 callers to `file`")
	traceProfile := flag.String("traceprofile", "", "write CPU profiles of the tracing group's two orchestrator processes, from their first measured loop to their stop, to `prefix`-off.pprof and prefix-on.pprof")
	memProfile := flag.String("memprofile", "", "write the allocations of this process, mostly mediated calls, to `file` after that loop")
	scaleN := flag.Int("scale", 10000, "runs held at approval at once for the scale figures (0: skip them)")
	only := flag.String("only", "", "measure only these groups, comma-separated: gobench, hop, mcp, flow, agent, plan, tracing, jetstream, policy, labels, startup, scale, js-scale (default all)")
	flag.Parse()
	if *dur > 3*time.Second {
		*dur = 3 * time.Second
	}
	if *memProfile != "" {
		// Sample more finely than the default one per 512 KiB.
		runtime.MemProfileRate = 32 << 10
	}
	o := options{sluice: *sluiceBin, runs: *runs, dur: *dur, state: *state, gobench: *gobench, goCount: *goCount,
		cpuProfile: *cpuProfile, memProfile: *memProfile, traceProfile: *traceProfile, scale: *scaleN, only: map[string]bool{}}
	for _, g := range strings.Split(*only, ",") {
		if g = strings.TrimSpace(g); g != "" {
			o.only[g] = true
		}
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	sluice                 string
	runs                   int
	dur                    time.Duration
	state, gobench         string
	goCount                int
	cpuProfile, memProfile string
	traceProfile           string
	scale                  int
	only                   map[string]bool // empty: every group
}

func (o options) does(group string) bool { return len(o.only) == 0 || o.only[group] }

// results keeps the figures in the order they were printed.
type results struct {
	Runs    int                `json:"runs"`
	Figures []figure           `json:"figures"`
	Ratios  map[string]float64 `json:"ratios"`
	NotDone []string           `json:"not_done"`
	// Groups is how long each group took (those of earlier runs kept),
	// for the next run's estimate.
	Groups map[string]groupTime `json:"group_seconds"`
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

// notDone prints `name n/a` with the reason, and lists it in bench.json.
func (r *results) notDone(reason string, names ...string) {
	for _, n := range names {
		fmt.Printf("%s n/a\n", n)
		r.NotDone = append(r.NotDone, n+": "+reason)
	}
	fmt.Printf("# not measured: %s\n", reason)
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

// group is a set of figures measured together (-only).
type group struct {
	name string
	f    func() error
}

func run(o options) error {
	tmp, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.sluice == "" {
		o.sluice = filepath.Join(tmp, "sluice")
		cmd := exec.Command("go", "build", "-o", o.sluice, "./cmd/sluice")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build sluice: %w", err)
		}
	}
	if o.sluice, err = filepath.Abs(o.sluice); err != nil {
		return err
	}
	res := &results{Runs: o.runs, Groups: lastTimes(o.state)}
	if res.Groups == nil {
		res.Groups = map[string]groupTime{}
	}
	fmt.Printf("# medians of %d runs; loops of %s; loopback only\n", o.runs, o.dur)
	if o.does("gobench") && o.gobench == "" {
		o.gobench = filepath.Join(o.state, "gobench.txt")
	}

	groups := []group{
		{"gobench", func() error { return goBenchFigures(o, o.gobench) }},
		{"hop", func() error { return hop(res, o, filepath.Join(tmp, "hop")) }},
		{"mcp", func() error { return mcpFigures(res, o, filepath.Join(tmp, "mcp")) }},
		{"flow", func() error { return flowFigures(res, o) }},
		{"agent", func() error { return agentFigures(res, o, filepath.Join(tmp, "agent")) }},
		{"plan", func() error { return planFigures(res, o, filepath.Join(tmp, "plan")) }},
		{"tracing", func() error { return tracingFigures(res, o, filepath.Join(tmp, "tracing")) }},
		{"jetstream", func() error { return jetstreamFigures(res, filepath.Join(tmp, "jetstream")) }},
		{"policy", func() error { return policyFigures(res, o.gobench) }},
		{"labels", func() error { labelFigures(res); return nil }},
		{"startup", func() error { return startup(res, o.sluice, filepath.Join(tmp, "cold")) }},
		{"scale", func() error { return scale(res, o.sluice, filepath.Join(tmp, "scale"), o.scale) }},
		{"js-scale", func() error { return jsScale(res, o, filepath.Join(tmp, "js-scale")) }},
	}
	for name := range o.only {
		if !slices.ContainsFunc(groups, func(g group) bool { return g.name == name }) {
			return fmt.Errorf("-only %s: no such group", name)
		}
	}
	var names []string
	for _, g := range groups {
		if o.does(g.name) {
			names = append(names, g.name)
		}
	}
	est := printEstimate(os.Stdout, names, o, res.Groups)
	began := time.Now()
	for _, g := range groups {
		if !o.does(g.name) {
			continue
		}
		fmt.Printf("# group %s: starting, about %s (%s in so far)\n", g.name, short(est[g.name]), short(time.Since(began)))
		t := time.Now()
		if err := g.f(); err != nil {
			return fmt.Errorf("%s: %w", g.name, err)
		}
		took := time.Since(t)
		res.Groups[g.name] = groupTime{Seconds: took.Seconds(), Plan: planKey(o)}
		fmt.Printf("# group %s took %s\n", g.name, short(took))
	}
	var total time.Duration
	for _, n := range names {
		total += est[n]
	}
	fmt.Printf("# all groups took %s (estimated %s)\n", short(time.Since(began)), short(total))

	if err := os.MkdirAll(o.state, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	out := filepath.Join(o.state, "bench.json")
	if err := os.WriteFile(out, append(b, '\n'), 0o600); err != nil {
		return err
	}
	fmt.Printf("# written to %s\n", out)
	return nil
}

// stats of one measured loop.
type stats struct {
	p50, p99, rate float64 // µs, µs, calls/s
	calls          int
	// allocs and bytes are the heap allocations of this whole process
	// per call, while the loop ran.
	allocs, bytes float64
	// cpu is the CPU time (user and system) of this whole process per
	// call, in µs, while the loop ran: what the call costs this process,
	// which a machine shared with other work slows less than it does
	// wall times.
	cpu float64
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs call from c goroutines for d and returns the latency
// percentiles of every call, the calls per second, and the allocations of
// this process per call.
func measure(c int, d time.Duration, call func() error) (stats, error) {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		lat    []time.Duration
		first  error
		m0, m1 runtime.MemStats
	)
	runtime.ReadMemStats(&m0)
	cpu0 := cpuTime()
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
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&m1)
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
	n := float64(len(lat))
	return stats{p50: pct(0.50), p99: pct(0.99), rate: n / wall.Seconds(), calls: len(lat),
		allocs: float64(m1.Mallocs-m0.Mallocs) / n, bytes: float64(m1.TotalAlloc-m0.TotalAlloc) / n,
		cpu: float64(cpu.Microseconds()) / n}, nil
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func mustEnv() *expr.Env {
	env, err := expr.NewEnv()
	if err != nil {
		panic(err)
	}
	return env
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+([0-9.]+) ns/op`)

// metric is every value of the metric unit a benchmark named name
// reported, in the output of go test -bench.
func metric(out []byte, name, unit string) []float64 {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `(-\d+)?\s.*?\s([0-9.]+) ` + regexp.QuoteMeta(unit) + `(\s|$)`)
	var vs []float64
	for _, l := range strings.Split(string(out), "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			vs = append(vs, v)
		}
	}
	return vs
}

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
	// An MCP call as the worker serves it, beside the SDK's own round
	// trip to the same server (worker/mcp).
	call, raw = median(ns["BenchmarkMCPCall"]), median(ns["BenchmarkMCPRawSDKCall"])
	if call > 0 && raw > 0 {
		res.fig("mcp_worker_call", call/1e3, "us")
		res.fig("mcp_sdk_raw", raw/1e3, "us")
		res.ratio("mcp_worker_call", call/raw)
	} else {
		res.NotDone = append(res.NotDone, "mcp_worker_call (give -gobench with the worker/mcp benchmarks)")
	}
	// The same call against three servers, with the CPU time per call of
	// the worker's side and of the server's (BenchmarkMCPServers).
	for _, server := range []string{"gosdk", "everything", "fixed"} {
		name := "BenchmarkMCPServers/" + server
		if len(ns[name]) == 0 {
			res.NotDone = append(res.NotDone, "mcp_call_"+server+" (no "+name+" result: skipped, or no -gobench)")
			continue
		}
		res.fig("mcp_call_"+server, median(ns[name])/1e3, "us")
		for _, side := range []string{"worker", "server"} {
			res.fig(fmt.Sprintf("mcp_%s_cpu_%s", side, server), median(metric(out, name, side+"-cpu-us/op")), "us")
		}
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
