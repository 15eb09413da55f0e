package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/internal/natscreds"
	"github.com/sluicehq/sluice/internal/natstls"
	"github.com/sluicehq/sluice/schemas"
)

// ConnectConfig says how a worker process reaches the bus. The values come
// from the environment (SLUICE_NATS_URL, SLUICE_NATS_CREDS,
// SLUICE_NATS_TOKEN), read in cmd/sluice.
type ConnectConfig struct {
	// URL of the bus: one server, or a comma-separated list of a cluster's
	// servers.
	URL string
	// CredsFile holds the worker's nkey seed (embedded server) or a .creds
	// file (a user JWT and its seed, external server). It is read once and
	// removed, so the credential does not outlive the process's need for it.
	CredsFile string
	// Token is used when no CredsFile is given.
	Token string
	// TLS names the PEM files of an external server's nats.tls
	// (SLUICE_NATS_TLS_CA, _CERT, _KEY). They are read once, here, before
	// the process is confined: reconnections use what was read.
	TLS *natstls.Files
	// Worker is the worker's name; it fixes the reply inbox prefix the
	// worker's NATS permissions allow.
	Worker   string
	Subjects schemas.Subjects
	Log      *slog.Logger
}

// Connect opens the worker's connection to the bus with its own
// credentials. Permission violations the server reports are logged.
func Connect(cfg ConnectConfig) (*nats.Conn, error) {
	log := orDiscard(cfg.Log)
	opts := []nats.Option{
		nats.Name("sluice-worker-" + cfg.Worker),
		nats.CustomInboxPrefix(cfg.Subjects.Inbox(cfg.Worker)),
		// URL may list a cluster's servers: connect to the first, and when
		// it is gone move on to the next (the supervisor starts each
		// process's list at a different server, to spread them). Each
		// server is tried up to 20 times before it is given up; when none
		// is left the connection closes and the worker exits.
		nats.DontRandomize(),
		nats.MaxReconnects(20),
		nats.ReconnectWait(250 * time.Millisecond),
		// A server that stops answering without closing the connection (a
		// partition, a frozen host) is given up after about 15s.
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				log.Error("bus refused an operation", "err", err)
				return
			}
			log.Warn("bus error", "err", err)
		}),
	}
	switch {
	case cfg.CredsFile != "":
		b, err := os.ReadFile(cfg.CredsFile)
		if err != nil {
			return nil, fmt.Errorf("read credentials: %w", err)
		}
		_ = os.Remove(cfg.CredsFile)
		opt, err := natscreds.Option(b)
		if err != nil {
			return nil, fmt.Errorf("credentials %s: %w", cfg.CredsFile, err)
		}
		opts = append(opts, opt)
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	default:
		return nil, errors.New("no credentials: set SLUICE_NATS_CREDS or SLUICE_NATS_TOKEN")
	}
	if cfg.TLS != nil {
		c, err := natstls.Load(*cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("nats tls: %w", err)
		}
		opts = append(opts, nats.Secure(c))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.URL, natstls.Explain(err, cfg.TLS))
	}
	return nc, nil
}

// Service serves the tools of one worker on the bus.
type Service struct {
	Manifest *capabilities.Manifest
	Handlers map[string]Handler
	Subjects schemas.Subjects
	Log      *slog.Logger
	// Concurrency bounds the calls served at once; default 16.
	Concurrency int
}

// Serve answers tool calls until ctx ends or the connection closes. Every
// replica of a worker joins the queue group named after the worker, so each
// call goes to one of them.
func (s *Service) Serve(ctx context.Context, nc *nats.Conn) error {
	m := s.Manifest
	for name := range m.Tools {
		if s.Handlers[name] == nil {
			return fmt.Errorf("worker %s: no handler for tool %s", m.Worker, name)
		}
	}
	log := orDiscard(s.Log).With("worker", m.Worker)
	n := s.Concurrency
	if n <= 0 {
		n = 16
	}
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	defer wg.Wait()
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	sub, err := nc.QueueSubscribe(s.Subjects.ToolWildcard(m.Worker), m.Worker, func(msg *nats.Msg) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.serve(ctx, nc, log, msg)
		}()
	})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	log.Info("worker ready", "tools", strings.Join(m.ToolNames(), ","))
	// A user JWT issued for an external server expires: stop taking calls
	// before it does, finish those taken, and exit to be restarted with a
	// fresh credential.
	var expiring <-chan time.Time
	if at, ok := renewAt(nc, m.Limits.Timeout); ok {
		t := time.NewTimer(time.Until(at))
		defer t.Stop()
		expiring = t.C
	}
	select {
	case <-ctx.Done():
	case <-closed:
		return errors.New("connection to the bus closed")
	case <-expiring:
		log.Info("credential expires soon: stopping, to be restarted with a fresh one")
	}
	_ = sub.Drain()
	return nil
}

