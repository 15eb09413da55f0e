package bus

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/schemas"
)

// The subject on which one orchestrator asks another to cancel a run is
// the orchestrators' alone: the server refuses a worker's request on it
// (one with a network grant, whose egress subject is the one it may
// publish on, and one without) and a client's (which may publish on the
// API's subjects), and the orchestrator listening on it receives none.
func TestOnlyOrchestratorsReachAnOrchestratorsSubject(t *testing.T) {
	b, err := Start(Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	s := schemas.Subjects{}
	subject := s.Orchestrator("01ORCHESTRATOR", "cancel")
	orch, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer orch.Close()
	got := make(chan *nats.Msg, 8)
	if _, err := orch.Subscribe(subject, func(m *nats.Msg) { got <- m }); err != nil {
		t.Fatal(err)
	}
	if err := orch.Flush(); err != nil {
		t.Fatal(err)
	}

	users := map[string]capabilities.Permissions{"client": api.ClientPermissions(s)}
	inboxes := map[string]string{"client": s.Inbox("client")}
	for _, name := range []string{"web", "payment"} {
		m, err := capabilities.Load("builtin:" + name)
		if err != nil {
			t.Fatal(err)
		}
		users["worker:"+name+":1"], inboxes["worker:"+name+":1"] = m.Permissions(s), s.Inbox(name)
	}
	for user, perms := range users {
		seed, remove, err := b.AddUser(user, perms)
		if err != nil {
			t.Fatal(err)
		}
		defer remove()
		nc, errs := connectAs(t, b, seed, inboxes[user])
		if err := nc.Publish(subject, []byte(`{"id":"01RUN","who":"mallory"}`)); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Fatalf("%s: %v, want a permission violation", user, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s published on %s without a permission violation", user, subject)
		}
	}
	// The orchestrator's own round trip: whatever reached the subject
	// came before it.
	if err := orch.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		t.Fatalf("the orchestrator's subject received %q", m.Data)
	default:
	}
}
