package orchestrator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/orchestrator/config"
)

func TestLoadSecrets(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	open := filepath.Join(dir, "open")
	os.WriteFile(good, []byte("file-secret-123\n"), 0o600)
	os.WriteFile(open, []byte("file-secret-123\n"), 0o644)
	env := map[string]string{"KEY": "env-secret-456", "SHORT": "abc"}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct {
		name    string
		secrets map[string]config.Secret
		want    string
	}{
		{"from env and file", map[string]config.Secret{"a": {Env: "KEY"}, "b": {File: good}}, ""},
		{"unset env", map[string]config.Secret{"a": {Env: "NOPE"}}, "environment variable NOPE is not set"},
		{"world-readable file", map[string]config.Secret{"a": {File: open}}, "readable by group or others (mode 0644)"},
		{"too short", map[string]config.Secret{"a": {Env: "SHORT"}}, "shorter than 8 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadSecrets(&config.Config{Secrets: tc.secrets}, getenv)
			if tc.want == "" {
				if err != nil || len(got) != len(tc.secrets) {
					t.Fatalf("got %v %v", got, err)
				}
				for _, s := range got {
					if strings.Contains(s.String(), "secret-") {
						t.Fatalf("String() shows the value: %s", s)
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret-") {
				t.Fatalf("error shows the value: %v", err)
			}
		})
	}
}

// What the supervisor may pass on to workers from the environment never
// reads a variable a secret or a NATS credential comes from, even one
// named like a variable workers inherit.
func TestWithoutSecrets(t *testing.T) {
	env := map[string]string{"PATH": "key-in-path-91f2", "HOME": "/home/me", "API_KEY": "sk-canary-2c7e",
		"SEED": "SAexampleseed", "LANG": "C.UTF-8"}
	getenv := func(k string) string { return env[k] }
	d := &config.Config{Secrets: map[string]config.Secret{"odd": {Env: "PATH"}, "api": {Env: "API_KEY"}, "f": {File: "/x"}},
		ExternalNATS: &config.ExternalNATS{AccountSeed: config.Secret{Env: "SEED"}, Creds: config.Secret{File: "/c"}}}
	g := withoutSecrets(d, getenv)
	for name, want := range map[string]string{"PATH": "", "API_KEY": "", "SEED": "", "HOME": "/home/me", "LANG": "C.UTF-8"} {
		if got := g(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if withoutSecrets(d, nil) != nil {
		t.Error("no environment became one")
	}
}

// The audit signing key comes from the secret audit_signing_key, or from a
// file sluice up creates in the state directory, readable by its owner
// only; it is never a secret the broker holds or a worker is granted.
func TestAuditKey(t *testing.T) {
	state := t.TempDir()
	d := &config.Config{State: state}
	key, from, err := AuditKey(d, nil, false)
	if err != nil || key != nil || from != filepath.Join(state, AuditKeyFile) {
		t.Fatalf("no key yet: %v %q %v", key, from, err)
	}
	key, from, err = AuditKey(d, nil, true)
	if err != nil || key == nil || from != filepath.Join(state, AuditKeyFile) {
		t.Fatalf("create: %v %q %v", key, from, err)
	}
	st, err := os.Stat(from)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	again, _, err := AuditKey(d, nil, true)
	if err != nil || !again.Equal(key) {
		t.Fatalf("the key changed on the second start: %v", err)
	}
	os.Chmod(from, 0o640)
	if _, _, err := AuditKey(d, nil, true); err == nil || !strings.Contains(err.Error(), "readable by group or others") {
		t.Fatalf("a key file others may read: %v", err)
	}

	seed := strings.Repeat("A", 43) + "="
	env := map[string]string{"AUDIT_KEY": seed, "BAD": "not-a-key-at-all"}
	getenv := func(k string) string { return env[k] }
	d.Secrets = map[string]config.Secret{AuditKeySecret: {Env: "AUDIT_KEY"}, "api": {Env: "BAD"}}
	key, from, err = AuditKey(d, getenv, true)
	if err != nil || from != "secret "+AuditKeySecret || key.Seed()[0] != 0 {
		t.Fatalf("from the secret: %q %v", from, err)
	}
	d.Secrets[AuditKeySecret] = config.Secret{Env: "BAD"}
	if _, _, err := AuditKey(d, getenv, true); err == nil || strings.Contains(err.Error(), "not-a-key") {
		t.Fatalf("a bad key: %v", err)
	}
	secrets, err := loadSecrets(d, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := secrets[AuditKeySecret]; ok || len(secrets) != 1 {
		t.Fatalf("the broker holds the audit key: %v", secrets)
	}
	ms := map[string]*capabilities.Manifest{"web": {Grants: capabilities.Grants{Secrets: []capabilities.SecretGrant{{Name: AuditKeySecret, Hosts: []string{"evil.example"}}}}}}
	if _, err := secretGrants(ms, secrets); err == nil || !strings.Contains(err.Error(), "the orchestrator's alone") {
		t.Fatalf("a worker granted the audit key: %v", err)
	}
}
