// Package supervisor starts each worker as a child process with credentials
// of its own, relays its logs, restarts it with backoff when it dies, and
// stops it on shutdown.
//
// Every process start gets a fresh NATS user: its key is written to a 0600
// file that the worker reads once and removes, and the user is removed from
// the bus when the process exits, so a dead process's credential is worth
// nothing. (On an external server the credential is a user JWT, which
// cannot be removed: it is worth something until it expires.)
package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/internal/natstls"
	"github.com/sluicehq/sluice/orchestrator/internal/telemetry"
)

// Bus is what the supervisor needs of the bus.
type Bus interface {
	ClientURL() string
	AddUser(name string, p capabilities.Permissions) (seed []byte, remove func(), err error)
}

// Worker is one configured worker.
type Worker struct {
	// Name is the worker's name (the manifest's worker).
	Name string
	// Ref is how `sluice worker --manifest` finds the manifest:
	// "builtin:NAME" or a path.
	Ref string
	// Permissions of its NATS user.
	Permissions capabilities.Permissions
	// Grants are the deployment's grants, added to the manifest's.
	Grants capabilities.Grants
	// Config is the worker's config block, as JSON.
	Config json.RawMessage
	// Replicas to run; default 1.
	Replicas int
	// MemoryLimit, when set, is the Go runtime's soft memory limit for the
	// process (GOMEMLIMIT): the garbage collector works harder as it nears
	// it.
	MemoryLimit int64
}

// Config of a supervisor.
type Config struct {
	Bus Bus
	// State is the absolute state directory; credentials go under
	// State/run/creds.
	State string
	// Dir is the workers' working directory.
	Dir string
	Log *slog.Logger
	// Executable is the sluice binary; default os.Executable().
	Executable string
	// Command builds the process for one replica; default
	// `<Executable> worker --manifest <Ref>`. The supervisor adds the
	// environment.
	Command func(w Worker) *exec.Cmd
	// Prefix of the bus subjects; default "sluice".
	Prefix string
	// Getenv reads the orchestrator's environment, for the few variables
	// a worker process inherits (workerEnv): PATH, HOME, LANG and TZ. Nil
	// means none: a worker then gets its own settings only.
	Getenv func(string) string
	// Grace is how long a worker has to exit after SIGTERM; default 5s.
	Grace time.Duration
	// SealNetwork asks each worker process to seal itself off the network
	// once connected to the bus (seal.FromEnv): right when the bus
	// is embedded, so that a worker never needs another socket; not on an
	// external cluster, where a worker reconnects to other servers.
	SealNetwork bool
	// OnRefused is told of what a sealed worker tried outside its grant:
	// each socket it tried to open (refused), each file outside its
	// directories it tried to open (left to Landlock): the worker's bus
	// user, the kind of attempt (socket, open), and what it tried ("socket
	// ipv4 datagram", "open /etc/passwd").
	OnRefused func(user, op, what string)
	// OnExit is told when a worker process exits unasked, before it is
	// restarted: calls it had in hand will get no answer.
	OnExit func(worker string)
	// TLS names the PEM files of the external server's nats.tls; each
	// worker process is given their paths (natstls.Env) and reads them
	// once, before it is confined. Nil: no TLS configuration.
	TLS *natstls.Files
}

// Supervisor runs the workers.
type Supervisor struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	procs map[string]map[int]*exec.Cmd // worker -> replica -> running process
	exits map[string]*exitInfo         // worker -> how its processes ended
}

type exitInfo struct {
	count int
	last  string // the last error the worker logged, or its exit status
}

// New returns a supervisor; nothing runs until Start.
func New(cfg Config) *Supervisor {
	if cfg.Grace == 0 {
		cfg.Grace = 5 * time.Second
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Supervisor{cfg: cfg, log: log, ctx: ctx, cancel: cancel, procs: map[string]map[int]*exec.Cmd{}, exits: map[string]*exitInfo{}}
}

// Start starts every replica of every worker. A replica that exits is
// restarted with backoff until Stop.
func (s *Supervisor) Start(workers []Worker) error {
	if err := os.MkdirAll(filepath.Join(s.cfg.State, "run", "creds"), 0o700); err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	slot := 0
	for _, w := range workers {
		n := max(w.Replicas, 1)
		for r := range n {
			s.wg.Add(1)
			go s.keep(w, r, slot)
			slot++
		}
	}
	return nil
}

// Pids returns the process ids of the running replicas, by worker.
func (s *Supervisor) Pids() map[string][]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]int{}
	for name, rs := range s.procs {
		for _, c := range rs {
			out[name] = append(out[name], c.Process.Pid)
		}
	}
	return out
}

