package bus

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/internal/natscreds"
)

// DefaultCredentialTTL is how long a user JWT issued on an external server
// is valid when ExternalConfig.CredentialTTL is zero.
const DefaultCredentialTTL = time.Hour

// ExternalConfig says how to use an existing NATS server or cluster that
// runs in operator mode (decentralized JWT authentication).
type ExternalConfig struct {
	// URL of the server, or a comma-separated list of a cluster's servers.
	URL string
	// AccountSeed is the seed of the account's key or of one of its
	// signing keys. Every user the orchestrator issues is signed with it.
	AccountSeed []byte
	// Creds is the orchestrator's own user in that account: the contents of
	// a .creds file (a user JWT and its seed).
	Creds []byte
	// CredentialTTL is how long each issued user JWT is valid; default
	// DefaultCredentialTTL.
	CredentialTTL time.Duration
	// TLS, when set, is used by every connection the orchestrator opens:
	// the CA that signed the server's certificate and the client
	// certificate a server with verify: true asks for.
	TLS *tls.Config
}

// External is an existing NATS server or cluster in operator mode. Users
// are not registered with the server: each is a user JWT signed with the
// account's key, with the permissions in its claims, which the server
// checks when the user connects and enforces from then on.
//
// A JWT cannot be withdrawn without updating the account (which needs the
// operator's key), so the function AddUser returns to remove a user does
// nothing: every JWT expires after CredentialTTL instead.
type External struct {
	url     string
	signer  nkeys.KeyPair
	account string // the account's public key
	jwt     string // the orchestrator's user
	seed    string
	ttl     time.Duration
	tls     *tls.Config
	probe   *nats.Conn
}

// Dial checks the credentials, connects to the external server as the
// orchestrator, and checks that the server accepts users signed with the
// account key.
func Dial(ctx context.Context, cfg ExternalConfig) (*External, error) {
	if err := checkURLs(cfg.URL); err != nil {
		return nil, err
	}
	signer, err := nkeys.FromSeed(bytes.TrimSpace(cfg.AccountSeed))
	if err != nil {
		return nil, fmt.Errorf("%w: account seed: %v", ErrCredentials, err)
	}
	if pub, _ := signer.PublicKey(); !nkeys.IsValidPublicAccountKey(pub) {
		return nil, fmt.Errorf("%w: account seed: not the seed of an account key (it starts with SA)", ErrCredentials)
	}
	userJWT, err := nkeys.ParseDecoratedJWT(cfg.Creds)
	if err != nil {
		return nil, fmt.Errorf("%w: creds: %v", ErrCredentials, err)
	}
	claims, err := jwt.DecodeUserClaims(userJWT)
	if err != nil {
		return nil, fmt.Errorf("%w: creds: not a user JWT: %v", ErrCredentials, err)
	}
	kp, err := nkeys.ParseDecoratedUserNKey(cfg.Creds)
	if err != nil {
		return nil, fmt.Errorf("%w: creds: %v", ErrCredentials, err)
	}
	seed, _ := kp.Seed()
	account := claims.IssuerAccount
	if account == "" {
		account = claims.Issuer
	}
	ttl := cfg.CredentialTTL
	if ttl <= 0 {
		ttl = DefaultCredentialTTL
	}
	e := &External{url: cfg.URL, signer: signer, account: account, jwt: userJWT, seed: string(seed), ttl: ttl, tls: cfg.TLS}
	if e.probe, err = e.Connect(nats.Name("sluice-orchestrator-probe")); err != nil {
		if refused(err) {
			return nil, fmt.Errorf("%w: the server refused the orchestrator's creds (user %q of account %s): %v",
				ErrCredentials, claims.Name, account, err)
		}
		return nil, fmt.Errorf("connect to %s: %w", cfg.URL, err)
	}
	if err := e.checkSigner(ctx); err != nil {
		e.probe.Close()
		return nil, err
	}
	return e, nil
}

func checkURLs(list string) error {
	for _, s := range strings.Split(list, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Hostname() == "" {
			return fmt.Errorf("nats url %q: want nats://host:port", s)
		}
	}
	return nil
}

