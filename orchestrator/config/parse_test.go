package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/schemas"
)

// Paths in sluice.yaml are relative to its directory; a secret from the
// environment keeps its name; workers and prefix take their defaults when
// left out.
func TestParsePaths(t *testing.T) {
	dir := t.TempDir()
	src := "state: var/state\npolicies: [p/a.yaml, /etc/b.yaml]\nsecrets:\n  key: {file: s/key}\n  root: {file: /run/root}\n  token: {env: TOKEN}\n"
	c, err := Parse("sluice.yaml", []byte(src), dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.State != filepath.Join(dir, "var/state") || c.Prefix != schemas.DefaultPrefix {
		t.Errorf("state %q, prefix %q", c.State, c.Prefix)
	}
	if want := []string{filepath.Join(dir, "p/a.yaml"), "/etc/b.yaml"}; !slices.Equal(c.Policies, want) {
		t.Errorf("policies %q, want %q", c.Policies, want)
	}
	want := map[string]Secret{"key": {File: filepath.Join(dir, "s/key")}, "root": {File: "/run/root"}, "token": {Env: "TOKEN"}}
	if len(c.Secrets) != len(want) {
		t.Errorf("secrets %v, want %v", c.Secrets, want)
	}
	for name, s := range want {
		if c.Secrets[name] != s {
			t.Errorf("secret %s = %+v, want %+v", name, c.Secrets[name], s)
		}
	}
	if got, want := len(c.Workers), len(capabilities.Builtins()); got != want {
		t.Errorf("%d workers without a workers key, want the %d built-in ones", got, want)
	}
}

// A worker entry that cannot be used is reported at its position with
// what is wrong, and every such entry is reported at once: a manifest
// that is not there, a worker configured twice, a file root granted where
// the manifest has its own.
func TestParseWorkerErrors(t *testing.T) {
	dir := t.TempDir()
	web, err := os.ReadFile(filepath.Join("..", "..", "capabilities", "builtin", "web.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rooted := append(web, []byte("grants: {files: {root: ./own}}\n")...)
	if err := os.WriteFile(filepath.Join(dir, "rooted.yaml"), rooted, 0o644); err != nil {
		t.Fatal(err)
	}
	src := `workers:
  - manifest: builtin:nope
  - manifest: ./missing.yaml
  - manifest: builtin:payment
  - manifest: builtin:payment
    replicas: 2
  - manifest: ./rooted.yaml
    grants: {files: {root: ./files}}
`
	_, err = Parse("sluice.yaml", []byte(src), dir)
	ds, ok := schemas.AsDiagnostics(err)
	if !ok {
		t.Fatalf("want diagnostics, got %v", err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, fmt.Sprintf("%d:%d %s: %s", d.Line, d.Col, d.Code, strings.ReplaceAll(d.Message, dir, "DIR")))
	}
	want := []string{
		`2:15 manifest_not_found: manifest builtin:nope: builtin:nope: no built-in manifest "nope" (built-in: calendar, email, files, llm, payment, web)`,
		`3:15 manifest_not_found: manifest ./missing.yaml: read manifest: open DIR/missing.yaml: no such file or directory`,
		`5:5 config_duplicate_worker: worker "payment" is configured twice (first at line 4); use replicas to run more`,
		`8:13 config_bad_grant: worker web: the manifest already sets a file root`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
