// Package files is the files worker: it reads, writes and lists files under
// the root its manifest's file grant names, and nothing else.
//
// Every path goes through an os.Root opened on the granted root: "..",
// absolute paths and symbolic links that lead out of the root are refused
// by the standard library, not by string checks here. Writing needs a
// grant with write: true. Reads are bounded; text that is not UTF-8 is
// refused rather than mangled.
package files

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/sluicehq/sluice/worker"
)

// MaxRead is the largest file read returns.
const MaxRead = 512 << 10

type files struct {
	root  *os.Root
	write bool
}

// New opens the granted root. A worker without a file grant is an error:
// it could do nothing.
func New(env worker.Env) (map[string]worker.Handler, error) {
	if len(env.Config) > 0 && string(env.Config) != "{}" && string(env.Config) != "null" {
		return nil, errors.New("files config: the files worker takes no config; grant a root with grants: {files: {root: …}}")
	}
	if env.Manifest == nil || env.Manifest.Grants.Files == nil || env.Manifest.Grants.Files.Root == "" {
		return nil, errors.New("files: no file root is granted; add grants: {files: {root: ./files}} to the worker in sluice.yaml")
	}
	g := env.Manifest.Grants.Files
	if err := os.MkdirAll(g.Root, 0o700); err != nil {
		return nil, fmt.Errorf("files: create root: %w", err)
	}
	root, err := os.OpenRoot(g.Root)
	if err != nil {
		return nil, fmt.Errorf("files: open root: %w", err)
	}
	f := &files{root: root, write: g.Write}
	return map[string]worker.Handler{"read": f.read, "write": f.writeFile, "list": f.list}, nil
}

// clean checks a path given by a call. os.Root enforces the root; this
// gives clearer errors for the common mistakes.
func clean(p string) (string, error) {
	if p == "" {
		return ".", nil
	}
	if filepath.IsAbs(p) || strings.HasPrefix(p, "/") {
		return "", worker.BadArguments("path must be relative to the granted root")
	}
	if slices.Contains(strings.Split(filepath.ToSlash(p), "/"), "..") {
		return "", worker.BadArguments("path may not contain \"..\"")
	}
	if strings.ContainsRune(p, 0) {
		return "", worker.BadArguments("path contains a NUL byte")
	}
	return filepath.Clean(p), nil
}

// refused turns an os.Root error into a reply error that names the path
// as given, not the root on this machine.
func refused(op, p string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return worker.Failed("%s %s: no such file or directory", op, p)
	case errors.Is(err, fs.ErrPermission):
		return worker.Failed("%s %s: permission denied", op, p)
	case strings.Contains(err.Error(), "escapes from parent") || strings.Contains(err.Error(), "path escapes"):
		return worker.BadArguments("%s %s: the path leaves the granted root", op, p)
	}
	return worker.Failed("%s %s: %s", op, p, errors.Unwrap(err))
}

// open opens the path a call names in its path argument, inside the root;
// it returns the cleaned path and the path as given, for messages.
func (f *files) open(c *worker.Call, op string) (h *os.File, p, given string, err error) {
	var a struct {
		Path string `json:"path"`
	}
	if err := c.Decode(&a); err != nil {
		return nil, "", "", err
	}
	if p, err = clean(a.Path); err != nil {
		return nil, "", "", err
	}
	if h, err = f.root.Open(p); err != nil {
		return nil, "", "", refused(op, a.Path, err)
	}
	return h, p, a.Path, nil
}

func (f *files) read(_ context.Context, c *worker.Call) (any, error) {
	h, p, given, err := f.open(c, "read")
	if err != nil {
		return nil, err
	}
	defer h.Close()
	st, err := h.Stat()
	if err != nil {
		return nil, refused("read", given, err)
	}
	if !st.Mode().IsRegular() {
		return nil, worker.BadArguments("read %s: not a regular file", given)
	}
	b, err := io.ReadAll(io.LimitReader(h, MaxRead+1))
	if err != nil {
		return nil, refused("read", given, err)
	}
	if len(b) > MaxRead {
		return nil, worker.Failed("read %s: larger than %d bytes", given, MaxRead)
	}
	if !utf8.Valid(b) {
		return nil, worker.Failed("read %s: not UTF-8 text", given)
	}
	return map[string]any{"path": filepath.ToSlash(p), "content": string(b)}, nil
}

func (f *files) writeFile(_ context.Context, c *worker.Call) (any, error) {
	if !f.write {
		return nil, worker.Failed("the file grant is read-only")
	}
	var a struct {
		Path    string `json:"path"`
		Content string `json:"content"`
	}
	if err := c.Decode(&a); err != nil {
		return nil, err
	}
	p, err := clean(a.Path)
	if err != nil {
		return nil, err
	}
	if p == "." {
		return nil, worker.BadArguments("write: give a file path")
	}
	if dir := filepath.Dir(p); dir != "." {
		if err := f.root.MkdirAll(dir, 0o700); err != nil {
			return nil, refused("write", a.Path, err)
		}
	}
	h, err := f.root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, refused("write", a.Path, err)
	}
	n, err := io.WriteString(h, a.Content)
	if err == nil {
		err = h.Sync()
	}
	if cerr := h.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, refused("write", a.Path, err)
	}
	return map[string]any{"path": filepath.ToSlash(p), "bytes": n}, nil
}

func (f *files) list(_ context.Context, c *worker.Call) (any, error) {
	h, p, given, err := f.open(c, "list")
	if err != nil {
		return nil, err
	}
	defer h.Close()
	ents, err := h.ReadDir(-1)
	if err != nil {
		return nil, refused("list", given, err)
	}
	out := make([]map[string]any, 0, len(ents))
	for _, e := range ents {
		var size int64
		if info, err := e.Info(); err == nil && !e.IsDir() {
			size = info.Size()
		}
		out = append(out, map[string]any{"name": e.Name(), "dir": e.IsDir(), "size": size})
	}
	return map[string]any{"path": filepath.ToSlash(p), "entries": out}, nil
}
