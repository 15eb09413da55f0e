package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/schemas"
)

// listRuns returns the run ids sluice runs --json lists in w.
func listRuns(t *testing.T, w *workspace) []string {
	t.Helper()
	r := w.sluice("runs", "--json")
	if r.code != 0 {
		t.Fatalf("sluice runs: exit %d", r.code)
	}
	var runs []struct {
		ID string `json:"run_id"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &runs); err != nil {
		t.Fatalf("sluice runs --json: %v", err)
	}
	var ids []string
	for _, run := range runs {
		ids = append(ids, run.ID)
	}
	return ids
}

// exportedRuns returns the run ids the records of sluice audit export
// name in w.
func exportedRuns(t *testing.T, w *workspace) []string {
	t.Helper()
	if r := w.sluice("audit", "export", "--out", "audit.jsonl"); r.code != 0 {
		t.Fatalf("sluice audit export: exit %d", r.code)
	}
	f, err := os.Open(w.path("audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var rec struct {
			RunID string `json:"run_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("audit.jsonl: %v", err)
		}
		if rec.RunID != "" && !slices.Contains(ids, rec.RunID) {
			ids = append(ids, rec.RunID)
		}
	}
	return ids
}

func payOnce(t *testing.T, w *workspace) string {
	t.Helper()
	r := w.sluice("run", "pay.yaml", "--input", "amount=5", "--input", "payee=acct_hotel_1", "--json")
	if r.code != 0 {
		t.Fatalf("sluice run pay.yaml: exit %d", r.code)
	}
	run := decodeRun(t, r.stdout)
	if run.Status != "completed" || run.RunID == "" {
		t.Fatalf("pay: %+v", run)
	}
	return run.RunID
}

// Two deployments, acme and globex, run by two sluice up on one external
// NATS server and one account: each keeps its own streams and buckets,
// each one's sluice runs and audit export show its own run only, and the
// server refuses the API client of one on the other's subjects, reply
// inboxes and streams.
func TestDeploymentsShareAnAccount(t *testing.T) {
	m := newOperatorMode(t)
	url := startNATSServer(t, m)
	ws := map[string]*workspace{}
	for _, name := range []string{"acme", "globex"} {
		w := newWorkspace(t, map[string]string{
			"sluice.yaml": fmt.Sprintf(`deployment: %s
nats:
  url: %s
  account_seed: {file: nats/account.nk}
  creds: {file: nats/orchestrator.creds}
workers:
  - manifest: builtin:payment
`, name, url),
			"pay.yaml": payDirectFlow,
		})
		w.write("nats/account.nk", string(m.signingSeed))
		w.write("nats/orchestrator.creds", string(m.orchestratorCred))
		for _, f := range []string{"nats/account.nk", "nats/orchestrator.creds"} {
			if err := os.Chmod(w.path(f), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		upAndReady(t, w)
		ws[name] = w
	}
	acme, globex := ws["acme"], ws["globex"]
	acmeRun, globexRun := payOnce(t, acme), payOnce(t, globex)

	for _, tc := range []struct {
		w   *workspace
		own string
	}{{acme, acmeRun}, {globex, globexRun}} {
		if got := listRuns(t, tc.w); !slices.Equal(got, []string{tc.own}) {
			t.Errorf("sluice runs in %s lists %v, want only %s", tc.w.dir, got, tc.own)
		}
		if got := exportedRuns(t, tc.w); !slices.Equal(got, []string{tc.own}) {
			t.Errorf("sluice audit export in %s names runs %v, want only %s", tc.w.dir, got, tc.own)
		}
	}

	// The account holds each deployment's streams under its own name, and
	// none under the default deployment's.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := nats.Connect(url, nats.UserCredentials(acme.path("nats/orchestrator.creds")), nats.MaxReconnects(0))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	var streams []string
	names := js.StreamNames(ctx)
	for n := range names.Name() {
		streams = append(streams, n)
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SLUICE_ACME_AUDIT", "KV_SLUICE_ACME_RUNS", "KV_SLUICE_ACME_STEPS", "KV_SLUICE_ACME_APPROVALS",
		"SLUICE_GLOBEX_AUDIT", "KV_SLUICE_GLOBEX_RUNS", "KV_SLUICE_GLOBEX_STEPS", "KV_SLUICE_GLOBEX_APPROVALS"} {
		if !slices.Contains(streams, want) {
			t.Errorf("no stream %s in the account: %v", want, streams)
		}
	}
	for _, s := range streams {
		if strings.HasPrefix(s, "SLUICE_") && !strings.HasPrefix(s, "SLUICE_ACME_") && !strings.HasPrefix(s, "SLUICE_GLOBEX_") {
			t.Errorf("stream %s belongs to neither deployment", s)
		}
	}

	// acme's API client credential, as sluice up published it for the
	// command line.
	errs := make(chan error, 16)
	a, g := schemas.Subjects{Prefix: "acme"}, schemas.Subjects{Prefix: "globex"}
	client, err := nats.Connect(url, nats.UserCredentials(filepath.Join(acme.path(".sluice"), "run", "client.nk")),
		nats.CustomInboxPrefix(a.Inbox("client")), nats.MaxReconnects(0),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatalf("connect with acme's client credential: %v", err)
	}
	defer client.Close()
	// Control: the credential is live on acme's own API.
	rep, err := client.Request(a.API("config"), nil, 30*time.Second)
	if err != nil || !strings.Contains(string(rep.Data), "sha256:") {
		t.Fatalf("acme's config through acme's client: %v %v", rep, err)
	}
	refused := func(what, subject string, do func() error) {
		t.Helper()
		if err := do(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		client.Flush()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case err := <-errs:
				if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
					return
				}
				t.Logf("%s: other error %v", what, err)
			case <-deadline:
				t.Fatalf("%s: the server did not refuse %s", what, subject)
			}
		}
	}
	sub := func(subject string) func() error {
		return func() error { _, err := client.Subscribe(subject, func(*nats.Msg) {}); return err }
	}
	pub := func(subject string) func() error {
		return func() error { return client.Publish(subject, []byte(`{}`)) }
	}
	refused("listen for globex's payment calls", g.ToolWildcard("payment"), sub(g.ToolWildcard("payment")))
	refused("read globex's API replies", g.Inbox("client")+".>", sub(g.Inbox("client")+".>"))
	refused("read globex's payment worker's replies", g.Inbox("payment")+".>", sub(g.Inbox("payment")+".>"))
	refused("ask globex's orchestrator", g.API("config"), pub(g.API("config")))
	refused("call globex's payment worker", g.Tool("payment", "charge"), pub(g.Tool("payment", "charge")))
	refused("read globex's audit stream", "$JS.API.STREAM.INFO.SLUICE_GLOBEX_AUDIT", pub("$JS.API.STREAM.INFO.SLUICE_GLOBEX_AUDIT"))

	// globex's ledger holds its own payment only.
	if lines := globex.ledger(); len(lines) != 1 {
		t.Fatalf("globex's ledger has %d lines, want 1", len(lines))
	}
}

