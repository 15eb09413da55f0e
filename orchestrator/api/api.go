// Package api is how clients on the same machine reach a running
// orchestrator: the orchestrator writes where its bus is, and a client
// credential, under the state directory; clients make requests on
// sluice.api.* with that credential, which may do nothing else.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/internal/natscreds"
	"github.com/sluicehq/sluice/internal/natstls"
	"github.com/sluicehq/sluice/orchestrator/engine"
	"github.com/sluicehq/sluice/schemas"
)

// Endpoint is what a running orchestrator publishes in
// <state>/run/api.json.
type Endpoint struct {
	URL    string `json:"url"`
	Prefix string `json:"prefix"`
	Creds  string `json:"creds"`
	PID    int    `json:"pid"`
	// Config is the configuration file the orchestrator runs ("" for the
	// built-in defaults), and Fingerprint the fingerprint of what it runs
	// (orchestrator.Fingerprint), as of its start or its last reload. The
	// config request answers with the current ones.
	Config      string `json:"config,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// TLS names the PEM files of nats.tls, which a client connects with
	// too; absent without TLS configuration.
	TLS *natstls.Files `json:"tls,omitempty"`
}

const clientName = "client"

// Queue is the queue group every orchestrator of a deployment answers the
// API's requests in (but config and reload, which each answers for
// itself): of several orchestrators on one bus, one runs a flow a client
// submits, one records an answer to a held call.
const Queue = "orchestrators"

// ClientPermissions lets a client make API requests and read their replies.
func ClientPermissions(s schemas.Subjects) capabilities.Permissions {
	return capabilities.Permissions{
		Publish:   []string{s.API(">")},
		Subscribe: []string{s.Inbox(clientName) + ".>"},
	}
}

func endpointFile(state string) string { return filepath.Join(state, "run", "api.json") }

// Publish writes the endpoint and the client's credential (0600) under
// state: an nkey seed, or a .creds file on an external server.
// The returned function removes them.
func Publish(state string, e Endpoint, seed []byte) (func(), error) {
	dir := filepath.Join(state, "run")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	e.Creds = filepath.Join(dir, "client.nk")
	if err := os.WriteFile(e.Creds, seed, 0o600); err != nil {
		return nil, fmt.Errorf("write client credentials: %w", err)
	}
	if err := Rewrite(state, e); err != nil {
		return nil, err
	}
	return func() {
		os.Remove(endpointFile(state))
		os.Remove(e.Creds)
	}, nil
}

// Rewrite replaces the endpoint published under state (after a reload:
// its fingerprint) in one rename, so that a reader sees the old or the new
// one whole. e.Creds must be the credential Publish wrote.
func Rewrite(state string, e Endpoint) error {
	e.Creds = filepath.Join(state, "run", "client.nk")
	b, _ := json.Marshal(e)
	tmp := endpointFile(state) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write api endpoint: %w", err)
	}
	if err := os.Rename(tmp, endpointFile(state)); err != nil {
		return fmt.Errorf("write api endpoint: %w", err)
	}
	return nil
}

// AnswerRequest is the body of an answer to a held call. Hash, when set,
// is the hash of the call the person was shown: the answer is refused if
// the held call is another.
type AnswerRequest struct {
	ID       string `json:"id"`
	Approved bool   `json:"approved"`
	Who      string `json:"who"`
	Hash     string `json:"hash,omitempty"`
	// Remember, with an approval, keeps the answer within a scope.
	Remember *engine.RememberScope `json:"remember,omitempty"`
	// Endorse, with an approval, endorses the values of some of the
	// call's arguments for the rest of its run.
	Endorse *engine.EndorseScope `json:"endorse,omitempty"`
}

// Response of every API call.
type Response struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Approver lists and answers held calls; the orchestrator is one.
type Approver interface {
	Approvals(ctx context.Context) ([]engine.Approval, error)
	Approval(ctx context.Context, id string) (*engine.Approval, error)
	Decide(ctx context.Context, id string, a engine.Answer) error
}

// approvalsPerMessage bounds one message of a listing, well under the
// bus's maximum payload.
const approvalsPerMessage = 100

// ApprovalsReply is one message of the answer to a listing: the listing
// comes in several when it is long; the last has More false.
type ApprovalsReply struct {
	Approvals []engine.Approval `json:"approvals"`
	More      bool              `json:"more,omitempty"`
	Error     string            `json:"error,omitempty"`
}

// ApprovalReply answers a request for one approval.
type ApprovalReply struct {
	Approval *engine.Approval `json:"approval,omitempty"`
	Error    string           `json:"error,omitempty"`
}

// Serve answers requests about held calls until the subscriptions are
// drained: answer, approvals (the pending ones) and approval (one by id).
func Serve(nc *nats.Conn, s schemas.Subjects, ap Approver) ([]*nats.Subscription, error) {
	respond := func(m *nats.Msg, v any) {
		b, _ := json.Marshal(v)
		_ = m.Respond(b)
	}
	answer, err := nc.QueueSubscribe(s.API("answer"), Queue, func(m *nats.Msg) {
		go func() {
			var req AnswerRequest
			resp := Response{OK: true}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := json.Unmarshal(m.Data, &req); err != nil || req.ID == "" || req.Who == "" {
				resp = Response{Error: "malformed request"}
			} else if err := ap.Decide(ctx, req.ID, engine.Answer{Approved: req.Approved, Who: req.Who, Hash: req.Hash, Remember: req.Remember, Endorse: req.Endorse}); err != nil {
				resp = Response{Error: err.Error()}
			}
			respond(m, resp)
		}()
	})
	if err != nil {
		return nil, err
	}
	list, err := nc.QueueSubscribe(s.API("approvals"), Queue, func(m *nats.Msg) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			all, err := ap.Approvals(ctx)
			if err != nil {
				respond(m, ApprovalsReply{Error: err.Error()})
				return
			}
			for len(all) > approvalsPerMessage {
				respond(m, ApprovalsReply{Approvals: all[:approvalsPerMessage], More: true})
				all = all[approvalsPerMessage:]
			}
			respond(m, ApprovalsReply{Approvals: all})
		}()
	})
	if err != nil {
		_ = answer.Unsubscribe()
		return nil, err
	}
	one, err := nc.QueueSubscribe(s.API("approval"), Queue, func(m *nats.Msg) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			a, err := ap.Approval(ctx, string(m.Data))
			if err != nil {
				respond(m, ApprovalReply{Error: err.Error()})
				return
			}
			respond(m, ApprovalReply{Approval: a})
		}()
	})
	if err != nil {
		_ = answer.Unsubscribe()
		_ = list.Unsubscribe()
		return nil, err
	}
	return []*nats.Subscription{answer, list, one}, nil
}

// ErrNotRunning means no orchestrator is running on the state directory.
var ErrNotRunning = errors.New("no orchestrator is running on this state directory")

// RunRequest asks a running orchestrator to run a flow. Flow is an
// absolute path on the orchestrator's machine; Events, when set, is the
// subject the orchestrator tells of held calls as they happen.
type RunRequest struct {
	Flow          string            `json:"flow"`
	Inputs        map[string]string `json:"inputs,omitempty"`
	Wait          bool              `json:"wait"`
	WaitTimeoutMS int64             `json:"wait_timeout_ms,omitempty"`
	Events        string            `json:"events,omitempty"`
	// Fingerprint, when set, is the fingerprint of the configuration the
	// client means to run under: the orchestrator refuses the run (with
	// RunReply.Running) unless it is the one it runs. Empty runs under
	// whatever it runs (sluice run --use-running).
	Fingerprint string `json:"fingerprint,omitempty"`
}

// RunReply is the answer to a RunRequest: the result, or what was wrong.
// Usage is set when the request itself was wrong (bad inputs).
type RunReply struct {
	Result      json.RawMessage     `json:"result,omitempty"`
	Error       string              `json:"error,omitempty"`
	Diagnostics schemas.Diagnostics `json:"diagnostics,omitempty"`
	Usage       bool                `json:"usage,omitempty"`
	// Running is set when the run was refused because the orchestrator
	// runs another configuration than RunRequest.Fingerprint: the one it
	// runs. Nothing of the run was started.
	Running *ConfigReply `json:"running,omitempty"`
	// Elsewhere is set when the run goes on in another orchestrator of
	// the deployment: this one stopped before it ended, or lost its
	// lease. The client follows it (runs.follow).
	Elsewhere bool `json:"elsewhere,omitempty"`
}

// ConfigReply says which configuration a running orchestrator runs.
type ConfigReply struct {
	// File is the configuration file it loaded ("" for the built-in
	// defaults); Dir the directory those resolve against.
	File string `json:"file"`
	Dir  string `json:"dir"`
	// Fingerprint of what it runs (orchestrator.Fingerprint).
	Fingerprint string `json:"fingerprint"`
	PID         int    `json:"pid"`
}

// ReloadRequest asks a running orchestrator to load its configuration
// file and policies again. Who names the person or signal that asked, for
// the audit log.
type ReloadRequest struct {
	Who string `json:"who"`
}

// Statuses of a reload.
const (
	ReloadApplied   = "applied"
	ReloadUnchanged = "unchanged"
	ReloadRefused   = "refused"
)

// ReloadReply says what a reload did: applied (runs that start from now
// on are decided by the new policies), unchanged (the files say what runs
// already), or refused (the configuration did not load, or changes what
// only a restart can; the old one stays in force). Old and New are the
// fingerprints before and of what was read (New is empty when nothing
// could be read); Restart lists what only a restart of sluice up applies.
type ReloadReply struct {
	Status  string   `json:"status"`
	File    string   `json:"file"`
	Old     string   `json:"old"`
	New     string   `json:"new,omitempty"`
	Restart []string `json:"restart,omitempty"`
	// Kept lists the runs under way when a reload was applied: each goes
	// on under the policies it started with.
	Kept        []string            `json:"kept,omitempty"`
	Diagnostics schemas.Diagnostics `json:"diagnostics,omitempty"`
	Error       string              `json:"error,omitempty"`
}

// Configurer says what a running orchestrator runs, and reloads it.
type Configurer interface {
	Running() ConfigReply
	Reload(ctx context.Context, who string) ReloadReply
}

// ServeConfig answers config and reload requests.
func ServeConfig(nc *nats.Conn, s schemas.Subjects, c Configurer) ([]*nats.Subscription, error) {
	respond := func(m *nats.Msg, v any) {
		b, _ := json.Marshal(v)
		_ = m.Respond(b)
	}
	cfg, err := nc.Subscribe(s.API("config"), func(m *nats.Msg) { respond(m, c.Running()) })
	if err != nil {
		return nil, err
	}
	reload, err := nc.Subscribe(s.API("reload"), func(m *nats.Msg) {
		go func() {
			var req ReloadRequest
			if err := json.Unmarshal(m.Data, &req); err != nil || req.Who == "" {
				respond(m, ReloadReply{Status: ReloadRefused, Error: "malformed reload request"})
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			respond(m, c.Reload(ctx, req.Who))
		}()
	})
	if err != nil {
		_ = cfg.Unsubscribe()
		return nil, err
	}
	return []*nats.Subscription{cfg, reload}, nil
}

// Config asks the orchestrator which configuration it runs.
func (c *Client) Config(ctx context.Context) (ConfigReply, error) {
	m, err := c.nc.RequestWithContext(ctx, c.s.API("config"), nil)
	if err != nil {
		return ConfigReply{}, fmt.Errorf("ask the orchestrator: %w", err)
	}
	var rep ConfigReply
	if err := json.Unmarshal(m.Data, &rep); err != nil || rep.Fingerprint == "" {
		return ConfigReply{}, fmt.Errorf("malformed reply from the orchestrator")
	}
	return rep, nil
}

// Reload asks the orchestrator to load its configuration again.
func (c *Client) Reload(ctx context.Context, who string) (ReloadReply, error) {
	body, _ := json.Marshal(ReloadRequest{Who: who})
	m, err := c.nc.RequestWithContext(ctx, c.s.API("reload"), body)
	if err != nil {
		return ReloadReply{}, fmt.Errorf("ask the orchestrator: %w", err)
	}
	var rep ReloadReply
	if err := json.Unmarshal(m.Data, &rep); err != nil || rep.Status == "" {
		return ReloadReply{}, fmt.Errorf("malformed reply from the orchestrator")
	}
	return rep, nil
}

// Runner runs one requested flow; events tells the client of held calls.
type Runner func(ctx context.Context, req RunRequest, events func(v any)) RunReply

// Beat is how often an orchestrator tells a client waiting for a run that
// it is still there (RunEvent.Alive); Silence how long the client waits
// without hearing from it before it asks the deployment's other
// orchestrators to follow the run (Client.Run).
const (
	Beat    = 2 * time.Second
	Silence = 10 * time.Second
)

// beat tells events that this orchestrator is there, at once and then
// every Beat until the returned function is called.
func beat(nc *nats.Conn, events string) func() {
	if events == "" {
		return func() {}
	}
	alive, _ := json.Marshal(RunEvent{Alive: true})
	_ = nc.Publish(events, alive)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(Beat)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = nc.Publish(events, alive)
			}
		}
	}()
	return func() { close(stop); <-done }
}

// ServeRuns answers run requests, each in its own goroutine, until the
// subscription is drained or ctx ends. While a run goes on, the client is
// told every Beat that its orchestrator is there.
func ServeRuns(ctx context.Context, nc *nats.Conn, s schemas.Subjects, run Runner) (*nats.Subscription, error) {
	return nc.QueueSubscribe(s.API("run"), Queue, func(m *nats.Msg) {
		go func() {
			var req RunRequest
			var rep RunReply
			if err := json.Unmarshal(m.Data, &req); err != nil || req.Flow == "" {
				rep = RunReply{Error: "malformed run request", Usage: true}
			} else {
				stop := beat(nc, req.Events)
				rep = run(ctx, req, func(v any) {
					if req.Events == "" {
						return
					}
					if b, err := json.Marshal(v); err == nil {
						_ = nc.Publish(req.Events, b)
					}
				})
				stop()
			}
			b, _ := json.Marshal(rep)
			_ = m.Respond(b)
		}()
	})
}

// FollowRequest asks the deployment's orchestrators for the result of run
// Run, which another orchestrator started for a client and stopped
// answering about (it died): the answer is a RunReply once the run ends,
// wherever it ends. Events is told every Beat that the orchestrator
// following the run is there. Held, when set, is how long the client
// still waits for a person to answer a held call of the run; without it
// the client waits until the run ends.
type FollowRequest struct {
	Run    string    `json:"run_id"`
	Events string    `json:"events,omitempty"`
	Held   *HeldWait `json:"held,omitempty"`
}

// HeldWait is how long a client following a run waits for a person to
// answer a held call of it (its --wait-timeout, or nothing with
// --wait=false), as the run's own orchestrator would have: once the run is
// held and MS have passed, the orchestrator following it replies with the
// run as it stands, held. Began says the client's wait began before it
// asked (its orchestrator told it a call was held): MS counts from the
// request; else from when the follower sees the run held.
type HeldWait struct {
	MS    int64 `json:"ms"`
	Began bool  `json:"began,omitempty"`
}

// Follower waits for the end of the run req names, or for it held as long
// as req.Held says, and returns its result; ok false when it stops before
// (the orchestrator is stopping): the client is told to ask again
// (RunReply.Elsewhere).
type Follower func(ctx context.Context, req FollowRequest) (rep RunReply, ok bool)

// ServeFollow answers follow requests (runs.follow), each in its own
// goroutine, until the subscription is drained or ctx ends.
func ServeFollow(ctx context.Context, nc *nats.Conn, s schemas.Subjects, follow Follower) (*nats.Subscription, error) {
	return nc.QueueSubscribe(s.API("runs.follow"), Queue, func(m *nats.Msg) {
		go func() {
			var req FollowRequest
			if err := json.Unmarshal(m.Data, &req); err != nil || req.Run == "" {
				b, _ := json.Marshal(RunReply{Error: "malformed follow request", Usage: true})
				_ = m.Respond(b)
				return
			}
			stop := beat(nc, req.Events)
			rep, ok := follow(ctx, req)
			stop()
			if !ok {
				// Stopping: the client asks another at once.
				rep = RunReply{Error: "the orchestrator following the run is stopping", Elsewhere: true}
			}
			b, _ := json.Marshal(rep)
			_ = m.Respond(b)
		}()
	})
}

// drain hands the events that came before the reply to their handler
// (the orchestrator sent them first), waiting at most d, then ends sub.
func drain(sub *nats.Subscription, d time.Duration) {
	if sub.Drain() != nil {
		sub.Unsubscribe()
		return
	}
	for deadline := time.Now().Add(d); sub.IsValid() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	sub.Unsubscribe()
}

// Client is a connection to a running orchestrator.
type Client struct {
	nc *nats.Conn
	s  schemas.Subjects
	// Endpoint is where the orchestrator was found.
	Endpoint Endpoint
	// Silence, when set, replaces Silence for Run; OnFollow is told when
	// Run asks the deployment's orchestrators to follow a run, and why.
	Silence  time.Duration
	OnFollow func(run, why string)
}

// Dial connects to the orchestrator running on state, if there is one.
// It returns ErrNotRunning when there is none (no endpoint, or its process
// is gone).
func Dial(state string) (*Client, error) {
	b, err := os.ReadFile(endpointFile(state))
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", ErrNotRunning, state)
	}
	var e Endpoint
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("read %s: %w", endpointFile(state), err)
	}
	if !alive(e.PID) {
		return nil, fmt.Errorf("%w (%s; a stale endpoint of pid %d)", ErrNotRunning, state, e.PID)
	}
	creds, err := os.ReadFile(e.Creds)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrNotRunning, err)
	}
	auth, err := natscreds.Option(creds)
	if err != nil {
		return nil, fmt.Errorf("client credentials: %w", err)
	}
	s := schemas.Subjects{Prefix: e.Prefix}
	opts := []nats.Option{auth, nats.CustomInboxPrefix(s.Inbox(clientName)), nats.Name("sluice-client"), nats.MaxReconnects(0)}
	if e.TLS != nil {
		c, err := natstls.Load(*e.TLS)
		if err != nil {
			return nil, fmt.Errorf("nats.tls of the running orchestrator: %w", err)
		}
		opts = append(opts, nats.Secure(c))
	}
	nc, err := nats.Connect(e.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotRunning, natstls.Explain(err, e.TLS))
	}
	return &Client{nc: nc, s: s, Endpoint: e}, nil
}

// Close closes the connection.
func (c *Client) Close() { c.nc.Close() }

// ErrOrchestratorGone: the orchestrator running a client's run stopped
// answering, and no other could follow the run.
var ErrOrchestratorGone = errors.New("the orchestrator running the run stopped answering")

// Run submits a run and waits for its reply; onEvent is told of held calls
// and steps.
//
// The orchestrator tells the client every Beat that it is there. When it
// falls silent for Silence (it died: the client's connection is to the
// bus, which does not tell), the client asks the deployment's
// orchestrators to follow the run by its id (runs.follow): whichever
// answers replies with the run's result once it ends, wherever it ends
// (another orchestrator takes the run over). The first reply, from the
// orchestrator that ran it or from one that followed it, is the answer;
// OnFollow is told each time the client asks. A reply that says the run
// goes on elsewhere (RunReply.Elsewhere: its orchestrator stopped) is
// followed the same way; when no orchestrator is left to follow it, that
// reply is the answer.
func (c *Client) Run(ctx context.Context, req RunRequest, onEvent func(json.RawMessage)) (RunReply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 7*24*time.Hour)
		defer cancel()
	}
	w := &runWait{c: c, heard: make(chan struct{}, 1), replies: make(chan *nats.Msg, 8), closed: make(chan struct{}),
		waits: req.Wait, waitTimeout: time.Duration(req.WaitTimeoutMS) * time.Millisecond}
	req.Events = c.nc.NewInbox()
	w.events = req.Events
	sub, err := c.nc.Subscribe(req.Events, func(m *nats.Msg) { w.event(m, onEvent) })
	if err != nil {
		return RunReply{}, err
	}
	defer drain(sub, 10*time.Second)
	w.inbox = c.nc.NewInbox()
	rsub, err := c.nc.ChanSubscribe(w.inbox, w.replies)
	if err != nil {
		return RunReply{}, err
	}
	defer rsub.Unsubscribe()
	// The bus may close the connection (a credential that expired): no
	// reply can come then.
	c.nc.SetClosedHandler(func(*nats.Conn) { close(w.closed) })
	defer c.nc.SetClosedHandler(nil)
	body, _ := json.Marshal(req)
	if err := c.nc.PublishRequest(c.s.API("run"), w.inbox, body); err != nil {
		return RunReply{}, fmt.Errorf("ask the orchestrator: %w", err)
	}
	w.silence = c.Silence
	if w.silence <= 0 {
		w.silence = Silence
	}
	w.quiet = time.NewTimer(w.silence)
	defer w.quiet.Stop()
	return w.wait(ctx)
}

// Answer approves or denies a held call; hash, when set, must be the hash
// of the call the person was shown.
func (c *Client) Answer(ctx context.Context, id string, approved bool, who, hash string) error {
	return c.AnswerAndRemember(ctx, AnswerRequest{ID: id, Approved: approved, Who: who, Hash: hash})
}

// AnswerAndRemember answers a held call; with req.Remember, the approval
// is remembered within that scope; with req.Endorse, it endorses the
// values of the arguments it names for the rest of the run.
func (c *Client) AnswerAndRemember(ctx context.Context, req AnswerRequest) error {
	body, _ := json.Marshal(req)
	rep, err := c.nc.RequestWithContext(ctx, c.s.API("answer"), body)
	if err != nil {
		return fmt.Errorf("ask the orchestrator: %w", err)
	}
	var resp Response
	if err := json.Unmarshal(rep.Data, &resp); err != nil {
		return fmt.Errorf("malformed response")
	}
	if !resp.OK {
		return errors.New(resp.Error)
	}
	return nil
}

// Approvals lists the calls waiting for a person.
func (c *Client) Approvals(ctx context.Context) ([]engine.Approval, error) {
	inbox := c.nc.NewRespInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := c.nc.PublishRequest(c.s.API("approvals"), inbox, nil); err != nil {
		return nil, fmt.Errorf("ask the orchestrator: %w", err)
	}
	var out []engine.Approval
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("ask the orchestrator: %w", err)
		}
		var rep ApprovalsReply
		if err := json.Unmarshal(m.Data, &rep); err != nil {
			return nil, fmt.Errorf("malformed reply from the orchestrator")
		}
		if rep.Error != "" {
			return nil, errors.New(rep.Error)
		}
		out = append(out, rep.Approvals...)
		if !rep.More {
			return out, nil
		}
	}
}

// Approval returns one held call, whatever its state.
func (c *Client) Approval(ctx context.Context, id string) (*engine.Approval, error) {
	m, err := c.nc.RequestWithContext(ctx, c.s.API("approval"), []byte(id))
	if err != nil {
		return nil, fmt.Errorf("ask the orchestrator: %w", err)
	}
	var rep ApprovalReply
	if err := json.Unmarshal(m.Data, &rep); err != nil || (rep.Approval == nil && rep.Error == "") {
		return nil, fmt.Errorf("malformed reply from the orchestrator")
	}
	if rep.Error != "" {
		return nil, errors.New(rep.Error)
	}
	return rep.Approval, nil
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	return p.Signal(syscall.Signal(0)) == nil
}

// ExportRequest asks a running orchestrator to write its audit log to
// Path, an absolute path on its machine.
type ExportRequest struct {
	Path string `json:"path"`
}

// ExportReply says how many records were written.
type ExportReply struct {
	Records int    `json:"records"`
	Error   string `json:"error,omitempty"`
}

// ServeExport answers export requests.
func ServeExport(nc *nats.Conn, s schemas.Subjects, export func(ctx context.Context, path string) (int, error)) (*nats.Subscription, error) {
	return nc.QueueSubscribe(s.API("audit.export"), Queue, func(m *nats.Msg) {
		go func() {
			var req ExportRequest
			var rep ExportReply
			if err := json.Unmarshal(m.Data, &req); err != nil || !filepath.IsAbs(req.Path) {
				rep.Error = "malformed export request: want an absolute path"
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				rep.Records, err = export(ctx, req.Path)
				cancel()
				if err != nil {
					rep.Error = err.Error()
				}
			}
			b, _ := json.Marshal(rep)
			_ = m.Respond(b)
		}()
	})
}

// Export asks the orchestrator to write its audit log to path.
func (c *Client) Export(ctx context.Context, path string) (int, error) {
	body, _ := json.Marshal(ExportRequest{Path: path})
	rep, err := c.nc.RequestWithContext(ctx, c.s.API("audit.export"), body)
	if err != nil {
		return 0, fmt.Errorf("ask the orchestrator: %w", err)
	}
	var out ExportReply
	if err := json.Unmarshal(rep.Data, &out); err != nil {
		return 0, fmt.Errorf("malformed reply from the orchestrator")
	}
	if out.Error != "" {
		return out.Records, errors.New(out.Error)
	}
	return out.Records, nil
}

// Controller lists the runs a running orchestrator keeps and cancels
// them; the orchestrator is one.
type Controller interface {
	Unfinished(ctx context.Context) ([]engine.RunInfo, error)
	Cancel(ctx context.Context, id, who string) (*engine.RunInfo, error)
}

// CancelRequest asks to end one run for good; Who is recorded.
type CancelRequest struct {
	ID  string `json:"id"`
	Who string `json:"who"`
}

// CancelReply is the run as it was cancelled, or why it was not.
type CancelReply struct {
	Run   *engine.RunInfo `json:"run,omitempty"`
	Error string          `json:"error,omitempty"`
}

// UnfinishedReply lists the runs the orchestrator keeps.
type UnfinishedReply struct {
	Runs  []engine.RunInfo `json:"runs"`
	Error string           `json:"error,omitempty"`
}

// ServeControl answers requests to list the unfinished runs (runs.unfinished)
// and to cancel one (runs.cancel) until the subscriptions are drained.
func ServeControl(nc *nats.Conn, s schemas.Subjects, c Controller) ([]*nats.Subscription, error) {
	respond := func(m *nats.Msg, v any) {
		b, _ := json.Marshal(v)
		_ = m.Respond(b)
	}
	list, err := nc.QueueSubscribe(s.API("runs.unfinished"), Queue, func(m *nats.Msg) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			runs, err := c.Unfinished(ctx)
			if err != nil {
				respond(m, UnfinishedReply{Error: err.Error()})
				return
			}
			respond(m, UnfinishedReply{Runs: runs})
		}()
	})
	if err != nil {
		return nil, err
	}
	cancelSub, err := nc.QueueSubscribe(s.API("runs.cancel"), Queue, func(m *nats.Msg) {
		go func() {
			var req CancelRequest
			if err := json.Unmarshal(m.Data, &req); err != nil || req.ID == "" || req.Who == "" {
				respond(m, CancelReply{Error: "malformed cancel request"})
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			run, err := c.Cancel(ctx, req.ID, req.Who)
			if err != nil {
				respond(m, CancelReply{Error: err.Error()})
				return
			}
			respond(m, CancelReply{Run: run})
		}()
	})
	if err != nil {
		_ = list.Unsubscribe()
		return nil, err
	}
	return []*nats.Subscription{list, cancelSub}, nil
}

// Unfinished lists the runs the orchestrator keeps: running, held or
// interrupted.
func (c *Client) Unfinished(ctx context.Context) ([]engine.RunInfo, error) {
	m, err := c.nc.RequestWithContext(ctx, c.s.API("runs.unfinished"), nil)
	if err != nil {
		return nil, fmt.Errorf("ask the orchestrator: %w", err)
	}
	var rep UnfinishedReply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return nil, fmt.Errorf("malformed reply from the orchestrator")
	}
	if rep.Error != "" {
		return nil, errors.New(rep.Error)
	}
	return rep.Runs, nil
}

// Cancel ends a run for good, recorded as cancelled by who.
func (c *Client) Cancel(ctx context.Context, id, who string) (*engine.RunInfo, error) {
	body, _ := json.Marshal(CancelRequest{ID: id, Who: who})
	m, err := c.nc.RequestWithContext(ctx, c.s.API("runs.cancel"), body)
	if err != nil {
		return nil, fmt.Errorf("ask the orchestrator: %w", err)
	}
	var rep CancelReply
	if err := json.Unmarshal(m.Data, &rep); err != nil || (rep.Run == nil && rep.Error == "") {
		return nil, fmt.Errorf("malformed reply from the orchestrator")
	}
	if rep.Error != "" {
		return nil, errors.New(rep.Error)
	}
	return rep.Run, nil
}

// RunEvent is what the orchestrator tells a client of a run it submitted
// as it goes: the run's id once it is recorded (Started), a call held for
// a person (Held), a step's call that finished (Step), or that it is
// still there (Alive).
type RunEvent struct {
	// Alive says the orchestrator answering is there, every Beat.
	Alive   bool               `json:"alive,omitempty"`
	Started string             `json:"started,omitempty"`
	Held    *engine.StepResult `json:"held,omitempty"`
	Step    *StepEvent         `json:"step,omitempty"`
}

// StepEvent is a step's call that finished, as the run's audit records
// tell it: its result, or a policy decision that stopped it (denied).
// Duration runs from the call's decision to its result.
type StepEvent struct {
	Step       string `json:"step"`
	Tool       string `json:"tool"`
	Status     string `json:"status"`
	DurationMS int64  `json:"duration_ms"`
	Error      string `json:"error,omitempty"`
}
