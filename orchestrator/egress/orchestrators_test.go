package egress

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/orchestrator/bus"
	"github.com/sluicehq/sluice/schemas"
)

// Two orchestrators share a deployment, and so every worker's egress
// subject: a request names the orchestrator that delivered its call, and
// that one's broker, which knows the call, answers it; the other stays
// silent, instead of refusing a call it does not know. A request naming
// none is answered by both, as with one orchestrator.
func TestBrokerAnswersItsOwnCalls(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) }))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	b, err := bus.Start(bus.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	s := schemas.Subjects{}
	for _, owner := range []string{"A", "B"} {
		nc, err := b.Connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		br := New(Config{Grants: map[string][]string{"web": {host}}, Orchestrator: owner,
			Track: func(_, msg, _ string) bool { return msg == "call-of-"+owner }})
		t.Cleanup(br.Close)
		sub, err := br.Serve(nc, s)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Every answer to one request, until none comes for a while.
	answers := func(msgID, orchestrator string) []schemas.EgressResponse {
		t.Helper()
		inbox := nats.NewInbox()
		sub, err := nc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		m := nats.NewMsg(s.Egress("web"))
		m.Reply = inbox
		m.Header.Set(schemas.HeaderMsg, msgID)
		if orchestrator != "" {
			m.Header.Set(schemas.HeaderOrchestrator, orchestrator)
		}
		m.Data = request(t, srv.URL+"/")
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		var out []schemas.EgressResponse
		for {
			r, err := sub.NextMsg(2 * time.Second)
			if err != nil {
				return out
			}
			var resp schemas.EgressResponse
			if err := json.Unmarshal(r.Data, &resp); err != nil {
				t.Fatal(err)
			}
			out = append(out, resp)
		}
	}
	for _, owner := range []string{"A", "B"} {
		got := answers("call-of-"+owner, owner)
		if len(got) != 1 || got[0].Error != nil || string(got[0].Body) != "hello" {
			t.Fatalf("a call of %s: answers %+v, want %s's response alone", owner, got, owner)
		}
	}
	got := answers("call-of-A", "")
	if len(got) != 2 {
		t.Fatalf("a request naming no orchestrator: %d answers, want both brokers'", len(got))
	}
}
