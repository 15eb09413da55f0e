// Package api is how clients on the same machine reach a running
// orchestrator: the orchestrator writes where its bus is, and a client
// credential, under the state directory; clients make requests on
// sluice.api.* with that credential, which may do nothing else.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/schemas"
)

// Endpoint is what a running orchestrator publishes in
// <state>/run/api.json.
type Endpoint struct {
	URL    string `json:"url"`
	Prefix string `json:"prefix"`
	Creds  string `json:"creds"`
	PID    int    `json:"pid"`
}

const clientName = "client"

// ClientPermissions lets a client make API requests and read their replies.
func ClientPermissions(s schemas.Subjects) capabilities.Permissions {
	return capabilities.Permissions{
		Publish:   []string{s.API(">")},
		Subscribe: []string{s.Inbox(clientName) + ".>"},
	}
}

func endpointFile(state string) string { return filepath.Join(state, "run", "api.json") }

// Publish writes the endpoint and the client's seed (0600) under state.
// The returned function removes them.
func Publish(state string, e Endpoint, seed []byte) (func(), error) {
	dir := filepath.Join(state, "run")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	e.Creds = filepath.Join(dir, "client.nk")
	if err := os.WriteFile(e.Creds, seed, 0o600); err != nil {
		return nil, fmt.Errorf("write client credentials: %w", err)
	}
	b, _ := json.Marshal(e)
	if err := os.WriteFile(endpointFile(state), b, 0o600); err != nil {
		return nil, fmt.Errorf("write api endpoint: %w", err)
	}
	return func() {
		os.Remove(endpointFile(state))
		os.Remove(e.Creds)
	}, nil
}

// AnswerRequest is the body of an answer to a held call.
type AnswerRequest struct {
	ID       string `json:"id"`
	Approved bool   `json:"approved"`
	Who      string `json:"who"`
}

// Response of every API call.
type Response struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Answerer answers held calls; the engine is one.
type Answerer func(id string, approved bool, who string) error

// Serve answers API requests until the subscription is drained.
func Serve(nc *nats.Conn, s schemas.Subjects, answer Answerer) (*nats.Subscription, error) {
	return nc.Subscribe(s.API("answer"), func(m *nats.Msg) {
		var req AnswerRequest
		resp := Response{OK: true}
		if err := json.Unmarshal(m.Data, &req); err != nil || req.ID == "" || req.Who == "" {
			resp = Response{Error: "malformed request"}
		} else if err := answer(req.ID, req.Approved, req.Who); err != nil {
			resp = Response{Error: err.Error()}
		}
		b, _ := json.Marshal(resp)
		_ = m.Respond(b)
	})
}

// ErrNotRunning means no orchestrator is running on the state directory.
var ErrNotRunning = errors.New("no orchestrator is running on this state directory")

// Answer approves or denies a held call through the orchestrator running
// on state.
func Answer(ctx context.Context, state, id string, approved bool, who string) error {
	b, err := os.ReadFile(endpointFile(state))
	if err != nil {
		return fmt.Errorf("%w (%s)", ErrNotRunning, state)
	}
	var e Endpoint
	if err := json.Unmarshal(b, &e); err != nil {
		return fmt.Errorf("read %s: %w", endpointFile(state), err)
	}
	seed, err := os.ReadFile(e.Creds)
	if err != nil {
		return fmt.Errorf("%w (%v)", ErrNotRunning, err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		return fmt.Errorf("client credentials: %w", err)
	}
	pub, _ := kp.PublicKey()
	s := schemas.Subjects{Prefix: e.Prefix}
	nc, err := nats.Connect(e.URL, nats.Nkey(pub, kp.Sign), nats.CustomInboxPrefix(s.Inbox(clientName)),
		nats.Name("sluice-client"), nats.MaxReconnects(0))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	defer nc.Close()
	body, _ := json.Marshal(AnswerRequest{ID: id, Approved: approved, Who: who})
	rep, err := nc.RequestWithContext(ctx, s.API("answer"), body)
	if err != nil {
		return fmt.Errorf("ask the orchestrator: %w", err)
	}
	var resp Response
	if err := json.Unmarshal(rep.Data, &resp); err != nil {
		return fmt.Errorf("malformed response")
	}
	if !resp.OK {
		return errors.New(resp.Error)
	}
	return nil
}
