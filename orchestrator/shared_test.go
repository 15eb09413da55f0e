package orchestrator

import (
	"encoding/json"
	"testing"

	"github.com/sluicehq/sluice/orchestrator/api"
)

// TestHeldWait: a follower replies with a run held for a person only for
// a client that gives up waiting (--wait-timeout, --wait=false), and only
// once its wait is over: counted from the request when it began before
// (its orchestrator had told it of the held call), else from when the
// run is first seen held. A client without a wait timeout waits for the
// run's end.
func TestHeldWait(t *testing.T) {
	held := api.RunReply{Result: json.RawMessage(`{"run_id":"R1","status":"held"}`)}
	if !isHeld(held) || isHeld(api.RunReply{Result: json.RawMessage(`{"status":"completed"}`)}) ||
		isHeld(api.RunReply{Result: held.Result, Error: "stopped"}) {
		t.Fatal("isHeld tells a held run from the others wrongly")
	}

	t.Run("until the run ends", func(t *testing.T) {
		var h heldWait
		h.start(nil)
		defer h.stop()
		if h.held(held) || h.timer() != nil {
			t.Fatal("a client without a wait timeout is replied to with the run held")
		}
	})
	t.Run("began before it asked", func(t *testing.T) {
		var h heldWait
		h.start(&api.HeldWait{MS: 1, Began: true})
		defer h.stop()
		if h.timer() == nil {
			t.Fatal("the client's wait, begun before, is not counted from the request")
		}
		if _, ok := h.over(); ok {
			t.Fatal("replied before the run was seen held")
		}
		if !h.held(held) {
			t.Fatal("the run seen held after the client's wait was over is not replied with")
		}
	})
	t.Run("begins when seen held", func(t *testing.T) {
		var h heldWait
		h.start(&api.HeldWait{MS: 1})
		defer h.stop()
		if h.timer() != nil {
			t.Fatal("the wait started before the run was seen held")
		}
		if h.held(held) {
			t.Fatal("replied with the run held as soon as it was seen held")
		}
		<-h.timer()
		rep, ok := h.over()
		if !ok || string(rep.Result) != string(held.Result) {
			t.Fatalf("over = %+v, %v; want the run held", rep, ok)
		}
		if h.timer() != nil {
			t.Fatal("the timer fires again")
		}
	})
	t.Run("without waiting", func(t *testing.T) {
		var h heldWait
		h.start(&api.HeldWait{Began: true})
		defer h.stop()
		<-h.timer()
		h.over()
		if !h.held(held) {
			t.Fatal("a client that does not wait is not replied to with the run held")
		}
	})
}
