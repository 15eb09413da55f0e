// Package mcpserver is Sluice's front door for MCP clients: it serves the
// tools of a deployment, over stdio or streamable HTTP, to an external
// agent (Claude Code, Cursor, any MCP client).
//
// Each client connection is an engine session (engine.OpenSession): a run
// in the audit log whose calls the client chooses. Every call goes through
// the policy gate with the session's context label, which starts at what
// the client is taken to know (trusted: the person's own agent, unless
// configured otherwise) and only rises with what the client is shown.
// Results below the session's integrity are sent as handles, which the
// client can pass to later calls or ask one narrow question about with
// inspect, as in an agent step. A held call waits for a person: through
// MCP elicitation when the client supports it and the call carries no
// value the client was not shown, else in `sluice approvals` and on the
// web page, and the tool result says so when the wait ends first.
//
// What it cannot do: an external agent reads other things than Sluice
// shows it, and Sluice cannot see them. Its label is per session and
// starts where the operator says.
package mcpserver

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/agent"
	"github.com/sluicehq/sluice/orchestrator/engine"
	"github.com/sluicehq/sluice/orchestrator/flow"
)

// Instructions tell a client how handles and inspect work.
const Instructions = `Sluice serves these tools through its policy gate. Some results come back as handles,
{"$handle": "h1", "tool": ..., "fields": [...]}: you cannot read them, but you can pass a handle
(or {"$handle": "h1", "field": "name"}) anywhere in the arguments of a later call, and its value is put in its place.
To learn one fact from a handle, call inspect with the handle, a question and a narrow schema
(a boolean, an enum of strings, a number with minimum and maximum, or a date string).
A call that policy holds waits for a person; if the wait ends first, the result says so: make the same call again once it is answered.`

// Config of a front door.
type Config struct {
	// Engine runs the sessions (SetEngine).
	Engine *engine.Engine
	// Catalog resolves Tools, full names (web.fetch).
	Catalog flow.Catalog
	Tools   []string
	// Flows are offered as tools named after them: a call starts a run
	// labeled with the session's context label (engine.SessionOptions).
	Flows []*flow.Plan
	// Stateless serves HTTP in the SDK's stateless mode: every request
	// is its own MCP session, so all of them are one engine session,
	// whose label rises with what any request was shown (sessionKey).
	Stateless bool
	// Model, when set, is the worker whose extract tool answers inspect.
	Model string
	// HideUntrusted sends results below a session's integrity as handles.
	HideUntrusted bool
	// Label is what a client is taken to know when it connects.
	Label ifc.Label
	// WaitTimeout bounds the wait of a held call within one tool call.
	WaitTimeout time.Duration
	// Elicit asks the client's user to answer a held call through MCP
	// elicitation when the client supports it.
	Elicit  bool
	Version string
	Log     *slog.Logger
}

// Server serves MCP clients.
type Server struct {
	cfg   Config
	log   *slog.Logger
	tools []flow.AgentTool
	mcp   *mcp.Server

	mu       sync.Mutex
	sessions map[*mcp.ServerSession]*engine.Session
	// asked are the held calls each session's user was asked about, with
	// the hash of the call described: the only answers taken.
	asked  map[*mcp.ServerSession]map[string]string
	closed bool
	// decide answers a held call (SetEngine).
	decide func(context.Context, string, engine.Answer) error
}