// Exits returns how many times processes of the worker have exited, and
// the last error one of them logged (or its exit status).
func (s *Supervisor) Exits(worker string) (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.exits[worker]; ok {
		return e.count, e.last
	}
	return 0, ""
}

// Stop sends SIGTERM to every worker, SIGKILL to those still running after
// the grace period, and waits for all of them.
func (s *Supervisor) Stop() {
	s.cancel()
	s.wg.Wait()
}

// keep runs one replica of w. slot numbers every replica of every worker,
// and picks the server of a cluster the replica connects to first.
func (s *Supervisor) keep(w Worker, replica, slot int) {
	defer s.wg.Done()
	backoff := 100 * time.Millisecond
	for gen := 0; ; gen++ {
		started := time.Now()
		err := s.runOnce(w, replica, gen, slot)
		if s.ctx.Err() != nil {
			return
		}
		// runOnce has removed the process's bus user, which on the
		// embedded bus returns once the server has let go of its
		// connection: calls sent again from here reach a live replica.
		if s.cfg.OnExit != nil {
			s.cfg.OnExit(w.Name)
		}
		s.mu.Lock()
		e := s.exits[w.Name]
		if e == nil {
			e = &exitInfo{}
			s.exits[w.Name] = e
		}
		e.count++
		if err != nil && e.last == "" {
			e.last = err.Error()
		}
		s.mu.Unlock()
		if time.Since(started) > 30*time.Second {
			backoff = 100 * time.Millisecond
		}
		s.log.Warn("worker exited; restarting", "worker", w.Name, "replica", replica, "err", err, "backoff", backoff)
		telemetry.WorkerRestart(w.Name)
		select {
		case <-time.After(backoff):
		case <-s.ctx.Done():
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Supervisor) runOnce(w Worker, replica, gen, slot int) error {
	user := fmt.Sprintf("worker:%s:%d.%d", w.Name, replica, gen)
	seed, remove, err := s.cfg.Bus.AddUser(user, w.Permissions)
	if err != nil {
		return err
	}
	defer remove()
	creds, err := writeCreds(filepath.Join(s.cfg.State, "run", "creds"), seed)
	if err != nil {
		return err
	}
	defer os.Remove(creds)

	cmd := s.command(w)
	cmd.Dir = s.cfg.Dir
	cmd.Env = workerEnv(s.cfg, w, rotateURLs(s.cfg.Bus.ClientURL(), slot), creds)
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	setProcAttr(cmd)
	sealStarted := func() {}
	if s.cfg.SealNetwork {
		refused := func(op, what string) {
			s.log.Warn("a sealed worker tried something outside its grant", "worker", w.Name, "user", user, "tried", what)
			if s.cfg.OnRefused != nil {
				s.cfg.OnRefused(user, op, what)
			}
		}
		if sealStarted, err = serveSeal(cmd, refused, s.log.With("worker", w.Name)); err != nil {
			return err
		}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start worker %s: %w", w.Name, err)
	}
	sealStarted()
	pid := cmd.Process.Pid
	log := s.log.With("worker", w.Name, "pid", pid)
	log.Debug("worker started", "replica", replica)
	s.track(w.Name, replica, cmd)
	defer s.untrack(w.Name, replica)

	relayDone := make(chan struct{})
	var lastErr string
	go func() {
		defer close(relayDone)
		lastErr = relay(stderr, log)
		if lastErr != "" {
			s.mu.Lock()
			if s.exits[w.Name] == nil {
				s.exits[w.Name] = &exitInfo{}
			}
			s.exits[w.Name].last = lastErr
			s.mu.Unlock()
		}
	}()
	waitDone := make(chan error, 1)
	go func() {
		<-relayDone
		waitDone <- cmd.Wait()
	}()
	select {
	case err := <-waitDone:
		return err
	case <-s.ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-waitDone:
			return err
		case <-time.After(s.cfg.Grace):
			_ = cmd.Process.Kill()
			return <-waitDone
		}
	}
}

// workerEnv is the whole environment of one worker process, and so of
// everything it starts. It is built from nothing: the worker's own
// settings, then, from the orchestrator's environment (cfg.Getenv), only
// PATH, HOME, LANG and TZ. No other variable of the orchestrator reaches a
// worker, in particular none that a secret is read from
// (secrets: {NAME: {env: VAR}}): secrets stay with the egress broker.
//
// The network seal adds SLUICE_SEAL_REPORT_FD on Linux (serveSeal).
func workerEnv(cfg Config, w Worker, natsURL, creds string) []string {
	grants, _ := json.Marshal(w.Grants)
	env := []string{
		"SLUICE_NATS_URL=" + natsURL,
		"SLUICE_NATS_CREDS=" + creds,
		"SLUICE_STATE=" + cfg.State,
		"SLUICE_SUBJECT_PREFIX=" + cfg.Prefix,
		"SLUICE_WORKER_CONFIG=" + string(orEmpty(w.Config)),
		"SLUICE_WORKER_GRANTS=" + string(grants),
	}
	if w.MemoryLimit > 0 {
		env = append(env, "GOMEMLIMIT="+strconv.FormatInt(w.MemoryLimit, 10))
	}
	if cfg.SealNetwork {
		env = append(env, "SLUICE_SEAL_NETWORK=1")
	}
	env = append(env, cfg.TLS.Env()...)
	if cfg.Getenv == nil {
		return env
	}
	for _, name := range []string{"PATH", "HOME", "LANG", "TZ"} {
		if v := cfg.Getenv(name); v != "" {
			env = append(env, name+"="+v)
		}
	}
	return env
}

// rotateURLs returns the comma-separated server list starting at server
// slot mod n, so that the worker processes of a cluster spread over its
// servers: each connects to the first server of its list and moves on to
// the next when that one is gone.
func rotateURLs(list string, slot int) string {
	urls := strings.Split(list, ",")
	for i := range urls {
		urls[i] = strings.TrimSpace(urls[i])
	}
	k := slot % len(urls)
	return strings.Join(slices.Concat(urls[k:], urls[:k]), ",")
}

func (s *Supervisor) command(w Worker) *exec.Cmd {
	if s.cfg.Command != nil {
		return s.cfg.Command(w)
	}
	exe := s.cfg.Executable
	if exe == "" {
		exe, _ = os.Executable()
	}
	return exec.Command(exe, "worker", "--manifest", w.Ref)
}

func (s *Supervisor) track(name string, replica int, c *exec.Cmd) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.procs[name] == nil {
		s.procs[name] = map[int]*exec.Cmd{}
	}
	s.procs[name][replica] = c
}

