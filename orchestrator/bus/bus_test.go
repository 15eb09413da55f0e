package bus

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/schemas"
)

type violations struct {
	mu   sync.Mutex
	list []Violation
}

func (v *violations) add(x Violation) { v.mu.Lock(); v.list = append(v.list, x); v.mu.Unlock() }
func (v *violations) find(kind, subject string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, x := range v.list {
		if x.Kind == kind && x.Subject == subject {
			return true
		}
	}
	return false
}

func checkFor(t *testing.T, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func connectAs(t *testing.T, b *Bus, seed []byte, inbox string) (*nats.Conn, chan error) {
	t.Helper()
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	errs := make(chan error, 16)
	nc, err := nats.Connect(b.ClientURL(), nats.Nkey(pub, kp.Sign), nats.CustomInboxPrefix(inbox),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

func TestWorkerPermissionsAreEnforcedByTheServer(t *testing.T) {
	var seen violations
	b, err := Start(Config{StoreDir: t.TempDir(), OnViolation: seen.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	s := schemas.Subjects{}
	orch, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer orch.Close()
	got := make(chan *nats.Msg, 4)
	if _, err := orch.Subscribe(s.Tool("payment", "charge"), func(m *nats.Msg) { got <- m }); err != nil {
		t.Fatal(err)
	}
	orch.Flush()

	web, _ := capabilities.Load("builtin:web")
	seed, remove, err := b.AddUser("worker:web:1", web.Permissions(s))
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	nc, errs := connectAs(t, b, seed, s.Inbox("web"))

	// A forged call to another worker's tool is refused by the server.
	if err := nc.Publish(s.Tool("payment", "charge"), []byte(`{"amount":1}`)); err != nil {
		t.Fatal(err)
	}
	// So is listening to another worker's calls.
	if _, err := nc.Subscribe(s.ToolWildcard("payment"), func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	var perm int
	timeout := time.After(5 * time.Second)
	for perm < 2 {
		select {
		case err := <-errs:
			if errors.Is(err, nats.ErrPermissionViolation) {
				perm++
			}
		case <-timeout:
			t.Fatalf("got %d permission violations, want 2", perm)
		}
	}
	checkFor(t, 5*time.Second, func() bool {
		return seen.find("publish", s.Tool("payment", "charge")) && seen.find("subscribe", s.ToolWildcard("payment"))
	})
	seen.mu.Lock()
	for _, v := range seen.list {
		if v.User != "worker:web:1" {
			t.Errorf("violation attributed to %q, want worker:web:1", v.User)
		}
	}
	seen.mu.Unlock()
	orch.Flush()
	select {
	case m := <-got:
		t.Fatalf("payment subscriber received a forged call: %q", m.Data)
	default:
	}

	// The worker may answer calls sent to its own tools.
	if _, err := nc.Subscribe(s.Tool("web", "fetch"), func(m *nats.Msg) { m.Respond([]byte("pong")) }); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	rep, err := orch.Request(s.Tool("web", "fetch"), nil, 5*time.Second)
	if err != nil || string(rep.Data) != "pong" {
		t.Fatalf("reply: %v %v", rep, err)
	}
}

func TestUnknownKeyIsRefused(t *testing.T) {
	var seen violations
	b, err := Start(Config{StoreDir: t.TempDir(), OnViolation: seen.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	_, err = nats.Connect(b.ClientURL(), nats.Nkey(pub, kp.Sign), nats.MaxReconnects(0))
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect with an unregistered key: %v", err)
	}
	// A removed user cannot come back.
	seed, remove, _ := b.AddUser("worker:x:1", capabilities.Permissions{})
	remove()
	kp2, _ := nkeys.FromSeed(seed)
	pub2, _ := kp2.PublicKey()
	if _, err := nats.Connect(b.ClientURL(), nats.Nkey(pub2, kp2.Sign), nats.MaxReconnects(0)); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect with a removed key: %v", err)
	}
	checkFor(t, 5*time.Second, func() bool { return seen.find("authentication", "") })
}

// A worker process that dies leaves its connection open on the server
// until the server reads the end of its socket; meanwhile the server
// still gives that connection its share of the queue group's messages,
// and nobody answers them. Removing the user must close that connection
// and return only once none of its subscriptions is left, so that a call
// sent again after the exit reaches a live replica. The dead process is
// played by a connection whose socket stays open while nothing reads or
// writes it: a frozen proxy between the client and the server.
func TestRemoveLetsGoOfADeadProcess(t *testing.T) {
	b, err := Start(Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	perms := capabilities.Permissions{Subscribe: []string{"tool.pay.*", "_INBOX.pay.>"}, Responses: true, ResponseTTL: time.Minute}
	answer := func(nc *nats.Conn, who string) {
		if _, err := nc.QueueSubscribe("tool.pay.*", "pay", func(m *nats.Msg) { _ = m.Respond([]byte(who)) }); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	liveSeed, _, err := b.AddUser("worker:pay:0.0", perms)
	if err != nil {
		t.Fatal(err)
	}
	live, _ := connectAs(t, b, liveSeed, "_INBOX.pay.live")
	answer(live, "live")

	deadSeed, removeDead, err := b.AddUser("worker:pay:1.0", perms)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFreezer(t, strings.TrimPrefix(b.ClientURL(), "nats://"))
	kp, _ := nkeys.FromSeed(deadSeed)
	pub, _ := kp.PublicKey()
	dead, err := nats.Connect("nats://"+proxy.addr(), nats.Nkey(pub, kp.Sign), nats.CustomInboxPrefix("_INBOX.pay.dead"), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dead.Close)
	answer(dead, "dead")

	orch, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(orch.Close)
	// Both replicas answer while both live.
	seen := map[string]bool{}
	for i := 0; i < 200 && len(seen) < 2; i++ {
		m, err := orch.Request("tool.pay.charge", nil, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		seen[string(m.Data)] = true
	}
	if !seen["dead"] || !seen["live"] {
		t.Fatalf("answers came from %v; want both replicas", seen)
	}

	proxy.freeze()
	removeDead()
	// Every call now goes to the live replica. Were the frozen
	// connection still subscribed, about half of them would go there and
	// get no answer.
	const calls = 32
	var wg sync.WaitGroup
	lost := make(chan error, calls)
	for range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := orch.Request("tool.pay.charge", nil, 20*time.Second)
			switch {
			case err != nil:
				lost <- err
			case string(m.Data) != "live":
				lost <- fmt.Errorf("answered by %s", m.Data)
			}
		}()
	}
	wg.Wait()
	close(lost)
	n := 0
	for err := range lost {
		n++
		t.Log(err)
	}
	if n > 0 {
		t.Fatalf("%d of %d calls sent after the user was removed got no answer from the live replica", n, calls)
	}
}

// freezer is a TCP proxy in front of the server that can stop moving
// bytes while keeping both sockets open.
type freezer struct {
	ln     net.Listener
	mu     sync.Mutex
	frozen bool
	conns  []net.Conn
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln}
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, s)
			f.mu.Unlock()
			go f.pipe(c, s)
			go f.pipe(s, c)
		}
	}()
	return f
}

func (f *freezer) addr() string { return f.ln.Addr().String() }

func (f *freezer) freeze() {
	f.mu.Lock()
	f.frozen = true
	f.mu.Unlock()
}

// pipe copies from one socket to the other until frozen; then it reads
// nothing more, so that what the server writes stays in the socket's
// buffers, as it does for a process that is gone.
func (f *freezer) pipe(from, to net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		f.mu.Lock()
		frozen := f.frozen
		f.mu.Unlock()
		if frozen || err != nil {
			return
		}
		if _, err := to.Write(buf[:n]); err != nil {
			return
		}
	}
}