func (s *Service) serve(ctx context.Context, nc *nats.Conn, log *slog.Logger, msg *nats.Msg) {
	m := s.Manifest
	call := &Call{
		Run:            msg.Header.Get(schemas.HeaderRun),
		Step:           msg.Header.Get(schemas.HeaderStep),
		Msg:            msg.Header.Get(schemas.HeaderMsg),
		IdempotencyKey: msg.Header.Get(schemas.HeaderIdempotencyKey),
		Args:           msg.Data,
	}
	call.Log = log.With("run_id", call.Run, "step", call.Step, "msg_id", call.Msg)
	tool, _ := s.Subjects.ToolFromSubject(m.Worker, msg.Subject)
	call.Tool = tool
	call.worker = m.Worker
	// The run's trace context (W3C traceparent): a handler's own spans,
	// started from ctx, join the run's trace.
	ctx = traceContext.Extract(ctx, traceCarrier(msg.Header))
	ctx, cancel := context.WithTimeout(ctx, m.Limits.Timeout)
	defer cancel()
	if len(m.Grants.Net) > 0 {
		call.egress = s.egressFunc(nc, call.Msg, msg.Header.Get(schemas.HeaderOrchestrator))
	}
	out, err := s.invoke(ctx, call)
	reply := encodeReply(out, err, m.Limits.MaxOutput, call.Usage())
	if err := msg.Respond(reply); err != nil {
		call.Log.Warn("reply failed", "tool", tool, "err", err)
	}
}

func (s *Service) invoke(ctx context.Context, call *Call) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			call.Log.Error("tool panicked", "tool", call.Tool, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			out, err = nil, &schemas.ReplyError{Code: schemas.CodeInternal, Message: "the tool failed unexpectedly"}
		}
	}()
	t, ok := s.Manifest.Tool(call.Tool)
	if !ok {
		return nil, &schemas.ReplyError{Code: schemas.CodeUnknownTool,
			Message: fmt.Sprintf("worker %s has no tool %q", s.Manifest.Worker, call.Tool)}
	}
	if _, err := t.Input.ValidateJSON(call.Args); err != nil {
		return nil, BadArguments("arguments of %s: %v", t.Name, err)
	}
	return s.Handlers[call.Tool](ctx, call)
}

func encodeReply(out any, err error, limit int64, usage *schemas.Usage) []byte {
	r := schemas.Reply{Usage: usage}
	if err != nil {
		var re *schemas.ReplyError
		if !errors.As(err, &re) {
			re = &schemas.ReplyError{Code: schemas.CodeFailed, Message: err.Error()}
		}
		r.Error = re
	} else {
		if l, ok := out.(Labeled); ok {
			out, r.Labels = l.Output, l.Labels
		}
		b, merr := json.Marshal(out)
		if merr != nil {
			r.Error = &schemas.ReplyError{Code: schemas.CodeInternal, Message: "output is not JSON: " + merr.Error()}
		} else {
			r.Output = b
		}
	}
	b, _ := json.Marshal(r)
	if limit <= 0 || limit > schemas.MaxReply {
		limit = schemas.MaxReply
	}
	if int64(len(b)) > limit {
		b, _ = json.Marshal(schemas.Reply{Usage: usage, Error: &schemas.ReplyError{Code: schemas.CodeTooLarge,
			Message: fmt.Sprintf("output of %d bytes exceeds the limit of %d", len(b), limit)}})
	}
	return b
}

func (s *Service) egressFunc(nc *nats.Conn, msgID, orchestrator string) func(context.Context, schemas.EgressRequest) (*schemas.EgressResponse, error) {
	subject := s.Subjects.Egress(s.Manifest.Worker)
	return func(ctx context.Context, req schemas.EgressRequest) (*schemas.EgressResponse, error) {
		b, err := json.Marshal(req)
		if err != nil {
			return nil, err
		}
		m := nats.NewMsg(subject)
		m.Header.Set(schemas.HeaderMsg, msgID)
		if orchestrator != "" {
			m.Header.Set(schemas.HeaderOrchestrator, orchestrator)
		}
		m.Data = b
		rep, err := nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return nil, fmt.Errorf("egress: %w", err)
		}
		var resp schemas.EgressResponse
		if err := json.Unmarshal(rep.Data, &resp); err != nil {
			return nil, fmt.Errorf("egress: bad response: %w", err)
		}
		return &resp, nil
	}
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