func (s *Supervisor) untrack(name string, replica int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.procs[name], replica)
}

func writeCreds(dir string, seed []byte) (string, error) {
	f, err := os.CreateTemp(dir, "*.nk")
	if err != nil {
		return "", fmt.Errorf("write credentials: %w", err)
	}
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		return "", err
	}
	if _, err := f.Write(seed); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write credentials: %w", err)
	}
	return f.Name(), nil
}

// relay re-emits the worker's JSON log lines through the supervisor's
// logger, with the worker and pid attached; other lines are logged as they
// are. It returns the last error the worker logged.
func relay(r io.Reader, log *slog.Logger) (lastErr string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var rec map[string]any
		if json.Unmarshal(line, &rec) != nil {
			log.Warn("worker output", "line", string(line))
			continue
		}
		level := slog.LevelInfo
		if l, ok := rec["level"].(string); ok {
			_ = level.UnmarshalText([]byte(l))
		}
		msg, _ := rec["msg"].(string)
		if level >= slog.LevelError {
			lastErr = msg
			if e, ok := rec["err"].(string); ok {
				lastErr += ": " + e
			}
		}
		attrs := make([]any, 0, 2*len(rec))
		for k, v := range rec {
			switch k {
			case "time", "level", "msg", "pid", "worker":
				continue
			}
			attrs = append(attrs, k, v)
		}
		log.Log(context.Background(), level, msg, attrs...)
	}
	return lastErr
}

func orEmpty(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("{}")
	}
	return b
}
