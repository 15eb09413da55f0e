package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natscreds"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/engine"
)

// clusterNode is one nats-server process of a test cluster.
type clusterNode struct {
	name, ip string
	cmd      *exec.Cmd
	done     chan struct{}
	log      *strings.Builder
}

// natsCluster is three nats-server processes routed to each other, in
// operator mode with JetStream on each. Every node listens on its own
// loopback address with the same ports, as servers on separate machines
// would: a confined worker may connect to the bus's port only.
type natsCluster struct {
	t                     *testing.T
	nodes                 []*clusterNode
	port, httpPort, cport int
}

var (
	natsServerOnce sync.Once
	natsServerBin  string
	natsServerErr  error
)

// buildNATSServer builds nats-server from the module in go.mod, once for
// all the tests that need it.
func buildNATSServer(t *testing.T) string {
	t.Helper()
	natsServerOnce.Do(func() {
		natsServerBin = filepath.Join(filepath.Dir(sluiceBin), "nats-server")
		out, err := exec.Command("go", "build", "-o", natsServerBin, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			natsServerErr = fmt.Errorf("build nats-server: %v\n%s", err, out)
		}
	})
	if natsServerErr != nil {
		t.Fatal(natsServerErr)
	}
	return natsServerBin
}

// freePorts returns n TCP ports, each free on every one of ips.
func freePorts(t *testing.T, n int, ips ...string) []int {
	t.Helper()
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 50 {
			t.Fatalf("no port free on all of %v", ips)
		}
		l, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
			if err != nil {
				ok = false
				break
			}
			held = append(held, l)
		}
		if ok {
			ports = append(ports, port)
		}
	}
	return ports
}

// startCluster runs three nodes with the accounts of m preloaded and waits
// until JetStream answers on each.
func startCluster(t *testing.T, m operatorMode) *natsCluster {
	t.Helper()
	bin := buildNATSServer(t)
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	ports := freePorts(t, 3, ips...)
	c := &natsCluster{t: t, port: ports[0], httpPort: ports[1], cport: ports[2]}
	dir := t.TempDir()
	opJWT := filepath.Join(dir, "operator.jwt")
	if err := os.WriteFile(opJWT, []byte(m.operatorJWT), 0o600); err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, ip := range ips {
		routes = append(routes, fmt.Sprintf("nats-route://%s:%d", ip, c.cport))
	}
	for i, ip := range ips {
		name := fmt.Sprintf("n%d", i+1)
		conf := fmt.Sprintf(`server_name: %s
listen: "%s:%d"
http: "%s:%d"
operator: %q
system_account: %s
resolver: MEMORY
resolver_preload: {
  %s: %q
  %s: %q
}
jetstream: {store_dir: %q, max_memory_store: 64MB, max_file_store: 256MB}
cluster: {
  name: sluice
  listen: "%s:%d"
  routes: [%s]
}
`, name, ip, c.port, ip, c.httpPort, opJWT, m.sysPub, m.accPub, m.accJWT, m.sysPub, m.sysJWT,
			filepath.Join(dir, name), ip, c.cport, strings.Join(routes, ", "))
		confFile := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		n := &clusterNode{name: name, ip: ip, cmd: exec.Command(bin, "-c", confFile), done: make(chan struct{}), log: &strings.Builder{}}
		var mu sync.Mutex
		n.cmd.Stdout, n.cmd.Stderr = lockedWriter{&mu, n.log}, lockedWriter{&mu, n.log}
		if err := n.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { n.cmd.Wait(); close(n.done) }()
		c.nodes = append(c.nodes, n)
		t.Cleanup(func() {
			n.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-n.done:
			case <-time.After(5 * time.Second):
				n.cmd.Process.Kill()
				<-n.done
			}
			if t.Failed() {
				mu.Lock()
				t.Logf("%s log:\n%s", n.name, n.log.String())
				mu.Unlock()
			}
		})
	}
	for _, n := range c.nodes {
		c.waitFor(30*time.Second, n.name+" healthy", func() bool {
			resp, err := http.Get(fmt.Sprintf("http://%s:%d/healthz", n.ip, c.httpPort))
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
	return c
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// urls lists the client URLs of the nodes.
func (c *natsCluster) urls() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, fmt.Sprintf("nats://%s:%d", n.ip, c.port))
	}
	return out
}

