package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/bus"
)

// The js-scale group measures what the projection to many runs rests on
// (docs/performance.md, "Scale out: a projection"): how many durable
// writes a run makes, and how many writes JetStream takes, on the embedded
// server and on a three-node cluster of nats-server processes with every
// stream replicated three ways.

// jsPublishers is the number of goroutines writing at once in the
// loops measuring the most a stream takes.
const jsPublishers = 64

// jsScaleStreams are the numbers of streams written at once, by
// jsPublishers goroutines spread over them.
var jsScaleStreams = []int{1, 4, 16}

// jsScaleLoops are the loops measured on both the embedded server and the
// cluster.
var jsScaleLoops = []string{"audit_append_1", fmt.Sprintf("audit_append_%d", jsPublishers),
	fmt.Sprintf("publish_expected_%d", jsPublishers), fmt.Sprintf("kv_put_%d", jsPublishers),
	"api_stream_info_16", "api_consumer_create_delete_16"}

// jsScaleRuns is how many runs of each flow count the writes of a run.
const jsScaleRuns = 200

// jsScaleEstimate is the group's plan: the loops on one server and on the
// cluster, and starting them.
func jsScaleEstimate(o options) time.Duration {
	cluster := len(jsScaleLoops)
	single := cluster + 2 + len(jsScaleStreams) // and publish without the header, group commit, and the streams
	loops := time.Duration(o.runs*(single+cluster)) * o.dur
	// 400 runs at about 0.5 ms, an orchestrator started, nats-server
	// built (from the build cache) and three started.
	return loops + 15*time.Second
}

func jsScale(res *results, o options, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	size, err := writesPerRun(ctx, res, o, filepath.Join(dir, "runs"))
	if err != nil {
		return fmt.Errorf("writes per run: %w", err)
	}

	// One server: the embedded bus, as a deployment runs it.
	b, err := bus.Start(bus.Config{StoreDir: filepath.Join(dir, "single")})
	if err != nil {
		return err
	}
	defer b.Shutdown()
	single := jsTarget{name: "embedded", replicas: 1, connect: func() (*nats.Conn, error) { return b.Connect() }}
	if err := jsScaleOn(ctx, res, o, single, size, true); err != nil {
		return fmt.Errorf("embedded server: %w", err)
	}
	b.Shutdown()

	// Three nats-server processes in a cluster, each stream on all three.
	c, err := startBenchCluster(ctx, filepath.Join(dir, "cluster"))
	if err != nil {
		var names []string
		for _, n := range jsScaleLoops {
			names = append(names, "jsscale_r3_"+n)
		}
		res.notDone("three-node cluster not started: "+err.Error(), names...)
		return nil
	}
	defer c.stop()
	clustered := jsTarget{name: "r3", replicas: 3, connect: func() (*nats.Conn, error) { return nats.Connect(c.url) }}
	if err := jsScaleOn(ctx, res, o, clustered, size, false); err != nil {
		return fmt.Errorf("three-node cluster: %w", err)
	}
	return nil
}

// writesPerRun runs the hop's one-step flow and the flow figures' five-step
// flow, one run at a time, on the echo orchestrator, and prints what each
// run adds to the audit stream and to every stream of the account
// (messages stored: records, run state, completed calls, purge markers).
// It returns the mean stored size of an audit record, in bytes.
func writesPerRun(ctx context.Context, res *results, o options, dir string) (int, error) {
	orch, cfg, err := benchOrchestrator(ctx, o.sluice, dir)
	if err != nil {
		return 0, err
	}
	defer orch.Close()
	nc, err := orch.Connect()
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	// totals returns the messages ever stored in the audit stream and in
	// all streams, and the audit stream's bytes and messages held.
	totals := func() (auditSeq, allSeq, auditBytes, auditMsgs uint64, err error) {
		l := js.ListStreams(ctx)
		for si := range l.Info() {
			allSeq += si.State.LastSeq
			if si.Config.Name == audit.StreamName {
				auditSeq, auditBytes, auditMsgs = si.State.LastSeq, si.State.Bytes, si.State.Msgs
			}
		}
		return auditSeq, allSeq, auditBytes, auditMsgs, l.Err()
	}
	var size int
	for _, f := range []struct {
		steps     int
		name, src string
	}{{1, "hop.yaml", oneEcho}, {5, "five.yaml", fiveEchoes}} {
		run, err := runner(ctx, orch, cfg, f.name, f.src)
		if err != nil {
			return 0, err
		}
		// The first run opens the run-state buckets.
		if err := run(); err != nil {
			return 0, err
		}
		a0, s0, _, _, err := totals()
		if err != nil {
			return 0, err
		}
		for range jsScaleRuns {
			if err := run(); err != nil {
				return 0, err
			}
		}
		a1, s1, bytes, msgs, err := totals()
		if err != nil {
			return 0, err
		}
		res.fig(fmt.Sprintf("jsscale_audit_records_per_run_%d", f.steps), float64(a1-a0)/jsScaleRuns, "records")
		res.fig(fmt.Sprintf("jsscale_messages_per_run_%d", f.steps), float64(s1-s0)/jsScaleRuns, "messages")
		if msgs > 0 {
			size = int(bytes / msgs)
		}
	}
	res.fig("jsscale_audit_record_bytes", float64(size), "B")
	return size, nil
}

