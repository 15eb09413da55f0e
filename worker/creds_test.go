package worker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// userCreds returns a .creds file for a user JWT signed by a fresh account
// key, expiring after ttl.
func userCreds(t *testing.T, ttl time.Duration) (creds []byte, user nkeys.KeyPair) {
	t.Helper()
	acc, _ := nkeys.CreateAccount()
	user, _ = nkeys.CreateUser()
	pub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Expires = time.Now().Add(ttl).Unix()
	token, err := uc.Encode(acc)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	creds, err = jwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	return creds, user
}

func TestCredentialsOption(t *testing.T) {
	creds, user := userCreds(t, time.Hour)
	seed, _ := user.Seed()
	for _, tc := range []struct {
		name    string
		content []byte
		jwt     bool
		wantErr string
	}{
		{name: "creds file", content: creds, jwt: true},
		{name: "nkey seed", content: append(seed, '\n')},
		{name: "garbage", content: []byte("not a credential"), wantErr: "neither an nkey seed nor a .creds file"},
		{name: "creds without a seed", content: []byte(strings.SplitAfter(string(creds), "------END NATS USER JWT------")[0] + "\n"),
			wantErr: "without a user seed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt, err := credentialsOption(tc.content)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var o nats.Options
			if err := opt(&o); err != nil {
				t.Fatal(err)
			}
			if (o.UserJWT != nil) != tc.jwt {
				t.Fatalf("UserJWT set: %v, want %v", o.UserJWT != nil, tc.jwt)
			}
			// Whichever the form, the connection signs the server's nonce
			// with the user's key.
			nonce := []byte("nonce")
			sig, err := o.SignatureCB(nonce)
			if err != nil {
				t.Fatal(err)
			}
			if err := user.Verify(nonce, sig); err != nil {
				t.Fatalf("signature does not verify: %v", err)
			}
		})
	}
}

// The credentials file is removed once read, and the connection keeps the
// credential in memory (a reconnect needs it).
func TestConnectRemovesTheCredentialsFile(t *testing.T) {
	creds, _ := userCreds(t, time.Hour)
	f := filepath.Join(t.TempDir(), "w.creds")
	if err := os.WriteFile(f, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	// Nothing listens on port 1: the connection fails after the file is read.
	if _, err := Connect(ConnectConfig{URL: "nats://127.0.0.1:1", CredsFile: f, Worker: "w"}); err == nil {
		t.Fatal("connected to nothing")
	}
	if _, err := os.Stat(f); !os.IsNotExist(err) {
		t.Fatalf("credentials file still there: %v", err)
	}
}

func TestRenewAt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ttl     time.Duration
		timeout time.Duration
		before  time.Duration // how long before expiry the worker stops
	}{
		{name: "long ttl: timeout plus margin", ttl: time.Hour, timeout: 30 * time.Second, before: 35 * time.Second},
		{name: "short ttl: half its life", ttl: time.Minute, timeout: 50 * time.Second, before: 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			creds, _ := userCreds(t, tc.ttl)
			opt, err := credentialsOption(creds)
			if err != nil {
				t.Fatal(err)
			}
			nc := &nats.Conn{}
			if err := opt(&nc.Opts); err != nil {
				t.Fatal(err)
			}
			at, ok := renewAt(nc, tc.timeout)
			if !ok {
				t.Fatal("no renewal time for an expiring JWT")
			}
			want := time.Now().Add(tc.ttl - tc.before)
			if d := at.Sub(want); d < -2*time.Second || d > 2*time.Second {
				t.Fatalf("renew at %s, want about %s", at, want)
			}
		})
	}
	if _, ok := renewAt(&nats.Conn{}, time.Second); ok {
		t.Error("a connection without a JWT has a renewal time")
	}
}
