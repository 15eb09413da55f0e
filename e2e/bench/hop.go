package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/sluicehq/sluice/orchestrator/runstore"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/engine"
	"github.com/sluicehq/sluice/orchestrator/flow"
)

const (
	rawUser, rawPass = "bench", "bench-password"
	rawSubject       = "bench.echo"
	payloadSize      = 256
	// floorStream holds the floor baseline's two records a call.
	floorStream = "BENCH_FLOOR"
	// keptStream and keptBucket hold the kept baseline's records and run
	// records.
	keptStream, keptBucket = "BENCH_KEPT", "BENCH_KEPT_RUNS"
)

// oneEcho is the mediated call of the hop: the echo worker returns a
// 256-character text, as the raw responder returns 256 bytes.
const oneEcho = `name: hop
inputs:
  text: {type: string}
steps:
  - {id: echo, call: echo.echo, with: {text: "${inputs.text}"}}
outputs:
  text: "${steps.echo.output.text}"
`

func payload() string {
	b := make([]byte, payloadSize)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return string(b)
}

// benchOrchestrator starts an orchestrator whose only worker is the echo
// worker, with its state under dir.
func benchOrchestrator(ctx context.Context, sluiceBin, dir string) (*orchestrator.Orchestrator, *config.Config, error) {
	dep, err := writeEcho(dir)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := config.Parse("sluice.yaml", []byte(dep), dir)
	if err != nil {
		return nil, nil, err
	}
	cmd, err := echoCommand()
	if err != nil {
		return nil, nil, err
	}
	orch, err := orchestrator.New(orchestrator.Config{Deployment: cfg, Executable: sluiceBin, WorkerCommand: cmd})
	if err != nil {
		return nil, nil, err
	}
	if err := orch.Start(ctx); err != nil {
		orch.Close()
		return nil, nil, err
	}
	return orch, cfg, nil
}

// runner returns a function that runs plan once with the payload as its
// input text and checks that it completed with the text unchanged.
func runner(ctx context.Context, orch *orchestrator.Orchestrator, cfg *config.Config, name, src string) (func() error, error) {
	return runnerAnswering(ctx, orch, cfg, name, src, "")
}

// runnerAnswering is runner for a flow whose output text is the input
// text after prefix.
func runnerAnswering(ctx context.Context, orch *orchestrator.Orchestrator, cfg *config.Config, name, src, prefix string) (func() error, error) {
	ms, err := cfg.Manifests()
	if err != nil {
		return nil, err
	}
	plan, err := flow.Load(name, []byte(src), flow.Catalog(ms), mustEnv())
	if err != nil {
		return nil, err
	}
	text := payload()
	inputs, err := plan.BindInputs(map[string]string{"text": text})
	if err != nil {
		return nil, err
	}
	return func() error {
		r, err := orch.Run(ctx, plan, inputs, engine.Options{})
		if err != nil {
			return err
		}
		if r.Status != engine.StatusCompleted || r.Outputs["text"] != prefix+text {
			b, _ := json.Marshal(r)
			return fmt.Errorf("run not completed: %s", b)
		}
		return nil
	}, nil
}

