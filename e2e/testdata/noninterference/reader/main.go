//go:build wasip1

// Command reader is a third-party tool for the noninterference test
// (e2e/noninterference_test.go): read fetches a page through the egress
// broker and returns its text, and a note when the page has a line
// starting "NOTE:"; a page that answers with another status than 200 makes
// the call fail with the page's own text as the error. So whoever writes
// the page decides what the tool returns, whether it fails, what its error
// says and which of its fields are there.
//
// Built at test time:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o reader.wasm ./e2e/testdata/noninterference/reader
package main

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/sluicehq/sluice/worker/wasm/guest"
)

func init() { guest.Serve(handle) }

func main() {}

func handle(tool string, raw json.RawMessage) (any, error) {
	var a struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(raw, &a); err != nil || tool != "read" {
		return nil, guest.BadArguments("want read {url}")
	}
	resp, err := guest.Get(a.URL, nil)
	if err != nil {
		return nil, err
	}
	body := string(resp.Body)
	if resp.Status != 200 {
		return nil, errors.New(body)
	}
	out := map[string]any{"text": body}
	for line := range strings.Lines(body) {
		if note, ok := strings.CutPrefix(line, "NOTE:"); ok {
			out["note"] = strings.TrimSpace(note)
		}
	}
	return out, nil
}
