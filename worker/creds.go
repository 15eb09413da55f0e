package worker

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// credentialsOption turns the contents of a credentials file into a
// connect option: a .creds file (a user JWT and its seed, issued for an
// external server) or a bare nkey seed (the embedded server). Both stay in
// memory, so reconnects work after the file is gone.
func credentialsOption(b []byte) (nats.Option, error) {
	if bytes.Contains(b, []byte("BEGIN NATS USER JWT")) {
		token, err := nkeys.ParseDecoratedJWT(b)
		if err != nil {
			return nil, err
		}
		kp, err := nkeys.ParseDecoratedUserNKey(b)
		if err != nil {
			return nil, errors.New("a .creds file without a user seed")
		}
		seed, err := kp.Seed()
		if err != nil {
			return nil, err
		}
		return nats.UserJWTAndSeed(token, string(seed)), nil
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		return nil, errors.New("neither an nkey seed nor a .creds file")
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	return nats.Nkey(pub, kp.Sign), nil
}

// renewAt says when a worker whose user JWT expires should stop taking
// calls: early enough that a call taken just before still has time to be
// answered (timeout plus a margin), and never later than half the JWT's
// life. ok is false for a credential that does not expire.
func renewAt(nc *nats.Conn, timeout time.Duration) (at time.Time, ok bool) {
	if nc.Opts.UserJWT == nil {
		return time.Time{}, false
	}
	token, err := nc.Opts.UserJWT()
	if err != nil {
		return time.Time{}, false
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		IssuedAt int64 `json:"iat"`
		Expires  int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Expires == 0 {
		return time.Time{}, false
	}
	exp := time.Unix(claims.Expires, 0)
	margin := min(timeout+5*time.Second, exp.Sub(time.Unix(claims.IssuedAt, 0))/2)
	return exp.Add(-margin), true
}