// New checks the configuration and returns a server.
func New(cfg Config) (*Server, error) {
	if len(cfg.Tools) == 0 && len(cfg.Flows) == 0 {
		return nil, errors.New("mcp: no tools or flows to serve (--tools, --flows)")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, sessions: map[*mcp.ServerSession]*engine.Session{}, asked: map[*mcp.ServerSession]map[string]string{}}
	for _, name := range cfg.Tools {
		spec, worker, err := cfg.Catalog.Tool(name)
		if err != nil {
			return nil, fmt.Errorf("mcp: %w", err)
		}
		s.tools = append(s.tools, flow.AgentTool{Name: name, Worker: worker, Spec: spec})
	}
	offered := slices.Clone(s.tools)
	for _, p := range cfg.Flows {
		if slices.ContainsFunc(offered, func(t flow.AgentTool) bool { return t.Name == p.Name }) {
			return nil, fmt.Errorf("mcp: flow %s (%s): a tool or flow of that name is already served", p.Name, p.File)
		}
		spec, err := p.Tool()
		if err != nil {
			return nil, fmt.Errorf("mcp: %w", err)
		}
		offered = append(offered, flow.AgentTool{Name: p.Name, Spec: spec})
	}
	s.mcp = mcp.NewServer(&mcp.Implementation{Name: "sluice", Version: cfg.Version},
		&mcp.ServerOptions{Instructions: Instructions, Logger: log})
	full := map[string]string{}
	for _, t := range offered {
		full[agent.OfferedName(t.Name)] = t.Name
	}
	// The tools a session offers do not depend on the session: list them
	// from one that is never opened on the engine.
	a := s.agent()
	a.Tools = offered
	for _, ct := range agent.NewSession(nil, agent.Step{Agent: a}).Tools() {
		name := ct.Name
		if f, ok := full[name]; ok {
			name = f
		}
		schema := json.RawMessage(`{"type":"object"}`)
		if len(ct.Parameters) > 0 && isObjectSchema(ct.Parameters) {
			schema = ct.Parameters
		}
		s.mcp.AddTool(&mcp.Tool{Name: name, Description: ct.Description, InputSchema: schema}, s.call(name))
	}
	return s, nil
}

func (s *Server) agent() *flow.Agent {
	a := &flow.Agent{Tools: s.tools, HideUntrusted: s.cfg.HideUntrusted, Model: s.cfg.Model}
	if s.cfg.Model != "" {
		if m := s.cfg.Catalog[s.cfg.Model]; m != nil {
			a.Extract, _ = m.Tool("extract")
		}
	}
	return a
}

func isObjectSchema(b json.RawMessage) bool {
	var m map[string]any
	return json.Unmarshal(b, &m) == nil && m["type"] == "object"
}

// call is the handler of one tool: the call goes to the client's session.
// A held call the client's user may answer ends its wait at once and asks
// for that answer (an elicitation input request, SEP-2322; the SDK asks
// clients of older protocol versions itself); the client calls again with
// the answer, which is taken before the same call is made again.
func (s *Server) call(name string) mcp.ToolHandler {
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		es, err := s.session(ctx, req.Session)
		if err != nil {
			return nil, err
		}
		p := &pending{}
		if len(req.Params.InputResponses) > 0 {
			// The user answered: that is this call's only question.
			s.answer(ctx, es, req, clientName(req.Session))
			p.answered = true
		}
		ctx, cancel := context.WithCancel(context.WithValue(ctx, pendingKey{}, p))
		defer cancel()
		p.cancel = cancel
		text := es.Call(ctx, name, req.Params.Arguments)
		if q := p.question(); q != nil {
			return q, nil
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil
	}
}

// sessionKey is the key of a client connection's engine session: the
// connection, or nil for every request of a stateless front door. A
// stateless request is a connection of its own, and a client can make
// each of its calls in a new one: were each its own session, starting at
// Config.Label, what one request was shown would be forgotten by the
// next, and a client could launder its label by reconnecting. So all of
// them share one session, whose label only rises, as one client's would.
func (s *Server) sessionKey(ss *mcp.ServerSession) *mcp.ServerSession {
	if s.cfg.Stateless {
		return nil
	}
	return ss
}

// session returns the engine session of a client connection, opening it
// at the connection's first call; it is closed when the connection ends
// (a stateless front door's, when the server closes).
func (s *Server) session(ctx context.Context, ss *mcp.ServerSession) (*engine.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("the server is stopping")
	}
	key := s.sessionKey(ss)
	if es, ok := s.sessions[key]; ok {
		return es, nil
	}
	client := clientName(ss)
	if key == nil {
		client = "stateless"
	}
	es, err := s.cfg.Engine.OpenSession(ctx, engine.SessionOptions{Name: "mcp:" + client, Tools: s.tools, Flows: s.cfg.Flows,
		Model: s.cfg.Model, HideUntrusted: s.cfg.HideUntrusted, Label: s.cfg.Label, WaitTimeout: s.cfg.WaitTimeout,
		OnHeld: func(ctx context.Context, st engine.StepResult, hidden bool) { s.held(ctx, ss, st, hidden) }})
	if err != nil {
		return nil, fmt.Errorf("open a session: %w", err)
	}
	s.sessions[key] = es
	s.log.Info("session opened", "run_id", es.ID(), "client", client)
	if key == nil {
		return es, nil
	}
	go func() {
		_ = ss.Wait()
		s.end(ss)
	}()
	return es, nil
}

