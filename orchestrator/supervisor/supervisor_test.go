package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/capabilities"
)

type fakeBus struct {
	url     string // default nats://127.0.0.1:1
	mu      sync.Mutex
	added   []string
	removed []string
}

func (b *fakeBus) ClientURL() string {
	if b.url != "" {
		return b.url
	}
	return "nats://127.0.0.1:1"
}
func (b *fakeBus) AddUser(name string, _ capabilities.Permissions) ([]byte, func(), error) {
	b.mu.Lock()
	b.added = append(b.added, name)
	b.mu.Unlock()
	return []byte("SUAEXAMPLESEED"), func() {
		b.mu.Lock()
		b.removed = append(b.removed, name)
		b.mu.Unlock()
	}, nil
}

func (b *fakeBus) counts() (int, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.added), len(b.removed)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func waitFor(t *testing.T, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A worker that dies is restarted, each time with a new credential; the
// old one is revoked; the credential file is private and gone afterwards;
// the worker's JSON log lines are relayed with its name and pid.
func TestRestartsWithFreshCredentials(t *testing.T) {
	b := &fakeBus{}
	var logs syncBuffer
	state := t.TempDir()
	s := New(Config{Bus: b, State: state, Dir: t.TempDir(), Log: slog.New(slog.NewJSONHandler(&logs, nil)),
		Command: func(Worker) *exec.Cmd {
			return exec.Command("sh", "-c", `mode=$(stat -c %a "$SLUICE_NATS_CREDS"); echo "{\"level\":\"INFO\",\"msg\":\"started\",\"mode\":\"$mode\",\"memlimit\":\"$GOMEMLIMIT\",\"seed\":\"$(cat $SLUICE_NATS_CREDS)\"}" >&2; echo '{"level":"ERROR","msg":"worker stopped","err":"boom"}' >&2; exit 3`)
		}})
	if err := s.Start([]Worker{{Name: "w", MemoryLimit: 64 << 20}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { a, _ := b.counts(); return a >= 3 })
	s.Stop()
	if n, last := s.Exits("w"); n < 2 || last != "worker stopped: boom" {
		t.Errorf("Exits = %d, %q", n, last)
	}
	added, removed := b.counts()
	if added != removed {
		t.Errorf("%d users added, %d removed", added, removed)
	}
	out := logs.String()
	if !strings.Contains(out, `"msg":"started"`) || !strings.Contains(out, `"worker":"w"`) || !strings.Contains(out, `"pid":`) {
		t.Errorf("relayed log lacks the worker's line or attributes:\n%s", out)
	}
	if !strings.Contains(out, `"memlimit":"67108864"`) {
		t.Errorf("GOMEMLIMIT not set from the manifest's memory limit:\n%s", out)
	}
	if !strings.Contains(out, `"mode":"600"`) {
		t.Errorf("credential file is not 0600:\n%s", out)
	}
	if entries, _ := filepath.Glob(state + "/run/creds/*"); len(entries) != 0 {
		t.Errorf("credential files left behind: %v", entries)
	}
}

// Stop ends a worker that ignores SIGTERM once the grace period is over.
func TestStopKillsAfterGrace(t *testing.T) {
	b := &fakeBus{}
	s := New(Config{Bus: b, State: t.TempDir(), Grace: 200 * time.Millisecond,
		Command: func(Worker) *exec.Cmd {
			return exec.Command("sh", "-c", `trap '' TERM; echo up >&2; while :; do sleep 0.05; done`)
		}})
	if err := s.Start([]Worker{{Name: "stubborn", Replicas: 2}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return len(s.Pids()["stubborn"]) == 2 })
	pids := s.Pids()["stubborn"]
	// The processes never end on their own: that Stop returns, with both
	// gone, shows they were killed, whatever the time it took.
	s.Stop()
	if n := len(s.Pids()["stubborn"]); n != 0 {
		t.Fatalf("%d processes still tracked", n)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d is still there after Stop: %v", pid, err)
		}
	}
}

// On a cluster each worker process gets every server, starting at a
// different one, so that the processes spread over the servers and each
// moves on to the next when its own is gone.
func TestSpreadsWorkersOverServers(t *testing.T) {
	b := &fakeBus{url: "nats://n1:4222,nats://n2:4222,nats://n3:4222"}
	var logs syncBuffer
	s := New(Config{Bus: b, State: t.TempDir(), Log: slog.New(slog.NewJSONHandler(&logs, nil)),
		Command: func(Worker) *exec.Cmd {
			return exec.Command("sh", "-c", `echo "{\"level\":\"INFO\",\"msg\":\"up\",\"url\":\"$SLUICE_NATS_URL\"}" >&2; exec sleep 30`)
		}})
	if err := s.Start([]Worker{{Name: "a", Replicas: 2}, {Name: "b"}, {Name: "c"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return strings.Count(logs.String(), `"msg":"up"`) == 4 })
	s.Stop()
	first := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct{ Msg, URL string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Msg != "up" {
			continue
		}
		urls := strings.Split(rec.URL, ",")
		if len(urls) != 3 {
			t.Fatalf("a worker got %q, want all three servers", rec.URL)
		}
		first[urls[0]]++
	}
	if first["nats://n1:4222"] != 2 || first["nats://n2:4222"] != 1 || first["nats://n3:4222"] != 1 {
		t.Errorf("first servers of the four processes: %v, want n1 twice (the fourth wraps around), n2 and n3 once", first)
	}
	if got := rotateURLs("nats://n1:4222, nats://n2:4222", 3); got != "nats://n2:4222,nats://n1:4222" {
		t.Errorf("rotateURLs = %q", got)
	}
	if got := rotateURLs("nats://127.0.0.1:4222", 5); got != "nats://127.0.0.1:4222" {
		t.Errorf("rotateURLs of one server = %q", got)
	}
}

// A worker's environment is its settings, and of the orchestrator's only
// PATH, HOME, LANG and TZ: never a variable a secret is read from, nor
// anything else it happens to hold.
func TestWorkerEnv(t *testing.T) {
	t.Parallel()
	orchestrator := map[string]string{
		"PATH": "/usr/bin:/bin", "HOME": "/home/me", "LANG": "C.UTF-8", "TZ": "Europe/Lisbon",
		"OPENAI_API_KEY": "sk-canary-51e0", "GOMEMLIMIT": "1GiB", "SLUICE_NATS_TOKEN": "orchestrator-token",
		"LD_PRELOAD": "/tmp/evil.so", "SSL_CERT_FILE": "/etc/ca.pem",
	}
	settings := []string{
		"SLUICE_NATS_URL=nats://127.0.0.1:4222", "SLUICE_NATS_CREDS=/state/run/creds/1.nk", "SLUICE_STATE=/state",
		"SLUICE_SUBJECT_PREFIX=sluice", `SLUICE_WORKER_CONFIG={"backend":"openai"}`, `SLUICE_WORKER_GRANTS={"net":["api.example:443"]}`,
	}
	inherited := []string{"PATH=/usr/bin:/bin", "HOME=/home/me", "LANG=C.UTF-8", "TZ=Europe/Lisbon"}
	w := Worker{Name: "llm", Config: json.RawMessage(`{"backend":"openai"}`), Grants: capabilities.Grants{Net: []string{"api.example:443"}}}
	limited := w
	limited.MemoryLimit = 64 << 20
	for _, tc := range []struct {
		name   string
		getenv func(string) string
		seal   bool
		w      Worker
		want   []string
	}{
		{name: "settings and the four inherited", getenv: func(k string) string { return orchestrator[k] }, w: w,
			want: slices.Concat(settings, inherited)},
		{name: "sealed, with a memory limit", getenv: func(k string) string { return orchestrator[k] }, seal: true, w: limited,
			want: slices.Concat(settings, []string{"GOMEMLIMIT=67108864", "SLUICE_SEAL_NETWORK=1"}, inherited)},
		{name: "nothing inherited without getenv", w: w, want: settings},
		{name: "an unset variable is left out", getenv: func(k string) string {
			if k == "TZ" {
				return ""
			}
			return orchestrator[k]
		}, w: w, want: slices.Concat(settings, inherited[:3])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{State: "/state", Prefix: "sluice", SealNetwork: tc.seal, Getenv: tc.getenv}
			got := workerEnv(cfg, tc.w, "nats://127.0.0.1:4222", "/state/run/creds/1.nk")
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("workerEnv (-want +got):\n%s", diff)
			}
		})
	}
}

