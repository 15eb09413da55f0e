package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// maxRetryWait bounds one wait before a request is tried again, whatever
// the API's Retry-After says: a call has a timeout, and a wait past it
// only fails later.
const maxRetryWait = 30 * time.Second

// defaultMaxTokens bounds every answer when the configuration does not
// say: a cost bound, large enough for the answers the tools ask for.
const defaultMaxTokens = 4096

// send posts one JSON request through the egress broker and returns the
// body of its 200 answer. On 429, 529 (overloaded) and other 5xx answers it
// tries again, up to retries times, after the wait the API's Retry-After
// header asks for (seconds or an HTTP date), else with backoff. Any other
// status is an error naming the status and the API's error type.
func send(ctx context.Context, call *worker.Call, endpoint string, headers map[string]string, body []byte, retries int) ([]byte, error) {
	backoff := 250 * time.Millisecond
	for try := 0; ; try++ {
		resp, err := call.HTTP(ctx, schemas.EgressRequest{Method: "POST", URL: endpoint, Headers: headers, Body: body})
		if err != nil {
			return nil, err
		}
		switch {
		case resp.Status == 200:
			return resp.Body, nil
		case (resp.Status == 429 || resp.Status >= 500) && try < retries:
			wait, ok := retryAfter(header(resp.Headers, "Retry-After"), time.Now())
			if !ok {
				wait = backoff
			}
			if dl, ok := ctx.Deadline(); ok && time.Now().Add(wait).After(dl) {
				return nil, worker.Failed("the model API answered %d and asked to wait %s, past the call's timeout", resp.Status, wait.Round(time.Second))
			}
			call.Log.Warn("model API busy; trying again", "status", resp.Status, "attempt", try+1, "wait", wait)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			}
			backoff = min(backoff*2, 5*time.Second)
		default:
			return nil, worker.Failed("the model API answered %d%s", resp.Status, apiError(resp.Body))
		}
	}
}

// header returns the value of a response header, whatever the case of its
// name.
func header(h map[string]string, name string) string {
	if v, ok := h[name]; ok {
		return v
	}
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// retryAfter reads a Retry-After header (RFC 9110 §10.2.3): a number of
// seconds or an HTTP date. ok is false when there is none or it cannot be
// read; a date in the past means at once. The wait is at most maxRetryWait.
func retryAfter(v string, now time.Time) (wait time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		return min(time.Duration(s*float64(time.Second)), maxRetryWait), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), maxRetryWait), true
}

// apiError returns the API's error type (and code, when it has one), which
// name the problem without quoting the prompt. Both OpenAI's
// {"error": {"type", "code"}} and Anthropic's {"type": "error", "error":
// {"type"}} have them.
func apiError(body []byte) string {
	var e struct {
		Error struct {
			Type string `json:"type"`
			Code any    `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(bytes.TrimSpace(body), &e) != nil || !isName(e.Error.Type) {
		return ""
	}
	if c, ok := e.Error.Code.(string); ok && isName(c) && c != e.Error.Type {
		return " (" + e.Error.Type + ": " + c + ")"
	}
	return " (" + e.Error.Type + ")"
}

// isName reports whether s looks like an error type or code
// (invalid_request_error, rate_limit_exceeded): anything else is not
// repeated, in case it is text.
func isName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}
