package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// goBench is one `go test -bench` invocation of the gobench group.
type goBench struct {
	pkg, bench string
	// benchtime is -benchtime: a fixed number of iterations for the WASM
	// benchmarks, whose loop stops the timer while the pool makes the
	// next instance, so that the default 1s of timed calls takes 15 to
	// 60 s of wall time each.
	benchtime string
	// perCount is the wall time of one count of them on a quiet 2-core
	// machine, for the estimate; the last run's time replaces it.
	perCount time.Duration
}

// goBenchmarks are the Go benchmarks the figures read (policyFigures):
// only these run in make bench. Every other benchmark runs with
// `go test -bench`, as the doc says for each.
var goBenchmarks = []goBench{
	{pkg: "./ifc/policy", bench: "^(BenchmarkDecide|BenchmarkBareCEL)$", benchtime: "1s", perCount: 6 * time.Second},
	{pkg: "./worker/wasm", bench: "^(BenchmarkCallWarm|BenchmarkRawWarm)$", benchtime: "1000x", perCount: 15 * time.Second},
	{pkg: "./worker/mcp", bench: "^(BenchmarkMCPCall|BenchmarkMCPRawSDKCall)$", benchtime: "1s", perCount: 4 * time.Second},
}

// goBenchFigures runs goBenchmarks, count times each, writes their whole
// output to file and prints each result line as a comment.
func goBenchFigures(o options, file string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	var all bytes.Buffer
	for _, b := range goBenchmarks {
		args := []string{"test", "-run", "^$", "-bench", b.bench, "-benchmem", "-benchtime", b.benchtime,
			"-count", fmt.Sprint(o.goCount), b.pkg}
		fmt.Printf("# go %s\n", strings.Join(args, " "))
		cmd := exec.Command("go", args...)
		out, err := cmd.CombinedOutput()
		all.Write(out)
		if err != nil {
			os.Stderr.Write(out)
			return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Benchmark") {
				fmt.Printf("# %s\n", sc.Text())
			}
		}
	}
	if err := os.WriteFile(file, all.Bytes(), 0o600); err != nil {
		return err
	}
	fmt.Printf("# go benchmarks written to %s\n", file)
	return nil
}

// estimate is how long group g takes by its plan (loops times their
// length, plus starting what it starts), on a quiet 2-core machine.
func estimate(g string, o options) time.Duration {
	d := o.dur
	runs := time.Duration(o.runs)
	const start = 2 * time.Second // an orchestrator and its workers started, warm-up loops
	switch g {
	case "gobench":
		var t time.Duration = 20 * time.Second // compiling the test binaries
		for _, b := range goBenchmarks {
			t += time.Duration(o.goCount) * b.perCount
		}
		return t
	case "hop":
		t := start + runs*8*d // 1 and 16 callers, mediated, raw, the floor and the kept floor
		if o.cpuProfile != "" {
			t += d
		}
		return t
	case "mcp":
		return start + time.Second + runs*4*d
	case "flow":
		return start + runs*2*d
	case "agent":
		return start + 5*runs*15*time.Millisecond*15 // 15 calls a run, about 1 ms each
	case "plan":
		return start + 10*runs*15*time.Millisecond
	case "tracing":
		return 2 * (runs + 2) * (d + 1500*time.Millisecond) // an orchestrator started per loop, two pairs of them
	case "jetstream":
		return 3 * time.Second // 2,000 × 7 operations of 12 to 250 µs
	case "policy":
		if o.gobench == "" {
			return 5 * goBenchmarks[0].perCount // policyFigures: -count 5
		}
		return 0
	case "labels":
		return 6 * time.Second // 2 × 3 testing.Benchmark of 1s
	case "startup":
		return 3 * time.Second // 5 cold runs of about 60 ms, and 5 buses started
	case "scale":
		if o.scale <= 0 {
			return 0
		}
		n := time.Duration(o.scale)
		// Submitted through the API at about 330 runs/s (315 measured at
		// load 11, the rate no longer falling as runs are held); listed 3
		// times at about 4,000 runs/s (1,650 at load 11); sluice up
		// started and stopped.
		return 5*time.Second + n*3*time.Millisecond + 3*n*time.Second/4000
	case "js-scale":
		return jsScaleEstimate(o)
	}
	return 0
}

// groupTime is how long a group took, with the plan it ran, as bench.json
// keeps it for the next run's estimate.
type groupTime struct {
	Seconds float64 `json:"seconds"`
	Plan    string  `json:"plan"`
}

// planKey names what a group's time depends on: a time measured with
// another plan is not used for the estimate.
func planKey(o options) string {
	return fmt.Sprintf("runs=%d dur=%s scale=%d gocount=%d profile=%v", o.runs, o.dur, o.scale, o.goCount, o.cpuProfile != "")
}

// lastTimes reads the group times of the previous run from bench.json; nil
// when there is none.
func lastTimes(state string) map[string]groupTime {
	b, err := os.ReadFile(filepath.Join(state, "bench.json"))
	if err != nil {
		return nil
	}
	var prev struct {
		Groups map[string]groupTime `json:"group_seconds"`
	}
	if json.Unmarshal(b, &prev) != nil {
		return nil
	}
	return prev.Groups
}

// printEstimate prints how long the groups will take, and what each of
// them will: the last run's time where it ran with the same plan,
// otherwise the plan's. It returns the estimates by group.
func printEstimate(w io.Writer, names []string, o options, last map[string]groupTime) map[string]time.Duration {
	est := map[string]time.Duration{}
	var total time.Duration
	var parts []string
	fromLast := 0
	for _, g := range names {
		e := estimate(g, o)
		if t, ok := last[g]; ok && t.Plan == planKey(o) {
			e = time.Duration(t.Seconds * float64(time.Second))
			fromLast++
		}
		est[g] = e
		total += e
		parts = append(parts, fmt.Sprintf("%s ~%s", g, short(e)))
	}
	how := "from the plan (loops × their length) on a quiet 2-core machine"
	switch {
	case fromLast == len(names):
		how = "from the last run's times"
	case fromLast > 0:
		how = fmt.Sprintf("%d groups from the last run's times, the rest from the plan", fromLast)
	}
	fmt.Fprintf(w, "# about %s in all (%s): %s\n", short(total), how, strings.Join(parts, ", "))
	return est
}

// short writes d as a person would say it: 41 s, 3 min 10 s.
func short(d time.Duration) string {
	s := int(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%d s", s)
	case s%60 == 0:
		return fmt.Sprintf("%d min", s/60)
	}
	return fmt.Sprintf("%d min %d s", s/60, s%60)
}
