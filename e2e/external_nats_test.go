package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/engine"
	"github.com/sluicehq/sluice/orchestrator/supervisor"
	"github.com/sluicehq/sluice/schemas"
)

const fetchFlow = `name: fetch-page
inputs:
  url: {type: string}
steps:
  - id: page
    call: web.fetch
    with: {url: "${inputs.url}"}
outputs:
  title: "${steps.page.output.title}"
`

// operatorMode is an operator, an account with JetStream and a signing
// key, and a system account, as nsc would make them.
type operatorMode struct {
	operatorJWT      string
	sysPub, sysJWT   string
	accPub, accJWT   string
	signingSeed      []byte
	orchestratorCred []byte // a user of the account, unrestricted
}

func newOperatorMode(t *testing.T) operatorMode {
	t.Helper()
	must := func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var m operatorMode
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	sys, _ := nkeys.CreateAccount()
	m.sysPub, _ = sys.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	oc.SystemAccount = m.sysPub
	m.operatorJWT = must(oc.Encode(op))
	m.sysJWT = must(jwt.NewAccountClaims(m.sysPub).Encode(op))

	acc, _ := nkeys.CreateAccount()
	m.accPub, _ = acc.PublicKey()
	sk, _ := nkeys.CreateAccount()
	skPub, _ := sk.PublicKey()
	ac := jwt.NewAccountClaims(m.accPub)
	ac.Name = "sluice"
	ac.SigningKeys.Add(skPub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: 64 << 20, DiskStorage: 256 << 20, Streams: 20, Consumer: 100}
	m.accJWT = must(ac.Encode(op))
	m.signingSeed, _ = sk.Seed()

	u, _ := nkeys.CreateUser()
	uPub, _ := u.PublicKey()
	uc := jwt.NewUserClaims(uPub)
	uc.Name = "sluice-orchestrator"
	uc.IssuerAccount = m.accPub
	uSeed, _ := u.Seed()
	creds, err := jwt.FormatUserConfig(must(uc.Encode(sk)), uSeed)
	if err != nil {
		t.Fatal(err)
	}
	m.orchestratorCred = creds
	return m
}

// startNATSServer builds nats-server from the module in go.mod and runs it
// as a process in operator mode, with a memory resolver preloaded with the
// accounts and JetStream on, on a free port of 127.0.0.1. It returns the
// client URL.
func startNATSServer(t *testing.T, m operatorMode) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "nats-server")
	build := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build nats-server: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "operator.jwt"), []byte(m.operatorJWT), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`server_name: sluice-external
host: 127.0.0.1
port: -1
ports_file_dir: %q
operator: %q
system_account: %s
resolver: MEMORY
resolver_preload: {
  %s: %q
  %s: %q
}
jetstream: {store_dir: %q, max_memory_store: 64MB, max_file_store: 256MB}
`, dir, filepath.Join(dir, "operator.jwt"), m.sysPub, m.accPub, m.accJWT, m.sysPub, m.sysJWT, filepath.Join(dir, "js"))
	confFile := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", confFile)
	var logb strings.Builder
	cmd.Stdout, cmd.Stderr = &logb, &logb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("nats-server log:\n%s", logb.String())
		}
	})
	portsFile := filepath.Join(dir, fmt.Sprintf("nats-server_%d.ports", cmd.Process.Pid))
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ports struct {
			Nats []string `json:"nats"`
		}
		if b, err := os.ReadFile(portsFile); err == nil && json.Unmarshal(b, &ports) == nil && len(ports.Nats) > 0 {
			return ports.Nats[0]
		}
		select {
		case <-done:
			t.Fatalf("nats-server exited:\n%s", logb.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server wrote no ports file:\n%s", logb.String())
		}
	}
}