// hop measures a mediated tool call (a one-step flow calling echo.echo in
// the echo worker process: labels, the policy gate, the audit records and
// the run state included) beside a raw NATS request/reply to an echo
// responder in another process over loopback TCP, the requester in this
// process, and beside the floor: the same request between two durable
// writes, the least a mediated call that stores its decision before
// delivery and its result after can do.
func hop(res *results, o options, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	orch, cfg, err := benchOrchestrator(ctx, o.sluice, dir)
	if err != nil {
		return err
	}
	defer orch.Close()
	mediated, err := runner(ctx, orch, cfg, "hop.yaml", oneEcho)
	if err != nil {
		return err
	}

	// The raw baseline: its own NATS server in this process, with
	// password auth, listening on loopback; with JetStream on a file
	// store, as the orchestrator's bus has, for the floor.
	srv, err := server.NewServer(&server.Options{ServerName: "bench-raw", Host: "127.0.0.1", Port: -1,
		NoSigs: true, NoLog: true, Users: []*server.User{{Username: rawUser, Password: rawPass}},
		JetStream: true, StoreDir: filepath.Join(dir, "raw-jetstream")})
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
	data := []byte(payload())
	raw := func() error {
		m, err := nc.Request(rawSubject, data, 5*time.Second)
		if err != nil {
			return err
		}
		if len(m.Data) != payloadSize {
			return fmt.Errorf("raw reply of %d bytes", len(m.Data))
		}
		return nil
	}
	floor, err := floorCall(ctx, nc, raw)
	if err != nil {
		return err
	}
	kept, err := keptCall(ctx, nc, data, raw)
	if err != nil {
		return err
	}

	// Warm the paths up, then alternate them run by run.
	for _, f := range []func() error{mediated, raw, floor, kept} {
		if _, err := measure(4, 300*time.Millisecond, f); err != nil {
			return err
		}
	}
	all := map[hopKey][]stats{}
	for range o.runs {
		for _, c := range []int{1, 16} {
			for _, p := range []struct {
				name string
				f    func() error
			}{{"hop", mediated}, {"raw", raw}, {"floor", floor}, {"kept", kept}} {
				s, err := measure(c, o.dur, p.f)
				if err != nil {
					return fmt.Errorf("%s at %d: %w", p.name, c, err)
				}
				all[hopKey{p.name, c}] = append(all[hopKey{p.name, c}], s)
			}
		}
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		_, err = measure(16, o.dur, mediated)
		pprof.StopCPUProfile()
		f.Close()
		if err != nil {
			return err
		}
		fmt.Printf("# CPU profile of mediated calls at 16 callers: %s\n", o.cpuProfile)
	}
	if o.memProfile != "" {
		if err := writeProfile("allocs", o.memProfile); err != nil {
			return err
		}
		fmt.Printf("# allocations of this process (mostly mediated calls): %s\n", o.memProfile)
	}
	hopFigures(res, all)
	return nil
}

// hopKey names a loop of the hop group: its path (hop, raw or floor) at
// c callers.
type hopKey struct {
	path string
	c    int
}

