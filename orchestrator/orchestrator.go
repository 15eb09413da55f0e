// Package orchestrator wires Sluice together: the embedded NATS server,
// the audit log, the egress broker, the supervisor of worker processes, the
// policy set and the engine that runs flows.
//
// New checks everything that can be checked without starting anything
// (manifests, policies); Start brings the system up; Run runs one flow.
package orchestrator

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc/expr"
	"github.com/sluicehq/sluice/ifc/policy"
	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/bus"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/egress"
	"github.com/sluicehq/sluice/orchestrator/engine"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/orchestrator/internal/echo"
	"github.com/sluicehq/sluice/orchestrator/internal/fault"
	"github.com/sluicehq/sluice/orchestrator/internal/telemetry"
	"github.com/sluicehq/sluice/orchestrator/lease"
	"github.com/sluicehq/sluice/orchestrator/notify"
	"github.com/sluicehq/sluice/orchestrator/supervisor"
	"github.com/sluicehq/sluice/schemas"
)

// Config of an orchestrator.
type Config struct {
	// Deployment is the loaded sluice.yaml (or config.Default).
	Deployment *config.Config
	Log        *slog.Logger
	// Executable is the sluice binary the workers run; default this one.
	Executable string
	// WorkerCommand, when set, builds each worker process instead.
	WorkerCommand func(supervisor.Worker) *exec.Cmd
	// ReadyTimeout bounds the wait for every worker to subscribe; default 30s.
	ReadyTimeout time.Duration
	// Getenv reads the environment: the variables secrets come from, and
	// the few a worker process inherits (PATH, HOME, LANG, TZ; see
	// supervisor.Config.Getenv). Nil reads nothing.
	Getenv func(string) string
	// Delivered, when set, is told of every call as it is delivered
	// (engine.Config.Delivered).
	Delivered func(engine.Delivery)
	// ResumeRuns resumes, once started, the runs a previous orchestrator
	// on the same state left unfinished (sluice up does; a one-off
	// sluice run does not). A run a person interrupted (Ctrl-C on sluice
	// run) is resumed only with ResumeInterrupted too.
	ResumeRuns        bool
	ResumeInterrupted bool
	// LoadDeployment reads the configuration again for Reload; nil
	// reads Deployment.File again (or the built-in defaults for
	// Deployment.Dir when it has none).
	LoadDeployment func() (*config.Config, error)
}

// Orchestrator is a running Sluice system.
type Orchestrator struct {
	cfg       Config
	log       *slog.Logger
	subjects  schemas.Subjects
	manifests map[string]*capabilities.Manifest
	notify    *notify.Notifier
	env       *expr.Env
	// current is what runs now: replaced whole by Reload, read once by
	// each run (serveRun) and by the engine through its own pointer.
	current atomic.Pointer[Effective]
	// reloadMu serializes reloads, and the endpoint each rewrites.
	reloadMu sync.Mutex
	endpoint api.Endpoint

	bus    Bus
	fault  *fault.Store // nil on an external server
	nc     *nats.Conn
	audit  *audit.Log
	broker *egress.Broker
	sup    *supervisor.Supervisor
	engine *engine.Engine
	subs   []*nats.Subscription

	wg         sync.WaitGroup
	cancelRuns context.CancelFunc
	// served counts the runs clients submitted that are going on: Close
	// lets each record where it stopped before the audit log closes.
	servedMu       sync.Mutex
	closing        bool
	served         sync.WaitGroup
	stopViolations chan struct{}
	cleanup        []func()
	// resumed are the runs Start resumed, as they stood.
	resumed []engine.RunInfo

	// leases, on an external bus, share the deployment's runs with other
	// orchestrators (leases.go); id is this one's. ready once Start
	// resumed what it resumes.
	leases *lease.Leases
	id     string
	ready  atomic.Bool
	// results keeps, with leases, the results of runs that ended away
	// from their client (shared.go).
	results jetstream.KeyValue
}