// The default deployment keeps the stream and bucket names of a state
// directory written before deployments had names; a named deployment on
// the same state directory keeps its own beside them, and each reads only
// its own (here from a copy of the store, with no orchestrator running).
func TestDeploymentStateDirectory(t *testing.T) {
	w := newWorkspace(t, map[string]string{"pay.yaml": payDirectFlow, "sluice.yaml": "workers:\n  - manifest: builtin:payment\n"})
	first := payOnce(t, w)
	streams := func() []string {
		t.Helper()
		des, err := os.ReadDir(w.path(".sluice/jetstream/$G/streams"))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, de := range des {
			out = append(out, de.Name())
		}
		return out
	}
	got := streams()
	for _, want := range []string{"SLUICE_AUDIT", "KV_SLUICE_RUNS", "KV_SLUICE_STEPS", "KV_SLUICE_APPROVALS", "KV_SLUICE_REMEMBERED"} {
		if !slices.Contains(got, want) {
			t.Errorf("the default deployment has no stream %s: %v", want, got)
		}
	}

	w.write("sluice.yaml", "deployment: acme\nworkers:\n  - manifest: builtin:payment\n")
	if ids := listRuns(t, w); len(ids) != 0 {
		t.Fatalf("deployment acme lists the default deployment's runs: %v", ids)
	}
	second := payOnce(t, w)
	if ids := listRuns(t, w); !slices.Equal(ids, []string{second}) {
		t.Errorf("deployment acme lists %v, want only %s", ids, second)
	}
	if ids := exportedRuns(t, w); !slices.Equal(ids, []string{second}) {
		t.Errorf("deployment acme exports runs %v, want only %s", ids, second)
	}
	if got := streams(); !slices.Contains(got, "SLUICE_ACME_AUDIT") || !slices.Contains(got, "KV_SLUICE_ACME_RUNS") {
		t.Errorf("deployment acme has no streams of its own: %v", got)
	}

	w.write("sluice.yaml", "workers:\n  - manifest: builtin:payment\n")
	if ids := listRuns(t, w); !slices.Equal(ids, []string{first}) {
		t.Errorf("the default deployment lists %v, want only %s", ids, first)
	}
	if ids := exportedRuns(t, w); !slices.Equal(ids, []string{first}) {
		t.Errorf("the default deployment exports runs %v, want only %s", ids, first)
	}

	// A name that is not one, and subject_prefix beside a name, are
	// refused with their place, by lint and by every command; nothing
	// recorded is lost.
	for _, tc := range []struct{ src, want string }{
		{"deployment: Acme\nworkers:\n  - manifest: builtin:payment\n", "sluice.yaml:1:13: "},
		{"deployment: acme\nsubject_prefix: old\nworkers:\n  - manifest: builtin:payment\n", "sluice.yaml:2:17: subject_prefix old with deployment acme"},
	} {
		w.write("sluice.yaml", tc.src)
		if r := w.sluice("lint"); r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("lint of %q: exit %d, want 1 and %q", tc.src, r.code, tc.want)
		}
		if r := w.sluice("runs"); r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("runs with %q: exit %d, want an error with %q", tc.src, r.code, tc.want)
		}
	}
	w.write("sluice.yaml", "deployment: acme\nworkers:\n  - manifest: builtin:payment\n")
	if ids := listRuns(t, w); !slices.Equal(ids, []string{second}) {
		t.Errorf("deployment acme lists %v after the refused files, want %s", ids, second)
	}
}