// checkSigner connects once as a user signed by the account key, so that a
// key the account does not list fails here rather than in every worker.
func (e *External) checkSigner(ctx context.Context) error {
	creds, err := e.issue("sluice-check", capabilities.Permissions{}, time.Minute)
	if err != nil {
		return err
	}
	opt, err := natscreds.Option(creds)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(e.url, append(e.secure(), opt, nats.Name("sluice-check"), nats.MaxReconnects(0))...)
	if err != nil && !refused(err) {
		return fmt.Errorf("connect to %s: %w", e.url, err)
	}
	if err != nil {
		pub, _ := e.signer.PublicKey()
		return fmt.Errorf("%w: the server refused a user signed with the account seed (key %s) for account %s: %v",
			ErrCredentials, pub, e.account, err)
	}
	nc.Close()
	return ctx.Err()
}

// refused says whether the server turned a connection's credentials down.
func refused(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked)
}

// ClientURL is the URL worker processes connect to.
func (e *External) ClientURL() string { return e.url }

// Connect opens a connection as the orchestrator, with the permissions its
// own user JWT grants. It reconnects for as long as it is open: to any
// server of the URL list, or that the cluster announced, when its own is
// gone, and after a server that stops answering without closing the
// connection (a partition) is given up, after about 15s.
func (e *External) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append(append(e.secure(), nats.UserJWTAndSeed(e.jwt, e.seed), nats.Name("sluice-orchestrator"),
		nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond),
		nats.PingInterval(5*time.Second), nats.MaxPingsOutstanding(3)), opts...)
	return nats.Connect(e.url, opts...)
}

// secure is the TLS option of every connection, when TLS is configured.
func (e *External) secure() []nats.Option {
	if e.tls == nil {
		return nil
	}
	return []nats.Option{nats.Secure(e.tls.Clone())}
}

// AddUser issues a user JWT with the given permissions, valid for the
// credential TTL, and returns it with its seed as the contents of a .creds
// file, to be handed to exactly one process. name is the JWT's name.
//
// remove does nothing: the server has no way to be told that one user JWT
// is withdrawn short of an account update, so the JWT stays valid until it
// expires; and it closes the connection of a process that died only when
// it reads the end of its socket (Bus's remove closes it at once).
func (e *External) AddUser(name string, p capabilities.Permissions) (creds []byte, remove func(), err error) {
	creds, err = e.issue(name, p, e.ttl)
	if err != nil {
		return nil, nil, err
	}
	return creds, func() {}, nil
}

// CredentialTTL is how long every issued user JWT is valid.
func (e *External) CredentialTTL() time.Duration { return e.ttl }

func (e *External) issue(name string, p capabilities.Permissions, ttl time.Duration) ([]byte, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	pub, _ := kp.PublicKey()
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	if signerPub, _ := e.signer.PublicKey(); signerPub != e.account {
		uc.IssuerAccount = e.account
	}
	uc.Expires = time.Now().Add(ttl).Unix()
	uc.AllowedConnectionTypes.Add(jwt.ConnectionTypeStandard)
	uc.Permissions = jwtPermissions(p)
	token, err := uc.Encode(e.signer)
	if err != nil {
		return nil, fmt.Errorf("sign user %s: %w", name, err)
	}
	return jwt.FormatUserConfig(token, seed)
}

// jwtPermissions is natsPermissions in JWT form. In a JWT an empty allow
// list means "everything", so an empty list is written as a deny of ">".
func jwtPermissions(p capabilities.Permissions) jwt.Permissions {
	var out jwt.Permissions
	if len(p.Publish) == 0 {
		out.Pub.Deny.Add(">")
	} else {
		out.Pub.Allow.Add(p.Publish...)
	}
	if len(p.Subscribe) == 0 {
		out.Sub.Deny.Add(">")
	} else {
		out.Sub.Allow.Add(p.Subscribe...)
	}
	if p.Responses {
		out.Resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: p.ResponseTTL}
	}
	return out
}

// HasInterest reports whether anyone answers a request on subject. The
// server tells no one else about another connection's subscriptions, so
// this sends a real request: subject must be one whose subscribers answer
// without acting (a tool name no worker has).
func (e *External) HasInterest(subject string) bool {
	_, err := e.probe.Request(subject, nil, 2*time.Second)
	return err == nil || errors.Is(err, nats.ErrTimeout)
}

// Shutdown closes the orchestrator's probe connection; the server itself
// is not the orchestrator's to stop.
func (e *External) Shutdown() { e.probe.Close() }