// New loads the manifests and policies of the deployment. Nothing runs yet.
func New(cfg Config) (*Orchestrator, error) {
	d := cfg.Deployment
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	eff, err := LoadEffective(d)
	if err != nil {
		return nil, err
	}
	env, err := expr.NewEnv()
	if err != nil {
		return nil, err
	}
	o := &Orchestrator{cfg: cfg, log: log, subjects: schemas.Subjects{Prefix: d.Prefix},
		manifests: eff.Manifests, env: env}
	o.current.Store(eff)
	return o, nil
}

// Fingerprint is the fingerprint of the configuration the orchestrator
// runs now.
func (o *Orchestrator) Fingerprint() string { return o.current.Load().Fingerprint }

// LoadPolicy loads the policy of a deployment the way New does — the
// default policy, then its policy files — and then extra, each checked
// against the tools of the deployment's workers.
func LoadPolicy(d *config.Config, extra ...policy.File) (*policy.Set, error) {
	ms, err := d.Manifests()
	if err != nil {
		return nil, err
	}
	return loadPolicy(d, ms, extra...)
}

func loadPolicy(d *config.Config, ms map[string]*capabilities.Manifest, extra ...policy.File) (*policy.Set, error) {
	files, err := readPolicyFiles(d)
	if err != nil {
		return nil, err
	}
	return policy.Load(policyTools(ms), append(files, extra...)...)
}

func rel(dir, p string) string {
	if r, err := filepath.Rel(dir, p); err == nil {
		return r
	}
	return p
}

// Manifests are the effective manifests of the configured workers, by
// worker name: each with the deployment's grants added. Callers must not
// change them.
func (o *Orchestrator) Manifests() map[string]*capabilities.Manifest { return o.manifests }

// LoadFlow reads and checks a flow against the configured workers.
func (o *Orchestrator) LoadFlow(path string) (*flow.Plan, error) {
	return flow.LoadFile(path, flow.Catalog(o.manifests), o.env)
}

// Start starts the bus, the audit log, the egress broker and every worker,
// and waits until each worker serves its tools.
//
// Each step adds what it started to what Close stops, so that Close
// cleans up after a Start that failed halfway.
func (o *Orchestrator) Start(ctx context.Context) error {
	d := o.cfg.Deployment
	if err := o.claimState(d); err != nil {
		return err
	}
	if err := o.startTracing(d); err != nil {
		return err
	}
	violations := make(chan bus.Violation, 256)
	o.stopViolations = make(chan struct{})
	if err := o.connectBus(ctx, d, violations); err != nil {
		return err
	}
	if err := o.openAudit(ctx, d, violations); err != nil {
		return err
	}
	secrets, err := loadSecrets(d, o.cfg.Getenv)
	if err != nil {
		return err
	}
	if err := o.startEngine(ctx, d, secrets); err != nil {
		return err
	}
	if err := o.startBroker(secrets); err != nil {
		return err
	}
	if err := o.serveClients(ctx, d); err != nil {
		return err
	}
	if err := o.startWorkers(ctx, d, violations); err != nil {
		return err
	}
	return o.resumeRuns(ctx)
}

// claimState creates the state directory and locks it for this
// orchestrator alone.
func (o *Orchestrator) claimState(d *config.Config) error {
	if err := os.MkdirAll(d.State, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	unlock, err := lockState(d.State)
	if err != nil {
		return err
	}
	o.cleanup = append(o.cleanup, unlock)
	return nil
}

// startTracing exports the runs' traces over OTLP when the environment
// (OTEL_EXPORTER_OTLP_*) or telemetry.otlp_endpoint says where; otherwise
// nothing is exported. Close flushes what is left.
func (o *Orchestrator) startTracing(d *config.Config) error {
	shutdown, on, err := telemetry.Setup(telemetry.Config{Endpoint: d.OTLPEndpoint, Getenv: o.cfg.Getenv})
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	if !on {
		return nil
	}
	o.log.Debug("traces exported over OTLP")
	o.cleanup = append(o.cleanup, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			o.log.Warn("tracing: the last spans were not exported", "err", err)
		}
	})
	return nil
}