// jsTarget is a JetStream to measure: the embedded server or a cluster.
type jsTarget struct {
	name     string // in the figures' names: embedded figures have none
	replicas int
	connect  func() (*nats.Conn, error)
}

func (t jsTarget) fig(name string) string {
	if t.replicas == 1 {
		return "jsscale_" + name
	}
	return "jsscale_" + t.name + "_" + name
}

// jsScaleOn measures on t: the audit log appended to by 1 and 64
// goroutines, a stream written as the audit writes it (each message naming
// the sequence it must follow) and without that header, key-value puts,
// streams written at once (withStreams), and the JetStream API's rate.
func jsScaleOn(ctx context.Context, res *results, o options, t jsTarget, size int, withStreams bool) error {
	nc, err := t.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4*jsPublishers))
	if err != nil {
		return err
	}
	prefix := "jss" + strconv.Itoa(t.replicas)
	var l *audit.Log
	err = retryJS(ctx, func(ctx context.Context) (err error) {
		l, err = audit.Open(ctx, nc, prefix, audit.Options{Replicas: t.replicas, Deployment: prefix})
		return err
	})
	if err != nil {
		return err
	}
	defer l.Close(context.Background())
	web := ifc.UntrustedFrom("web:flights.example")
	rec := audit.Record{Kind: audit.KindDecision, RunID: audit.NewID(), Flow: "hop", Step: "echo", Tool: "echo.echo",
		ArgLabels: map[string]ifc.Label{"text": web}, Label: &web, Action: "allow", Rules: []string{"default (policy.yaml:1:1)"}}
	// Each call waits at most callTimeout for its answer.
	const callTimeout = 10 * time.Second
	appendRec := func() error {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		return l.Append(ctx, rec)
	}

	payload := make([]byte, max(size, 64))
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	mkStream := func(js jetstream.JetStream, name string) (jetstream.Stream, error) {
		var st jetstream.Stream
		err := retryJS(ctx, func(ctx context.Context) (err error) {
			st, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name}, Storage: jetstream.FileStorage, Replicas: t.replicas})
			return err
		})
		return st, err
	}
	// ordered publishes under one lock, each naming the sequence it must
	// follow when expect is set, as audit.Log does, then waits for its
	// acknowledgement outside the lock.
	ordered := func(js jetstream.JetStream, st jetstream.Stream, subject string, expect bool) (func() error, error) {
		info, err := st.Info(ctx)
		if err != nil {
			return nil, err
		}
		var mu sync.Mutex
		seq := info.State.LastSeq
		return func() error {
			msg := nats.NewMsg(subject)
			msg.Data = payload
			mu.Lock()
			if expect {
				msg.Header.Set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(seq, 10))
			}
			ack, err := js.PublishMsgAsync(msg, jetstream.WithRetryAttempts(0))
			if err == nil {
				seq++
			}
			mu.Unlock()
			if err != nil {
				return err
			}
			select {
			case <-ack.Ok():
				return nil
			case err := <-ack.Err():
				return err
			case <-time.After(callTimeout):
				return errors.New("no acknowledgement within 10 s")
			}
		}, nil
	}
	plain, err := mkStream(js, prefix+"_PLAIN")
	if err != nil {
		return err
	}
	expected, err := mkStream(js, prefix+"_EXPECTED")
	if err != nil {
		return err
	}
	pub, err := ordered(js, plain, prefix+"_PLAIN", false)
	if err != nil {
		return err
	}
	pubExpected, err := ordered(js, expected, prefix+"_EXPECTED", true)
	if err != nil {
		return err
	}
	var kv jetstream.KeyValue
	err = retryJS(ctx, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: prefix + "_KV", History: 1, Storage: jetstream.FileStorage, Replicas: t.replicas})
		return err
	})
	if err != nil {
		return err
	}
	var key atomic.Int64
	put := func() error {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		_, err := kv.Put(ctx, "run"+strconv.FormatInt(key.Add(1), 10), payload)
		return err
	}
	info := func() error {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		_, err := js.Stream(ctx, prefix+"_PLAIN")
		return err
	}
	consumer := func() error {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		c, err := plain.CreateConsumer(ctx, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy, DeliverPolicy: jetstream.DeliverLastPolicy})
		if err != nil {
			return err
		}
		return plain.DeleteConsumer(ctx, c.CachedInfo().Name)
	}

	type loop struct {
		name, unit string
		c          int
		f          func() error
		per        float64 // figure per call: records, messages, requests
	}
	loops := []loop{
		{jsScaleLoops[0], "records/s", 1, appendRec, 1},
		{jsScaleLoops[1], "records/s", jsPublishers, appendRec, 1},
		{jsScaleLoops[2], "msgs/s", jsPublishers, pubExpected, 1},
		{jsScaleLoops[3], "puts/s", jsPublishers, put, 1},
		{jsScaleLoops[4], "requests/s", 16, info, 1},
		{jsScaleLoops[5], "requests/s", 16, consumer, 2},
	}
	if withStreams {
		loops = append(loops, loop{fmt.Sprintf("publish_%d", jsPublishers), "msgs/s", jsPublishers, pub, 1})
		batched, done, err := groupCommit(ctx, nc, js, prefix+"_BATCH", payload)
		if err != nil {
			return err
		}
		defer done()
		loops = append(loops, loop{fmt.Sprintf("atomic_batch_%d", jsPublishers), "msgs/s", jsPublishers, batched, 1})
		for _, n := range jsScaleStreams {
			f, done, err := manyStreams(ctx, t, n, payload, mkStream, ordered)
			if err != nil {
				return err
			}
			defer done()
			loops = append(loops, loop{fmt.Sprintf("streams_%d_publish_%d", n, jsPublishers), "msgs/s", jsPublishers, f, 1})
		}
	}
	// Warm each up, then alternate them run by run.
	for _, lp := range loops {
		if _, err := measure(lp.c, 200*time.Millisecond, lp.f); err != nil {
			return fmt.Errorf("%s: %w", lp.name, err)
		}
	}
	rates := map[string][]float64{}
	for range o.runs {
		for _, lp := range loops {
			s, err := measure(lp.c, o.dur, lp.f)
			if err != nil {
				return fmt.Errorf("%s: %w", lp.name, err)
			}
			rates[lp.name] = append(rates[lp.name], s.rate*lp.per)
		}
	}
	for _, lp := range loops {
		res.fig(t.fig(lp.name), median(rates[lp.name]), lp.unit)
	}
	if withStreams {
		res.ratio(fmt.Sprintf("jsscale_atomic_batch_vs_publish_%d", jsPublishers),
			median(rates[fmt.Sprintf("atomic_batch_%d", jsPublishers)])/median(rates[fmt.Sprintf("publish_%d", jsPublishers)]))
		one := median(rates[fmt.Sprintf("streams_1_publish_%d", jsPublishers)])
		for _, n := range jsScaleStreams[1:] {
			res.ratio(fmt.Sprintf("jsscale_streams_%d_vs_1", n), median(rates[fmt.Sprintf("streams_%d_publish_%d", n, jsPublishers)])/one)
		}
	}
	return nil
}

