// Package credstest makes NATS credentials for tests.
package credstest

import (
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// UserCreds returns a .creds file for a user JWT signed by a fresh
// account key, expiring after ttl, and the user's key.
func UserCreds(t testing.TB, ttl time.Duration) (creds []byte, user nkeys.KeyPair) {
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
