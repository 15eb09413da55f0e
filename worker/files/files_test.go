package files

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

func handlers(t *testing.T, write bool) (map[string]worker.Handler, string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "sub"), 0o700)
	os.WriteFile(filepath.Join(root, "a.txt"), []byte("hello"), 0o600)
	os.WriteFile(filepath.Join(dir, "outside.txt"), []byte("secret"), 0o600)
	os.Symlink(filepath.Join(dir, "outside.txt"), filepath.Join(root, "link-out"))
	os.Symlink("a.txt", filepath.Join(root, "link-in"))
	os.Symlink(dir, filepath.Join(root, "dir-out"))
	m, err := capabilities.Load("builtin:files")
	if err != nil {
		t.Fatal(err)
	}
	m, _ = m.WithGrants(capabilities.Grants{Files: &capabilities.FileGrant{Root: root, Write: write}})
	hs, err := New(worker.Env{Manifest: m})
	if err != nil {
		t.Fatal(err)
	}
	return hs, dir
}

func call(hs map[string]worker.Handler, tool string, args any) (map[string]any, error) {
	b, _ := json.Marshal(args)
	out, err := hs[tool](context.Background(), worker.NewCall(tool, b, nil))
	if err != nil {
		return nil, err
	}
	m, _ := out.(map[string]any)
	return m, nil
}

func TestConfinedToTheRoot(t *testing.T) {
	hs, dir := handlers(t, true)
	for _, tc := range []struct {
		name, tool string
		args       map[string]any
		code       string
	}{
		{"dot dot", "read", map[string]any{"path": "../outside.txt"}, schemas.CodeBadArguments},
		{"dot dot inside a path", "read", map[string]any{"path": "sub/../../outside.txt"}, schemas.CodeBadArguments},
		{"absolute", "read", map[string]any{"path": filepath.Join(dir, "outside.txt")}, schemas.CodeBadArguments},
		{"symlink out", "read", map[string]any{"path": "link-out"}, schemas.CodeBadArguments},
		{"through a symlinked dir", "read", map[string]any{"path": "dir-out/outside.txt"}, schemas.CodeBadArguments},
		{"write through a symlink out", "write", map[string]any{"path": "link-out", "content": "x"}, schemas.CodeBadArguments},
		{"write outside", "write", map[string]any{"path": "../new.txt", "content": "x"}, schemas.CodeBadArguments},
		{"list outside", "list", map[string]any{"path": "dir-out"}, schemas.CodeBadArguments},
		{"missing", "read", map[string]any{"path": "nope.txt"}, schemas.CodeFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := call(hs, tc.tool, tc.args)
			var re *schemas.ReplyError
			if !errors.As(err, &re) || re.Code != tc.code {
				t.Fatalf("err %v, want %s", err, tc.code)
			}
			if strings.Contains(re.Message, dir) {
				t.Errorf("the error names the machine's path: %s", re.Message)
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "outside.txt")); string(b) != "secret" {
		t.Fatal("a file outside the root was changed")
	}
	if _, err := os.Stat(filepath.Join(dir, "new.txt")); err == nil {
		t.Fatal("a file was created outside the root")
	}
}

func TestReadWriteList(t *testing.T) {
	hs, dir := handlers(t, true)
	out, err := call(hs, "read", map[string]any{"path": "link-in"})
	if err != nil || out["content"] != "hello" {
		t.Fatalf("read through a symlink inside: %v %v", out, err)
	}
	out, err = call(hs, "write", map[string]any{"path": "new/deep/b.txt", "content": "héllo"})
	if err != nil || out["bytes"] != 6 {
		t.Fatalf("write: %v %v", out, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "root", "new", "deep", "b.txt")); string(b) != "héllo" {
		t.Fatalf("written %q", b)
	}
	out, err = call(hs, "list", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, e := range out["entries"].([]map[string]any) {
		names = append(names, e["name"].(string))
	}
	if !strings.Contains(strings.Join(names, ","), "a.txt") || !strings.Contains(strings.Join(names, ","), "new") {
		t.Fatalf("list %v", names)
	}
	os.WriteFile(filepath.Join(dir, "root", "bin"), []byte{0xff, 0xfe}, 0o600)
	if _, err := call(hs, "read", map[string]any{"path": "bin"}); err == nil || !strings.Contains(err.Error(), "not UTF-8") {
		t.Fatalf("binary read: %v", err)
	}
}

func TestReadOnlyGrant(t *testing.T) {
	hs, _ := handlers(t, false)
	if _, err := call(hs, "write", map[string]any{"path": "x.txt", "content": "x"}); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("write with a read-only grant: %v", err)
	}
	if _, err := New(worker.Env{}); err == nil || !strings.Contains(err.Error(), "no file root is granted") {
		t.Fatalf("no grant: %v", err)
	}
}
