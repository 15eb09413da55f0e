// Package bus runs the embedded NATS server and decides who may connect to
// it and what each connection may do.
//
// Every worker process gets an nkey user of its own, registered when the
// supervisor starts the process and removed when it exits, with permissions
// derived from its manifest (capabilities.Permissions). The orchestrator
// connects in-process with a user of its own. The server itself refuses
// anything else; refusals are parsed from the server's log and reported as
// [Violation]s so that they reach the audit log.
//
// Against an existing server or cluster in operator mode, [Dial] returns an
// [External] instead: the same permissions, issued as user JWTs signed with
// the account's key. That server's refusals stay in its own log.
package bus

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sluicehq/sluice/capabilities"
)

// Config of the embedded server.
type Config struct {
	// StoreDir holds JetStream's files (StoreDir/jetstream).
	StoreDir string
	// Port to listen on, on 127.0.0.1 only; 0 picks a free port.
	Port int
	// Log receives the server's notices; nil discards them.
	Log *slog.Logger
	// OnViolation is told of every operation the server refused and every
	// failed authentication. It must not block.
	OnViolation func(Violation)
	// OnWriteError is told when the server could not write its store
	// under StoreDir (a full disk, say): the stream, empty when JetStream
	// as a whole stopped, and the error as the server logged it. The
	// server does not answer the write that failed, and refuses every
	// later write to that stream until it restarts. It must not block.
	OnWriteError func(stream, cause string)
}

// Violation is an operation the server refused.
type Violation struct {
	// User is the NATS user ("worker:web:3" or "orchestrator"); empty for a
	// failed authentication.
	User string
	// Kind is "publish", "subscribe" or "authentication".
	Kind string
	// Subject is what was refused (empty for authentication).
	Subject string
	Time    time.Time
}

// Bus is the running embedded server.
type Bus struct {
	srv  *server.Server
	auth *authenticator
	self nkeys.KeyPair
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config) (*Bus, error) {
	self, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	selfPub, _ := self.PublicKey()
	a := &authenticator{users: map[string]*user{}, names: map[string]string{}}
	a.add(selfPub, &user{name: "orchestrator"})
	port := cfg.Port
	if port == 0 {
		port = -1
	}
	opts := &server.Options{
		ServerName:                 "sluice",
		Host:                       "127.0.0.1",
		Port:                       port,
		NoSigs:                     true,
		NoLog:                      true,
		JetStream:                  true,
		StoreDir:                   cfg.StoreDir,
		CustomClientAuthentication: a,
		AlwaysEnableNonce:          true,
		MaxPayload:                 4 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start nats server: %w", err)
	}
	srv.SetLogger(&logger{log: cfg.Log, onViolation: cfg.OnViolation, onWriteError: cfg.OnWriteError, names: a.name}, false, false)
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("start nats server: not ready after 10s")
	}
	return &Bus{srv: srv, auth: a, self: self}, nil
}

// ClientURL is the URL worker processes connect to.
func (b *Bus) ClientURL() string { return b.srv.ClientURL() }

// Connect opens an in-process connection as the orchestrator, which may do
// anything.
func (b *Bus) Connect(opts ...nats.Option) (*nats.Conn, error) {
	pub, _ := b.self.PublicKey()
	opts = append([]nats.Option{nats.InProcessServer(b.srv), nats.Nkey(pub, b.self.Sign), nats.Name("sluice-orchestrator")}, opts...)
	return nats.Connect("", opts...)
}

// AddUser registers a user with the given permissions and returns its nkey
// seed, to be handed to exactly one process. name appears in violations.
func (b *Bus) AddUser(name string, p capabilities.Permissions) (seed []byte, remove func(), err error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, nil, err
	}
	pub, _ := kp.PublicKey()
	seed, err = kp.Seed()
	if err != nil {
		return nil, nil, err
	}
	b.auth.add(pub, &user{name: name, perms: natsPermissions(p)})
	return seed, func() { b.drop(pub, p.Subscribe) }, nil
}

// dropWait bounds how long drop waits for the server to let go of a
// user's connections.
const dropWait = 10 * time.Second

