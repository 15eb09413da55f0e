package natscreds

import (
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
			opt, err := Option(tc.content)
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