// hopFigures prints the hop group's figures and ratios, each the median
// over the runs of its loops.
func hopFigures(res *results, all map[hopKey][]stats) {
	type key = hopKey
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
	allocs := func(s stats) float64 { return s.allocs }
	bytes := func(s stats) float64 { return s.bytes }
	cpu := func(s stats) float64 { return s.cpu }
	for _, c := range []int{1, 16} {
		h, r := key{"hop", c}, key{"raw", c}
		res.fig(fmt.Sprintf("hop_p50_%d", c), med(h, p50), "us")
		res.fig(fmt.Sprintf("hop_p99_%d", c), med(h, p99), "us")
		res.fig(fmt.Sprintf("hop_calls_%d", c), med(h, rate), "calls/s")
		res.fig(fmt.Sprintf("hop_allocs_%d", c), med(h, allocs), "allocs/call")
		res.fig(fmt.Sprintf("hop_alloc_bytes_%d", c), med(h, bytes), "B/call")
		res.fig(fmt.Sprintf("hop_cpu_%d", c), med(h, cpu), "us/call")
		res.fig(fmt.Sprintf("raw_p50_%d", c), med(r, p50), "us")
		res.fig(fmt.Sprintf("raw_p99_%d", c), med(r, p99), "us")
		res.fig(fmt.Sprintf("raw_calls_%d", c), med(r, rate), "calls/s")
		res.fig(fmt.Sprintf("raw_allocs_%d", c), med(r, allocs), "allocs/call")
		res.fig(fmt.Sprintf("raw_cpu_%d", c), med(r, cpu), "us/call")
		f := key{"floor", c}
		res.fig(fmt.Sprintf("floor_p50_%d", c), med(f, p50), "us")
		res.fig(fmt.Sprintf("floor_p99_%d", c), med(f, p99), "us")
		res.fig(fmt.Sprintf("floor_calls_%d", c), med(f, rate), "calls/s")
		res.fig(fmt.Sprintf("floor_time_per_call_%d", c), 1e6/med(f, rate), "us")
		res.fig(fmt.Sprintf("floor_allocs_%d", c), med(f, allocs), "allocs/call")
		res.fig(fmt.Sprintf("floor_cpu_%d", c), med(f, cpu), "us/call")
		k := key{"kept", c}
		res.fig(fmt.Sprintf("kept_p50_%d", c), med(k, p50), "us")
		res.fig(fmt.Sprintf("kept_calls_%d", c), med(k, rate), "calls/s")
		res.fig(fmt.Sprintf("kept_time_per_call_%d", c), 1e6/med(k, rate), "us")
		res.fig(fmt.Sprintf("kept_cpu_%d", c), med(k, cpu), "us/call")
	}
	for _, c := range []int{1, 16} {
		h, r, f := key{"hop", c}, key{"raw", c}, key{"floor", c}
		res.ratio(fmt.Sprintf("hop_p50_%d", c), med(h, p50)/med(r, p50))
		res.ratio(fmt.Sprintf("hop_p99_%d", c), med(h, p99)/med(r, p99))
		// Throughput as a ratio "ours over raw" would be higher-is-better;
		// invert it so that lower is better like every other ratio.
		res.ratio(fmt.Sprintf("hop_time_per_call_%d", c), med(r, rate)/med(h, rate))
		// The floor against raw: how much of the targets the two durable
		// writes alone use up; the hop against the floor: what the
		// orchestrator adds beyond them.
		res.ratio(fmt.Sprintf("floor_p50_%d", c), med(f, p50)/med(r, p50))
		res.ratio(fmt.Sprintf("floor_time_per_call_%d", c), med(r, rate)/med(f, rate))
		res.ratio(fmt.Sprintf("hop_vs_floor_p50_%d", c), med(h, p50)/med(f, p50))
		res.ratio(fmt.Sprintf("hop_vs_floor_time_per_call_%d", c), med(f, rate)/med(h, rate))
		// The floor with the run kept for resuming: what the orchestrator
		// adds beyond every write it makes.
		k := key{"kept", c}
		res.ratio(fmt.Sprintf("kept_p50_%d", c), med(k, p50)/med(r, p50))
		res.ratio(fmt.Sprintf("kept_time_per_call_%d", c), med(r, rate)/med(k, rate))
		res.ratio(fmt.Sprintf("hop_vs_kept_p50_%d", c), med(h, p50)/med(k, p50))
		res.ratio(fmt.Sprintf("hop_vs_kept_time_per_call_%d", c), med(k, rate)/med(h, rate))
	}
}

// floorCall returns the floor baseline: what a mediated one-step call
// cannot avoid, done with the plain client APIs on the raw baseline's
// server and connection. One synchronous JetStream publish of a decision
// record (stored before the call goes out), the raw request to the
// responder process, one synchronous publish of a result record (stored
// before the caller is answered). The records are audit records of the
// hop's call encoded as the audit log stores them, on a file-stored
// stream; no labels, no policy, no run state, no schema checks.
func floorCall(ctx context.Context, nc *nats.Conn, raw func() error) (func() error, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: floorStream, Subjects: []string{"floor.>"},
		Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy}); err != nil {
		return nil, fmt.Errorf("floor stream: %w", err)
	}
	decision, result, err := floorRecords()
	if err != nil {
		return nil, err
	}
	return func() error {
		if _, err := js.Publish(ctx, "floor.decision", decision); err != nil {
			return fmt.Errorf("decision: %w", err)
		}
		if err := raw(); err != nil {
			return err
		}
		if _, err := js.Publish(ctx, "floor.result", result); err != nil {
			return fmt.Errorf("result: %w", err)
		}
		return nil
	}, nil
}