// manyStreams makes n streams, each written on its own connection (as n
// deployments' orchestrators would), and returns a call that writes the
// next of them in turn, ordered with the expected-sequence header as the
// audit writes.
func manyStreams(ctx context.Context, t jsTarget, n int, payload []byte,
	mkStream func(jetstream.JetStream, string) (jetstream.Stream, error),
	ordered func(jetstream.JetStream, jetstream.Stream, string, bool) (func() error, error)) (func() error, func(), error) {
	var pubs []func() error
	var conns []*nats.Conn
	done := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for i := range n {
		nc, err := t.connect()
		if err != nil {
			done()
			return nil, nil, err
		}
		conns = append(conns, nc)
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4*jsPublishers))
		if err != nil {
			done()
			return nil, nil, err
		}
		name := fmt.Sprintf("jss%d_MANY%d_%d", t.replicas, n, i)
		st, err := mkStream(js, name)
		if err != nil {
			done()
			return nil, nil, err
		}
		f, err := ordered(js, st, name, true)
		if err != nil {
			done()
			return nil, nil, err
		}
		pubs = append(pubs, f)
	}
	var next atomic.Int64
	return func() error { return pubs[int(next.Add(1))%n]() }, done, nil
}

// groupCommit is group commit as JetStream offers it: a stream that takes
// atomic batches (ADR-50), and one committer that publishes the messages
// its callers hand it, whatever is queued (up to jsPublishers), as one
// batch, the last message carrying the commit, and answers each caller
// with the commit's acknowledgement: one acknowledgement for the batch,
// where each ordered publish has its own. It returns that call, and what
// stops the committer.
func groupCommit(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, name string, payload []byte) (func() error, func(), error) {
	err := retryJS(ctx, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name},
			Storage: jetstream.FileStorage, AllowAtomicPublish: true})
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	queue := make(chan chan error, jsPublishers)
	stop := make(chan struct{})
	go func() {
		var batch []chan error
		for {
			select {
			case <-stop:
				return
			case c := <-queue:
				batch = append(batch[:0], c)
			}
		more:
			for len(batch) < jsPublishers {
				select {
				case c := <-queue:
					batch = append(batch, c)
				default:
					break more
				}
			}
			err := commitBatch(nc, name, payload, len(batch))
			for _, c := range batch {
				c <- err
			}
		}
	}()
	return func() error {
		c := make(chan error, 1)
		queue <- c
		return <-c
	}, func() { close(stop) }, nil
}

