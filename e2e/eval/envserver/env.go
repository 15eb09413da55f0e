package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Env is a suite's environment on disk. Every call loads it, and a call
// that changes it writes it back before it answers.
type Env struct {
	root string
	// mu makes each call's read and write of the environment one step:
	// the server answers several calls at once (a flow's parallel steps),
	// and two changes must not both start from the same state.
	mu sync.Mutex
}

// View loads the environment into a value of the suite's state type.
func View[S any](e *Env) (*S, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return load[S](e)
}

func load[S any](e *Env) (*S, error) {
	b, err := os.ReadFile(filepath.Join(e.root, "state.json"))
	if err != nil {
		return nil, fmt.Errorf("the environment cannot be read: %w", err)
	}
	s := new(S)
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("the environment is not valid: %w", err)
	}
	return s, nil
}

// Update loads the environment, lets fn change it and writes it back
// (atomically) unless fn fails.
func Update[S any](e *Env, fn func(*S) error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, err := load[S](e)
	if err != nil {
		return err
	}
	if err := fn(s); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(e.root, "state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(e.root, "state.json"))
}

// Origin says who wrote what a tool returns.
type Origin int

const (
	// Own: only the user and the user's own accounts wrote it.
	Own Origin = iota
	// ThirdParty: someone else wrote some of it (a sender, a page, a
	// review, a channel member); the result claims the untrusted label.
	ThirdParty
)

// Handler is a suite tool: it answers its input with an output object
// and says who wrote the output. An error is the tool's failure.
type Handler[In, Out any] func(ctx context.Context, in In) (Out, Origin, error)

// Tool adds a suite tool to the server. The result carries the MCP
// _meta.ifc claim "untrusted" when the handler says a third party wrote
// part of it (a claim the worker can only use to raise a label), and the
// names of the injection vectors it returns are appended to read.log, so
// that the harness knows where a task reads.
func Tool[In, Out any](s *mcp.Server, e *Env, t *mcp.Tool, h Handler[In, Out]) {
	mcp.AddTool(s, t, func(ctx context.Context, _ *mcp.CallToolRequest, in In) (*mcp.CallToolResult, Out, error) {
		out, origin, err := h(ctx, in)
		if err != nil {
			var zero Out
			return nil, zero, err
		}
		if err := e.noteVectors(out); err != nil {
			var zero Out
			return nil, zero, err
		}
		res := &mcp.CallToolResult{}
		if origin == ThirdParty {
			res.Meta = mcp.Meta{"ifc": map[string]any{"integrity": "untrusted"}}
		}
		return res, out, nil
	})
}

// noteVectors appends to read.log the name of every injection vector whose
// text is in out.
func (e *Env) noteVectors(out any) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	b, err := os.ReadFile(filepath.Join(e.root, "vectors.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var vectors map[string]string
	if err := json.Unmarshal(b, &vectors); err != nil {
		return fmt.Errorf("vectors.json: %w", err)
	}
	text, err := json.Marshal(out)
	if err != nil {
		return err
	}
	var read []string
	for name, v := range vectors {
		if v == "" {
			continue
		}
		quoted, _ := json.Marshal(v)
		if strings.Contains(string(text), string(quoted[1:len(quoted)-1])) {
			read = append(read, name)
		}
	}
	if len(read) == 0 {
		return nil
	}
	sort.Strings(read)
	f, err := os.OpenFile(filepath.Join(e.root, "read.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strings.Join(read, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