// connectBus starts the bus (or reaches the external one) and connects
// the orchestrator to it. What the bus refuses goes to violations, for the
// audit log.
func (o *Orchestrator) connectBus(ctx context.Context, d *config.Config, violations chan<- bus.Violation) error {
	b, err := o.startBus(ctx, d, func(v bus.Violation) {
		select {
		case violations <- v:
		default:
			o.log.Error("violation dropped: audit queue full", "user", v.User, "subject", v.Subject)
		}
	})
	if err != nil {
		return err
	}
	o.bus = b
	if o.nc, err = b.Connect(); err != nil {
		return fmt.Errorf("connect to the bus: %w", err)
	}
	return nil
}

// openAudit opens the audit log, signed with the deployment's audit key,
// and starts recording the violations the bus and the supervisor report.
func (o *Orchestrator) openAudit(ctx context.Context, d *config.Config, violations <-chan bus.Violation) error {
	// The key that signs the audit log's checkpoints stays in this
	// process: no worker is granted it, and the broker never holds it.
	key, keyFrom, err := AuditKey(d, o.cfg.Getenv, true)
	if err != nil {
		return err
	}
	o.log.Debug("audit checkpoints signed", "key", audit.PublicKeyString(key.Public().(ed25519.PublicKey)), "from", keyFrom)
	if o.audit, err = audit.Open(ctx, o.nc, o.subjects.Prefix, audit.Options{Deployment: d.Deployment, Replicas: d.Replicas(), Signer: key, Fault: o.fault}); err != nil {
		return err
	}
	o.wg.Add(1)
	go o.recordViolations(violations)
	o.retainAudit(ctx)
	return nil
}

// startEngine creates the engine that runs flows, with the policy the
// orchestrator runs now and the secret values it strips from what workers
// echo back.
func (o *Orchestrator) startEngine(ctx context.Context, d *config.Config, secrets map[string]egress.Secret) error {
	var eng atomic.Pointer[engine.Engine]
	if err := o.openLeases(ctx, d, &eng); err != nil {
		return err
	}
	values := map[string][]byte{}
	for name, s := range secrets {
		values[name] = s.Value()
	}
	o.notify = notify.New(notifyTargets(d, secrets), o.log.With("component", "notify"))
	o.engine = engine.New(engine.Config{Conn: o.nc, Subjects: o.subjects, Deployment: d.Deployment, Policy: o.current.Load().Policy, Audit: o.audit,
		Manifests: o.manifests, Log: o.log, LoadFlow: o.loadFlowSource, Replicas: d.Replicas(), Delivered: o.cfg.Delivered,
		Secrets: echo.New(values), Fault: o.fault, Models: models(d, o.manifests), Leases: o.leases,
		CancelAt: o.cancelAt, Ended: o.keepResult, Held: func(a engine.Approval) {
			o.notify.Held(notify.Held{Approval: a.ID, Run: a.RunID, Flow: a.Flow, Step: a.Step, Tool: a.Tool, Created: a.Created})
		}})
	eng.Store(o.engine)
	return nil
}

// notifyTargets are the notifiers of the deployment, with the secrets
// they name filled in.
func notifyTargets(d *config.Config, secrets map[string]egress.Secret) []notify.Target {
	var out []notify.Target
	for _, n := range d.Notify {
		t := notify.Target{Kind: n.Kind, URL: n.URL, Room: n.Room}
		if s, ok := secrets[n.URLSecret]; ok && n.URLSecret != "" {
			t.URL = strings.TrimSpace(string(s.Value()))
		}
		if s, ok := secrets[n.TokenSecret]; ok && n.TokenSecret != "" {
			t.Token = strings.TrimSpace(string(s.Value()))
		}
		out = append(out, t)
	}
	return out
}

// SetApprovalLink sets the address of the approval page that
// notifications of held calls link to.
func (o *Orchestrator) SetApprovalLink(link string) {
	if o.notify != nil {
		o.notify.SetLink(link)
	}
}

// models names, by worker, the model its configuration asks for (the
// config's "model"), for the traces of its calls.
func models(d *config.Config, manifests map[string]*capabilities.Manifest) map[string]string {
	out := map[string]string{}
	for _, w := range d.Workers {
		var c struct {
			Model string `json:"model"`
		}
		if json.Unmarshal(w.Config, &c) != nil || c.Model == "" {
			continue
		}
		if m, err := capabilities.Load(w.Manifest); err == nil && manifests[m.Worker] != nil {
			out[m.Worker] = c.Model
		}
	}
	return out
}

