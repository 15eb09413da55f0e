package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/orchestrator/engine"
	"github.com/sluicehq/sluice/schemas"
)

// Rememberer lists and revokes remembered answers; the orchestrator is
// one.
type Rememberer interface {
	RememberedAnswers(ctx context.Context) ([]engine.Remembered, error)
	Revoke(ctx context.Context, id, who string) (*engine.Remembered, error)
}

// RememberedReply answers a listing or a revocation of remembered answers.
type RememberedReply struct {
	Remembered []engine.Remembered `json:"remembered"`
	Error      string              `json:"error,omitempty"`
}

// RevokeRequest asks for a remembered answer to end.
type RevokeRequest struct {
	ID  string `json:"id"`
	Who string `json:"who"`
}

// ServeRemembered answers the listing (remembered) and the revocation
// (remembered.revoke) of remembered answers until the subscriptions are
// drained.
func ServeRemembered(nc *nats.Conn, s schemas.Subjects, r Rememberer) ([]*nats.Subscription, error) {
	respond := func(m *nats.Msg, v any) {
		b, _ := json.Marshal(v)
		_ = m.Respond(b)
	}
	list, err := nc.QueueSubscribe(s.API("remembered"), Queue, func(m *nats.Msg) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			all, err := r.RememberedAnswers(ctx)
			if err != nil {
				respond(m, RememberedReply{Error: err.Error()})
				return
			}
			respond(m, RememberedReply{Remembered: all})
		}()
	})
	if err != nil {
		return nil, err
	}
	revoke, err := nc.QueueSubscribe(s.API("remembered.revoke"), Queue, func(m *nats.Msg) {
		go func() {
			var req RevokeRequest
			if err := json.Unmarshal(m.Data, &req); err != nil || req.ID == "" || req.Who == "" {
				respond(m, RememberedReply{Error: "malformed revoke request"})
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rem, err := r.Revoke(ctx, req.ID, req.Who)
			if err != nil {
				respond(m, RememberedReply{Error: err.Error()})
				return
			}
			respond(m, RememberedReply{Remembered: []engine.Remembered{*rem}})
		}()
	})
	if err != nil {
		_ = list.Unsubscribe()
		return nil, err
	}
	return []*nats.Subscription{list, revoke}, nil
}

// Remembered lists the remembered answers, revoked and expired ones
// included.
func (c *Client) Remembered(ctx context.Context) ([]engine.Remembered, error) {
	return c.remembered(ctx, "remembered", nil)
}

// Revoke ends a remembered answer, recorded as revoked by who.
func (c *Client) Revoke(ctx context.Context, id, who string) (*engine.Remembered, error) {
	body, _ := json.Marshal(RevokeRequest{ID: id, Who: who})
	out, err := c.remembered(ctx, "remembered.revoke", body)
	if err != nil {
		return nil, err
	}
	if len(out) != 1 {
		return nil, errors.New("malformed reply from the orchestrator")
	}
	return &out[0], nil
}

func (c *Client) remembered(ctx context.Context, subject string, body []byte) ([]engine.Remembered, error) {
	m, err := c.nc.RequestWithContext(ctx, c.s.API(subject), body)
	if err != nil {
		return nil, fmt.Errorf("ask the orchestrator: %w", err)
	}
	var rep RememberedReply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return nil, fmt.Errorf("malformed reply from the orchestrator")
	}
	if rep.Error != "" {
		return nil, errors.New(rep.Error)
	}
	return rep.Remembered, nil
}
