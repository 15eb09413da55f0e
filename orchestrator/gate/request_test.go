package gate

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/schemas"
)

// A tool call's message is addressed to the tool and carries the
// arguments, and in its headers the run, the step, the message id, the
// idempotency key, the label (encoded as encoding/json encodes it) and the
// orchestrator when it has an id; each header has one value, its own.
func TestRequestHeaders(t *testing.T) {
	s := &flow.Step{ID: "pay", Call: "payment.charge", Worker: "payment"}
	label := ifc.New(ifc.Untrusted, []string{"pii"}, []string{ifc.SourceUser, ifc.WebSource("shop.example")})
	body := []byte(`{"amount":12}`)
	for _, orch := range []string{"", "orch-1"} {
		g := &Gate{cfg: Config{Orchestrator: orch}}
		msg := g.request(s, "run-1", "msg-1", "run-1/pay", label, body)
		lb, err := json.Marshal(label)
		if err != nil {
			t.Fatal(err)
		}
		want := nats.Header{schemas.HeaderRun: {"run-1"}, schemas.HeaderStep: {"pay"}, schemas.HeaderMsg: {"msg-1"},
			schemas.HeaderIdempotencyKey: {"run-1/pay"}, schemas.HeaderLabel: {string(lb)}}
		if orch != "" {
			want[schemas.HeaderOrchestrator] = []string{orch}
		}
		if msg.Subject != (schemas.Subjects{}).Tool("payment", "charge") || string(msg.Data) != string(body) {
			t.Errorf("orchestrator %q: message to %s with %s", orch, msg.Subject, msg.Data)
		}
		if !maps.EqualFunc(msg.Header, want, slices.Equal) {
			t.Errorf("orchestrator %q: headers %v, want %v", orch, msg.Header, want)
		}
		// A header added later (the trace context) or set again changes
		// no other.
		msg.Header.Set("traceparent", "00-1")
		msg.Header[schemas.HeaderRun] = append(msg.Header[schemas.HeaderRun], "again")
		if got := msg.Header.Get(schemas.HeaderStep); got != "pay" || len(msg.Header[schemas.HeaderStep]) != 1 {
			t.Errorf("orchestrator %q: step header %q after another changed", orch, msg.Header[schemas.HeaderStep])
		}
	}
}