// startBroker starts the egress broker with each worker's network and
// secret grants, and serves its requests on the bus.
func (o *Orchestrator) startBroker(secrets map[string]egress.Secret) error {
	grants := map[string][]string{}
	for name, m := range o.manifests {
		grants[name] = m.Grants.Net
	}
	sgrants, err := secretGrants(o.manifests, secrets)
	if err != nil {
		return err
	}
	o.broker = egress.New(egress.Config{Grants: grants, Track: o.engine.Track, Orchestrator: o.id, Filled: o.engine.Filled, Log: o.log.With("component", "egress"),
		Secrets: secrets, SecretGrants: sgrants, Report: o.recordEgress, Span: o.engine.SpanContext})
	sub, err := o.broker.Serve(o.nc, o.subjects)
	if err != nil {
		return fmt.Errorf("egress broker: %w", err)
	}
	o.subs = append(o.subs, sub)
	return nil
}

// serveClients lets clients reach the orchestrator: it adds their bus
// user, serves the API and publishes the endpoint with the user's
// credential, renewed while it runs on an external server.
func (o *Orchestrator) serveClients(ctx context.Context, d *config.Config) error {
	// Clients on this machine (sluice approve) reach the orchestrator with
	// a credential that can make API requests and nothing else.
	seed, removeClient, err := o.bus.AddUser("client", api.ClientPermissions(o.subjects))
	if err != nil {
		return err
	}
	o.cleanup = append(o.cleanup, removeClient)
	if err := o.serveAPI(ctx); err != nil {
		return err
	}
	if err := o.publishEndpoint(d, seed); err != nil {
		return err
	}
	if e, ok := o.bus.(*bus.External); ok {
		o.wg.Add(1)
		go o.renewClientCreds(e.CredentialTTL())
	}
	return nil
}

// serveAPI answers the API's requests on the bus, all but config and
// reload (publishEndpoint): held calls, unfinished runs and cancels, runs
// (whose context Close cancels) and audit exports.
func (o *Orchestrator) serveAPI(ctx context.Context) error {
	apiSubs, err := api.Serve(o.nc, o.subjects, o)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	o.subs = append(o.subs, apiSubs...)
	controlSubs, err := api.ServeControl(o.nc, o.subjects, o)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	o.subs = append(o.subs, controlSubs...)
	rememberedSubs, err := api.ServeRemembered(o.nc, o.subjects, o)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	o.subs = append(o.subs, rememberedSubs...)
	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	o.cancelRuns = cancelRuns
	runSub, err := api.ServeRuns(runCtx, o.nc, o.subjects, o.serveRun)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	o.subs = append(o.subs, runSub)
	if err := o.serveShared(runCtx); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	exportSub, err := api.ServeExport(o.nc, o.subjects, o.Export)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	o.subs = append(o.subs, exportSub)
	return nil
}

// publishEndpoint answers config and reload requests and writes the endpoint clients read, with the client credential seed,
// to the state directory.
func (o *Orchestrator) publishEndpoint(d *config.Config, seed []byte) error {
	// A reload asked for at once waits until the endpoint it rewrites
	// is published.
	o.reloadMu.Lock()
	cfgSubs, err := api.ServeConfig(o.nc, o.subjects, o)
	if err != nil {
		o.reloadMu.Unlock()
		return fmt.Errorf("api: %w", err)
	}
	o.subs = append(o.subs, cfgSubs...)
	o.endpoint = api.Endpoint{URL: o.bus.ClientURL(), Prefix: o.subjects.Prefix, PID: os.Getpid(), Config: d.File, Fingerprint: o.Fingerprint(),
		TLS: natsTLS(d)}
	unpublish, err := api.Publish(d.State, o.endpoint, seed)
	o.reloadMu.Unlock()
	if err != nil {
		return fault.New(d.State).FromOS("API endpoint", err)
	}
	o.cleanup = append(o.cleanup, unpublish)
	return nil
}