// With nats: {url: …} the orchestrator uses an existing NATS server in
// operator mode, run here as its own process: every worker process gets a
// user JWT signed with the account's signing key, flows run through it, the
// audit log is a stream in the account's JetStream, and the server itself
// refuses a worker's credential on another worker's subjects.
func TestExternalNATSServer(t *testing.T) {
	m := newOperatorMode(t)
	url := startNATSServer(t, m)
	host := site(t, map[string]string{"/hotel": honestPage})
	w := newWorkspace(t, map[string]string{
		"sluice.yaml": fmt.Sprintf(`nats:
  url: %s
  account_seed: {file: nats/account.nk}
  creds: {file: nats/orchestrator.creds}
  credential_ttl: 10m
workers:
  - manifest: builtin:web
    grants: {net: [%q]}
  - manifest: builtin:payment
`, url, host),
		"pay.yaml":   payDirectFlow,
		"fetch.yaml": fetchFlow,
	})
	w.write("nats/account.nk", string(m.signingSeed))
	w.write("nats/orchestrator.creds", string(m.orchestratorCred))

	dep, err := config.Load(w.path("sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	newOrch := func(command func(supervisor.Worker) *exec.Cmd) (*orchestrator.Orchestrator, error) {
		o, err := orchestrator.New(orchestrator.Config{Deployment: dep, Executable: sluiceBin, WorkerCommand: command})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := o.Start(ctx); err != nil {
			o.Close()
			return nil, err
		}
		return o, nil
	}

	// Credential files anyone else may read are refused, with the place in
	// sluice.yaml that names them.
	if _, err := newOrch(nil); err == nil || !strings.Contains(err.Error(), "sluice.yaml:3:17: nats.account_seed") ||
		!strings.Contains(err.Error(), "readable by group or others") {
		t.Fatalf("start with a 0644 account seed: %v", err)
	}
	for _, f := range []string{"nats/account.nk", "nats/orchestrator.creds"} {
		if err := os.Chmod(w.path(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The web worker's credential is copied on its way to the worker, so
	// that the test can use it below as a compromised worker would.
	stolen := w.path("web.creds")
	orch, err := newOrch(func(wk supervisor.Worker) *exec.Cmd {
		if wk.Name == "web" {
			return exec.Command("sh", "-c", `cp "$SLUICE_NATS_CREDS" "$1" && exec "$2" worker --manifest "$3"`,
				"sh", stolen, sluiceBin, wk.Ref)
		}
		return exec.Command(sluiceBin, "worker", "--manifest", wk.Ref)
	})
	if err != nil {
		t.Fatal(err)
	}
	pids := orch.Pids()
	defer func() {
		orch.Close()
		for name, ps := range pids {
			for _, pid := range ps {
				if syscall.Kill(pid, 0) == nil {
					t.Errorf("worker %s (pid %d) still running after Close", name, pid)
				}
			}
		}
	}()
	if orch.ClientURL() != url {
		t.Fatalf("workers connect to %s, want %s", orch.ClientURL(), url)
	}

	// A payment from the command line: sluice run reaches the orchestrator
	// through the API with the client credential, a .creds file too.
	r := w.sluice("run", "pay.yaml", "--input", "amount=7", "--input", "payee=acct_hotel_1", "--json")
	if r.code != 0 {
		t.Fatalf("sluice run pay.yaml: exit %d", r.code)
	}
	if run := decodeRun(t, r.stdout); run.Status != "completed" {
		t.Fatalf("pay: status %s", run.Status)
	}
	if lines := w.ledger(); len(lines) != 1 {
		t.Fatalf("ledger has %d lines, want 1", len(lines))
	}

	// A page fetched through the egress broker.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plan, err := orch.LoadFlow(w.path("fetch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	inputs, err := plan.BindInputs(map[string]string{"url": "http://" + host + "/hotel"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := orch.Run(ctx, plan, inputs, engine.Options{})
	if err != nil || res.Status != engine.StatusCompleted || res.Outputs["title"] != "Hotel Lisboa" {
		t.Fatalf("fetch: %+v %v", res, err)
	}

	// The audit log is a stream in the account's JetStream.
	recs, err := orch.Audit().Records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	finished := 0
	for _, rec := range recs {
		if _, end := rec.Ends(); end {
			finished++
		}
	}
	if finished != 2 {
		t.Errorf("%d audit records end a run, want 2", finished)
	}

	// The web worker's credential: a user JWT of the account, signed with
	// the signing key, that expires.
	creds, err := os.ReadFile(stolen)
	if err != nil {
		t.Fatal(err)
	}
	token, err := nkeys.ParseDecoratedJWT(creds)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	if uc.IssuerAccount != m.accPub || !strings.HasPrefix(uc.Name, "worker:web:") {
		t.Errorf("web worker's JWT: issuer account %s, name %q", uc.IssuerAccount, uc.Name)
	}
	if exp := time.Unix(uc.Expires, 0); exp.Before(time.Now().Add(8*time.Minute)) || exp.After(time.Now().Add(11*time.Minute)) {
		t.Errorf("web worker's JWT expires at %s, want in about 10m", exp)
	}

	// Used by someone else, it is exactly as narrow as the worker's.
	kp, err := nkeys.ParseDecoratedUserNKey(creds)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	s := schemas.Subjects{Prefix: dep.Prefix}
	errs := make(chan error, 16)
	nc, err := nats.Connect(url, nats.UserJWTAndSeed(token, string(seed)), nats.CustomInboxPrefix(s.Inbox("web")),
		nats.MaxReconnects(0), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatalf("connect with the web worker's credential: %v", err)
	}
	defer nc.Close()
	// Control: the credential is live, and its own egress subject is
	// answered by the broker (which refuses a host the worker was not
	// granted).
	body, _ := json.Marshal(schemas.EgressRequest{Method: "GET", URL: "http://127.0.0.1:9/"})
	rep, err := nc.Request(s.Egress("web"), body, 10*time.Second)
	if err != nil {
		t.Fatalf("egress request with the web worker's credential: %v", err)
	}
	var er schemas.EgressResponse
	if err := json.Unmarshal(rep.Data, &er); err != nil || er.Error == nil {
		t.Fatalf("egress to an ungranted host: %s %v", rep.Data, err)
	}
	// The attack: a forged call to the payment worker.
	forged := nats.NewMsg(s.Tool("payment", "charge"))
	forged.Header.Set(schemas.HeaderIdempotencyKey, "forged")
	forged.Data = []byte(`{"amount":999,"currency":"EUR","payee":"acct_attacker"}`)
	if err := nc.PublishMsg(forged); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), `"`+forged.Subject+`"`) {
			t.Fatalf("publish on %s: %v, want a permission violation", forged.Subject, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the server did not refuse a publish on %s", forged.Subject)
	}
	// The payment worker never saw it: a call it did see would be in the
	// ledger by the time a later call is answered.
	r = w.sluice("run", "pay.yaml", "--input", "amount=8", "--input", "payee=acct_hotel_1", "--json")
	if r.code != 0 {
		t.Fatalf("second payment: exit %d", r.code)
	}
	lines := w.ledger()
	if len(lines) != 2 || strings.Contains(strings.Join(lines, "\n"), "acct_attacker") {
		t.Fatalf("ledger:\n%s", strings.Join(lines, "\n"))
	}
}