// waitFor polls cond until it holds, or fails the test after d.
func (c *natsCluster) waitFor(d time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// conns returns the names and subscription counts of the client
// connections of a node, from its monitoring port; nil when it does not
// answer.
func (c *natsCluster) conns(n *clusterNode) []connInfo {
	resp, err := http.Get(fmt.Sprintf("http://%s:%d/connz?limit=1024", n.ip, c.httpPort))
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var z struct {
		Conns []connInfo `json:"connections"`
	}
	if json.NewDecoder(resp.Body).Decode(&z) != nil {
		return nil
	}
	return z.Conns
}

type connInfo struct {
	Name string `json:"name"`
	Subs int    `json:"subscriptions"`
}

// named counts the connections called name on each node, in node order.
func (c *natsCluster) named(name string) []int {
	out := make([]int, len(c.nodes))
	for i, n := range c.nodes {
		for _, ci := range c.conns(n) {
			if ci.Name == name {
				out[i]++
			}
		}
	}
	return out
}

// payChain is a flow of n payments, each after the one before (its memo
// names the previous charge), each with retries: a call whose answer was
// lost with a server is sent again with the same idempotency key.
func payChain(n int) string {
	var b strings.Builder
	b.WriteString("name: pay-chain\nsteps:\n")
	for i := 1; i <= n; i++ {
		memo := "first"
		if i > 1 {
			memo = fmt.Sprintf("after ${steps.pay%02d.output.charge_id}", i-1)
		}
		fmt.Fprintf(&b, "  - id: pay%02d\n    call: payment.charge\n    retries: 3\n    timeout: 3s\n", i)
		fmt.Fprintf(&b, "    with: {amount: %d, currency: EUR, payee: acct_%02d, memo: %q}\n", i, i, memo)
	}
	fmt.Fprintf(&b, "outputs:\n  last: \"${steps.pay%02d.output.charge_id}\"\n", n)
	return b.String()
}

// A three-node cluster with JetStream replicated three ways: the payment
// worker's three replicas are spread over the nodes, and the node the
// orchestrator is connected to, which also leads the audit stream, is
// killed with SIGKILL in the middle of a run of payments. The orchestrator
// and the worker that was on that node move to the others; the run
// completes with exactly one ledger line per charge, and the audit log
// exported afterwards verifies with a decision and a completed result for
// every step.
func TestClusterSurvivesANodeLoss(t *testing.T) {
	start := time.Now()
	m := newOperatorMode(t)
	c := startCluster(t, m)
	t.Logf("cluster up after %s", time.Since(start).Round(time.Millisecond))

	const steps = 30
	w := newWorkspace(t, map[string]string{
		"sluice.yaml": fmt.Sprintf(`nats:
  urls: [%s]
  replicas: 3
  account_seed: {file: nats/account.nk}
  creds: {file: nats/orchestrator.creds}
workers:
  - manifest: builtin:payment
    replicas: 3
`, strings.Join(c.urls(), ", ")),
		"pay.yaml": payChain(steps),
	})
	w.write("nats/account.nk", string(m.signingSeed))
	w.write("nats/orchestrator.creds", string(m.orchestratorCred))
	for _, f := range []string{"nats/account.nk", "nats/orchestrator.creds"} {
		if err := os.Chmod(w.path(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dep, err := config.Load(w.path("sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var logb syncBuf
	orch := startOrchestrator(t, orchestrator.Config{Deployment: dep, Log: slog.New(slog.NewTextHandler(&logb, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("orchestrator log:\n%s", logb.String())
		}
	})
	t.Logf("orchestrator up after %s", time.Since(start).Round(time.Millisecond))

	// The three replicas of the payment worker are on three nodes.
	c.waitFor(10*time.Second, "one payment worker on each node", func() bool {
		return slices.Equal(c.named("sluice-worker-payment"), []int{1, 1, 1})
	})
	pids := slices.Sorted(slices.Values(orch.Pids()["payment"]))

	// The victim: the node the orchestrator is connected to. The audit
	// stream's leader is moved there, so that its loss also costs the
	// stream its leader.
	var victim *clusterNode
	c.waitFor(10*time.Second, "the orchestrator's node", func() bool {
		for i, n := range c.named("sluice-orchestrator") {
			if n == 1 {
				victim = c.nodes[i]
			}
		}
		return victim != nil
	})
	opt, err := natscreds.Option(m.orchestratorCred)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(strings.Join(c.urls(), ","), opt, nats.Name("test"), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	leader := func(stream string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return ""
		}
		info := s.CachedInfo()
		if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			return ""
		}
		return info.Cluster.Leader
	}
	c.waitFor(20*time.Second, "the audit stream's leader on "+victim.name, func() bool {
		l := leader(audit.StreamName)
		if l == victim.name {
			return true
		}
		if l != "" {
			req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, victim.name)
			nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+audit.StreamName, []byte(req), 2*time.Second)
		}
		return false
	})

	plan, err := orch.LoadFlow(w.path("pay.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// As a run submitted through the API, the run has no deadline of its
	// own (the bus's requests then time out after jetstream's default).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type outcome struct {
		res *engine.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := orch.Run(ctx, plan, map[string]any{}, engine.Options{})
		done <- outcome{res, err}
	}()

	// Kill the victim once a few charges are on the ledger. The bound is
	// generous: the audit stream's leader was just moved, and a publish
	// whose answer the election lost is tried again after its ack timeout
	// (5 s a try), which a loaded machine can make several of.
	for deadline := time.Now().Add(120 * time.Second); len(w.ledger()) < 5; time.Sleep(20 * time.Millisecond) {
		select {
		case out := <-done:
			t.Fatalf("the run ended with %d charges on the ledger, before the kill: %+v, %v", len(w.ledger()), out.res, out.err)
		default:
		}
		if time.Now().After(deadline) {
			var st strings.Builder
			pprof.Lookup("goroutine").WriteTo(&st, 1)
			t.Fatalf("five charges: not within 120s (%d on the ledger)\n%s", len(w.ledger()), st.String())
		}
	}
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-victim.done
	killedAt := time.Now()
	select {
	case <-done:
		t.Fatalf("the run finished before %s was killed: make the flow longer", victim.name)
	default:
	}
	t.Logf("killed %s with %d of %d charges on the ledger, %s after the start", victim.name, len(w.ledger()), steps,
		killedAt.Sub(start).Round(time.Millisecond))

	var out outcome
	select {
	case out = <-done:
	case <-time.After(180 * time.Second):
		var st strings.Builder
		pprof.Lookup("goroutine").WriteTo(&st, 1)
		t.Fatalf("the run did not finish\n%s", st.String())
	}
	t.Logf("run finished %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	if out.err != nil {
		t.Fatalf("run: %v", out.err)
	}
	res := out.res
	for _, s := range res.Steps {
		if s.Status != engine.StatusCompleted || s.Attempts > 1 {
			t.Logf("step %s: %s after %d attempts %s", s.ID, s.Status, s.Attempts, s.Error)
		}
	}
	if res.Status != engine.StatusCompleted || len(res.Steps) != steps {
		t.Fatalf("run %s: %s with %d steps", res.RunID, res.Status, len(res.Steps))
	}

	// Exactly one ledger line per charge.
	keys := map[string]int{}
	for _, line := range w.ledger() {
		var rec struct {
			Key    string  `json:"idempotency_key"`
			Amount float64 `json:"amount"`
			Payee  string  `json:"payee"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("ledger line %q: %v", line, err)
		}
		keys[rec.Key]++
	}
	for i := 1; i <= steps; i++ {
		if k := fmt.Sprintf("%s/pay%02d", res.RunID, i); keys[k] != 1 {
			t.Errorf("charge %s is on the ledger %d times", k, keys[k])
		}
	}
	if len(keys) != steps {
		t.Errorf("%d charges on the ledger, want %d", len(keys), steps)
	}

	// The worker on the lost node moved to another one, without a restart.
	c.waitFor(10*time.Second, "three payment workers on the two nodes left", func() bool {
		total, subscribed := 0, 0
		for _, n := range c.nodes {
			if n == victim {
				continue
			}
			for _, ci := range c.conns(n) {
				if ci.Name == "sluice-worker-payment" {
					total++
					if ci.Subs > 0 {
						subscribed++
					}
				}
			}
		}
		return total == 3 && subscribed == 3
	})
	if now := slices.Sorted(slices.Values(orch.Pids()["payment"])); !slices.Equal(now, pids) {
		t.Errorf("payment workers %v became %v: a worker was restarted instead of reconnecting", pids, now)
	}

	// The audit log, exported through the running orchestrator, verifies,
	// and holds a decision and a completed result for every step; a step
	// tried more than once has a result for each try.
	if r := w.sluice("audit", "export", "--out", "audit.jsonl"); r.code != 0 {
		t.Fatalf("audit export: exit %d %s", r.code, r.stderr)
	}
	if r := w.sluice("audit", "verify", "audit.jsonl"); r.code != 0 || !strings.Contains(r.stdout, "the chain is intact") {
		t.Fatalf("audit verify: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	b, err := os.ReadFile(w.path("audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	decisions, completed, results := map[string]int{}, map[string]int{}, map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec audit.Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.RunID != res.RunID {
			continue
		}
		kinds[rec.Kind]++
		if rec.Starts() {
			kinds["start"]++
		}
		if status, end := rec.Ends(); end {
			kinds["end"]++
			if status != engine.StatusCompleted {
				t.Errorf("the run ends %s", status)
			}
		}
		switch rec.Kind {
		case audit.KindDecision:
			if rec.Action == "allow" {
				decisions[rec.Step]++
			}
		case audit.KindResult:
			results[rec.Step]++
			if rec.Status == engine.StatusCompleted {
				completed[rec.Step]++
			}
		}
	}
	if kinds["start"] != 1 || kinds["end"] != 1 {
		t.Errorf("records of the run: %v, want one that starts it and one that ends it", kinds)
	}
	for _, s := range res.Steps {
		if decisions[s.ID] != 1 || completed[s.ID] != 1 || results[s.ID] != s.Attempts {
			t.Errorf("step %s (%d attempts): %d allow decisions, %d results, %d completed; want 1, %d, 1",
				s.ID, s.Attempts, decisions[s.ID], results[s.ID], completed[s.ID], s.Attempts)
		}
	}
	t.Logf("done %s after the start", time.Since(start).Round(time.Millisecond))
}