// startWorkers starts a process for every worker of the deployment under
// the supervisor, and waits until each serves its tools. What a worker
// process is refused goes to violations, for the audit log.
func (o *Orchestrator) startWorkers(ctx context.Context, d *config.Config, violations chan<- bus.Violation) error {
	workers, err := o.workers(d)
	if err != nil {
		return err
	}
	o.sup = supervisor.New(supervisor.Config{Bus: o.bus, State: d.State, Dir: d.Dir, Log: o.log, Prefix: o.subjects.Prefix,
		Executable: o.cfg.Executable, Command: o.cfg.WorkerCommand, OnExit: o.engine.WorkerExited,
		Getenv: withoutSecrets(d, o.cfg.Getenv), TLS: natsTLS(d),
		SealNetwork: d.ExternalNATS == nil, OnRefused: func(user, op, what string) {
			select {
			case violations <- bus.Violation{Time: time.Now(), User: user, Kind: op, Subject: what}:
			default:
				o.log.Error("violation dropped: audit queue full", "user", user, "tried", what)
			}
		}})
	if err := o.sup.Start(workers); err != nil {
		return err
	}
	return o.waitReady(ctx)
}

// workers lists the worker processes of the deployment as the supervisor
// starts them: each with the bus permissions and memory limit of its
// effective manifest.
func (o *Orchestrator) workers(d *config.Config) ([]supervisor.Worker, error) {
	var workers []supervisor.Worker
	for _, w := range d.Workers {
		m, err := capabilities.Load(w.Manifest)
		if err != nil {
			return nil, err
		}
		eff := o.manifests[m.Worker]
		workers = append(workers, supervisor.Worker{Name: m.Worker, Ref: w.Manifest,
			Permissions: eff.Permissions(o.subjects), Grants: w.Grants, Config: w.Config, Replicas: w.Replicas,
			MemoryLimit: goMemoryLimit(eff)})
	}
	return workers, nil
}

// resumeRuns resumes, when Config.ResumeRuns asks for it, the runs a
// previous orchestrator on the same state left unfinished.
func (o *Orchestrator) resumeRuns(ctx context.Context) error {
	if !o.cfg.ResumeRuns {
		return nil
	}
	defer o.ready.Store(true)
	runs, err := o.engine.ResumeRuns(ctx, o.cfg.ResumeInterrupted)
	if err != nil {
		return fmt.Errorf("resume unfinished runs: %w", err)
	}
	o.resumed = runs
	if len(runs) > 0 {
		o.log.Info("resuming unfinished runs", "runs", len(runs))
	}
	return nil
}

// Resumed lists the runs Start resumed, each as it stood before: where it
// stopped, and why it goes on.
func (o *Orchestrator) Resumed() []engine.RunInfo { return o.resumed }

// Unfinished lists the runs the store keeps: running, held or
// interrupted.
func (o *Orchestrator) Unfinished(ctx context.Context) ([]engine.RunInfo, error) {
	return o.engine.Unfinished(ctx)
}

// Cancel ends a run for good (engine.Engine.Cancel).
// With several orchestrators, the run's result, cancelled, is kept for a
// client that follows it (shared.go).
func (o *Orchestrator) Cancel(ctx context.Context, id, who string) (*engine.RunInfo, error) {
	ri, err := o.engine.Cancel(ctx, id, who)
	if err == nil {
		o.keepResult(&engine.Result{RunID: ri.ID, Flow: ri.Flow, Status: engine.StatusCancelled}, nil)
	}
	return ri, err
}

// loadFlowSource checks the flow a run started with, to resume it.
func (o *Orchestrator) loadFlowSource(file string, src []byte) (*flow.Plan, error) {
	return flow.Load(file, src, flow.Catalog(o.manifests), o.env)
}

// Approvals lists the calls waiting for a person, oldest first.
func (o *Orchestrator) Approvals(ctx context.Context) ([]engine.Approval, error) {
	return o.engine.Approvals(ctx)
}

// Approval returns one held call, whatever its state.
func (o *Orchestrator) Approval(ctx context.Context, id string) (*engine.Approval, error) {
	return o.engine.Approval(ctx, id)
}

