package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/engine"
	"github.com/sluicehq/sluice/orchestrator/internal/telemetry"
)

// Backend is what the page shows and answers: the orchestrator.
type Backend interface {
	// Runs returns the runs of the audit log, newest first, with their steps.
	Runs(ctx context.Context) ([]*audit.Run, error)
	// Approvals returns the held calls that wait for a person.
	Approvals(ctx context.Context) ([]engine.Approval, error)
	// Decide answers the held call id; a.Hash is the Approval.Hash the
	// person was shown.
	Decide(ctx context.Context, id string, a engine.Answer) error
}

// Config of the page's server.
type Config struct {
	// Addr is the host:port to listen on. The host must be a loopback
	// address (127.0.0.0/8 or ::1) or localhost; default "127.0.0.1:0", a
	// free port.
	Addr string
	// Backend is the orchestrator the page shows. Required.
	Backend Backend
	// User is the OS user answering held calls on the page: answers are
	// recorded as given by "web:" + User. Default "unknown".
	User string
	// Refresh is how often an open page fetches its data again; default 2s.
	Refresh time.Duration
	// Log receives a line for each answer given on the page; nil discards.
	Log *slog.Logger
	// URLFile, when set, is where New writes URL(), readable by its owner
	// only (the address carries the key to the page); Shutdown removes it.
	URLFile string
}

// Validate checks the configuration without listening.
func (c *Config) Validate() error {
	if c.Backend == nil {
		return errors.New("web: no backend")
	}
	if c.Refresh < 0 {
		return fmt.Errorf("web: refresh %s is negative", c.Refresh)
	}
	_, err := loopback(c.addr())
	return err
}

func (c *Config) addr() string {
	if c.Addr == "" {
		return "127.0.0.1:0"
	}
	return c.Addr
}

// loopback returns addr with localhost replaced by 127.0.0.1, or an error
// when its host is not a loopback address.
func loopback(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("web: address %q: want HOST:PORT, e.g. 127.0.0.1:8080", addr)
	}
	if strings.EqualFold(host, "localhost") {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() || ip.Zone() != "" {
		return "", fmt.Errorf("web: address %q: %w; the page is served on this machine only (127.0.0.1, ::1 or localhost)", addr, ErrNotLoopback)
	}
	return net.JoinHostPort(ip.String(), port), nil
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Server serves the page. It is safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	who     string
	ln      net.Listener
	srv     *http.Server
	pages   map[string]*template.Template
	key     string          // in the address to open; traded for the cookie
	csrf    string          // in every page; required on every POST
	cookie  string          // the cookie's name (one per port)
	hosts   map[string]bool // Host headers that name this server
	origins map[string]bool // Origin headers of this server's pages
	served  chan struct{}
	err     error // of Serve, once served is closed
}

// New checks cfg, listens on its loopback address and serves the page
// until Shutdown.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	addr, _ := loopback(cfg.addr())
	if cfg.User == "" {
		cfg.User = "unknown"
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = 2 * time.Second
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("web: listen on %s: %w", addr, err)
	}
	tcp := ln.Addr().(*net.TCPAddr)
	served := net.JoinHostPort(tcp.IP.String(), fmt.Sprint(tcp.Port))
	localhost := net.JoinHostPort("localhost", fmt.Sprint(tcp.Port))
	s := &Server{cfg: cfg, log: log, who: "web:" + cfg.User, ln: ln, pages: pages,
		key: randomToken(), csrf: randomToken(), cookie: fmt.Sprintf("Sluice-Key-%d", tcp.Port),
		hosts:   map[string]bool{served: true, localhost: true},
		origins: map[string]bool{"http://" + served: true, "http://" + localhost: true},
		served:  make(chan struct{})}
	s.srv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	if cfg.URLFile != "" {
		if err := writePrivate(cfg.URLFile, s.URL()+"\n"); err != nil {
			ln.Close()
			return nil, fmt.Errorf("web: write the page's address: %w", err)
		}
	}
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	return s, nil
}

