package bus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/internal/natscreds"
	"github.com/sluicehq/sluice/schemas"
)

// operatorServer runs a NATS server in operator mode with one account
// (JetStream on, one signing key) and returns what the orchestrator is
// given: the URL, the signing key's seed and its own user's creds.
func operatorServer(t *testing.T) (url string, signingSeed, orchCreds []byte) {
	t.Helper()
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	sys, _ := nkeys.CreateAccount()
	sysPub, _ := sys.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	opClaims, _ := jwt.DecodeOperatorClaims(opJWT)
	sysJWT, err := jwt.NewAccountClaims(sysPub).Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	sk, _ := nkeys.CreateAccount()
	skPub, _ := sk.PublicKey()
	ac := jwt.NewAccountClaims(accPub)
	ac.SigningKeys.Add(skPub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT, err := ac.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	res := &server.MemAccResolver{}
	_ = res.Store(accPub, accJWT)
	_ = res.Store(sysPub, sysJWT)
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(), TrustedOperators: []*jwt.OperatorClaims{opClaims},
		SystemAccount: sysPub, AccountResolver: res})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })

	u, _ := nkeys.CreateUser()
	uPub, _ := u.PublicKey()
	uc := jwt.NewUserClaims(uPub)
	uc.IssuerAccount = accPub
	uJWT, err := uc.Encode(sk)
	if err != nil {
		t.Fatal(err)
	}
	uSeed, _ := u.Seed()
	creds, _ := jwt.FormatUserConfig(uJWT, uSeed)
	skSeed, _ := sk.Seed()
	return s.ClientURL(), skSeed, creds
}

