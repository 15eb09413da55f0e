// Package web is the built-in web worker. Its one tool, fetch, asks the
// orchestrator's egress broker for an HTTP GET of a URL and turns the
// response into text: HTML becomes its title and visible text, text/plain
// passes through, anything else gives an empty text.
//
// The worker never dials the network itself: the broker checks the
// destination against the worker's grants and performs the request. What a
// page says is written by whoever controls it, so the output is untrusted;
// the conversion drops markup that is not shown (scripts, styles, comments,
// attributes) but never tries to hide text that a page hid with CSS, and it
// keeps every visible line intact, injected instructions included.
package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// Bounds of the output, in bytes of UTF-8; both are cut on a rune boundary.
const (
	maxText  = 256 << 10
	maxTitle = 1 << 10
)

// Headers of every request. The broker may add others (secrets for their
// hosts); the worker never does.
const (
	acceptHeader = "text/html,text/plain;q=0.9,*/*;q=0.1"
	userAgent    = "sluice-web/1"
)

// New returns the web worker's handlers. The worker takes no configuration.
func New(env worker.Env) (map[string]worker.Handler, error) {
	if err := decodeConfig(env.Config); err != nil {
		return nil, err
	}
	return map[string]worker.Handler{"fetch": fetch}, nil
}

var _ worker.Builtin = New

func decodeConfig(raw json.RawMessage) error {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var cfg struct{}
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("web config: the web worker takes no configuration: %w", err)
	}
	return nil
}

type fetchArgs struct {
	URL string `json:"url"`
}

type fetchOutput struct {
	URL         string `json:"url"`
	Status      int    `json:"status"`
	ContentType string `json:"content_type"`
	Title       string `json:"title"`
	Text        string `json:"text"`
}

func fetch(ctx context.Context, call *worker.Call) (any, error) {
	var args fetchArgs
	if err := decodeArgs(call.Args, &args); err != nil {
		return nil, err
	}
	u, err := url.Parse(args.URL)
	if err != nil {
		return nil, worker.BadArguments("url is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, worker.BadArguments("url must be an http or https URL")
	}
	if u.Host == "" {
		return nil, worker.BadArguments("url has no host")
	}
	resp, err := call.HTTP(ctx, schemas.EgressRequest{
		Method:  "GET",
		URL:     args.URL,
		Headers: map[string]string{"Accept": acceptHeader, "User-Agent": userAgent},
	})
	if err != nil {
		var re *schemas.ReplyError
		if errors.As(err, &re) {
			return nil, err
		}
		return nil, fmt.Errorf("egress request: %w", err)
	}
	out := fetchOutput{URL: args.URL, Status: resp.Status}
	header := headerValue(resp.Headers, "Content-Type")
	mediaType, _, err := mime.ParseMediaType(header)
	if err != nil {
		// A missing or malformed Content-Type is treated as
		// application/octet-stream (RFC 9110 §8.3): no text.
		return out, nil
	}
	out.ContentType = mediaType
	switch mediaType {
	case "text/html", "application/xhtml+xml":
		doc, err := parseHTML(resp.Body, header, u)
		if err != nil {
			return nil, worker.Failed("the response is not readable HTML")
		}
		out.Title = truncate(doc.title, maxTitle)
		out.Text = truncate(doc.text, maxText)
	case "text/plain":
		out.Text = truncate(decodeText(resp.Body, header, false), maxText)
	}
	return out, nil
}

// decodeArgs unmarshals arguments into v. Its errors name the field that
// failed, never the value.
func decodeArgs(raw json.RawMessage, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return worker.BadArguments("argument %s: expected %s", te.Field, te.Type)
		}
		return worker.BadArguments("arguments are not a JSON object of the expected shape")
	}
	return nil
}

// headerValue looks a header up case-insensitively: the broker's map may
// use any case.
func headerValue(h map[string]string, name string) string {
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

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