// RememberedAnswers lists the answers people asked to be remembered.
func (o *Orchestrator) RememberedAnswers(ctx context.Context) ([]engine.Remembered, error) {
	return o.engine.RememberedAnswers(ctx)
}

// Revoke ends a remembered answer.
func (o *Orchestrator) Revoke(ctx context.Context, id, who string) (*engine.Remembered, error) {
	return o.engine.Revoke(ctx, id, who)
}

// Decide answers a held call.
// The time the call waited is recorded in the metrics.
func (o *Orchestrator) Decide(ctx context.Context, id string, a engine.Answer) error {
	if err := o.engine.Decide(ctx, id, a); err != nil {
		return err
	}
	if ap, err := o.engine.Approval(ctx, id); err == nil && ap.Decided != nil {
		telemetry.Approval(ap.Decided.Sub(ap.Created))
	}
	return nil
}

func (o *Orchestrator) waitReady(ctx context.Context) error {
	timeout := o.cfg.ReadyTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for name := range o.manifests {
		subject := o.subjects.Tool(name, readyProbe)
		for !o.bus.HasInterest(subject) {
			if n, last := o.sup.Exits(name); n >= 3 {
				return fmt.Errorf("worker %s exited %d times while starting; last: %s", name, n, last)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("worker %s did not start within %s (run with -v to see its log)", name, timeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

func (o *Orchestrator) recordViolations(ch <-chan bus.Violation) {
	defer o.wg.Done()
	for {
		var v bus.Violation
		select {
		case v = <-ch:
		case <-o.stopViolations:
			return
		}
		o.log.Error("bus refused an operation", "user", v.User, "op", v.Kind, "subject", v.Subject)
		rec := audit.Record{Kind: audit.KindViolation, Time: v.Time.UTC(), User: v.User, Op: v.Kind, Subject: v.Subject}
		if err := o.audit.Append(context.Background(), rec); err != nil {
			o.log.Error("audit append failed", "err", err)
		}
	}
}

// goMemoryLimit is the soft memory limit of a worker process: the
// manifest's limits.memory for a built-in worker. A WASM worker's
// limits.memory bounds each instance, and the process holds several, so
// its process is left without one.
func goMemoryLimit(m *capabilities.Manifest) int64 {
	if strings.HasPrefix(m.Run, "wasm:") {
		return 0
	}
	return m.Limits.Memory
}

// recordEgress appends every request the broker performed or refused to
// the audit log.
func (o *Orchestrator) recordEgress(ev egress.Event) {
	rec := audit.Record{Kind: audit.KindEgress, User: "worker:" + ev.Worker, MsgID: ev.MsgID, Subject: ev.Host,
		Status: "performed", Error: ev.Refused}
	if ev.Refused != "" {
		rec.Status = "refused"
		o.log.Warn("egress refused", "worker", ev.Worker, "msg_id", ev.MsgID, "host", ev.Host, "err", ev.Refused)
	}
	if err := o.audit.Append(context.Background(), rec); err != nil {
		o.log.Error("audit append failed", "err", err)
	}
}

// Run runs a plan.
func (o *Orchestrator) Run(ctx context.Context, plan *flow.Plan, inputs map[string]any, opts engine.Options) (*engine.Result, error) {
	return o.engine.Run(ctx, plan, inputs, opts)
}

// serveRun runs a flow a client submitted.
func (o *Orchestrator) serveRun(ctx context.Context, req api.RunRequest, events func(any)) api.RunReply {
	o.servedMu.Lock()
	if o.closing {
		o.servedMu.Unlock()
		return api.RunReply{Error: "the orchestrator is stopping"}
	}
	o.served.Add(1)
	o.servedMu.Unlock()
	defer o.served.Done()
	// The run is decided by the configuration it was checked against:
	// one read of the pointer, whatever a reload does meanwhile.
	cur := o.current.Load()
	if req.Fingerprint != "" && req.Fingerprint != cur.Fingerprint {
		running := o.running(cur)
		return api.RunReply{Running: &running, Error: "the orchestrator runs another configuration"}
	}
	plan, err := o.LoadFlow(req.Flow)
	if err != nil {
		if ds, ok := schemas.AsDiagnostics(err); ok {
			return api.RunReply{Diagnostics: ds}
		}
		return api.RunReply{Error: err.Error()}
	}
	inputs, err := plan.BindInputs(req.Inputs)
	if err != nil {
		return api.RunReply{Error: err.Error(), Usage: true}
	}
	var runID atomic.Value
	runID.Store("")
	opts := engine.Options{Wait: req.Wait, WaitTimeout: time.Duration(req.WaitTimeoutMS) * time.Millisecond,
		OnHeld: func(s engine.StepResult) { events(api.RunEvent{Held: &s}) },
		OnStarted: func(id string) {
			runID.Store(id)
			events(api.RunEvent{Started: id})
		}, Policy: cur.Policy}
	// Each step as it finishes, from the run's audit records.
	stop, ferr := o.FollowSteps(func() string { return runID.Load().(string) }, func(ev api.StepEvent) { events(api.RunEvent{Step: &ev}) })
	res, err := o.Run(ctx, plan, inputs, opts)
	if ferr == nil {
		wait := 10 * time.Second
		if runID.Load().(string) == "" {
			wait = 0 // never recorded: no record ends it
		}
		stop(wait)
	}
	rep := api.RunReply{}
	if res != nil {
		rep.Result, _ = json.Marshal(res)
	}
	if err != nil {
		rep.Error = err.Error()
	}
	// Stopped, or its lease lost: another orchestrator goes on with it,
	// and the client follows it there.
	rep.Elsewhere = o.leases != nil && (errors.Is(err, engine.ErrInterrupted) || errors.Is(err, lease.ErrLost))
	return rep
}

// Connect opens a connection to the bus with the orchestrator's own
// rights, for embedders and tests (an observer of every subject, say).
func (o *Orchestrator) Connect(opts ...nats.Option) (*nats.Conn, error) {
	return o.bus.Connect(opts...)
}

// Catalog is the deployment's tools, by worker.
func (o *Orchestrator) Catalog() flow.Catalog { return flow.Catalog(o.manifests) }

// Engine returns the engine, for answering held calls.
func (o *Orchestrator) Engine() *engine.Engine { return o.engine }

// Audit returns the audit log.
func (o *Orchestrator) Audit() *audit.Log { return o.audit }

// Pids returns the process ids of the running workers, by worker.
func (o *Orchestrator) Pids() map[string][]int { return o.sup.Pids() }

// ClientURL is the bus URL worker processes use.
func (o *Orchestrator) ClientURL() string { return o.bus.ClientURL() }

// Close stops the workers, the broker and the bus.
func (o *Orchestrator) Close() {
	// Runs stop first, while their workers still answer: each is left in
	// the store where it was, to resume with the next sluice up.
	if o.cancelRuns != nil {
		o.servedMu.Lock()
		o.closing = true
		o.servedMu.Unlock()
		o.cancelRuns()
		stopped := make(chan struct{})
		go func() { o.served.Wait(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(30 * time.Second):
			o.log.Error("runs clients submitted did not stop within 30s; closing anyway")
		}
	}
	if o.engine != nil {
		o.engine.Close()
	}
	// The runs stopped above released their leases for the others.
	if o.leases != nil {
		o.leases.Close()
	}
	if o.sup != nil {
		o.sup.Stop()
	}
	for _, s := range o.subs {
		_ = s.Drain()
	}
	if o.broker != nil {
		o.broker.Close()
	}
	if o.stopViolations != nil {
		close(o.stopViolations)
		o.wg.Wait()
	}
	// The last records are signed before the bus goes.
	if o.audit != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := o.audit.Close(ctx); err != nil {
			o.log.Error("audit: last checkpoint not signed", "err", err)
		}
		cancel()
	}
	if o.nc != nil {
		_ = o.nc.Drain()
	}
	if o.bus != nil {
		o.bus.Shutdown()
	}
	for i := len(o.cleanup) - 1; i >= 0; i-- {
		o.cleanup[i]()
	}
}
