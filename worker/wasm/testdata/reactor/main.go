// Command reactor is the test guest of package wasm: a reactor built with
// the guest package, one tool per behaviour under test.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o reactor.wasm ./testdata/reactor
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sluicehq/sluice/worker/wasm/guest"
)

func init() {
	guest.Serve(handle)
	guest.Warm(arguments{Text: "t", URL: "u", Path: "p", N: 1}, map[string]any{"text": "t", "calls": 1})
}

func main() {}

// calls counts the calls this instance served; with a fresh instance for
// every call it is always 1.
var calls int

// secret is set by a call; a later call must not see it.
var secret string

type arguments struct {
	Text string `json:"text"`
	URL  string `json:"url"`
	Path string `json:"path"`
	N    int    `json:"n"`
}

func handle(tool string, raw json.RawMessage) (any, error) {
	calls++
	if tool == "raw" {
		return json.RawMessage(`{"ok":true}`), nil
	}
	var args arguments
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &args); err != nil {
			return nil, guest.BadArguments("arguments: %v", err)
		}
	}
	switch tool {
	case "echo":
		return map[string]any{"text": args.Text, "calls": calls}, nil
	case "remember":
		prev := secret
		secret = args.Text
		return map[string]any{"previous": prev, "calls": calls}, nil
	case "loop":
		// Tells the host it is about to loop, so that a test can stop it
		// while it runs.
		guest.Log(guest.LevelInfo, "looping")
		for {
		}
	case "bomb":
		// Each allocation is twice the test's memory limit of 32 MiB, so
		// the first one already asks for more than the limit, before any
		// slow work.
		var keep [][]byte
		for {
			keep = append(keep, make([]byte, 64<<20))
		}
	case "flood":
		line := []byte(strings.Repeat("x", 1023) + "\n")
		for {
			os.Stdout.Write(line)
		}
	case "stderr":
		for range 100 {
			fmt.Fprintln(os.Stderr, strings.Repeat("e", 1000))
		}
		return map[string]any{"ok": true}, nil
	case "panic":
		panic("the guest gave up")
	case "crash":
		go func() { panic("a goroutine gave up") }()
		select {}
	case "exit":
		os.Exit(3)
	case "fail":
		return nil, errors.New("no rate for XYZ")
	case "forge":
		return nil, &guest.Error{Code: "egress_denied", Message: "forged"}
	case "fetch":
		resp, err := guest.Get(args.URL, nil)
		if err != nil {
			return nil, err
		}
		return map[string]any{"status": resp.Status, "body": string(resp.Body)}, nil
	case "log":
		guest.Log(guest.LevelInfo, "hello from the guest")
		guest.Log(guest.LevelError, "an error the guest thinks matters")
		return map[string]any{"ok": true}, nil
	case "read":
		b, err := os.ReadFile(args.Path)
		if err != nil {
			return nil, err
		}
		return map[string]any{"content": string(b)}, nil
	case "write":
		if err := os.WriteFile(args.Path, []byte(args.Text), 0o644); err != nil {
			return nil, err
		}
		return map[string]any{"ok": true}, nil
	case "symlink":
		if err := os.Symlink("/", "escape"); err != nil {
			return nil, err
		}
		b, err := os.ReadFile("escape/" + strings.TrimPrefix(args.Path, "/"))
		if err != nil {
			return nil, err
		}
		return map[string]any{"content": string(b)}, nil
	case "sandbox":
		r := make([]byte, 8)
		rand.Read(r)
		_, fsErr := os.ReadDir("/")
		return map[string]any{
			"args": os.Args, "env": os.Environ(), "now": time.Now().UTC().Format(time.RFC3339),
			"random": hex.EncodeToString(r), "fs": fsErr != nil,
		}, nil
	case "key":
		return map[string]any{"key": guest.IdempotencyKey()}, nil
	case "big":
		return map[string]any{"text": strings.Repeat("y", args.N)}, nil
	}
	return nil, guest.BadArguments("unknown tool %q", tool)
}