// A worker process, and a process it starts, get the environment workerEnv
// builds and nothing else of the orchestrator's: here the test process's,
// which holds a secret and a variable no one named. The control reads the
// same variables in the test process itself, and finds them.
func TestWorkerProcessesInheritNoSecret(t *testing.T) {
	const secret = "sk-canary-7d41c09e"
	t.Setenv("SLUICE_TEST_API_KEY", secret)
	t.Setenv("SLUICE_TEST_UNLISTED", "unlisted-2b8e")
	t.Setenv("LANG", "C.UTF-8")
	if env := strings.Join(os.Environ(), "\n"); !strings.Contains(env, secret) || !strings.Contains(env, "unlisted-2b8e") {
		t.Fatal("control: the orchestrator's environment lacks the secret or the unlisted variable")
	}
	var logs syncBuffer
	s := New(Config{Bus: &fakeBus{}, State: t.TempDir(), Log: slog.New(slog.NewJSONHandler(&logs, nil)), Getenv: os.Getenv,
		Command: func(Worker) *exec.Cmd {
			// The worker starts a process, which prints its environment
			// one variable per line; then the worker waits to be stopped.
			return exec.Command("sh", "-c", `sh -c 'tr "\0" "\n" < /proc/$$/environ; echo END' >&2; exec sleep 30`)
		}})
	if err := s.Start([]Worker{{Name: "w"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(logs.String(), `"line":"END"`) })
	s.Stop()
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct{ Msg, Line string }
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "worker output" || rec.Line == "END" {
			continue
		}
		k, v, _ := strings.Cut(rec.Line, "=")
		got[k] = v
	}
	if got["LANG"] != "C.UTF-8" || got["PATH"] != os.Getenv("PATH") || got["SLUICE_STATE"] == "" {
		t.Fatalf("the started process lacks its settings or the inherited variables: %v", got)
	}
	for k, v := range got {
		if strings.Contains(v, secret) || k == "SLUICE_TEST_API_KEY" || k == "SLUICE_TEST_UNLISTED" {
			t.Errorf("the started process holds %s=%s from the orchestrator's environment", k, v)
		}
	}
}