func dialExternal(t *testing.T, cfg ExternalConfig) *External {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

func connectCreds(t *testing.T, url string, creds []byte, inbox string) (*nats.Conn, chan error) {
	t.Helper()
	opt, err := natscreds.Option(creds)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 16)
	nc, err := nats.Connect(url, opt, nats.CustomInboxPrefix(inbox), nats.MaxReconnects(0),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// A worker user issued as a JWT has exactly the manifest's permissions on
// the external server: its own calls, replies to them, its own egress
// subject; another worker's subjects are refused by the server.
func TestExternalWorkerPermissionsAreEnforcedByTheServer(t *testing.T) {
	url, skSeed, orchCreds := operatorServer(t)
	e := dialExternal(t, ExternalConfig{URL: url, AccountSeed: skSeed, Creds: orchCreds, CredentialTTL: 2 * time.Minute})
	s := schemas.Subjects{}
	orch, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer orch.Close()
	got := make(chan *nats.Msg, 4)
	if _, err := orch.Subscribe(s.Tool("payment", "charge"), func(m *nats.Msg) { got <- m }); err != nil {
		t.Fatal(err)
	}
	if _, err := orch.Subscribe(s.Egress("web"), func(m *nats.Msg) { m.Respond([]byte("egress ok")) }); err != nil {
		t.Fatal(err)
	}
	orch.Flush()

	web, _ := capabilities.Load("builtin:web")
	web, err = web.WithGrants(capabilities.Grants{Net: []string{"127.0.0.1:9"}})
	if err != nil {
		t.Fatal(err)
	}
	creds, remove, err := e.AddUser("worker:web:0.0", web.Permissions(s))
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	token, _ := nkeys.ParseDecoratedJWT(creds)
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	if exp := time.Unix(uc.Expires, 0); exp.Before(time.Now().Add(time.Minute)) || exp.After(time.Now().Add(3*time.Minute)) {
		t.Errorf("user JWT expires at %s, want in about 2m", exp)
	}
	nc, errs := connectCreds(t, url, creds, s.Inbox("web"))

	probe := s.Tool("web", "_ready")
	if e.HasInterest(probe) {
		t.Fatal("interest before the worker subscribed")
	}
	if _, err := nc.Subscribe(s.ToolWildcard("web"), func(m *nats.Msg) { m.Respond([]byte("pong")) }); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	if !e.HasInterest(probe) {
		t.Fatal("no interest after the worker subscribed")
	}
	// Its own calls, and its answers to them.
	if rep, err := orch.Request(s.Tool("web", "fetch"), nil, 5*time.Second); err != nil || string(rep.Data) != "pong" {
		t.Fatalf("call the worker: %v %v", rep, err)
	}
	// Its own egress subject.
	if rep, err := nc.Request(s.Egress("web"), nil, 5*time.Second); err != nil || string(rep.Data) != "egress ok" {
		t.Fatalf("egress request: %v %v", rep, err)
	}

	// Another worker's tool and calls are refused.
	if err := nc.Publish(s.Tool("payment", "charge"), []byte(`{"amount":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe(s.ToolWildcard("payment"), func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(s.API("answer"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	want := map[string]bool{s.Tool("payment", "charge"): false, s.ToolWildcard("payment"): false, s.API("answer"): false}
	timeout := time.After(5 * time.Second)
	for n := 0; n < len(want); {
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				continue
			}
			for subj, seen := range want {
				if !seen && strings.Contains(err.Error(), `"`+subj+`"`) {
					want[subj] = true
					n++
				}
			}
		case <-timeout:
			t.Fatalf("refusals seen: %v", want)
		}
	}
	orch.Flush()
	select {
	case m := <-got:
		t.Fatalf("payment subscriber received a forged call: %q", m.Data)
	default:
	}
}

// Unusable credentials are refused at Dial, not later by every worker: an
// account seed the account does not list as a key, a seed of the wrong
// kind, and orchestrator creds the server does not accept.
func TestExternalRefusesUnusableCredentials(t *testing.T) {
	url, skSeed, orchCreds := operatorServer(t)
	other, _ := nkeys.CreateAccount()
	otherSeed, _ := other.Seed()
	user, _ := nkeys.CreateUser()
	userSeed, _ := user.Seed()
	userPub, _ := user.PublicKey()
	foreignJWT, err := jwt.NewUserClaims(userPub).Encode(other)
	if err != nil {
		t.Fatal(err)
	}
	foreignCreds, _ := jwt.FormatUserConfig(foreignJWT, userSeed)
	for _, tc := range []struct {
		name        string
		seed, creds []byte
	}{
		{name: "unlisted account key", seed: otherSeed, creds: orchCreds},
		{name: "user seed", seed: userSeed, creds: orchCreds},
		{name: "creds without a JWT", seed: skSeed, creds: userSeed},
		{name: "creds of an unknown account", seed: skSeed, creds: foreignCreds},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e, err := Dial(ctx, ExternalConfig{URL: url, AccountSeed: tc.seed, Creds: tc.creds})
			if err == nil {
				e.Shutdown()
			}
			if !errors.Is(err, ErrCredentials) {
				t.Fatalf("Dial: %v, want ErrCredentials", err)
			}
		})
	}
}

func TestJWTPermissionsDenyWhatIsNotListed(t *testing.T) {
	p := jwtPermissions(capabilities.Permissions{Subscribe: []string{"a.>"}, Publish: []string{}, Responses: true, ResponseTTL: time.Minute})
	if len(p.Pub.Allow) != 0 || !p.Pub.Deny.Contains(">") {
		t.Errorf("publish: %+v, want deny >", p.Pub)
	}
	if !p.Sub.Allow.Contains("a.>") || len(p.Sub.Deny) != 0 {
		t.Errorf("subscribe: %+v", p.Sub)
	}
	if p.Resp == nil || p.Resp.MaxMsgs != 1 || p.Resp.Expires != time.Minute {
		t.Errorf("responses: %+v", p.Resp)
	}
}

// Given a cluster's servers, of which one is down, the orchestrator
// connects to one that is up, and hands the whole list on to the workers.
func TestExternalServerList(t *testing.T) {
	url, skSeed, orchCreds := operatorServer(t)
	list := "nats://127.0.0.1:1, " + url
	e := dialExternal(t, ExternalConfig{URL: list, AccountSeed: skSeed, Creds: orchCreds})
	if e.ClientURL() != list {
		t.Errorf("workers get %q, want %q", e.ClientURL(), list)
	}
	for range 4 { // the list is tried in a random order
		nc, err := e.Connect()
		if err != nil {
			t.Fatal(err)
		}
		if nc.ConnectedUrl() != url {
			t.Errorf("connected to %s, want %s", nc.ConnectedUrl(), url)
		}
		nc.Close()
	}
}