// writePrivate writes a file only its owner can read, whole or not at all.
func writePrivate(path, content string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail (it crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Addr is the host:port the page is served on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the address to open: it carries the key to the page, so it is
// for the user who started the server only.
func (s *Server) URL() string { return "http://" + s.Addr() + "/?key=" + s.key }

// Shutdown removes the URL file, stops accepting requests, waits for those
// in progress until ctx ends, and returns once the server has stopped.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	if s.cfg.URLFile != "" {
		if err := os.Remove(s.cfg.URLFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		errs = append(errs, err)
		_ = s.srv.Close()
	}
	<-s.served
	return errors.Join(append(errs, s.err)...)
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.runsPage)
	mux.HandleFunc("GET /runs/{id}", s.runPage)
	mux.HandleFunc("GET /approvals", s.approvalsPage)
	mux.HandleFunc("POST /approvals/step/{answer}", s.answerStep)
	mux.HandleFunc("POST /approvals/{id}/{answer}", s.answer)
	mux.HandleFunc("GET /metrics", s.metrics)
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	return s.guard(mux)
}

// guard sets the security headers of every response and lets through only
// requests that name this server, carry the key, and, for a POST, come
// from this server's page with its token.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w.Header())
		if !s.hosts[strings.ToLower(r.Host)] {
			forbidden(w, "the Host header does not name this server (only "+s.Addr()+" is served)")
			return
		}
		if strings.HasPrefix(r.URL.Path, "/static/") {
			next.ServeHTTP(w, r)
			return
		}
		if r.URL.Path == "/metrics" && r.Method == http.MethodGet && equal(r.Header.Get("Authorization"), "Bearer "+s.key) {
			// A scraper sends the page's key as a bearer token.
			next.ServeHTTP(w, r)
			return
		}
		if key := r.URL.Query().Get("key"); key != "" && r.Method == http.MethodGet {
			s.logIn(w, r, key)
			return
		}
		if c, err := r.Cookie(s.cookie); err != nil || !equal(c.Value, s.key) {
			forbidden(w, "no key: open the address sluice up printed (also in <state>/run/web.url)")
			return
		}
		if r.Method == http.MethodPost {
			if why := s.refusePost(w, r); why != "" {
				forbidden(w, why)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// Not no-referrer: with it a browser sends "Origin: null" on the
	// page's own form posts, which refusePost must refuse.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// logIn trades the key of the address sluice up printed for a cookie, and
// sends the browser on to the same page of this server, never another.
func (s *Server) logIn(w http.ResponseWriter, r *http.Request, key string) {
	if !equal(key, s.key) {
		forbidden(w, "wrong key: open the address sluice up printed (also in <state>/run/web.url)")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: s.cookie, Value: s.key, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	target := r.URL.Path
	if !strings.HasPrefix(target, "/") || strings.HasPrefix(target, "//") || strings.Contains(target, `\`) {
		target = "/" // never to another site
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// refusePost says why a POST does not come from this server's page, or
// returns "": its Origin, its Sec-Fetch-Site and its form token.
func (s *Server) refusePost(w http.ResponseWriter, r *http.Request) string {
	if !s.origins[strings.ToLower(r.Header.Get("Origin"))] {
		return "the request does not come from this page (Origin)"
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return "the request does not come from this page (Sec-Fetch-Site)"
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if !equal(r.PostFormValue("csrf"), s.csrf) {
		return "missing or wrong form token: reload the page and try again"
	}
	return ""
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func forbidden(w http.ResponseWriter, why string) {
	http.Error(w, "forbidden: "+why, http.StatusForbidden)
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	CSRF    string
	Who     string
	Refresh int64 // milliseconds
	Pending int
	Data    any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, name, title string, pending int, data any) {
	p := page{Title: title, Nav: name, CSRF: s.csrf, Who: s.who, Refresh: s.cfg.Refresh.Milliseconds(),
		Pending: pending, Data: data}
	var b strings.Builder
	if err := s.pages[name].ExecuteTemplate(&b, "layout", p); err != nil {
		s.log.Error("render the web page", "page", name, "err", err)
		http.Error(w, "render "+name+": internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

func (s *Server) fail(w http.ResponseWriter, what string, err error) {
	s.log.Warn("web page: "+what, "err", err)
	http.Error(w, what+": "+err.Error(), http.StatusInternalServerError)
}

// approvals returns the held calls that wait for a person. A call the
// backend lists in another state gets no buttons.
func (s *Server) approvals(ctx context.Context) ([]engine.Approval, error) {
	all, err := s.cfg.Backend.Approvals(ctx)
	if err != nil {
		return nil, err
	}
	var held []engine.Approval
	for _, a := range all {
		if a.Status == engine.ApprovalPending {
			held = append(held, a)
		}
	}
	return held, nil
}

// runsAndHeld reads the runs and the held calls a page shows; on an error
// it has answered the request and returns false.
func (s *Server) runsAndHeld(w http.ResponseWriter, r *http.Request) ([]*audit.Run, []engine.Approval, bool) {
	runs, err := s.cfg.Backend.Runs(r.Context())
	if err != nil {
		s.fail(w, "read runs", err)
		return nil, nil, false
	}
	held, err := s.approvals(r.Context())
	if err != nil {
		s.fail(w, "read approvals", err)
		return nil, nil, false
	}
	return runs, held, true
}

func (s *Server) runsPage(w http.ResponseWriter, r *http.Request) {
	runs, held, ok := s.runsAndHeld(w, r)
	if !ok {
		return
	}
	s.render(w, r, "runs", "Runs", len(held), runRows(runs, held))
}

func (s *Server) runPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	runs, held, ok := s.runsAndHeld(w, r)
	if !ok {
		return
	}
	for _, run := range runs {
		if run.ID == id {
			s.render(w, r, "run", "Run "+run.ID, len(held), newRunView(run, held))
			return
		}
	}
	http.Error(w, fmt.Sprintf("no run %q in the audit log", id), http.StatusNotFound)
}

func (s *Server) approvalsPage(w http.ResponseWriter, r *http.Request) {
	held, err := s.approvals(r.Context())
	if err != nil {
		s.fail(w, "read approvals", err)
		return
	}
	s.render(w, r, "approvals", "Approvals", len(held), approvalViews(held))
}

// answer approves, denies, or approves and remembers, or approves and
// endorses values of, one held call.
func (s *Server) answer(w http.ResponseWriter, r *http.Request) {
	id, verb := r.PathValue("id"), r.PathValue("answer")
	switch verb {
	case "approve", "deny":
		s.decide(w, r, id, verb == "approve", engine.Answer{})
	case "remember":
		// Approve, and keep the answer within the scope the form names.
		scope, err := rememberScope(r)
		if err != nil {
			http.Error(w, "remember "+id+": "+err.Error(), http.StatusBadRequest)
			return
		}
		s.decide(w, r, id, true, engine.Answer{Remember: scope})
	case "endorse":
		// Approve, and endorse the values the form names for the run.
		en, err := endorseScope(r)
		if err != nil {
			http.Error(w, "endorse "+id+": "+err.Error(), http.StatusBadRequest)
			return
		}
		s.decide(w, r, id, true, engine.Answer{Endorse: en})
	default:
		http.NotFound(w, r)
	}
}

// endorseScope reads an endorsement from the form: the arguments whose
// values to endorse (endorse, at least one) and the tools, comma-separated
// (the held call's when empty).
func endorseScope(r *http.Request) (*engine.EndorseScope, error) {
	if err := r.ParseForm(); err != nil {
		return nil, err
	}
	sc := &engine.EndorseScope{Args: r.PostForm["endorse"]}
	if len(sc.Args) == 0 {
		return nil, errors.New("tick at least one argument whose value to endorse")
	}
	for _, t := range strings.Split(r.PostFormValue("tools"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			sc.Tools = append(sc.Tools, t)
		}
	}
	return sc, nil
}

// decide answers one held call, bound to the hash the page showed, and
// sends the browser to the run.
// keep carries what the answer keeps beyond the call (Remember, Endorse).
func (s *Server) decide(w http.ResponseWriter, r *http.Request, id string, approved bool, keep engine.Answer) {
	verb := map[bool]string{true: "approve", false: "deny"}[approved]
	hash := r.PostFormValue("hash")
	if hash == "" {
		http.Error(w, "answer "+id+": the form names no call hash", http.StatusBadRequest)
		return
	}
	held, err := s.approvals(r.Context())
	if err != nil {
		s.fail(w, "read approvals", err)
		return
	}
	var run string
	for _, a := range held {
		if a.ID == id {
			run = a.RunID
		}
	}
	if run == "" {
		http.Error(w, fmt.Sprintf("no held call %q waits for an answer (it may have been answered already)", id), http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	keep.Approved, keep.Who, keep.Hash = approved, s.who, hash
	if err := s.cfg.Backend.Decide(ctx, id, keep); err != nil {
		s.log.Warn("web page: answer a held call", "approval", id, "run_id", run, "err", err)
		http.Error(w, fmt.Sprintf("%s %s: %v", verb, id, err), http.StatusConflict)
		return
	}
	s.log.Info("held call answered on the web page", "approval", id, "run_id", run, "decision", verb, "who", s.who, "remembered", keep.Remember != nil, "endorsed", keep.Endorse != nil)
	http.Redirect(w, r, "/runs/"+url.PathEscape(run), http.StatusSeeOther)
}

// answerStep answers the held calls of one step together: the form names
// each call and the hash the page showed for it, and each is answered on
// its own, bound to that hash. Every call must be held, in one step of one
// run.
func (s *Server) answerStep(w http.ResponseWriter, r *http.Request) {
	verb := r.PathValue("answer")
	if verb != "approve" && verb != "deny" {
		http.NotFound(w, r)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "answer: "+err.Error(), http.StatusBadRequest)
		return
	}
	ids, hashes := r.PostForm["id"], r.PostForm["hash"]
	if len(ids) == 0 || len(ids) != len(hashes) {
		http.Error(w, "answer: the form must name each call with its hash", http.StatusBadRequest)
		return
	}
	held, err := s.approvals(r.Context())
	if err != nil {
		s.fail(w, "read approvals", err)
		return
	}
	first, err := heldInOneStep(held, ids, hashes)
	if err != nil {
		http.Error(w, err.Error()+"; nothing was answered", http.StatusConflict)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	approved := verb == "approve"
	var refused []string
	for i, id := range ids {
		if err := s.cfg.Backend.Decide(ctx, id, engine.Answer{Approved: approved, Who: s.who, Hash: hashes[i]}); err != nil {
			s.log.Warn("web page: answer a held call", "approval", id, "run_id", first.RunID, "err", err)
			refused = append(refused, fmt.Sprintf("%s: %v", id, err))
		}
	}
	s.log.Info("held calls of a step answered on the web page", "run_id", first.RunID, "step", first.Step, "decision", verb,
		"who", s.who, "answered", len(ids)-len(refused), "refused", len(refused))
	if len(refused) > 0 {
		http.Error(w, fmt.Sprintf("%s: %d of %d answers refused:\n%s", verb, len(refused), len(ids), strings.Join(refused, "\n")), http.StatusConflict)
		return
	}
	http.Redirect(w, r, "/runs/"+url.PathEscape(first.RunID), http.StatusSeeOther)
}

// heldInOneStep checks that every call named is held, in one step of one
// run, as the page showed it (its hash), and returns the first.
func heldInOneStep(held []engine.Approval, ids, hashes []string) (engine.Approval, error) {
	byID := map[string]engine.Approval{}
	for _, a := range held {
		byID[a.ID] = a
	}
	first, ok := byID[ids[0]]
	for i, id := range ids {
		a, found := byID[id]
		if !found || !ok || a.RunID != first.RunID || a.Step != first.Step {
			return first, fmt.Errorf("call %q is not held in step %s of run %s (it may have been answered already)", id, first.Step, first.RunID)
		}
		if a.Hash != hashes[i] {
			return first, fmt.Errorf("call %q is not the one the page showed (its hash changed)", id)
		}
	}
	return first, nil
}

// metrics serves the orchestrator's metrics in the Prometheus text
// format, with the held calls counted as they stand now.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	held, err := s.approvals(r.Context())
	if err != nil {
		s.fail(w, "held calls", err)
		return
	}
	telemetry.HeldCalls.Set(float64(len(held)))
	promhttp.HandlerFor(telemetry.Registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}).ServeHTTP(w, r)
}

// rememberScope reads the scope of a remembered answer from the form: the
// arguments to keep (pin, at least one), a count per day, a sum of one
// argument per day, a date (YYYY-MM-DD, its end) and whether any flow.
func rememberScope(r *http.Request) (*engine.RememberScope, error) {
	if err := r.ParseForm(); err != nil {
		return nil, err
	}
	sc := &engine.RememberScope{Pin: r.PostForm["pin"], AnyFlow: r.PostFormValue("any_flow") != ""}
	if len(sc.Pin) == 0 {
		return nil, errors.New("tick at least one argument to keep as approved")
	}
	if v := r.PostFormValue("per_day"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("the calls a day must be a whole number, not %q", v)
		}
		sc.MaxPerDay = n
	}
	if arg := r.PostFormValue("sum_arg"); arg != "" {
		n, err := strconv.ParseFloat(r.PostFormValue("sum_max"), 64)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("a day's sum of %s needs a positive bound", arg)
		}
		sc.SumArg, sc.MaxSumPerDay = arg, n
	}
	if v := r.PostFormValue("until"); v != "" {
		d, err := time.Parse("2006-01-02", v)
		if err != nil {
			return nil, fmt.Errorf("until must be a date such as 2027-01-31, not %q", v)
		}
		sc.Until = d.Add(24*time.Hour - time.Second)
	}
	return sc, nil
}