// drop withdraws a user: the server admits no new connection of it,
// closes the ones it has, and drop returns once no subscription on the
// subjects the user could subscribe to belongs to a connection that is
// not open. A process that died leaves its connection open until the
// server reads the end of its socket, and until then the server still
// hands that connection its share of a queue group's messages, which
// nobody answers: a call sent again after its worker exited must not go
// there, so the supervisor reports an exit only after this returns.
func (b *Bus) drop(pub string, subjects []string) {
	b.auth.remove(pub)
	deadline := time.Now().Add(dropWait)
	for {
		cz, err := b.srv.Connz(&server.ConnzOptions{Username: true, User: pub, State: server.ConnOpen})
		if err == nil {
			for _, c := range cz.Conns {
				_ = b.srv.DisconnectClientByID(c.Cid)
			}
		}
		if err == nil && len(cz.Conns) == 0 && !b.dangling(subjects) {
			return
		}
		if time.Now().After(deadline) || !b.srv.Running() {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// dangling reports whether a subscription on one of the subjects belongs
// to a connection the server is closing: one no longer open whose
// subscriptions are not yet removed.
func (b *Bus) dangling(subjects []string) bool {
	sz, err := b.srv.Subsz(&server.SubszOptions{Subscriptions: true, Limit: 1 << 20})
	if err != nil {
		return true
	}
	for _, sd := range sz.Subs {
		if !slices.ContainsFunc(subjects, func(s string) bool { return server.SubjectsCollide(s, sd.Subject) }) {
			continue
		}
		cz, err := b.srv.Connz(&server.ConnzOptions{CID: sd.Cid, State: server.ConnOpen})
		if err != nil || len(cz.Conns) == 0 {
			return true
		}
	}
	return false
}

// HasInterest reports whether anyone subscribes to subject.
func (b *Bus) HasInterest(subject string) bool {
	return b.srv.GlobalAccount().SubscriptionInterest(subject)
}

// Shutdown stops the server and waits for it.
func (b *Bus) Shutdown() {
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
}

func natsPermissions(p capabilities.Permissions) *server.Permissions {
	perms := &server.Permissions{
		// Non-nil empty allow lists deny everything.
		Publish:   &server.SubjectPermission{Allow: append([]string{}, p.Publish...)},
		Subscribe: &server.SubjectPermission{Allow: append([]string{}, p.Subscribe...)},
	}
	if p.Responses {
		perms.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: p.ResponseTTL}
	}
	return perms
}

type user struct {
	name  string
	perms *server.Permissions // nil: everything (the orchestrator only)
}

type authenticator struct {
	mu    sync.RWMutex
	users map[string]*user
	names map[string]string // public key -> user name, kept after removal for late reports
}

func (a *authenticator) name(pub string) string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if n, ok := a.names[pub]; ok {
		return n
	}
	return pub
}

func (a *authenticator) add(pub string, u *user) {
	a.mu.Lock()
	a.users[pub] = u
	a.names[pub] = u.name
	a.mu.Unlock()
}

func (a *authenticator) remove(pub string) {
	a.mu.Lock()
	delete(a.users, pub)
	a.mu.Unlock()
}

// Check admits a client that signed the server's nonce with a registered
// nkey, and gives it that key's permissions.
func (a *authenticator) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	if o == nil || o.Nkey == "" || o.Sig == "" {
		return false
	}
	a.mu.RLock()
	u, ok := a.users[o.Nkey]
	a.mu.RUnlock()
	if !ok {
		return false
	}
	pk, err := nkeys.FromPublicKey(o.Nkey)
	if err != nil {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(o.Sig)
	if err != nil {
		if sig, err = base64.StdEncoding.DecodeString(o.Sig); err != nil {
			return false
		}
	}
	if pk.Verify(c.GetNonce(), sig) != nil {
		return false
	}
	c.RegisterUser(&server.User{Username: u.name, Permissions: u.perms})
	return true
}

// logger adapts the server's log to slog and picks out refusals and
// failures to write the store.
type logger struct {
	log          *slog.Logger
	onViolation  func(Violation)
	onWriteError func(stream, cause string)
	names        func(pub string) string
}

var (
	violationRE = regexp.MustCompile(`"\$G/(?:user|nkey):([^"]*)" - (Publish|Subscription) Violation - Subject "([^"]*)"`)
	authRE      = regexp.MustCompile(`authentication error`)
)

func (l *logger) Noticef(format string, v ...any) { l.emit(slog.LevelDebug, format, v...) }
func (l *logger) Fatalf(format string, v ...any)  { l.emit(slog.LevelError, format, v...) }
func (l *logger) Debugf(format string, v ...any)  {}
func (l *logger) Tracef(format string, v ...any)  {}
func (l *logger) Warnf(format string, v ...any) {
	line := fmt.Sprintf(format, v...)
	l.writeError(line)
	if l.log != nil {
		l.log.Warn("nats: " + line)
	}
}

func (l *logger) Errorf(format string, v ...any) {
	line := fmt.Sprintf(format, v...)
	l.writeError(line)
	if l.onViolation != nil {
		if m := violationRE.FindStringSubmatch(line); m != nil {
			kind := "publish"
			if m[2] == "Subscription" {
				kind = "subscribe"
			}
			l.onViolation(Violation{User: l.names(m[1]), Kind: kind, Subject: m[3], Time: time.Now()})
		} else if authRE.MatchString(line) {
			l.onViolation(Violation{Kind: "authentication", Time: time.Now()})
		}
	}
	if l.log != nil {
		l.log.Warn("nats: " + line)
	}
}

// The lines nats-server logs when it cannot write its store, with the
// stream and the error: a message not stored, a stream or file store
// that stopped writing, JetStream turned off for lack of space or for a
// permission error.
var writeErrorREs = []*regexp.Regexp{
	regexp.MustCompile(`^JetStream failed to store a msg on stream '[^']* > ([^']*)': (.+)$`),
	regexp.MustCompile(`^JetStream stream '[^']* > ([^']*)' critical write error: (.+)$`),
	regexp.MustCompile(`^Filestore \[([^\]]*)\] Critical write error: (.+)$`),
	regexp.MustCompile(`^()Filesystem permission denied while writing msg, disabling JetStream: (.+)$`),
	regexp.MustCompile(`^()JetStream out of (?:\w+ )?(?:resources|space), will be DISABLED$`),
}

// writeError reports a line that says the store could not be written.
func (l *logger) writeError(line string) {
	if l.onWriteError == nil {
		return
	}
	for _, re := range writeErrorREs {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		cause := "no space left on device" // JetStream out of space
		if len(m) > 2 {
			cause = m[2]
		}
		l.onWriteError(m[1], cause)
		return
	}
}

func (l *logger) emit(level slog.Level, format string, v ...any) {
	if l.log != nil {
		l.log.Log(context.Background(), level, "nats: "+fmt.Sprintf(format, v...))
	}
}