// floorRecords are the hop's decision and result, encoded as the audit
// log stores them.
func floorRecords() (decision, result []byte, err error) {
	web := ifc.UntrustedFrom("bench:input")
	prev := strings.Repeat("0", 64) // the hex SHA-256 of the record before
	run, now := audit.NewID(), time.Now().UTC()
	decision, err = json.Marshal(audit.Record{V: 1, Prev: prev, ID: audit.NewID(), Kind: audit.KindDecision, Time: now,
		RunID: run, Flow: "hop", Step: "echo", Tool: "echo.echo", MsgID: audit.NewID(),
		ArgLabels: map[string]ifc.Label{"text": web}, Label: &web, Action: "allow",
		Rules: []string{"default (policy.yaml:1:1)"}, StartsRun: true,
		Steps: []audit.PlanStep{{ID: "echo", Tool: "echo.echo"}}})
	if err != nil {
		return nil, nil, err
	}
	result, err = json.Marshal(audit.Record{V: 1, Prev: prev, ID: audit.NewID(), Kind: audit.KindResult, Time: now,
		RunID: run, Flow: "hop", Step: "echo", Tool: "echo.echo", MsgID: audit.NewID(), Label: &web,
		Status: "completed", EndsRun: "completed"})
	if err != nil {
		return nil, nil, err
	}
	return decision, result, nil
}

// keptCall returns the floor with the run kept for resuming after a
// crash: floorCall's two records, and the two more writes a mediated
// one-step run makes so that it can be resumed, each sent without waiting
// and waited for with its record, as the engine sends them: the run's
// record (its flow and inputs, in a key-value bucket on a file store) with
// the decision before the request, and the purge of that record with the
// result after it. Everything a mediated call stores, with none of the
// orchestrator's own work.
func keptCall(ctx context.Context, nc *nats.Conn, data []byte, raw func() error) (func() error, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: keptStream, Subjects: []string{"kept.>"},
		Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy}); err != nil {
		return nil, fmt.Errorf("kept stream: %w", err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: keptBucket, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, fmt.Errorf("kept bucket: %w", err)
	}
	decision, result, err := floorRecords()
	if err != nil {
		return nil, err
	}
	record, err := json.Marshal(runstore.RunRecord{ID: audit.NewID(), Flow: "hop", File: "hop.yaml", Source: []byte(oneEcho),
		Inputs: json.RawMessage(`{"text":"` + string(data) + `"}`), Status: runstore.Running, Created: time.Now().UTC()})
	if err != nil {
		return nil, err
	}
	both := func(subject string, rec []byte, write *nats.Msg) error {
		p1, err := js.PublishAsync(subject, rec)
		if err != nil {
			return err
		}
		p2, err := js.PublishMsgAsync(write)
		if err != nil {
			return err
		}
		for _, p := range []jetstream.PubAckFuture{p1, p2} {
			select {
			case <-p.Ok():
			case err := <-p.Err():
				return err
			case <-time.After(5 * time.Second):
				return errors.New("no acknowledgement within 5 s")
			}
		}
		return nil
	}
	return func() error {
		key := "$KV." + kv.Bucket() + "." + audit.NewID()
		put := nats.NewMsg(key)
		put.Data = record
		if err := both("kept.decision", decision, put); err != nil {
			return fmt.Errorf("decision and run record: %w", err)
		}
		if err := raw(); err != nil {
			return err
		}
		purge := nats.NewMsg(key)
		purge.Header.Set("KV-Operation", "PURGE")
		purge.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		if err := both("kept.result", result, purge); err != nil {
			return fmt.Errorf("result and purge: %w", err)
		}
		return nil
	}, nil
}

func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// respond is the raw responder process: it echoes every request on
// rawSubject until its stdin closes.
func respond(args []string) error {
	if len(args) != 1 {
		return errors.New("want the server URL")
	}
	nc, err := nats.Connect(args[0], nats.UserInfo(rawUser, rawPass))
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
