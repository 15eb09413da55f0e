package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/schemas"
)

// clusterOf2 runs two NATS servers routed to each other on 127.0.0.1,
// with a token for clients, and waits until the route is up.
func clusterOf2(t *testing.T, token string) (a, b *server.Server) {
	t.Helper()
	start := func(name string, routes string) *server.Server {
		opts := &server.Options{ServerName: name, Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
			Authorization: token, Cluster: server.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: -1}}
		if routes != "" {
			opts.Routes = server.RoutesFromStr(routes)
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("server %s not ready", name)
		}
		t.Cleanup(s.Shutdown)
		return s
	}
	a = start("a", "")
	b = start("b", "nats://"+a.ClusterAddr().String())
	deadline := time.Now().Add(10 * time.Second)
	for a.NumRoutes() == 0 || b.NumRoutes() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the servers did not route to each other")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return a, b
}

// A worker given the servers of a cluster connects to the first, and when
// that server dies it moves to the other and goes on serving calls, with
// no restart.
func TestWorkerMovesToAnotherServer(t *testing.T) {
	const token = "s3cret"
	a, b := clusterOf2(t, token)
	m, err := capabilities.Load("builtin:payment")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := Connect(ConnectConfig{URL: a.ClientURL() + "," + b.ClientURL(), Token: token, Worker: m.Worker})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nc.ConnectedUrl() != a.ClientURL() {
		t.Fatalf("connected to %s, want the first server of the list, %s", nc.ConnectedUrl(), a.ClientURL())
	}
	answer := func(ctx context.Context, c *Call) (any, error) {
		return map[string]any{"balance": 1, "currency": "EUR"}, nil
	}
	svc := &Service{Manifest: m, Subjects: schemas.Subjects{},
		Handlers: map[string]Handler{"balance": answer, "charge": answer}}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- svc.Serve(ctx, nc) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	// The caller stays on b throughout.
	caller, err := nats.Connect(b.ClientURL(), nats.Token(token))
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	subject := schemas.Subjects{}.Tool("payment", "balance")
	call := func() error {
		// Until the worker has (re)subscribed there are no responders:
		// try again until the deadline.
		deadline := time.Now().Add(10 * time.Second)
		for {
			rep, err := caller.Request(subject, []byte(`{}`), 2*time.Second)
			if err == nil {
				if !strings.Contains(string(rep.Data), `"output"`) {
					t.Fatalf("reply %s", rep.Data)
				}
				return nil
			}
			if time.Now().After(deadline) {
				return err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := call(); err != nil {
		t.Fatalf("call before the server died: %v", err)
	}

	a.Shutdown()
	if err := call(); err != nil {
		t.Fatalf("call after the worker's server died: %v", err)
	}
	if nc.ConnectedUrl() != b.ClientURL() || nc.IsClosed() {
		t.Fatalf("worker connected to %q (closed %v), want %s", nc.ConnectedUrl(), nc.IsClosed(), b.ClientURL())
	}
}