// commitBatch publishes n messages to subject as one atomic batch and
// waits for its commit's acknowledgement.
func commitBatch(nc *nats.Conn, subject string, payload []byte, n int) error {
	id := nats.NewInbox()[len(nats.InboxPrefix):]
	for i := 1; i <= n; i++ {
		msg := nats.NewMsg(subject)
		msg.Data = payload
		msg.Header.Set("Nats-Batch-Id", id)
		msg.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i))
		if i < n {
			if err := nc.PublishMsg(msg); err != nil {
				return err
			}
			continue
		}
		msg.Header.Set("Nats-Batch-Commit", "1")
		reply, err := nc.RequestMsg(msg, 10*time.Second)
		if err != nil {
			return err
		}
		var ack struct {
			Count int `json:"count"`
			Error *struct {
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(reply.Data, &ack); err != nil {
			return fmt.Errorf("batch commit: %w", err)
		}
		if ack.Error != nil {
			return fmt.Errorf("batch commit: %s", ack.Error.Description)
		}
		if ack.Count != n {
			return fmt.Errorf("batch commit: %d messages stored, want %d", ack.Count, n)
		}
	}
	return nil
}

// retryJS retries f while a cluster that has just started elects its
// leaders, for at most 30 s, each try within 5 s.
func retryJS(ctx context.Context, f func(context.Context) error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(tctx)
		cancel()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// benchCluster is three nats-server processes routed to each other on
// loopback, JetStream on each.
type benchCluster struct {
	url   string
	procs []*exec.Cmd
	done  []chan struct{}
}

func (c *benchCluster) stop() {
	for i, p := range c.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done[i]:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-c.done[i]
		}
	}
}

// startBenchCluster builds nats-server from the module's go.mod and starts
// three of them, and waits until JetStream answers.
func startBenchCluster(ctx context.Context, dir string) (*benchCluster, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "nats-server")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build nats-server: %v: %s", err, out)
	}
	ports, err := freeLoopbackPorts(6)
	if err != nil {
		return nil, err
	}
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3+i]))
	}
	c := &benchCluster{url: fmt.Sprintf("nats://127.0.0.1:%d", ports[0])}
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		conf := fmt.Sprintf(`server_name: %s
listen: "127.0.0.1:%d"
jetstream: {store_dir: %q}
cluster: {
  name: bench
  listen: "127.0.0.1:%d"
  routes: [%s]
}
`, name, ports[i], filepath.Join(dir, name), ports[3+i], strings.Join(routes, ", "))
		file := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
			c.stop()
			return nil, err
		}
		cmd := exec.Command(bin, "-c", file)
		// The servers go with the bench, however it ends.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		log, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			c.stop()
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			log.Close()
			c.stop()
			return nil, err
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); log.Close(); close(done) }()
		c.procs, c.done = append(c.procs, cmd), append(c.done, done)
	}
	// JetStream answers once the meta leader is elected.
	deadline := time.Now().Add(60 * time.Second)
	for {
		nc, err := nats.Connect(c.url, nats.Timeout(2*time.Second))
		if err == nil {
			js, _ := jetstream.New(nc)
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = js.AccountInfo(actx)
			cancel()
			nc.Close()
			if err == nil {
				return c, nil
			}
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("JetStream not answering after 60 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freeLoopbackPorts returns n distinct TCP ports free on 127.0.0.1 when
// asked.
func freeLoopbackPorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	if len(ports) != n {
		return nil, errors.New("no free ports")
	}
	return ports, nil
}
