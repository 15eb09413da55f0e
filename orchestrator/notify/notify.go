// Package notify tells a person, where they are, that a call waits for
// their approval: a JSON webhook, an ntfy topic, a Slack incoming webhook
// or a Matrix room.
//
// A notification names the tool, the flow, the step, the run and the
// approval, and links to the approval page; it carries no argument value,
// no label and no secret, since it goes to a service outside Sluice.
// Answers never come back this way: a person answers with sluice approve
// or on the web page, Sluice's own authenticated paths.
//
// Notifications are sent in the background, each tried up to three times;
// a notifier that cannot be reached is logged and never delays a run.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Kinds of notifiers.
const (
	Webhook = "webhook"
	Ntfy    = "ntfy"
	Slack   = "slack"
	Matrix  = "matrix"
)

// Target is one configured notifier.
type Target struct {
	Kind string
	// URL: the webhook's, the ntfy topic's, the Slack incoming webhook's,
	// or the Matrix homeserver's.
	URL string
	// Token: for a webhook or ntfy, sent as a bearer token; for Matrix,
	// the access token. Empty for none.
	Token string
	// Room is the Matrix room id (!id:server).
	Room string
}

// Held is what a notification says about a held call.
type Held struct {
	Approval, Run, Flow, Step, Tool string
	Created                         time.Time
}

// Notifier sends notifications to its targets.
type Notifier struct {
	targets []Target
	log     *slog.Logger
	client  *http.Client
	// tries and backoff bound each notification's attempts.
	tries   int
	backoff time.Duration

	mu   sync.Mutex
	link string
	wg   sync.WaitGroup
	sem  chan struct{}
	txn  int
}

// New returns a notifier for targets; nil targets notify nobody.
func New(targets []Target, log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Notifier{targets: targets, log: log, client: &http.Client{Timeout: 10 * time.Second},
		tries: 3, backoff: time.Second, sem: make(chan struct{}, 8)}
}

// SetLink sets the address of the approval page the notifications link to
// (without its key: the person opens it in the browser that holds it).
func (n *Notifier) SetLink(link string) {
	n.mu.Lock()
	n.link = link
	n.mu.Unlock()
}

// Held notifies every target, in the background, that h waits for a
// person. When too many notifications are under way, it is dropped and
// logged.
func (n *Notifier) Held(h Held) {
	if n == nil || len(n.targets) == 0 {
		return
	}
	select {
	case n.sem <- struct{}{}:
	default:
		n.log.Warn("notification dropped: too many under way", "approval", h.Approval)
		return
	}
	n.mu.Lock()
	link := n.link
	n.txn++
	txn := n.txn
	n.mu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() { <-n.sem }()
		for _, t := range n.targets {
			n.send(t, h, link, txn)
		}
	}()
}

// Wait waits for the notifications under way.
func (n *Notifier) Wait() {
	if n != nil {
		n.wg.Wait()
	}
}

// send delivers one notification to one target, trying again on a
// failure the target may get over.
func (n *Notifier) send(t Target, h Held, link string, txn int) {
	backoff := n.backoff
	for try := 1; ; try++ {
		again, err := n.post(t, h, link, txn)
		if err == nil {
			n.log.Info("notified", "kind", t.Kind, "approval", h.Approval)
			return
		}
		if !again || try >= n.tries {
			n.log.Warn("notification not delivered", "kind", t.Kind, "target", redact(t.URL), "approval", h.Approval, "err", err)
			return
		}
		time.Sleep(backoff)
		backoff *= 2
	}
}

// Text is the notification's message.
func Text(h Held, link string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Sluice holds a call for your approval: %s in step %s of flow %s (run %s, approval %s).",
		h.Tool, h.Step, h.Flow, h.Run, h.Approval)
	if link != "" {
		fmt.Fprintf(&b, " Review and answer it at %s", link)
	} else {
		b.WriteString(" Review and answer it with: sluice approvals")
	}
	return b.String()
}

// post sends one request; again says a later try may succeed.
func (n *Notifier) post(t Target, h Held, link string, txn int) (again bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := request(ctx, t, h, link, txn)
	if err != nil {
		return false, err
	}
	if t.Token != "" {
		req.Header.Set("Authorization", "Bearer "+t.Token)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return true, err
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode/100 == 5:
		return true, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return false, fmt.Errorf("HTTP %d", resp.StatusCode)
}

// request is the notification as t's protocol sends it.
func request(ctx context.Context, t Target, h Held, link string, txn int) (*http.Request, error) {
	text := Text(h, link)
	switch t.Kind {
	case Webhook:
		body, _ := json.Marshal(map[string]any{"event": "held", "approval_id": h.Approval, "run_id": h.Run, "flow": h.Flow,
			"step": h.Step, "tool": h.Tool, "created": h.Created.UTC().Format(time.RFC3339), "link": link, "text": text})
		return jsonRequest(ctx, http.MethodPost, t.URL, body)
	case Ntfy:
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, strings.NewReader(text))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Title", "Sluice: "+h.Tool+" waits for your approval")
		req.Header.Set("Tags", "lock")
		if link != "" {
			req.Header.Set("Click", link)
		}
		return req, nil
	case Slack:
		body, _ := json.Marshal(map[string]string{"text": text})
		return jsonRequest(ctx, http.MethodPost, t.URL, body)
	case Matrix:
		// The client-server API: PUT a message event into the room, with a
		// transaction id so that a retried request posts it once.
		u := strings.TrimSuffix(t.URL, "/") + "/_matrix/client/v3/rooms/" + url.PathEscape(t.Room) +
			"/send/m.room.message/" + fmt.Sprintf("sluice-%s-%d", h.Approval, txn)
		body, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": text})
		return jsonRequest(ctx, http.MethodPut, u, body)
	}
	return nil, fmt.Errorf("unknown notifier kind %q", t.Kind)
}

func jsonRequest(ctx context.Context, method, u string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

// redact keeps a URL's scheme and host: a webhook's path holds its secret.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL)"
	}
	return u.Scheme + "://" + u.Host + "/…"
}