// end closes the engine session of a connection that ended.
func (s *Server) end(ss *mcp.ServerSession) {
	s.mu.Lock()
	es, ok := s.sessions[ss]
	delete(s.sessions, ss)
	delete(s.asked, ss)
	s.mu.Unlock()
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := es.Close(ctx); err != nil {
		s.log.Error("session end not recorded", "run_id", es.ID(), "err", err)
		return
	}
	s.log.Info("session closed", "run_id", es.ID(), "label", es.Label().String())
}

// Close ends every session.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	var all []*mcp.ServerSession
	for ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	for _, ss := range all {
		s.end(ss)
	}
}

// clientName is the name a client gives itself, kept to a few plain
// characters: it names the session and the person who answers an
// elicitation, and the client chooses it.
func clientName(ss *mcp.ServerSession) string {
	name := "client"
	if p := ss.InitializeParams(); p != nil && p.ClientInfo != nil && p.ClientInfo.Name != "" {
		name = p.ClientInfo.Name
	}
	var b strings.Builder
	for _, r := range name {
		if b.Len() < 40 && plain(r) {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "client"
	}
	return b.String()
}

func plain(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.", r)
}

// SetEngine gives the server the engine its sessions run on, once the
// deployment has started (New checks the tools before it does), and how
// answers are given: decide, the orchestrator's Decide, which also
// records how long the call waited; nil answers through the engine.
func (s *Server) SetEngine(e *engine.Engine, decide func(context.Context, string, engine.Answer) error) {
	s.cfg.Engine = e
	s.decide = decide
	if s.decide == nil {
		s.decide = e.Decide
	}
}

// ServeStdio serves one client on in and out (the process's stdin and
// stdout) until it disconnects or ctx ends.
func (s *Server) ServeStdio(ctx context.Context, in io.ReadCloser, out io.WriteCloser) error {
	defer s.Close()
	err := s.mcp.Run(ctx, &mcp.IOTransport{Reader: in, Writer: out})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// HTTP serves clients over streamable HTTP on a loopback address. Every
// request must carry the bearer token; the SDK refuses requests whose
// Host is not the loopback address they came to (DNS rebinding), and
// cross-origin requests from a browser are refused.
type HTTP struct {
	Addr  string
	Token string
	srv   *http.Server
	ln    net.Listener
}

// CheckAddr checks that addr is a loopback address with a port.
func CheckAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--http %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--http %q: only a loopback address (127.0.0.1:PORT) is served", addr)
	}
	return nil
}

// ListenHTTP listens on addr, which must be a loopback address, with a
// new token.
func (s *Server) ListenHTTP(addr string) (*HTTP, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		ln.Close()
		return nil, err
	}
	h := &HTTP{Addr: ln.Addr().String(), Token: hex.EncodeToString(b), ln: ln}
	// Cross-origin requests (a browser's, from another site) are refused
	// before the SDK's handler sees them.
	mh := http.NewCrossOriginProtection().Handler(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.mcp },
		&mcp.StreamableHTTPOptions{Logger: s.log, Stateless: s.cfg.Stateless}))
	want := []byte("Bearer " + h.Token)
	h.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			http.Error(w, "a bearer token is required (sluice mcp printed where it is)", http.StatusUnauthorized)
			return
		}
		mh.ServeHTTP(w, r)
	})}
	return h, nil
}

// Serve serves until ctx ends.
func (s *Server) Serve(ctx context.Context, h *HTTP) error {
	defer s.Close()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.srv.Shutdown(sctx)
	}()
	if err := h.srv.Serve(h.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
