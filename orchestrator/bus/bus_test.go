package bus

import (
	"errors"
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
