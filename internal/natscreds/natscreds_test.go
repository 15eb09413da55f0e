package natscreds

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/internal/natscreds/credstest"
)

func TestCredentialsOption(t *testing.T) {
	creds, user := credstest.UserCreds(t, time.Hour)
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
